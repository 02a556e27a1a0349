// `subprotocol`: keeps a route to the WebSocket subprotocols it allows. A client that offers
// protocols (Sec-WebSocket-Protocol) must offer at least one allowed one, else 400 naming the
// allowed ones; offers outside the list go on to the backend, whose choice is what counts. With
// `require: true` a client that offers none is refused too (400). After the backend's 101, a
// protocol outside the list, or not offered by the client, is a 502; with `require: true` so is
// choosing none. Names compare exactly (RFC 6455 tokens are case-sensitive). Immutable after
// load; safe to share across threads.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "filters/filter.h"

namespace wsgate::filters {

class SubprotocolFilter final : public FilterFactory, public HandshakeFilter {
 public:
  SubprotocolFilter(std::vector<std::string> allow, bool require);

  std::string_view name() const override { return "subprotocol"; }
  const HandshakeFilter* handshakeFilter() const override { return this; }
  HandshakeVerdict onHandshake(const HandshakeRequest& request) const override;
  HandshakeVerdict onUpstreamAccepted(const HandshakeRequest& request,
                                      std::string_view protocol) const override;

  bool allows(std::string_view protocol) const;
  // Whether `protocol` is one of the comma-separated `offers` (optional whitespace around each).
  static bool offered(std::string_view offers, std::string_view protocol);

 private:
  std::vector<std::string> allow_;
  bool require_;
  std::string allowed_text_;  // "chat.v2, chat.v1", for the 400's reason
};

}  // namespace wsgate::filters
