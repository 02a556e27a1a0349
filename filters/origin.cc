#include "filters/origin.h"

#include <algorithm>
#include <cctype>

#include <yaml-cpp/yaml.h>

#include "config/yaml_util.h"
#include "filters/registry.h"

namespace wsgate::filters {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::shared_ptr<const FilterFactory> buildOrigin(const YAML::Node& node, const std::string& path,
                                                 config::Diagnostics& diags) {
  if (!config::checkKeys(node, path, {"allow", "require"}, diags)) return nullptr;
  bool ok = true;
  bool require = false;
  if (YAML::Node r = node["require"]) {
    auto value = config::readBool(r, path + ".require", diags);
    ok = ok && value;
    if (value) require = *value;
  }
  std::vector<OriginFilter::Pattern> allow;
  YAML::Node list = node["allow"];
  if (!list) {
    diags.error(node, path, "missing required key \"allow\"");
    return nullptr;
  }
  if (!list.IsSequence() || list.size() == 0) {
    diags.error(list, path + ".allow", "must be a non-empty list of origins");
    return nullptr;
  }
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string item_path = path + ".allow[" + std::to_string(i) + "]";
    auto text = config::readString(list[i], item_path, diags);
    if (!text) {
      ok = false;
      continue;
    }
    auto pattern = OriginFilter::parse(*text, true);
    if (!pattern) {
      diags.error(list[i], item_path,
                  "invalid origin \"" + *text +
                      "\" (expected scheme://host[:port] or scheme://*.domain[:port])");
      ok = false;
      continue;
    }
    allow.push_back(std::move(*pattern));
  }
  if (!ok) return nullptr;
  return std::make_shared<OriginFilter>(std::move(allow), require);
}

WSGATE_REGISTER_FILTER("origin", buildOrigin);

}  // namespace

std::optional<OriginFilter::Pattern> OriginFilter::parse(std::string_view origin,
                                                          bool allow_wildcard) {
  const size_t sep = origin.find("://");
  if (sep == std::string_view::npos || sep == 0) return std::nullopt;
  Pattern p;
  p.scheme = lower(origin.substr(0, sep));
  std::string_view rest = origin.substr(sep + 3);
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.empty() || rest.find('/') != std::string_view::npos) return std::nullopt;
  size_t colon = rest.rfind(':');
  if (rest.front() == '[') {  // IPv6 literal
    const size_t close = rest.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    colon = close + 1 < rest.size() && rest[close + 1] == ':' ? close + 1 : std::string_view::npos;
  }
  std::string_view host = rest.substr(0, colon);
  if (colon != std::string_view::npos) {
    p.port = std::string(rest.substr(colon + 1));
    if (p.port.empty() || !std::all_of(p.port.begin(), p.port.end(), ::isdigit)) {
      return std::nullopt;
    }
  }
  if (host.size() > 2 && host.substr(0, 2) == "*.") {
    if (!allow_wildcard) return std::nullopt;
    p.wildcard = true;
    host.remove_prefix(1);  // keep the dot: ".example.com"
  }
  if (host.empty() || host.find('*') != std::string_view::npos) return std::nullopt;
  p.host = lower(host);
  return p;
}

bool OriginFilter::allows(std::string_view origin) const {
  auto seen = parse(origin, false);
  if (!seen) return false;  // includes "null"
  for (const auto& p : allow_) {
    if (p.scheme != seen->scheme || p.port != seen->port) continue;
    if (p.wildcard ? seen->host.size() > p.host.size() &&
                         seen->host.compare(seen->host.size() - p.host.size(), p.host.size(),
                                            p.host) == 0
                   : seen->host == p.host) {
      return true;
    }
  }
  return false;
}

HandshakeVerdict OriginFilter::onHandshake(const HandshakeRequest& request) const {
  auto origin = request.header("Origin");
  if (!origin) {
    if (require_) return HandshakeRejection{403, "origin required"};
    return std::nullopt;
  }
  if (!allows(*origin)) return HandshakeRejection{403, "origin not allowed"};
  return std::nullopt;
}

}  // namespace wsgate::filters
