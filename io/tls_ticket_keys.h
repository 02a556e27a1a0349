// The keys that seal a listener's TLS session tickets (stateless resumption). Drawn at random,
// kept in memory only, replaced every `period`; a ticket sealed with the key before the current
// one still opens (and is renewed), so a ticket lives at most two periods. Shared by every
// worker: a ticket from one worker opens on another (SO_REUSEPORT spreads a client's
// connections). Touched once per handshake, under a mutex, never per frame.
#pragma once

#include <openssl/evp.h>
#include <openssl/ssl.h>

#include <array>
#include <chrono>
#include <mutex>
#include <optional>

namespace wsgate::gateway {

class TicketKeys {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::hours kPeriod{1};

  explicit TicketKeys(Clock::duration period = kPeriod);

  // Installs this ring as `ctx`'s ticket key callback; the ring must outlive `ctx`.
  void attach(SSL_CTX* ctx);

  using Name = std::array<unsigned char, 16>;
  // The name of the key that seals new tickets at `now` (rotating first when due).
  Name sealingName(Clock::time_point now);
  // 1 when `name` is the current key, 2 when it is the previous one (the ticket is renewed),
  // 0 when it is unknown or expired (a full handshake follows).
  int opens(const Name& name, Clock::time_point now);

 private:
  struct Key {
    Name name{};
    std::array<unsigned char, 32> cipher{};  // AES-256-CBC
    std::array<unsigned char, 32> mac{};     // HMAC-SHA256
    Clock::time_point created;
  };

  static int onTicket(SSL* ssl, unsigned char* key_name, unsigned char* iv,
                      EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac, int encrypt);
  int seal(unsigned char* key_name, unsigned char* iv, EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac);
  int open(const unsigned char* key_name, const unsigned char* iv, EVP_CIPHER_CTX* cipher,
           EVP_MAC_CTX* mac);
  void rotateIfDue(Clock::time_point now);  // mutex_ held
  static Key draw(Clock::time_point now);

  const Clock::duration period_;
  std::mutex mutex_;
  Key current_;
  std::optional<Key> previous_;
};

}  // namespace wsgate::gateway
