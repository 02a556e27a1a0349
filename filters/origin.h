// `origin`: refuses upgrades whose Origin header is not on the route's allow-list (403). Entries
// are "scheme://host[:port]" or "scheme://*.suffix[:port]" (any subdomain depth, not the bare
// suffix); comparison is case-insensitive and exact on scheme, host and port, where a scheme's
// default port (80 for http/ws, 443 for https/wss) equals no port, as in RFC 6454 origins.
// A request without Origin (non-browser clients) passes unless `require: true`; "null" and any
// malformed Origin are refused. Immutable after load; safe to share across threads.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "filters/filter.h"

namespace wsgate::filters {

class OriginFilter final : public FilterFactory, public HandshakeFilter {
 public:
  struct Pattern {
    std::string scheme;  // lower-case
    std::string host;    // lower-case; for wildcards the suffix with its leading dot
    bool wildcard = false;
    uint16_t port = 0;   // 0: none written, or the scheme's default port
  };

  OriginFilter(std::vector<Pattern> allow, bool require)
      : allow_(std::move(allow)), require_(require) {}

  std::string_view name() const override { return "origin"; }
  const HandshakeFilter* handshakeFilter() const override { return this; }
  HandshakeVerdict onHandshake(const HandshakeRequest& request) const override;

  // No allocation: runs once per handshake.
  bool allows(std::string_view origin) const;
  // Parses an allow-list entry (`allow_wildcard`) or an Origin value; nullopt if malformed.
  static std::optional<Pattern> parse(std::string_view origin, bool allow_wildcard);

 private:
  std::vector<Pattern> allow_;
  bool require_;
};

}  // namespace wsgate::filters
