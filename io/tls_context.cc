#include "io/tls_context.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <stdexcept>

#include <boost/asio/ip/address.hpp>

#include "config/pem.h"

namespace wsgate::gateway {

namespace {

// TLS 1.2 suites: ECDHE key exchange (forward secrecy) with an AEAD cipher only. TLS 1.3's
// suites are all of that kind; OpenSSL's defaults are kept for them.
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

// ALPN wire format: one length-prefixed protocol.
constexpr std::array<unsigned char, 9> kAlpnHttp11 = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

[[noreturn]] void fail(const std::string& what) {
  std::array<char, 256> text{};
  const unsigned long packed = ERR_get_error();
  if (packed != 0) ERR_error_string_n(packed, text.data(), text.size());
  ERR_clear_error();
  throw std::runtime_error(what + (packed != 0 ? std::string(": ") + text.data() : ""));
}

using config::BioPtr;
using config::PkeyPtr;
using config::X509Ptr;

// The loader parsed these already (config/tls.cc): a failure here is OpenSSL out of memory.
std::vector<X509Ptr> certificates(const std::string& pem, const std::string& file) {
  std::string why;
  std::vector<X509Ptr> out = config::parseCertificates(pem, why);
  if (out.empty()) throw std::runtime_error(file + ": " + why);
  return out;
}

void useCertificate(SSL_CTX* ctx, const std::string& chain_pem, const std::string& key_pem,
                    const std::string& cert_file, const std::string& key_file) {
  std::vector<X509Ptr> chain = certificates(chain_pem, cert_file);
  if (SSL_CTX_use_certificate(ctx, chain.front().get()) != 1) fail(cert_file);
  for (size_t i = 1; i < chain.size(); ++i) {
    if (SSL_CTX_add1_chain_cert(ctx, chain[i].get()) != 1) fail(cert_file);
  }
  std::string why;
  PkeyPtr key = config::parsePrivateKey(key_pem, why);
  if (!key) throw std::runtime_error(key_file + ": " + why);
  if (SSL_CTX_use_PrivateKey(ctx, key.get()) != 1) fail(key_file);
  if (SSL_CTX_check_private_key(ctx) != 1) fail(key_file + ": does not match " + cert_file);
}

void trust(SSL_CTX* ctx, const std::string& ca_pem, const std::string& ca_file,
           bool send_names) {
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  for (auto& cert : certificates(ca_pem, ca_file)) {
    if (X509_STORE_add_cert(store, cert.get()) != 1) fail(ca_file);
    // The names a server lists in its certificate request, so that a client picks the right
    // certificate.
    if (send_names && SSL_CTX_add_client_CA(ctx, cert.get()) != 1) fail(ca_file);
  }
}

void commonSettings(SSL_CTX* ctx, int min_version) {
  if (SSL_CTX_set_min_proto_version(ctx, min_version) != 1) fail("minimum TLS version");
  if (SSL_CTX_set_cipher_list(ctx, kTls12Ciphers) != 1) fail("TLS 1.2 cipher suites");
  // No renegotiation (TLS 1.2), no compression; a peer that ends the connection without
  // close_notify reads as an end of stream: WebSocket has its own closing handshake.
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                               SSL_OP_IGNORE_UNEXPECTED_EOF);
  // Idle sessions hold no record buffers; writes may complete in part, and a retry may come
  // from the buffer the session moved its unsent tail into.
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // The chain sent is the certificate file's, as written: without this OpenSSL would build one
  // from the trust store on every handshake.
  SSL_CTX_set_mode(ctx, SSL_MODE_NO_AUTO_CHAIN);
  // One recv takes whatever records are there, not a header and then a body per record.
  SSL_CTX_set_read_ahead(ctx, 1);
}

int selectAlpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
               unsigned int inlen, void*) {
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, kAlpnHttp11.data(), kAlpnHttp11.size(), in,
                            inlen) != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;  // no http/1.1 offered: go on without ALPN
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

// Client certificates are optional unless required: one that fails verification leaves the
// connection anonymous instead of failing it (the result is checked before its subject is
// trusted); when required, a failed verification fails the handshake.
int verifyOptional(int, X509_STORE_CTX*) { return 1; }

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

}  // namespace

ServerTlsContext::ServerTlsContext(const config::ListenerTls& settings)
    : tickets_(std::make_unique<TicketKeys>()) {
  const int min_version = settings.min_version == config::ListenerTls::Version::kTls13
                              ? TLS1_3_VERSION
                              : TLS1_2_VERSION;
  ask_client_cert_ = !settings.client_ca_pem.empty();
  for (size_t i = 0; i < settings.certificates.size(); ++i) {
    const config::TlsCertificate& cert = settings.certificates[i];
    SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
    if (!ctx) fail("out of memory");
    commonSettings(ctx.get(), min_version);
    useCertificate(ctx.get(), cert.chain_pem, cert.key_pem, cert.cert_file, cert.key_file);
    SSL_CTX_set_alpn_select_cb(ctx.get(), selectAlpn, nullptr);
    // Stateless resumption only: tickets, sealed with keys drawn in memory and rotated
    // (tls_ticket_keys.h). No server-side session cache.
    SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx.get(), 1);
    tickets_->attach(ctx.get());
    if (ask_client_cert_) {
      trust(ctx.get(), settings.client_ca_pem, settings.client_ca_file, true);
      if (settings.require_client_cert) {
        SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                           nullptr);
      } else {
        SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, verifyOptional);
      }
      // Resumed sessions keep the identity of the full handshake: tickets of one listener
      // must not be taken by another.
      static constexpr unsigned char kSessionId[] = "wsgate-mtls";
      SSL_CTX_set_session_id_context(ctx.get(), kSessionId, sizeof kSessionId - 1);
    }
    for (const std::string& name : cert.server_names) {
      if (name.starts_with("*.")) {
        wildcard_.emplace_back(lower(name.substr(1)), i);
      } else {
        exact_.emplace_back(lower(name), i);
      }
    }
    contexts_.push_back(std::move(ctx));
  }
  if (contexts_.empty()) throw std::runtime_error("a TLS listener needs a certificate");
  SSL_CTX_set_tlsext_servername_callback(contexts_.front().get(), onServerName);
  SSL_CTX_set_tlsext_servername_arg(contexts_.front().get(), this);
}

SslPtr ServerTlsContext::newSession() const {
  SslPtr ssl(SSL_new(contexts_.front().get()));
  if (ssl) SSL_set_accept_state(ssl.get());
  return ssl;
}

size_t ServerTlsContext::certificateFor(std::string_view name) const {
  const std::string wanted = lower(name);
  for (const auto& [exact, index] : exact_) {
    if (exact == wanted) return index;
  }
  // "*.example.org" covers one label: "a.example.org", not "a.b.example.org" nor "example.org".
  const size_t dot = wanted.find('.');
  if (dot != std::string::npos && dot > 0) {
    const std::string_view suffix = std::string_view(wanted).substr(dot);
    for (const auto& [wild, index] : wildcard_) {
      if (wild == suffix) return index;
    }
  }
  return 0;
}

int ServerTlsContext::onServerName(SSL* ssl, int*, void* arg) {
  const auto* self = static_cast<const ServerTlsContext*>(arg);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (name == nullptr) return SSL_TLSEXT_ERR_NOACK;
  const size_t index = self->certificateFor(name);
  if (index != 0) SSL_set_SSL_CTX(ssl, self->contexts_[index].get());
  return SSL_TLSEXT_ERR_OK;
}

ClientTlsContext::ClientTlsContext(const config::ClusterTls& settings)
    : context_(SSL_CTX_new(TLS_client_method())),
      server_name_(settings.server_name),
      verify_(settings.verify) {
  if (!context_) fail("out of memory");
  commonSettings(context_.get(), TLS1_2_VERSION);
  if (!settings.ca_pem.empty()) {
    trust(context_.get(), settings.ca_pem, settings.ca_file, false);
  } else if (SSL_CTX_set_default_verify_paths(context_.get()) != 1) {
    fail("the system's trusted certificates");
  }
  if (!settings.chain_pem.empty()) {
    useCertificate(context_.get(), settings.chain_pem, settings.key_pem, settings.cert_file,
                   settings.key_file);
  }
  SSL_CTX_set_verify(context_.get(), verify_ ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
  if (SSL_CTX_set_alpn_protos(context_.get(), kAlpnHttp11.data(), kAlpnHttp11.size()) != 0) {
    fail("ALPN");
  }
}

SslPtr ClientTlsContext::newSession(std::string_view host) const {
  SslPtr ssl(SSL_new(context_.get()));
  if (!ssl) return ssl;
  SSL_set_connect_state(ssl.get());
  const std::string name(server_name_.empty() ? host : std::string_view(server_name_));
  boost::system::error_code not_ip;
  boost::asio::ip::make_address(name, not_ip);
  const bool is_ip = !not_ip;
  // SNI carries host names only (RFC 6066).
  if (!is_ip) SSL_set_tlsext_host_name(ssl.get(), name.c_str());
  if (verify_) {
    const int set = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl.get()),
                                                          name.c_str())
                          : SSL_set1_host(ssl.get(), name.c_str());
    if (set != 1) return nullptr;
  }
  return ssl;
}

std::shared_ptr<const TlsContexts> TlsContexts::build(const config::Config& config) {
  auto out = std::make_shared<TlsContexts>();
  for (const config::Listener& listener : config.listeners) {
    std::shared_ptr<const ServerTlsContext> context;
    if (listener.tls) {
      try {
        context = std::make_shared<ServerTlsContext>(*listener.tls);
      } catch (const std::exception& e) {
        throw std::runtime_error("listener " + listener.name + ": TLS: " + e.what());
      }
    }
    out->listeners.push_back(std::move(context));
  }
  for (const config::Cluster& cluster : config.clusters) {
    if (!cluster.tls) continue;
    try {
      out->clusters.emplace(cluster.name, std::make_shared<ClientTlsContext>(*cluster.tls));
    } catch (const std::exception& e) {
      throw std::runtime_error("cluster " + cluster.name + ": TLS: " + e.what());
    }
  }
  return out;
}

std::string verifiedPeerIdentity(SSL* ssl) {
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert == nullptr || SSL_get_verify_result(ssl) != X509_V_OK) return {};
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio) return {};
  X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
  auto* names = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; names != nullptr && i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    const char* kind = name->type == GEN_DNS     ? "DNS"
                       : name->type == GEN_EMAIL ? "email"
                       : name->type == GEN_URI   ? "URI"
                                                 : nullptr;
    if (kind == nullptr) continue;
    const ASN1_IA5STRING* text = name->d.ia5;
    BIO_printf(bio.get(), "; %s:%.*s", kind, ASN1_STRING_length(text),
               reinterpret_cast<const char*>(ASN1_STRING_get0_data(text)));
  }
  GENERAL_NAMES_free(names);
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  std::string out(data, static_cast<size_t>(size));
  // A header value cannot carry control characters; a certificate could.
  std::replace_if(
      out.begin(), out.end(),
      [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }, ' ');
  return out;
}

std::string_view tlsVersionLabel(SSL* ssl) {
  return SSL_version(ssl) == TLS1_3_VERSION ? "TLSv1.3" : "TLSv1.2";
}

}  // namespace wsgate::gateway
