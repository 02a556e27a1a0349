// Errors of the TLS transport as error_codes: OpenSSL's packed error codes in their own category
// (message from OpenSSL's error strings), and the transport's own conditions.
#pragma once

#include <string_view>

#include <boost/system/error_code.hpp>

namespace wsgate::gateway {

// An OpenSSL read that has to write first (a key update to answer): wait until writable, then
// read again. Never reaches a caller of the transport.
boost::system::error_code tlsReadWantsWrite();

// OpenSSL's error `packed` (ERR_get_error) as an error_code.
const boost::system::error_category& opensslCategory();
boost::system::error_code opensslError(unsigned long packed);

// A handshake failure as a metric label, from a fixed set: not_tls, protocol_version,
// no_shared_cipher, no_client_cert, bad_client_cert (as server), verify_failed (as client),
// closed (the peer left), other. Timeouts are the caller's to name.
std::string_view tlsFailureReason(const boost::system::error_code& ec, bool as_server);

}  // namespace wsgate::gateway
