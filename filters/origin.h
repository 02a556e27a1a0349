// `origin`: refuses upgrades whose Origin header is not on the route's allow-list (403). Entries
// are "scheme://host[:port]" or "scheme://*.suffix[:port]" (any subdomain depth, not the bare
// suffix); comparison is case-insensitive. A request without Origin (non-browser clients)
// passes unless `require: true`.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "filters/filter.h"

namespace wsgate::filters {

class OriginFilter final : public FilterFactory, public HandshakeFilter {
 public:
  struct Pattern {
    std::string scheme;  // lower-case
    std::string host;    // lower-case; for wildcards the suffix with its leading dot
    bool wildcard = false;
    std::string port;  // as written, may be empty
  };

  OriginFilter(std::vector<Pattern> allow, bool require)
      : allow_(std::move(allow)), require_(require) {}

  std::string_view name() const override { return "origin"; }
  const HandshakeFilter* handshakeFilter() const override { return this; }
  HandshakeVerdict onHandshake(const HandshakeRequest& request) const override;

  bool allows(std::string_view origin) const;
  // Parses an allow-list entry or an Origin value; nullopt if malformed.
  static std::optional<Pattern> parse(std::string_view origin, bool allow_wildcard);

 private:
  std::vector<Pattern> allow_;
  bool require_;
};

}  // namespace wsgate::filters
