// Close codes come from peers: their metric label is one of a fixed set, whatever they send.
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "codec/frame_codec.h"

namespace wsgate::gateway {
namespace {

TEST(CloseCodeLabelTest, RegisteredCodesKeepTheirNumber) {
  for (uint16_t code = 1000; code <= 1015; ++code) {
    EXPECT_EQ(closeCodeLabel(code), std::to_string(code));
  }
}

TEST(CloseCodeLabelTest, LibraryAndApplicationRangesAreGrouped) {
  EXPECT_EQ(closeCodeLabel(3000), "3xxx");
  EXPECT_EQ(closeCodeLabel(3999), "3xxx");
  EXPECT_EQ(closeCodeLabel(4000), "4xxx");
  EXPECT_EQ(closeCodeLabel(4999), "4xxx");
}

TEST(CloseCodeLabelTest, EverythingElseIsInvalid) {
  for (uint16_t code : {0, 1, 999, 1016, 2000, 2999, 5000, 65535}) {
    EXPECT_EQ(closeCodeLabel(code), "invalid") << code;
  }
}

TEST(CloseCodeLabelTest, AllSixtyFiveThousandCodesMakeNineteenLabels) {
  std::set<std::string> labels;
  for (uint32_t code = 0; code <= 0xFFFF; ++code) {
    labels.emplace(closeCodeLabel(static_cast<uint16_t>(code)));
  }
  EXPECT_EQ(labels.size(), 19u);
}

}  // namespace
}  // namespace wsgate::gateway
