#include "io/tls_ticket_keys.h"

#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <algorithm>
#include <stdexcept>

namespace wsgate::gateway {

namespace {

int ticketKeysIndex() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

}  // namespace

TicketKeys::TicketKeys(Clock::duration period) : period_(period), current_(draw(Clock::now())) {}

TicketKeys::Key TicketKeys::draw(Clock::time_point now) {
  Key key;
  if (RAND_bytes(key.name.data(), static_cast<int>(key.name.size())) != 1 ||
      RAND_bytes(key.cipher.data(), static_cast<int>(key.cipher.size())) != 1 ||
      RAND_bytes(key.mac.data(), static_cast<int>(key.mac.size())) != 1) {
    throw std::runtime_error("no random bytes for TLS ticket keys");
  }
  key.created = now;
  return key;
}

void TicketKeys::rotateIfDue(Clock::time_point now) {
  if (now - current_.created < period_) return;
  if (now - current_.created >= 2 * period_) {
    previous_.reset();  // nothing sealed with it is young enough to open
  } else {
    previous_ = current_;
  }
  current_ = draw(now);
}

void TicketKeys::attach(SSL_CTX* ctx) {
  SSL_CTX_set_ex_data(ctx, ticketKeysIndex(), this);
  SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, onTicket);
  // The lifetime hint a client gets: a ticket opens for one to two periods.
  SSL_CTX_set_timeout(ctx, static_cast<long>(
                               std::chrono::duration_cast<std::chrono::seconds>(period_).count()));
}

TicketKeys::Name TicketKeys::sealingName(Clock::time_point now) {
  std::lock_guard lock(mutex_);
  rotateIfDue(now);
  return current_.name;
}

int TicketKeys::opens(const Name& name, Clock::time_point now) {
  std::lock_guard lock(mutex_);
  rotateIfDue(now);
  if (name == current_.name) return 1;
  if (previous_ && name == previous_->name) return 2;
  return 0;
}

int TicketKeys::onTicket(SSL* ssl, unsigned char* key_name, unsigned char* iv,
                         EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac, int encrypt) {
  // The session's original context holds the ring (SNI may have switched the certificate's).
  auto* self = static_cast<TicketKeys*>(
      SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ticketKeysIndex()));
  if (self == nullptr) return encrypt ? -1 : 0;
  return encrypt ? self->seal(key_name, iv, cipher, mac) : self->open(key_name, iv, cipher, mac);
}

namespace {

bool keyMac(EVP_MAC_CTX* mac, const std::array<unsigned char, 32>& key) {
  char digest[] = "SHA256";
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, const_cast<unsigned char*>(key.data()),
                                        key.size()),
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end(),
  };
  return EVP_MAC_CTX_set_params(mac, params) == 1;
}

}  // namespace

int TicketKeys::seal(unsigned char* key_name, unsigned char* iv, EVP_CIPHER_CTX* cipher,
                     EVP_MAC_CTX* mac) {
  Key key;
  {
    std::lock_guard lock(mutex_);
    rotateIfDue(Clock::now());
    key = current_;
  }
  std::copy(key.name.begin(), key.name.end(), key_name);
  if (RAND_bytes(iv, EVP_MAX_IV_LENGTH) != 1) return -1;
  if (EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.cipher.data(), iv) != 1) {
    return -1;
  }
  return keyMac(mac, key.mac) ? 1 : -1;
}

int TicketKeys::open(const unsigned char* key_name, const unsigned char* iv,
                     EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac) {
  Key key;
  int found = 0;
  {
    std::lock_guard lock(mutex_);
    rotateIfDue(Clock::now());
    if (std::equal(current_.name.begin(), current_.name.end(), key_name)) {
      key = current_;
      found = 1;
    } else if (previous_ && std::equal(previous_->name.begin(), previous_->name.end(), key_name)) {
      key = *previous_;
      found = 2;  // still good; the client gets a ticket sealed with the current key
    }
  }
  if (found == 0) return 0;
  if (EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.cipher.data(), iv) != 1) {
    return -1;
  }
  return keyMac(mac, key.mac) ? found : -1;
}

}  // namespace wsgate::gateway
