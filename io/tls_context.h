// OpenSSL contexts built from validated settings (config/config.h), once per loaded config and
// shared by every worker (an SSL_CTX may be used from several threads; each session gets its
// own SSL). The server side picks a certificate by SNI; the client side verifies backends.
#pragma once

#include <openssl/ssl.h>

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "io/tls_ticket_keys.h"
#include "io/tls_transport.h"

namespace wsgate::gateway {

struct SslCtxFree {
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;

// A listener's TLS: one context per certificate, the first the default (no SNI, or no match).
// TLS 1.2 and up with forward-secret AEAD suites, ALPN http/1.1, resumption by tickets whose
// keys live in memory only, client certificates when the settings ask for them.
class ServerTlsContext {
 public:
  // Throws std::runtime_error naming what failed (settings are validated at load: a failure
  // here means OpenSSL refused what the loader accepted).
  explicit ServerTlsContext(const config::ListenerTls& settings);
  ServerTlsContext(const ServerTlsContext&) = delete;
  ServerTlsContext& operator=(const ServerTlsContext&) = delete;

  // A server-side session for one accepted connection; null when OpenSSL is out of memory.
  SslPtr newSession() const;

  // The index of the certificate that serves `name` (exact first, then "*.suffix" for one
  // label), or 0.
  size_t certificateFor(std::string_view name) const;

 private:
  static int onServerName(SSL* ssl, int* alert, void* arg);

  std::unique_ptr<TicketKeys> tickets_;  // declared first: outlives the contexts
  std::vector<SslCtxPtr> contexts_;
  std::vector<std::pair<std::string, size_t>> exact_;     // name → context
  std::vector<std::pair<std::string, size_t>> wildcard_;  // suffix without "*" → context
  bool ask_client_cert_ = false;
};

// A cluster's TLS toward its backends: verification on unless the settings turn it off.
class ClientTlsContext {
 public:
  explicit ClientTlsContext(const config::ClusterTls& settings);
  ClientTlsContext(const ClientTlsContext&) = delete;
  ClientTlsContext& operator=(const ClientTlsContext&) = delete;

  // A client-side session toward `host` (the endpoint's name or IP literal): SNI and the name
  // verified are the settings' server_name, else `host`.
  SslPtr newSession(std::string_view host) const;

 private:
  SslCtxPtr context_;
  std::string server_name_;
  bool verify_ = true;
};

// Every TLS context one config needs, built once and shared by all workers: tickets sealed by
// one worker must open on another (SO_REUSEPORT spreads a client's connections over them all).
struct TlsContexts {
  std::vector<std::shared_ptr<const ServerTlsContext>> listeners;  // by index; null: plain
  std::map<std::string, std::shared_ptr<const ClientTlsContext>, std::less<>> clusters;

  // Throws std::runtime_error naming the listener or cluster and what failed.
  static std::shared_ptr<const TlsContexts> build(const config::Config& config);
  const ServerTlsContext* listener(size_t index) const {
    return index < listeners.size() ? listeners[index].get() : nullptr;
  }
  const ClientTlsContext* cluster(std::string_view name) const {
    auto it = clusters.find(name);
    return it == clusters.end() ? nullptr : it->second.get();
  }
};

// The verified client certificate's subject (RFC 2253) followed by its subject alternative
// names, "subject; DNS:a; email:b"; empty when the peer sent none or it was not verified.
std::string verifiedPeerIdentity(SSL* ssl);

// "TLSv1.2" or "TLSv1.3": the version a finished handshake agreed, as a metric label.
std::string_view tlsVersionLabel(SSL* ssl);

}  // namespace wsgate::gateway
