#include "routing/router.h"

#include <algorithm>
#include <cctype>

#include <boost/beast/core/string.hpp>

namespace wsgate::gateway {

namespace {

// Both sides folded: the loader lower-cases match.host, but a Config built in code need not.
bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  return boost::beast::iequals(a, b);  // ASCII folding, no locale lookup per character
}

// Host header without its port: "a.example.com:8080" → "a.example.com", "[::1]:80" → "[::1]".
std::string_view hostName(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    const size_t close = host.find(']');
    return close == std::string_view::npos ? host : host.substr(0, close + 1);
  }
  const size_t colon = host.find(':');
  return colon == std::string_view::npos ? host : host.substr(0, colon);
}

// Exact, or "*.suffix" for any subdomain depth but not the bare suffix.
bool hostMatches(const std::string& pattern, std::string_view host) {
  if (pattern.empty()) return true;
  if (pattern.size() > 2 && pattern[0] == '*' && pattern[1] == '.') {
    const std::string_view suffix = std::string_view(pattern).substr(1);  // ".example.com"
    return host.size() > suffix.size() &&
           equalsIgnoreCase(host.substr(host.size() - suffix.size()), suffix);
  }
  return equalsIgnoreCase(host, pattern);
}

}  // namespace

const config::Route* Router::match(std::string_view host, std::string_view target) const {
  const std::string_view name = hostName(host);
  const std::string_view path = target.substr(0, target.find('?'));
  for (const auto& route : listener_.routes) {
    const config::Match& m = route.match;
    if (!hostMatches(m.host, name)) continue;
    if (m.path_exact && path != *m.path_exact) continue;
    // A plain string prefix, as nginx's `location /echo`: "/echo" also matches "/echoes"; write
    // "/echo/" to mean the folder only.
    if (m.path_prefix && path.substr(0, m.path_prefix->size()) != *m.path_prefix) continue;
    return &route;
  }
  return nullptr;
}

}  // namespace wsgate::gateway
