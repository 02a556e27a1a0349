// PEM text to OpenSSL objects, shared by the config loader (which checks certificate and key
// files at load) and the TLS contexts built from what it read (io/tls_context.cc).
#pragma once

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <memory>
#include <string>
#include <vector>

namespace wsgate::config {

struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Free {
  void operator()(X509* cert) const { X509_free(cert); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

// Every certificate of `pem` in order (leaf first); empty when there is none or one is damaged,
// and then `why` says which.
std::vector<X509Ptr> parseCertificates(const std::string& pem, std::string& why);

// The first private key of `pem` (RSA, EC or Ed25519, unencrypted: never prompts for a
// passphrase), or null with `why` set. `why` never holds any of the key's text.
PkeyPtr parsePrivateKey(const std::string& pem, std::string& why);

}  // namespace wsgate::config
