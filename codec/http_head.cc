#include "codec/http_head.h"

namespace wsgate::gateway {

namespace http = boost::beast::http;

namespace {

std::string_view versionText(unsigned version) { return version == 10 ? "HTTP/1.0" : "HTTP/1.1"; }

}  // namespace

void HeadWriter::requestLine(std::string_view method, std::string_view target,
                             unsigned version) {
  out_.append(method).append(" ").append(target).append(" ").append(versionText(version));
  out_.append("\r\n");
}

void HeadWriter::statusLine(unsigned version, unsigned code, std::string_view reason) {
  out_.append(versionText(version)).append(" ").append(std::to_string(code)).append(" ");
  out_.append(reason).append("\r\n");
}

void HeadWriter::field(std::string_view name, std::string_view value) {
  out_.append(name).append(": ").append(value).append("\r\n");
}

std::string HeadWriter::finish() {
  out_.append("\r\n");
  return std::move(out_);
}

std::string headBytes(const RequestHead& request) {
  HeadWriter head;
  head.requestLine(request.method_string(), request.target(), request.version());
  for (const auto& field : request) head.field(field.name_string(), field.value());
  return head.finish();
}

std::string headBytes(const ResponseHead& response, std::string storage) {
  HeadWriter head(std::move(storage));
  head.statusLine(response.version(), response.result_int(), response.reason());
  for (const auto& field : response) head.field(field.name_string(), field.value());
  return head.finish();
}

}  // namespace wsgate::gateway
