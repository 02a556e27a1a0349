#include "io/tls_error.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <array>
#include <string>

#include <boost/asio/error.hpp>

namespace wsgate::gateway {

namespace {

class TransportCategory final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "wsgate.tls"; }
  std::string message(int value) const override {
    return value == 1 ? "TLS read must write first" : "TLS transport error";
  }
};

class OpensslCategory final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "openssl"; }
  std::string message(int value) const override {
    std::array<char, 256> text{};
    ERR_error_string_n(static_cast<unsigned long>(value), text.data(), text.size());
    return text.data();
  }
};

}  // namespace

boost::system::error_code tlsReadWantsWrite() {
  static const TransportCategory category;
  return {1, category};
}

const boost::system::error_category& opensslCategory() {
  static const OpensslCategory instance;
  return instance;
}

boost::system::error_code opensslError(unsigned long packed) {
  // Packed codes keep the library in the top bits below 2^31: they fit an int unchanged.
  return {static_cast<int>(packed & 0x7fffffffUL), opensslCategory()};
}

std::string_view tlsFailureReason(const boost::system::error_code& ec, bool as_server) {
  if (ec == boost::asio::error::eof || ec == boost::asio::error::connection_reset ||
      ec == boost::asio::error::broken_pipe) {
    return "closed";
  }
  if (ec.category() != opensslCategory()) return "other";
  switch (ERR_GET_REASON(static_cast<unsigned long>(ec.value()))) {
    case SSL_R_HTTP_REQUEST:
    case SSL_R_HTTPS_PROXY_REQUEST:
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_PACKET_LENGTH_TOO_LONG:
    case SSL_R_RECORD_LENGTH_MISMATCH:
      return "not_tls";
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_NO_PROTOCOLS_AVAILABLE:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
      return "protocol_version";
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_NO_SHARED_GROUPS:
    case SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM:
    case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE:
      return "no_shared_cipher";
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
      return "no_client_cert";
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
      return as_server ? "bad_client_cert" : "verify_failed";
    default:
      return "other";
  }
}

}  // namespace wsgate::gateway
