#include "filters/subprotocol.h"

#include <algorithm>
#include <cstring>
#include <memory>

#include <yaml-cpp/yaml.h>

#include "config/yaml_util.h"
#include "filters/registry.h"

namespace wsgate::filters {

namespace {

// RFC 7230 tchar: what Sec-WebSocket-Protocol values are made of (RFC 6455 §4.1).
bool isTokenChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c != '\0' && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr);
}

bool isToken(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), isTokenChar);
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Calls `f` on each non-empty element of a comma-separated list until it returns true.
template <typename F>
bool anyElement(std::string_view list, F f) {
  while (true) {
    const size_t comma = list.find(',');
    const std::string_view item = trim(list.substr(0, comma));
    if (!item.empty() && f(item)) return true;
    if (comma == std::string_view::npos) return false;
    list.remove_prefix(comma + 1);
  }
}

std::shared_ptr<const FilterFactory> buildSubprotocol(const YAML::Node& node,
                                                      const std::string& path,
                                                      config::Diagnostics& diags) {
  const size_t errors_before = diags.errors().size();
  if (!config::checkKeys(node, path, {"allow", "require"}, diags)) return nullptr;
  bool require = false;
  if (YAML::Node r = node["require"]) {
    if (auto value = config::readBool(r, path + ".require", diags)) require = *value;
  }
  const std::optional<YAML::Node> found =
      config::readNonEmptyList(node, "allow", path, "subprotocol names", diags);
  if (!found) return nullptr;
  const YAML::Node& list = *found;
  std::vector<std::string> allow;
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string item_path = path + ".allow[" + std::to_string(i) + "]";
    auto text = config::readString(list[i], item_path, diags);
    if (!text) continue;
    if (!isToken(*text)) {
      diags.error(list[i], item_path,
                  "invalid subprotocol \"" + *text +
                      "\" (an HTTP token: letters, digits and !#$%&'*+-.^_`|~, no spaces or "
                      "commas)");
    } else if (std::find(allow.begin(), allow.end(), *text) != allow.end()) {
      diags.error(list[i], item_path, "\"" + *text + "\" is listed twice");
    } else {
      allow.push_back(std::move(*text));
    }
  }
  // Every problem is reported (unknown keys included) before giving up on this filter.
  if (diags.errors().size() != errors_before) return nullptr;
  return std::make_shared<SubprotocolFilter>(std::move(allow), require);
}

WSGATE_REGISTER_FILTER("subprotocol", buildSubprotocol);

}  // namespace

SubprotocolFilter::SubprotocolFilter(std::vector<std::string> allow, bool require)
    : allow_(std::move(allow)), require_(require) {
  for (const auto& name : allow_) {
    if (!allowed_text_.empty()) allowed_text_ += ", ";
    allowed_text_ += name;
  }
}

bool SubprotocolFilter::allows(std::string_view protocol) const {
  return std::find(allow_.begin(), allow_.end(), protocol) != allow_.end();
}

bool SubprotocolFilter::offered(std::string_view offers, std::string_view protocol) {
  return anyElement(offers, [&](std::string_view item) { return item == protocol; });
}

HandshakeVerdict SubprotocolFilter::onHandshake(const HandshakeRequest& request) const {
  const auto offers = request.header("Sec-WebSocket-Protocol");
  const bool any = offers && anyElement(*offers, [](std::string_view) { return true; });
  if (!any) {
    if (!require_) return std::nullopt;
    return HandshakeRejection{400, "a subprotocol is required (accepted: " + allowed_text_ + ")",
                              "subprotocol_missing"};
  }
  if (anyElement(*offers, [&](std::string_view item) { return allows(item); })) {
    return std::nullopt;
  }
  return HandshakeRejection{400,
                            "no accepted subprotocol offered (accepted: " + allowed_text_ + ")",
                            "subprotocol_not_allowed"};
}

HandshakeVerdict SubprotocolFilter::onUpstreamAccepted(const HandshakeRequest& request,
                                                       std::string_view protocol) const {
  if (protocol.empty()) {
    if (!require_) return std::nullopt;
    return HandshakeRejection{502, "upstream chose no subprotocol", "upstream_protocol"};
  }
  const auto offers = request.header("Sec-WebSocket-Protocol");
  if (allows(protocol) && offers && offered(*offers, protocol)) return std::nullopt;
  return HandshakeRejection{502, "upstream chose a subprotocol that is not allowed",
                            "upstream_protocol"};
}

}  // namespace wsgate::filters
