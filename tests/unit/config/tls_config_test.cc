// The TLS settings of listeners, routes and clusters (config/tls.h), loaded from YAML with real
// PEM files: the certificates and keys are made here, once, with OpenSSL, in a temporary folder.
#include "config/tls.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "config/loader.h"
#include "filters/registry.h"

namespace wsgate::config {
namespace {

namespace fs = std::filesystem;

struct PkeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct X509Free {
  void operator()(X509* cert) const { X509_free(cert); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;

PkeyPtr ecKey() { return PkeyPtr(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256")); }

// Valid from `from_days` to `to_days` (relative to now); self-signed without an issuer.
X509Ptr makeCertificate(EVP_PKEY* key, const char* common_name, long from_days, long to_days,
                        X509* issuer = nullptr, EVP_PKEY* issuer_key = nullptr) {
  static long serial = 1;
  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial++);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), from_days * 86400);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), to_days * 86400);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(common_name), -1, -1, 0);
  X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer) : name);
  EVP_PKEY* signer = issuer_key ? issuer_key : key;
  // Ed25519 signs without a separate digest.
  const EVP_MD* digest = EVP_PKEY_get_base_id(signer) == EVP_PKEY_ED25519 ? nullptr : EVP_sha256();
  EXPECT_GT(X509_sign(cert.get(), signer, digest), 0);
  return cert;
}

template <typename Write>
std::string pemOf(Write write) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
  EXPECT_EQ(write(bio.get()), 1);
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(size));
}

std::string pem(X509* cert) {
  return pemOf([&](BIO* bio) { return PEM_write_bio_X509(bio, cert); });
}

std::string pem(EVP_PKEY* key, const EVP_CIPHER* cipher = nullptr) {
  static unsigned char passphrase[] = "passphrase";
  return pemOf([&](BIO* bio) {
    return PEM_write_bio_PrivateKey(bio, key, cipher, cipher ? passphrase : nullptr,
                                    cipher ? 10 : 0, nullptr, nullptr);
  });
}

std::string readAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void writeFile(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

const char* kEcho = "clusters: [ { name: e, type: echo } ]\n";

// A listener "secure" with `tls` lines (indented 6, from line 5) and one route "r" to cluster "e"
// with `route` lines (indented 8), then `clusters`.
std::string listenerWith(const std::string& tls, const std::string& route = "",
                         const std::string& clusters = kEcho) {
  return "listeners:\n"
         "  - name: secure\n"
         "    address: 127.0.0.1:0\n"
         "    tls:\n" +
         tls +
         "    routes:\n"
         "      - name: r\n"
         "        cluster: e\n" +
         route + clusters;
}

// A plain listener, an echo cluster "e" and a static cluster "b" with `lines` (indented 4, from
// line 7).
std::string clusterWith(const std::string& lines) {
  return "listeners:\n"
         "  - { name: l, address: 127.0.0.1:0, routes: [ { name: r, cluster: e } ] }\n"
         "clusters:\n"
         "  - { name: e, type: echo }\n"
         "  - name: b\n"
         "    endpoints: [\"127.0.0.1:9443\"]\n" +
         lines;
}

const char* kCertA = "      certificates:\n        - { cert: certs/a.pem, key: certs/a.key }\n";

class TlsConfig : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char name[] = "/tmp/wsgate-tls-test-XXXXXX";  // mkdtemp's template: it fills in the Xs
    ASSERT_NE(::mkdtemp(name), nullptr);
    dir_ = name;
    const std::string certs = dir_ + "/certs/";
    fs::create_directories(certs);
    fs::create_directories(dir_ + "/conf");

    PkeyPtr a = ecKey();
    PkeyPtr b = ecKey();
    writeFile(certs + "a.key", pem(a.get()));
    writeFile(certs + "a.pem", pem(makeCertificate(a.get(), "chat.example.com", -1, 30).get()));
    writeFile(certs + "b.key", pem(b.get()));
    writeFile(certs + "b.pem", pem(makeCertificate(b.get(), "b.example.org", -1, 30).get()));
    writeFile(certs + "expired.pem", pem(makeCertificate(a.get(), "old", -10, -1).get()));
    writeFile(certs + "future.pem", pem(makeCertificate(a.get(), "new", 5, 30).get()));

    // A chain: leaf signed by a CA, then the CA.
    PkeyPtr ca_key = ecKey();
    X509Ptr ca = makeCertificate(ca_key.get(), "Test CA", -1, 365);
    PkeyPtr leaf_key = ecKey();
    X509Ptr leaf = makeCertificate(leaf_key.get(), "leaf", -1, 30, ca.get(), ca_key.get());
    writeFile(certs + "ca.pem", pem(ca.get()));
    writeFile(certs + "ca.key", pem(ca_key.get()));
    writeFile(certs + "leaf.key", pem(leaf_key.get()));
    writeFile(certs + "chain.pem", pem(leaf.get()) + pem(ca.get()));

    PkeyPtr rsa(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048}));
    writeFile(certs + "rsa.key", pem(rsa.get()));
    writeFile(certs + "rsa.pem", pem(makeCertificate(rsa.get(), "gateway", -1, 30).get()));
    PkeyPtr ed(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
    writeFile(certs + "ed25519.key", pem(ed.get()));
    writeFile(certs + "ed25519.pem", pem(makeCertificate(ed.get(), "ed", -1, 30).get()));
    PkeyPtr x25519(EVP_PKEY_Q_keygen(nullptr, nullptr, "X25519"));
    writeFile(certs + "x25519.key", pem(x25519.get()));
    writeFile(certs + "encrypted.key", pem(a.get(), EVP_aes_128_cbc()));

    // One file with the chain and the key, as HAProxy takes them.
    writeFile(certs + "combined.pem", readAll(certs + "a.pem") + readAll(certs + "a.key"));
    writeFile(certs + "garbage.pem", "this is not PEM\n");
    writeFile(certs + "broken.key",
              "-----BEGIN PRIVATE KEY-----\nTOPSECRETKEYMATERIAL0123456789\n"
              "-----END PRIVATE KEY-----\n");
  }

  static void TearDownTestSuite() { fs::remove_all(dir_); }

  static LoadResult load(const std::string& yaml, const std::string& file = "test.yaml") {
    return loadString(yaml, dir_ + "/" + file, filters::Registry::global());
  }

  // Every error, and every warning, one per line, the temporary folder written as DIR.
  static std::string errors(const LoadResult& result) { return inDir(result.diagnostics.format()); }
  static std::string warnings(const LoadResult& result) {
    std::string out;
    for (const auto& w : result.diagnostics.warnings()) out += w.format() + "\n";
    return inDir(out);
  }
  static std::string inDir(std::string text) {
    for (size_t at; (at = text.find(dir_)) != std::string::npos;)
      text.replace(at, dir_.size(), "DIR");
    return text;
  }

  // The single error of `yaml`, formatted, without the trailing newline.
  static std::string onlyError(const std::string& yaml) {
    LoadResult result = load(yaml);
    EXPECT_EQ(result.config, nullptr);
    EXPECT_EQ(result.diagnostics.errors().size(), 1u) << errors(result);
    const std::string text = errors(result);
    return text.empty() ? "" : text.substr(0, text.size() - 1);
  }

  static std::string cert(const char* name) { return dir_ + "/certs/" + name; }

  static std::string dir_;
};

std::string TlsConfig::dir_;

TEST_F(TlsConfig, LoadsEveryListenerRouteAndClusterKey) {
  LoadResult result = load(R"(listeners:
  - name: secure
    address: 127.0.0.1:0
    tls:
      certificates:
        - { cert: certs/a.pem, key: certs/a.key, server_names: ["Chat.Example.com"] }
        - cert: certs/chain.pem
          key: certs/leaf.key
          server_names: ["*.Example.org", "example.org"]
        - { cert: certs/ed25519.pem, key: certs/ed25519.key }
      min_version: "1.3"
      client_ca: certs/ca.pem
      require_client_cert: true
      handshake_timeout: 3s
    routes:
      - name: chat
        cluster: chat
        require_tls: true
        client_cert_header: X-Client-Cert-Subject
clusters:
  - name: chat
    endpoints: ["127.0.0.1:9443"]
    tls:
      ca: certs/ca.pem
      server_name: Backend.Internal
      cert: certs/rsa.pem
      key: certs/rsa.key
      verify: true
)");
  ASSERT_NE(result.config, nullptr) << errors(result);
  EXPECT_TRUE(result.diagnostics.warnings().empty()) << warnings(result);
  const Listener& listener = result.config->listeners[0];
  ASSERT_TRUE(listener.tls);
  const ListenerTls& tls = *listener.tls;
  ASSERT_EQ(tls.certificates.size(), 3u);
  EXPECT_EQ(tls.certificates[0].cert_file, cert("a.pem"));
  EXPECT_EQ(tls.certificates[0].key_file, cert("a.key"));
  EXPECT_EQ(tls.certificates[0].server_names, std::vector<std::string>{"chat.example.com"});
  EXPECT_EQ(tls.certificates[0].chain_pem, readAll(cert("a.pem")));
  EXPECT_EQ(tls.certificates[0].key_pem, readAll(cert("a.key")));
  EXPECT_EQ(tls.certificates[1].server_names,
            (std::vector<std::string>{"*.example.org", "example.org"}));
  EXPECT_EQ(tls.certificates[1].chain_pem, readAll(cert("chain.pem")));
  EXPECT_TRUE(tls.certificates[2].server_names.empty());
  EXPECT_EQ(tls.min_version, ListenerTls::Version::kTls13);
  EXPECT_EQ(tls.client_ca_file, cert("ca.pem"));
  EXPECT_EQ(tls.client_ca_pem, readAll(cert("ca.pem")));
  EXPECT_TRUE(tls.require_client_cert);
  EXPECT_EQ(tls.handshake_timeout, std::chrono::seconds(3));
  EXPECT_TRUE(listener.routes[0].require_tls);
  EXPECT_EQ(listener.routes[0].client_cert_header, "X-Client-Cert-Subject");

  const Cluster& cluster = result.config->clusters[0];
  ASSERT_TRUE(cluster.tls);
  EXPECT_EQ(cluster.tls->ca_file, cert("ca.pem"));
  EXPECT_EQ(cluster.tls->ca_pem, readAll(cert("ca.pem")));
  EXPECT_EQ(cluster.tls->server_name, "backend.internal");
  EXPECT_EQ(cluster.tls->cert_file, cert("rsa.pem"));
  EXPECT_EQ(cluster.tls->key_file, cert("rsa.key"));
  EXPECT_EQ(cluster.tls->chain_pem, readAll(cert("rsa.pem")));
  EXPECT_EQ(cluster.tls->key_pem, readAll(cert("rsa.key")));
  EXPECT_TRUE(cluster.tls->verify);
}

TEST_F(TlsConfig, DefaultsAndAnEmptyClusterTls) {
  LoadResult result =
      load(listenerWith(kCertA, "",
                        "clusters:\n"
                        "  - { name: e, type: echo }\n"
                        "  - { name: b, endpoints: [\"127.0.0.1:9443\"], tls: {} }\n"
                        "  - { name: plain, endpoints: [\"127.0.0.1:9000\"] }\n"));
  ASSERT_NE(result.config, nullptr) << errors(result);
  const ListenerTls& tls = *result.config->listeners[0].tls;
  EXPECT_EQ(tls.min_version, ListenerTls::Version::kTls12);
  EXPECT_EQ(tls.handshake_timeout, std::chrono::seconds(10));
  EXPECT_FALSE(tls.require_client_cert);
  EXPECT_TRUE(tls.client_ca_file.empty());
  EXPECT_TRUE(tls.client_ca_pem.empty());
  EXPECT_TRUE(tls.certificates[0].server_names.empty());
  const Route& route = result.config->listeners[0].routes[0];
  EXPECT_FALSE(route.require_tls);
  EXPECT_TRUE(route.client_cert_header.empty());
  const ClusterTls& cluster_tls = *result.config->findCluster("b")->tls;
  EXPECT_TRUE(cluster_tls.ca_file.empty());
  EXPECT_TRUE(cluster_tls.server_name.empty());
  EXPECT_TRUE(cluster_tls.cert_file.empty());
  EXPECT_TRUE(cluster_tls.key_pem.empty());
  EXPECT_TRUE(cluster_tls.verify);
  EXPECT_FALSE(result.config->findCluster("plain")->tls);
}

TEST_F(TlsConfig, APlainListenerHasNoTls) {
  LoadResult result = load(clusterWith(""));
  ASSERT_NE(result.config, nullptr) << errors(result);
  EXPECT_FALSE(result.config->listeners[0].tls);
}

TEST_F(TlsConfig, RelativePathsStartAtTheConfigFilesDirectory) {
  const std::string yaml = listenerWith(
      "      certificates:\n        - { cert: ../certs/a.pem, key: " + cert("a.key") + " }\n");
  LoadResult result = load(yaml, "conf/test.yaml");
  ASSERT_NE(result.config, nullptr) << errors(result);
  EXPECT_EQ(result.config->listeners[0].tls->certificates[0].cert_file,
            dir_ + "/conf/../certs/a.pem");
  EXPECT_EQ(result.config->listeners[0].tls->certificates[0].key_file, cert("a.key"));

  // The same through loadFile, as the gateway loads it.
  writeFile(dir_ + "/conf/wsgate.yaml", yaml);
  LoadResult from_file = loadFile(dir_ + "/conf/wsgate.yaml", filters::Registry::global());
  ASSERT_NE(from_file.config, nullptr) << errors(from_file);
  EXPECT_EQ(from_file.config->listeners[0].tls->certificates[0].chain_pem, readAll(cert("a.pem")));

  // Relative to the config file, not to the working directory.
  LoadResult elsewhere =
      loadString(listenerWith(kCertA), "elsewhere/test.yaml", filters::Registry::global());
  EXPECT_EQ(elsewhere.config, nullptr);
  EXPECT_NE(errors(elsewhere).find("cannot read elsewhere/certs/a.pem: No such file or directory"),
            std::string::npos)
      << errors(elsewhere);
}

TEST_F(TlsConfig, ACertificateAndItsKeyMayShareAFile) {
  LoadResult result = load(listenerWith(
      "      certificates:\n        - { cert: certs/combined.pem, key: certs/combined.pem }\n"));
  ASSERT_NE(result.config, nullptr) << errors(result);
  const TlsCertificate& c = result.config->listeners[0].tls->certificates[0];
  EXPECT_EQ(c.chain_pem, c.key_pem);
}

TEST_F(TlsConfig, AMissingFileIsNamedWithTheReason) {
  EXPECT_EQ(onlyError(listenerWith(
                "      certificates:\n        - { cert: certs/a.pem, key: certs/x.key }\n")),
            "DIR/test.yaml:6:37: listeners[0].tls.certificates[0].key: cannot read "
            "DIR/certs/x.key: No such file or directory");
  EXPECT_EQ(
      onlyError(listenerWith("      certificates:\n        - { cert: certs, key: certs/a.key }\n")),
      "DIR/test.yaml:6:19: listeners[0].tls.certificates[0].cert: cannot read DIR/certs: "
      "not a regular file");
}

TEST_F(TlsConfig, CertificatesIsARequiredNonEmptyListOfCertAndKey) {
  EXPECT_EQ(onlyError(listenerWith("      min_version: \"1.2\"\n")),
            "DIR/test.yaml:5:7: listeners[0].tls: missing required key \"certificates\"");
  EXPECT_EQ(onlyError(listenerWith("      certificates: []\n")),
            "DIR/test.yaml:5:21: listeners[0].tls.certificates: must be a non-empty list of "
            "{ cert, key, server_names }");
  EXPECT_EQ(onlyError(listenerWith("      certificates: { cert: certs/a.pem }\n")),
            "DIR/test.yaml:5:21: listeners[0].tls.certificates: must be a non-empty list of "
            "{ cert, key, server_names }");
  EXPECT_EQ(onlyError(listenerWith("      certificates:\n        - { key: certs/a.key }\n")),
            "DIR/test.yaml:6:11: listeners[0].tls.certificates[0]: missing required key "
            "\"cert\"");
  EXPECT_EQ(onlyError(listenerWith("      certificates:\n        - { cert: certs/a.pem }\n")),
            "DIR/test.yaml:6:11: listeners[0].tls.certificates[0]: missing required key "
            "\"key\"");
}

TEST_F(TlsConfig, UnknownKeysAreRejected) {
  LoadResult result = load(listenerWith(
      "      certificates:\n"
      "        - { cert: certs/a.pem, key: certs/a.key, sni: [chat.example.com] }\n"
      "      min_versoin: \"1.3\"\n",
      "", "clusters:\n  - { name: e, endpoints: [\"127.0.0.1:1\"], tls: { insecure: true } }\n"));
  // Clusters are read first, and a map's own keys before what is inside them.
  EXPECT_EQ(errors(result),
            "DIR/test.yaml:12:51: clusters[0].tls.insecure: unknown key \"insecure\" (allowed: "
            "ca server_name cert key verify)\n"
            "DIR/test.yaml:7:7: listeners[0].tls.min_versoin: unknown key \"min_versoin\" (did "
            "you mean \"min_version\"?)\n"
            "DIR/test.yaml:6:50: listeners[0].tls.certificates[0].sni: unknown key \"sni\" "
            "(allowed: cert key server_names)\n");
}

TEST_F(TlsConfig, AKeyMustMatchTheFirstCertificateOfItsFile) {
  EXPECT_EQ(onlyError(listenerWith(
                "      certificates:\n        - { cert: certs/a.pem, key: certs/b.key }\n")),
            "DIR/test.yaml:6:37: listeners[0].tls.certificates[0].key: key does not match its "
            "certificate: DIR/certs/b.key is not the key of the first certificate in "
            "DIR/certs/a.pem");
  // The CA's key is in the file too, but the leaf comes first.
  EXPECT_NE(onlyError(listenerWith("      certificates:\n        - { cert: certs/chain.pem, key: "
                                   "certs/ca.key }\n"))
                .find("key does not match its certificate"),
            std::string::npos);
}

TEST_F(TlsConfig, FilesMustHoldWhatTheyAreFor) {
  const auto certificate = [](const std::string& cert, const std::string& key) {
    return onlyError(
        listenerWith("      certificates:\n        - { cert: " + cert + ", key: " + key + " }\n"));
  };
  EXPECT_EQ(certificate("certs/garbage.pem", "certs/a.key"),
            "DIR/test.yaml:6:19: listeners[0].tls.certificates[0].cert: DIR/certs/garbage.pem: "
            "no PEM certificate found");
  EXPECT_EQ(certificate("certs/a.pem", "certs/a.pem"),
            "DIR/test.yaml:6:37: listeners[0].tls.certificates[0].key: DIR/certs/a.pem: no PEM "
            "private key found");
  EXPECT_EQ(certificate("certs/a.pem", "certs/x25519.key"),
            "DIR/test.yaml:6:37: listeners[0].tls.certificates[0].key: DIR/certs/x25519.key: key "
            "type X25519 is not supported (use RSA, EC or Ed25519)");
  EXPECT_EQ(certificate("certs/a.pem", "certs/encrypted.key"),
            "DIR/test.yaml:6:37: listeners[0].tls.certificates[0].key: DIR/certs/encrypted.key: "
            "the key is encrypted, and wsgate takes no passphrase (store it unencrypted, "
            "readable only by wsgate)");
  EXPECT_NE(certificate("certs/a.pem", "certs/broken.key")
                .find("DIR/certs/broken.key: the private key does not parse"),
            std::string::npos);
  // A damaged certificate after a good one.
  writeFile(
      cert("damaged.pem"),
      readAll(cert("a.pem")) + "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n");
  EXPECT_NE(certificate("certs/damaged.pem", "certs/a.key")
                .find("DIR/certs/damaged.pem: certificate 2 does not parse ("),
            std::string::npos);
}

TEST_F(TlsConfig, ACertificateOutsideItsValidityIsOnlyAWarning) {
  LoadResult result = load(listenerWith(
      "      certificates:\n"
      "        - { cert: certs/expired.pem, key: certs/a.key }\n"
      "        - { cert: certs/future.pem, key: certs/a.key, server_names: [new.example.com] }\n"));
  ASSERT_NE(result.config, nullptr) << errors(result);
  ASSERT_EQ(result.diagnostics.warnings().size(), 2u) << warnings(result);
  const std::string text = warnings(result);
  EXPECT_NE(text.find("DIR/test.yaml:6:19: listeners[0].tls.certificates[0].cert: certificate "
                      "DIR/certs/expired.pem expired on 20"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("DIR/test.yaml:7:19: listeners[0].tls.certificates[1].cert: certificate "
                      "DIR/certs/future.pem is not valid before 20"),
            std::string::npos)
      << text;
}

TEST_F(TlsConfig, ServerNamesAreDnsNamesOrOneLeadingWildcard) {
  for (const char* bad : {"a.*.example.com", "*.*.example.com", "*", "*.", "*example.com",
                          "1.2.3.4", "bad_name.example.com", "chat.example.com.", "[::1]"}) {
    EXPECT_NE(onlyError(listenerWith("      certificates:\n        - { cert: certs/a.pem, key: "
                                     "certs/a.key, server_names: [\"" +
                                     std::string(bad) + "\"] }\n"))
                  .find("listeners[0].tls.certificates[0].server_names[0]: invalid server name \"" +
                        std::string(bad) + "\""),
              std::string::npos)
        << bad;
  }
  EXPECT_EQ(onlyError(listenerWith("      certificates:\n        - { cert: certs/a.pem, key: "
                                   "certs/a.key, server_names: chat.example.com }\n")),
            "DIR/test.yaml:6:64: listeners[0].tls.certificates[0].server_names: must be a list "
            "of names, e.g. [\"chat.example.com\", \"*.example.org\"]");
}

TEST_F(TlsConfig, AServerNameSelectsOneCertificate) {
  EXPECT_EQ(
      onlyError(listenerWith(
          "      certificates:\n"
          "        - { cert: certs/a.pem, key: certs/a.key, server_names: [chat.example.com] }\n"
          "        - { cert: certs/b.pem, key: certs/b.key, server_names: [Chat.Example.COM] }\n")),
      "DIR/test.yaml:7:65: listeners[0].tls.certificates[1].server_names[0]: server name "
      "\"chat.example.com\" is also on listeners[0].tls.certificates[0] (each name selects one "
      "certificate)");
  EXPECT_EQ(onlyError(listenerWith("      certificates:\n        - { cert: certs/a.pem, key: "
                                   "certs/a.key, server_names: [a.example, A.example] }\n")),
            "DIR/test.yaml:6:76: listeners[0].tls.certificates[0].server_names[1]: server name "
            "\"a.example\" is listed twice");
  // A wildcard and a name it covers are different names: both may be listed.
  EXPECT_NE(
      load(listenerWith(
               "      certificates:\n"
               "        - { cert: certs/a.pem, key: certs/a.key, server_names: [a.example.org] }\n"
               "        - { cert: certs/b.pem, key: certs/b.key, server_names: [\"*.example.org\"] "
               "}\n"))
          .config,
      nullptr);
}

TEST_F(TlsConfig, MinVersionIsOneTwoOrOneThree) {
  for (const char* good : {"1.2", "\"1.2\"", "'1.3'", "1.3"}) {
    LoadResult result =
        load(listenerWith(std::string(kCertA) + "      min_version: " + good + "\n"));
    ASSERT_NE(result.config, nullptr) << good << "\n" << errors(result);
    EXPECT_EQ(result.config->listeners[0].tls->min_version,
              std::string(good).find('3') != std::string::npos ? ListenerTls::Version::kTls13
                                                               : ListenerTls::Version::kTls12);
  }
  EXPECT_EQ(onlyError(listenerWith(std::string(kCertA) + "      min_version: 1.1\n")),
            "DIR/test.yaml:7:20: listeners[0].tls.min_version: invalid TLS version \"1.1\" "
            "(allowed: \"1.2\", \"1.3\")");
  for (const char* bad : {"1.20", "TLSv1.3", "\"\"", "[1.3]"}) {
    EXPECT_NE(onlyError(listenerWith(std::string(kCertA) + "      min_version: " + bad + "\n"))
                  .find("listeners[0].tls.min_version: invalid TLS version"),
              std::string::npos)
        << bad;
  }
}

TEST_F(TlsConfig, ClientCertificatesNeedAClientCa) {
  EXPECT_EQ(onlyError(listenerWith(std::string(kCertA) + "      require_client_cert: true\n")),
            "DIR/test.yaml:7:28: listeners[0].tls.require_client_cert: needs client_ca: the CA "
            "certificates that client certificates are verified against");
  EXPECT_EQ(onlyError(listenerWith(std::string(kCertA) + "      client_ca: certs/a.key\n")),
            "DIR/test.yaml:7:18: listeners[0].tls.client_ca: DIR/certs/a.key: no PEM certificate "
            "found");
  EXPECT_EQ(onlyError(listenerWith(std::string(kCertA) + "      client_ca: certs/none.pem\n")),
            "DIR/test.yaml:7:18: listeners[0].tls.client_ca: cannot read DIR/certs/none.pem: No "
            "such file or directory");
  // Asked for but optional.
  LoadResult result =
      load(listenerWith(std::string(kCertA) + "      client_ca: certs/chain.pem\n"));
  ASSERT_NE(result.config, nullptr) << errors(result);
  EXPECT_FALSE(result.config->listeners[0].tls->require_client_cert);
  EXPECT_EQ(result.config->listeners[0].tls->client_ca_pem, readAll(cert("chain.pem")));
}

TEST_F(TlsConfig, HandshakeTimeoutIsAPositiveDuration) {
  EXPECT_EQ(onlyError(listenerWith(std::string(kCertA) + "      handshake_timeout: 0s\n")),
            "DIR/test.yaml:7:26: listeners[0].tls.handshake_timeout: must be greater than 0");
  EXPECT_EQ(onlyError(listenerWith(std::string(kCertA) + "      handshake_timeout: 10\n")),
            "DIR/test.yaml:7:26: listeners[0].tls.handshake_timeout: invalid duration \"10\" (a "
            "number with a unit: ms, s, m or h, e.g. 30s)");
}

TEST_F(TlsConfig, RequireTlsNeedsATlsListener) {
  EXPECT_EQ(onlyError(R"(listeners:
  - name: plain
    address: 127.0.0.1:0
    routes:
      - name: chat
        cluster: e
        require_tls: true
clusters: [ { name: e, type: echo } ]
)"),
            "DIR/test.yaml:7:22: listeners[0].routes[0].require_tls: route chat requires TLS but "
            "listener plain has no tls");
  EXPECT_NE(load(clusterWith("").replace(clusterWith("").find("cluster: e }"), 12,
                                         "cluster: e, require_tls: false }"))
                .config,
            nullptr);
  EXPECT_NE(load(listenerWith(kCertA, "        require_tls: true\n")).config, nullptr);
}

TEST_F(TlsConfig, AListenerTlsErrorIsReportedOnce) {
  EXPECT_EQ(onlyError(listenerWith("      - certs/a.pem\n", "        require_tls: true\n")),
            "DIR/test.yaml:5:7: listeners[0].tls: must be a map");
}

TEST_F(TlsConfig, ClientCertHeaderNeedsVerifiedClientsAndAFreeHeaderName) {
  const std::string with_ca = std::string(kCertA) + "      client_ca: certs/ca.pem\n";
  const auto header = [&](const std::string& tls, const std::string& name) {
    return listenerWith(tls, "        client_cert_header: \"" + name + "\"\n");
  };
  EXPECT_EQ(onlyError(header(kCertA, "X-Client-Cert-Subject")),
            "DIR/test.yaml:10:29: listeners[0].routes[0].client_cert_header: listener secure "
            "verifies no client certificates (no tls.client_ca), so there is no verified subject "
            "to forward");
  EXPECT_EQ(onlyError(header(with_ca, "X Client")),
            "DIR/test.yaml:11:29: listeners[0].routes[0].client_cert_header: \"X Client\" is not "
            "a valid HTTP header name");
  for (const char* bad : {"X-Client:Cert", "X-Client@Cert", "Ä", "(X)"}) {
    EXPECT_NE(onlyError(header(with_ca, bad)).find("is not a valid HTTP header name"),
              std::string::npos)
        << bad;
  }
  for (const char* managed :
       {"Host", "upgrade", "Connection", "Sec-WebSocket-Protocol", "sec-websocket-key",
        "X-Forwarded-For", "x-forwarded-proto", "Transfer-Encoding", "Proxy-Authorization"}) {
    EXPECT_NE(onlyError(header(with_ca, managed))
                  .find(std::string(managed) + "\" is a header the gateway sets or removes itself"),
              std::string::npos)
        << managed;
  }
  LoadResult result = load(header(with_ca, "X-Client-Cert-Subject"));
  ASSERT_NE(result.config, nullptr) << errors(result);
  EXPECT_EQ(result.config->listeners[0].routes[0].client_cert_header, "X-Client-Cert-Subject");
}

TEST_F(TlsConfig, AnEchoClusterTakesNoTls) {
  EXPECT_EQ(onlyError(R"(listeners:
  - { name: l, address: 127.0.0.1:0, routes: [ { name: r, cluster: e } ] }
clusters:
  - name: e
    type: echo
    tls: {}
)"),
            "DIR/test.yaml:6:10: clusters[0].tls: an echo cluster takes no tls: it runs inside "
            "the gateway");
}

TEST_F(TlsConfig, AClusterClientCertificateNeedsBothFilesAndAMatchingKey) {
  EXPECT_EQ(onlyError(clusterWith("    tls: { cert: certs/rsa.pem }\n")),
            "DIR/test.yaml:7:18: clusters[1].tls.cert: a client certificate needs its key: set "
            "\"key\" too");
  EXPECT_EQ(onlyError(clusterWith("    tls: { key: certs/rsa.key }\n")),
            "DIR/test.yaml:7:17: clusters[1].tls.key: a client key needs its certificate: set "
            "\"cert\" too");
  EXPECT_EQ(onlyError(clusterWith("    tls: { cert: certs/rsa.pem, key: certs/a.key }\n")),
            "DIR/test.yaml:7:38: clusters[1].tls.key: key does not match its certificate: "
            "DIR/certs/a.key is not the key of the first certificate in DIR/certs/rsa.pem");
  EXPECT_EQ(onlyError(clusterWith("    tls: { ca: certs/garbage.pem }\n")),
            "DIR/test.yaml:7:16: clusters[1].tls.ca: DIR/certs/garbage.pem: no PEM certificate "
            "found");
}

TEST_F(TlsConfig, UnverifiedBackendsAreAWarning) {
  LoadResult result = load(clusterWith("    tls: { verify: false }\n"));
  ASSERT_NE(result.config, nullptr) << errors(result);
  EXPECT_FALSE(result.config->findCluster("b")->tls->verify);
  EXPECT_EQ(warnings(result),
            "DIR/test.yaml:7:20: clusters[1].tls.verify: cluster b: backend certificates are "
            "not verified\n");
  EXPECT_TRUE(result.diagnostics.empty());  // no error
}

TEST_F(TlsConfig, ClusterServerNameIsADnsNameOrAnIp) {
  for (const char* good : {"backend.internal", "10.0.0.5", "fd00::5", "localhost"}) {
    LoadResult result =
        load(clusterWith("    tls: { server_name: \"" + std::string(good) + "\" }\n"));
    ASSERT_NE(result.config, nullptr) << good << "\n" << errors(result);
    EXPECT_EQ(result.config->findCluster("b")->tls->server_name, good);
  }
  EXPECT_EQ(onlyError(clusterWith("    tls: { server_name: bad_name }\n")),
            "DIR/test.yaml:7:25: clusters[1].tls.server_name: invalid server_name \"bad_name\" (a "
            "DNS name such as backend.internal, or an IP address)");
  for (const char* bad : {"*.internal", "[fd00::5]", "10.0.0.300", "backend:443"}) {
    EXPECT_NE(onlyError(clusterWith("    tls: { server_name: \"" + std::string(bad) + "\" }\n"))
                  .find("invalid server_name"),
              std::string::npos)
        << bad;
  }
}

// Every way a key file can be misused: none of its text may reach a message.
TEST_F(TlsConfig, NoDiagnosticHoldsAKeysText) {
  LoadResult result = load(listenerWith(
      "      certificates:\n"
      "        - { cert: certs/a.pem, key: certs/b.key }\n"
      "        - { cert: certs/a.key, key: certs/a.key }\n"
      "        - { cert: certs/expired.pem, key: certs/broken.key }\n"
      "        - { cert: certs/b.pem, key: certs/encrypted.key }\n"
      "      client_ca: certs/rsa.key\n",
      "        client_cert_header: certs/a.key\n",
      "clusters:\n"
      "  - { name: e, type: echo }\n"
      "  - name: b\n"
      "    endpoints: [\"127.0.0.1:1\"]\n"
      "    tls: { ca: certs/b.key, cert: certs/rsa.pem, key: certs/a.key, verify: false }\n"));
  ASSERT_EQ(result.config, nullptr);
  std::string text = errors(result) + warnings(result);
  EXPECT_GE(result.diagnostics.errors().size(), 7u) << text;
  for (const char* key : {"a.key", "b.key", "rsa.key", "broken.key", "encrypted.key"}) {
    std::istringstream lines(readAll(cert(key)));
    for (std::string line; std::getline(lines, line);) {
      if (line.empty() || line.starts_with("-----") || line.find(':') != std::string::npos)
        continue;
      EXPECT_EQ(text.find(line), std::string::npos) << key << ": " << line << "\n" << text;
    }
  }
  EXPECT_EQ(text.find("TOPSECRET"), std::string::npos) << text;
}

}  // namespace
}  // namespace wsgate::config
