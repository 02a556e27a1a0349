#include "filters/registry.h"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include "config/diagnostics.h"

namespace wsgate::filters {
namespace {

class NamedFactory final : public FilterFactory {
 public:
  explicit NamedFactory(std::string name) : name_(std::move(name)) {}
  std::string_view name() const override { return name_; }

 private:
  std::string name_;
};

FilterBuilder builderNamed(std::string name) {
  return [name](const YAML::Node&, const std::string&, config::Diagnostics&) {
    return std::make_shared<NamedFactory>(name);
  };
}

TEST(Registry, KnowsTheBuiltInFiltersByName) {
  EXPECT_TRUE(Registry::global().knows("origin"));
  EXPECT_TRUE(Registry::global().knows("message_size"));
  EXPECT_TRUE(Registry::global().knows("rate_limit"));
  EXPECT_TRUE(Registry::global().knows("max_duration"));
  EXPECT_FALSE(Registry::global().knows("nope"));
  const std::string names = Registry::global().names();
  // Sorted, comma-separated; checked by prefix and pieces so that adding a filter touches no
  // other file, this test included.
  EXPECT_EQ(names.rfind("connection_limit, ", 0), 0u) << names;
  for (const char* name : {"keepalive", "max_duration", "message_size", "origin", "rate_limit",
                           "subprotocol", "utf8"}) {
    EXPECT_NE(names.find(std::string(", ") + name), std::string::npos) << names;
  }
}

TEST(Registry, GlobalIsOneInstance) { EXPECT_EQ(&Registry::global(), &Registry::global()); }

TEST(Registry, RefusesASecondFilterWithTheSameName) {
  Registry registry;
  EXPECT_TRUE(registry.add("a", builderNamed("first")));
  EXPECT_FALSE(registry.add("a", builderNamed("second")));
  config::Diagnostics diags("f.yaml");
  auto built = registry.build("a", YAML::Load("{}"), "p", diags);
  ASSERT_TRUE(built);
  EXPECT_EQ(std::static_pointer_cast<const FilterFactory>(built)->name(), "first");
}

TEST(Registry, ListsNamesSortedAndCommaSeparated) {
  Registry registry;
  EXPECT_EQ(registry.names(), "");
  registry.add("zeta", builderNamed("z"));
  registry.add("alpha", builderNamed("a"));
  registry.add("mid", builderNamed("m"));
  EXPECT_EQ(registry.names(), "alpha, mid, zeta");
}

TEST(Registry, BuildPassesNodeAndPathToTheBuilderAndItsErrorsBack) {
  Registry registry;
  registry.add("strict", [](const YAML::Node& node, const std::string& path,
                            config::Diagnostics& diags) -> std::shared_ptr<const FilterFactory> {
    diags.error(node, path, "value " + node["v"].Scalar());
    return nullptr;
  });
  config::Diagnostics diags("f.yaml");
  EXPECT_EQ(registry.build("strict", YAML::Load("{ v: 7 }"), "routes[0].filters[0].strict", diags),
            nullptr);
  EXPECT_EQ(diags.format(), "f.yaml:1:1: routes[0].filters[0].strict: value 7\n");
}

TEST(Registry, BuildOfUnknownNameReturnsNull) {
  Registry registry;
  config::Diagnostics diags("f.yaml");
  EXPECT_EQ(registry.build("missing", YAML::Load("{}"), "p", diags), nullptr);
  EXPECT_FALSE(registry.knows("missing"));
}

}  // namespace
}  // namespace wsgate::filters
