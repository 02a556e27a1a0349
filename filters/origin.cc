#include "filters/origin.h"

#include <algorithm>
#include <cctype>

#include <yaml-cpp/yaml.h>

#include "config/yaml_util.h"
#include "filters/registry.h"

namespace wsgate::filters {

namespace {

char lowerChar(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                            [](char x, char y) { return lowerChar(x) == y; });
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), lowerChar);
  return out;
}

bool isAlpha(char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0; }
bool isDigit(char c) { return c >= '0' && c <= '9'; }
bool isHex(char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; }

// RFC 3986 scheme: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
bool validScheme(std::string_view s) {
  if (s.empty() || !isAlpha(s.front())) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return isAlpha(c) || isDigit(c) || c == '+' || c == '-' || c == '.';
  });
}

// A DNS name or IPv4 address (dot-separated non-empty labels), or a bracketed IPv6 literal.
// Anything else (userinfo, spaces, percent-escapes) is refused so that no entry can be written
// that looks like one origin but matches another.
bool validHost(std::string_view h) {
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') {
    const std::string_view inner = h.substr(1, h.size() - 2);
    return inner.find(':') != std::string_view::npos &&
           std::all_of(inner.begin(), inner.end(),
                       [](char c) { return isHex(c) || c == ':' || c == '.'; });
  }
  if (h.empty() || h.front() == '.' || h.back() == '.' || h.find("..") != std::string_view::npos) {
    return false;
  }
  return std::all_of(h.begin(), h.end(), [](char c) {
    return isAlpha(c) || isDigit(c) || c == '-' || c == '_' || c == '.';
  });
}

uint16_t defaultPort(std::string_view scheme) {
  if (iequals(scheme, "http") || iequals(scheme, "ws")) return 80;
  if (iequals(scheme, "https") || iequals(scheme, "wss")) return 443;
  return 0;
}

// The pieces of an origin, as views into the text (not lower-cased).
struct Parts {
  std::string_view scheme;
  std::string_view host;  // for wildcards the suffix with its leading dot
  bool wildcard = false;
  uint16_t port = 0;      // 0: none, or the scheme's default
};

std::optional<Parts> split(std::string_view origin, bool allow_wildcard) {
  const size_t sep = origin.find("://");
  if (sep == std::string_view::npos) return std::nullopt;
  Parts p;
  p.scheme = origin.substr(0, sep);
  if (!validScheme(p.scheme)) return std::nullopt;
  std::string_view rest = origin.substr(sep + 3);
  // Browsers never send a path, but a trailing "/" is a common way to write an origin by hand.
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  size_t colon = rest.rfind(':');
  if (!rest.empty() && rest.front() == '[') {  // IPv6 literal: its colons are not the port's
    const size_t close = rest.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    colon = close + 1 < rest.size() ? close + 1 : std::string_view::npos;
    if (colon != std::string_view::npos && rest[colon] != ':') return std::nullopt;
  }
  p.host = rest.substr(0, colon);
  if (colon != std::string_view::npos) {
    const std::string_view port = rest.substr(colon + 1);
    if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), isDigit)) {
      return std::nullopt;
    }
    unsigned value = 0;
    for (char c : port) value = value * 10 + static_cast<unsigned>(c - '0');
    if (value == 0 || value > 65535) return std::nullopt;
    p.port = static_cast<uint16_t>(value);
  }
  if (p.port == defaultPort(p.scheme)) p.port = 0;
  if (allow_wildcard && p.host.size() > 2 && p.host.substr(0, 2) == "*.") {
    p.wildcard = true;
    p.host.remove_prefix(1);  // keep the dot: ".example.com"
    if (!validHost(p.host.substr(1))) return std::nullopt;
  } else if (!validHost(p.host)) {
    return std::nullopt;
  }
  return p;
}

std::shared_ptr<const FilterFactory> buildOrigin(const YAML::Node& node, const std::string& path,
                                                 config::Diagnostics& diags) {
  const size_t errors_before = diags.errors().size();
  if (!config::checkKeys(node, path, {"allow", "require"}, diags)) return nullptr;
  bool require = false;
  if (YAML::Node r = node["require"]) {
    if (auto value = config::readBool(r, path + ".require", diags)) require = *value;
  }
  std::vector<OriginFilter::Pattern> allow;
  const std::optional<YAML::Node> found =
      config::readNonEmptyList(node, "allow", path, "origins", diags);
  if (!found) return nullptr;
  const YAML::Node& list = *found;
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string item_path = path + ".allow[" + std::to_string(i) + "]";
    auto text = config::readString(list[i], item_path, diags);
    if (!text) continue;
    auto pattern = OriginFilter::parse(*text, true);
    if (!pattern) {
      diags.error(list[i], item_path,
                  "invalid origin \"" + *text +
                      "\" (expected scheme://host[:port] or scheme://*.domain[:port])");
      continue;
    }
    allow.push_back(std::move(*pattern));
  }
  // Every problem is reported (unknown keys included) before giving up on this filter.
  if (diags.errors().size() != errors_before) return nullptr;
  return std::make_shared<OriginFilter>(std::move(allow), require);
}

WSGATE_REGISTER_FILTER("origin", buildOrigin);

}  // namespace

std::optional<OriginFilter::Pattern> OriginFilter::parse(std::string_view origin,
                                                          bool allow_wildcard) {
  auto parts = split(origin, allow_wildcard);
  if (!parts) return std::nullopt;
  return Pattern{lower(parts->scheme), lower(parts->host), parts->wildcard, parts->port};
}

bool OriginFilter::allows(std::string_view origin) const {
  auto seen = split(origin, false);
  if (!seen) return false;  // includes "null"
  for (const auto& p : allow_) {
    if (p.port != seen->port || !iequals(seen->scheme, p.scheme)) continue;
    // Patterns are lower-case; the wildcard's leading dot keeps "badexample.org" out.
    const bool host_ok = p.wildcard ? seen->host.size() > p.host.size() &&
                                          iequals(seen->host.substr(seen->host.size() -
                                                                    p.host.size()),
                                                  p.host)
                                    : iequals(seen->host, p.host);
    if (host_ok) return true;
  }
  return false;
}

HandshakeVerdict OriginFilter::onHandshake(const HandshakeRequest& request) const {
  auto origin = request.header("Origin");
  if (!origin) {
    if (require_) return HandshakeRejection{403, "origin required", "origin_missing"};
    return std::nullopt;
  }
  if (!allows(*origin)) return HandshakeRejection{403, "origin not allowed", "origin_not_allowed"};
  return std::nullopt;
}

}  // namespace wsgate::filters
