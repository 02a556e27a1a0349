// Picks the route for an upgrade request: first match in config order on host (exact,
// "*.suffix", or any) and path (exact, prefix, or any). Pure code: no I/O, no allocation per call.
#pragma once

#include <string_view>

#include "config/config.h"

namespace wsgate::gateway {

class Router {
 public:
  // Keeps a reference: `listener` must outlive the router (both live in one config snapshot).
  explicit Router(const config::Listener& listener) : listener_(listener) {}

  // `host` is the Host header as sent (may carry ":port", any case); `target` the request-target
  // (query string ignored). Returns nullptr when no route matches.
  const config::Route* match(std::string_view host, std::string_view target) const;

 private:
  const config::Listener& listener_;
};

}  // namespace wsgate::gateway
