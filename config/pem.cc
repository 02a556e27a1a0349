#include "config/pem.h"

#include <openssl/err.h>
#include <openssl/pem.h>

namespace wsgate::config {

namespace {

// OpenSSL's reason for the last error, then a clean queue for the next check.
std::string opensslReason() {
  const unsigned long error = ERR_peek_last_error();
  const char* reason = error ? ERR_reason_error_string(error) : nullptr;
  ERR_clear_error();
  return reason ? reason : "";
}

BioPtr memoryBio(const std::string& text) {
  return BioPtr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

}  // namespace

// Every certificate of `pem` in order (leaf first); empty when there is none or one is damaged,
// and then `why` says which.
std::vector<X509Ptr> parseCertificates(const std::string& pem, std::string& why) {
  ERR_clear_error();
  BioPtr bio = memoryBio(pem);
  std::vector<X509Ptr> certs;
  // Blocks of other types (a key kept in the same file) are skipped by OpenSSL.
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    certs.emplace_back(cert);
  }
  // Running out of PEM blocks is how the loop ends; any other error is a damaged certificate.
  const unsigned long error = ERR_peek_last_error();
  const bool at_end =
      ERR_GET_LIB(error) == ERR_LIB_PEM && ERR_GET_REASON(error) == PEM_R_NO_START_LINE;
  const std::string reason = opensslReason();
  if (error != 0 && !at_end) {
    why = "certificate " + std::to_string(certs.size() + 1) + " does not parse (" + reason + ")";
    certs.clear();
  } else if (certs.empty()) {
    why = "no PEM certificate found";
  }
  return certs;
}

// The first private key of `pem`, or null with `why` set. `why` never holds any of the key's text.
PkeyPtr parsePrivateKey(const std::string& pem, std::string& why) {
  ERR_clear_error();
  BioPtr bio = memoryBio(pem);
  bool encrypted = false;
  // Without a callback OpenSSL would prompt for a passphrase on the terminal.
  pem_password_cb* refuse = [](char*, int, int, void* asked) {
    *static_cast<bool*>(asked) = true;
    return 0;
  };
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, refuse, &encrypted));
  const std::string reason = opensslReason();
  if (!key) {
    if (encrypted) {
      why =
          "the key is encrypted, and wsgate takes no passphrase (store it unencrypted, "
          "readable only by wsgate)";
    } else if (pem.find("PRIVATE KEY-----") == std::string::npos) {
      why = "no PEM private key found";
    } else {
      why = "the private key does not parse" + (reason.empty() ? "" : " (" + reason + ")");
    }
    return nullptr;
  }
  const int type = EVP_PKEY_get_base_id(key.get());
  if (type != EVP_PKEY_RSA && type != EVP_PKEY_EC && type != EVP_PKEY_ED25519) {
    const char* name = EVP_PKEY_get0_type_name(key.get());
    why = std::string("key type ") + (name ? name : "unknown") +
          " is not supported (use RSA, EC or Ed25519)";
    return nullptr;
  }
  return key;
}

}  // namespace wsgate::config
