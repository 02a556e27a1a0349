#include "gateway/http_head.h"

#include <string_view>

namespace wsgate::gateway {

namespace http = boost::beast::http;

namespace {

constexpr size_t kTypicalHead = 512;

std::string_view versionText(unsigned version) { return version == 10 ? "HTTP/1.0" : "HTTP/1.1"; }

template <typename Fields>
void appendFields(std::string& out, const Fields& fields) {
  for (const auto& field : fields) {
    out.append(field.name_string()).append(": ").append(field.value()).append("\r\n");
  }
  out.append("\r\n");
}

}  // namespace

std::string headBytes(const http::request_header<>& request) {
  std::string out;
  out.reserve(kTypicalHead);
  out.append(request.method_string())
      .append(" ")
      .append(request.target())
      .append(" ")
      .append(versionText(request.version()))
      .append("\r\n");
  appendFields(out, request);
  return out;
}

std::string headBytes(const http::response_header<>& response) {
  std::string out;
  out.reserve(kTypicalHead);
  out.append(versionText(response.version()))
      .append(" ")
      .append(std::to_string(response.result_int()))
      .append(" ")
      .append(response.reason())
      .append("\r\n");
  appendFields(out, response);
  return out;
}

}  // namespace wsgate::gateway
