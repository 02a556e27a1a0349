#include "config/tls.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <string_view>
#include <vector>

#include <boost/asio/ip/address.hpp>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "config/name_resolver.h"
#include "config/pem.h"
#include "config/yaml_util.h"

namespace wsgate::config {

namespace {

// PEM files are a few KiB; a bigger file is a wrong path (a log, an image), not a certificate.
constexpr size_t kMaxPemBytes = 1024 * 1024;

std::string child(const std::string& path, const char* key) { return path + "." + key; }

std::string indexed(const std::string& path, const char* key, size_t i) {
  return path + "." + key + "[" + std::to_string(i) + "]";
}

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

// Opened non-blocking and refused unless regular, so that a FIFO or a device named by mistake can
// neither block the load nor feed it forever.
std::optional<std::string> readSmallFile(const std::string& file, std::string& why) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    why = std::strerror(errno);
    return std::nullopt;
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    why = std::strerror(errno);
    return std::nullopt;
  }
  if (!S_ISREG(info.st_mode)) {
    why = "not a regular file";
    return std::nullopt;
  }
  std::string text;
  std::array<char, 16 * 1024> buffer;
  for (;;) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      why = std::strerror(errno);
      return std::nullopt;
    }
    if (n == 0) return text;
    text.append(buffer.data(), static_cast<size_t>(n));
    if (text.size() > kMaxPemBytes) {
      why = "larger than 1 MiB, which no PEM file is";
      return std::nullopt;
    }
  }
}

// A file named at `node`.
struct FileRef {
  YAML::Node node;
  std::string path;  // YAML key path
  std::string file;  // resolved: as opened, and as messages name it
};

std::optional<FileRef> fileRef(const YAML::Node& node, const std::string& path,
                               const std::string& base_dir, Diagnostics& diags) {
  auto text = readString(node, path, diags);
  if (!text) return std::nullopt;
  // operator/ keeps an absolute path as it is.
  std::string file = base_dir.empty() ? *text : (std::filesystem::path(base_dir) / *text).string();
  return FileRef{node, path, std::move(file)};
}

std::optional<std::string> readPem(const FileRef& ref, Diagnostics& diags) {
  std::string why;
  auto text = readSmallFile(ref.file, why);
  if (!text) diags.error(ref.node, ref.path, "cannot read " + ref.file + ": " + why);
  return text;
}

std::vector<X509Ptr> readCertificates(const FileRef& ref, std::string& pem_out,
                                      Diagnostics& diags) {
  auto pem = readPem(ref, diags);
  if (!pem) return {};
  std::string why;
  auto certs = parseCertificates(*pem, why);
  if (certs.empty()) diags.error(ref.node, ref.path, ref.file + ": " + why);
  if (!certs.empty()) pem_out = std::move(*pem);
  return certs;
}

PkeyPtr readPrivateKey(const FileRef& ref, std::string& pem_out, Diagnostics& diags) {
  auto pem = readPem(ref, diags);
  if (!pem) return nullptr;
  std::string why;
  PkeyPtr key = parsePrivateKey(*pem, why);
  if (!key) diags.error(ref.node, ref.path, ref.file + ": " + why);
  if (key) pem_out = std::move(*pem);
  return key;
}

std::string isoTime(const ASN1_TIME* time) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || ASN1_TIME_print_ex(bio.get(), time, ASN1_DTFLGS_ISO8601) != 1) return "?";
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(size));
}

// A certificate outside its validity period still loads (a renewal may be on its way, and the
// clock may be wrong), but peers will refuse it: say so.
void warnIfNotValidNow(X509* leaf, const FileRef& ref, Diagnostics& diags) {
  if (X509_cmp_current_time(X509_get0_notAfter(leaf)) < 0) {
    diags.warn(ref.node, ref.path,
               "certificate " + ref.file + " expired on " + isoTime(X509_get0_notAfter(leaf)));
  } else if (X509_cmp_current_time(X509_get0_notBefore(leaf)) > 0) {
    diags.warn(
        ref.node, ref.path,
        "certificate " + ref.file + " is not valid before " + isoTime(X509_get0_notBefore(leaf)));
  }
  ERR_clear_error();
}

// Reads a certificate chain and its key, checks that the key belongs to the leaf, and warns
// about a leaf outside its validity period.
void readKeyPair(const std::optional<FileRef>& cert, const std::optional<FileRef>& key,
                 std::string& chain_pem, std::string& key_pem, Diagnostics& diags) {
  std::vector<X509Ptr> chain;
  PkeyPtr pkey;
  if (cert) chain = readCertificates(*cert, chain_pem, diags);
  if (key) pkey = readPrivateKey(*key, key_pem, diags);
  if (chain.empty()) return;
  warnIfNotValidNow(chain.front().get(), *cert, diags);
  if (pkey && X509_check_private_key(chain.front().get(), pkey.get()) != 1) {
    diags.error(key->node, key->path,
                "key does not match its certificate: " + key->file +
                    " is not the key of the first certificate in " + cert->file);
  }
  ERR_clear_error();
}

// The CA certificates that peers are verified against.
void readCa(const YAML::Node& node, const std::string& path, const std::string& base_dir,
            std::string& file_out, std::string& pem_out, Diagnostics& diags) {
  auto ref = fileRef(node, path, base_dir, diags);
  if (!ref) return;
  file_out = ref->file;
  readCertificates(*ref, pem_out, diags);
}

void positiveDuration(const YAML::Node& map, const char* key, const std::string& path,
                      Duration& out, Diagnostics& diags) {
  const YAML::Node node = map[key];
  if (!node) return;
  auto value = readDuration(node, child(path, key), diags);
  if (!value) return;
  if (value->count() <= 0) {
    diags.error(node, child(path, key), "must be greater than 0");
    return;
  }
  out = *value;
}

// `owners` maps each server name seen on this listener to the certificate that has it.
void certificate(const YAML::Node& node, const std::string& path, const std::string& base_dir,
                 std::map<std::string, std::string>& owners, TlsCertificate& out,
                 Diagnostics& diags) {
  if (!checkKeys(node, path, {"cert", "key", "server_names"}, diags)) return;
  std::optional<FileRef> cert;
  std::optional<FileRef> key;
  if (const YAML::Node n = node["cert"]) {
    cert = fileRef(n, child(path, "cert"), base_dir, diags);
  } else {
    diags.error(node, path, "missing required key \"cert\"");
  }
  if (const YAML::Node n = node["key"]) {
    key = fileRef(n, child(path, "key"), base_dir, diags);
  } else {
    diags.error(node, path, "missing required key \"key\"");
  }
  if (cert) out.cert_file = cert->file;
  if (key) out.key_file = key->file;
  readKeyPair(cert, key, out.chain_pem, out.key_pem, diags);

  const YAML::Node names = node["server_names"];
  if (!names) return;
  if (!names.IsSequence()) {
    diags.error(names, child(path, "server_names"),
                "must be a list of names, e.g. [\"chat.example.com\", \"*.example.org\"]");
    return;
  }
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string name_path = indexed(path, "server_names", i);
    auto text = readString(names[i], name_path, diags);
    if (!text) continue;
    const std::string name = lower(*text);
    // SNI carries DNS names only, never an IP address.
    const bool valid = name.starts_with("*.") ? isHostName(name.substr(2)) : isHostName(name);
    if (!valid) {
      diags.error(names[i], name_path,
                  "invalid server name \"" + *text +
                      "\" (a DNS name such as chat.example.com, "
                      "or \"*.example.org\" with one leading wildcard label)");
      continue;
    }
    auto [it, added] = owners.emplace(name, path);
    if (!added) {
      diags.error(names[i], name_path,
                  it->second == path ? "server name \"" + name + "\" is listed twice"
                                     : "server name \"" + name + "\" is also on " + it->second +
                                           " (each name selects one certificate)");
      continue;
    }
    out.server_names.push_back(name);
  }
}

// RFC 9110 token characters: what a header field name may be made of.
bool isHeaderName(std::string_view name) {
  constexpr std::string_view kSymbols = "!#$%&'*+-.^_`|~";
  return !name.empty() && std::all_of(name.begin(), name.end(), [&](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || kSymbols.find(c) != kSymbols.npos;
  });
}

// Headers the gateway itself writes, removes or needs intact for the upgrade
// (codec/handshake.cc): a client certificate subject there would be lost or break the handshake.
bool isManagedHeader(const std::string& name) {
  const std::string n = lower(name);
  for (std::string_view managed : {"host", "upgrade", "connection", "keep-alive", "te", "trailer",
                                   "transfer-encoding", "x-forwarded-for", "x-forwarded-proto"}) {
    if (n == managed) return true;
  }
  return n.starts_with("sec-websocket-") || n.starts_with("proxy-");
}

}  // namespace

std::optional<ListenerTls> parseListenerTls(const YAML::Node& node, const std::string& path,
                                            const std::string& base_dir, Diagnostics& diags) {
  if (!checkKeys(
          node, path,
          {"certificates", "min_version", "client_ca", "require_client_cert", "handshake_timeout"},
          diags)) {
    return std::nullopt;
  }
  ListenerTls out;
  const YAML::Node certificates = node["certificates"];
  if (!certificates) {
    diags.error(node, path, "missing required key \"certificates\"");
  } else if (!certificates.IsSequence() || certificates.size() == 0) {
    diags.error(certificates, child(path, "certificates"),
                "must be a non-empty list of { cert, key, server_names }");
  } else {
    std::map<std::string, std::string> owners;
    for (size_t i = 0; i < certificates.size(); ++i) {
      TlsCertificate c;
      certificate(certificates[i], indexed(path, "certificates", i), base_dir, owners, c, diags);
      out.certificates.push_back(std::move(c));
    }
  }
  if (const YAML::Node version = node["min_version"]) {
    // yaml-cpp keeps a scalar's text as written, so an unquoted 1.2 reads as "1.2" too.
    const std::string text = version.IsScalar() ? version.Scalar() : "(not a scalar)";
    if (text == "1.2") {
      out.min_version = ListenerTls::Version::kTls12;
    } else if (text == "1.3") {
      out.min_version = ListenerTls::Version::kTls13;
    } else {
      diags.error(version, child(path, "min_version"),
                  "invalid TLS version \"" + text + "\" (allowed: \"1.2\", \"1.3\")");
    }
  }
  const YAML::Node ca = node["client_ca"];
  if (ca)
    readCa(ca, child(path, "client_ca"), base_dir, out.client_ca_file, out.client_ca_pem, diags);
  if (const YAML::Node require = node["require_client_cert"]) {
    if (auto value = readBool(require, child(path, "require_client_cert"), diags)) {
      out.require_client_cert = *value;
      if (*value && !ca) {
        diags.error(require, child(path, "require_client_cert"),
                    "needs client_ca: the CA certificates that client certificates are verified "
                    "against");
      }
    }
  }
  positiveDuration(node, "handshake_timeout", path, out.handshake_timeout, diags);
  return out;
}

std::optional<ClusterTls> parseClusterTls(const YAML::Node& node, const std::string& path,
                                          const std::string& cluster_name,
                                          const std::string& base_dir, Diagnostics& diags) {
  if (!checkKeys(node, path, {"ca", "server_name", "cert", "key", "verify"}, diags)) {
    return std::nullopt;
  }
  ClusterTls out;
  if (const YAML::Node ca = node["ca"]) {
    readCa(ca, child(path, "ca"), base_dir, out.ca_file, out.ca_pem, diags);
  }
  if (const YAML::Node name = node["server_name"]) {
    if (auto text = readString(name, child(path, "server_name"), diags)) {
      boost::system::error_code ec;
      boost::asio::ip::make_address(*text, ec);
      if (ec && !isHostName(*text)) {
        diags.error(name, child(path, "server_name"),
                    "invalid server_name \"" + *text +
                        "\" (a DNS name such as backend.internal, or an IP address)");
      } else {
        out.server_name = ec ? lower(*text) : *text;
      }
    }
  }
  const YAML::Node cert = node["cert"];
  const YAML::Node key = node["key"];
  if (cert && !key) {
    diags.error(cert, child(path, "cert"), "a client certificate needs its key: set \"key\" too");
  } else if (key && !cert) {
    diags.error(key, child(path, "key"), "a client key needs its certificate: set \"cert\" too");
  } else if (cert && key) {
    auto cert_ref = fileRef(cert, child(path, "cert"), base_dir, diags);
    auto key_ref = fileRef(key, child(path, "key"), base_dir, diags);
    if (cert_ref) out.cert_file = cert_ref->file;
    if (key_ref) out.key_file = key_ref->file;
    readKeyPair(cert_ref, key_ref, out.chain_pem, out.key_pem, diags);
  }
  if (const YAML::Node verify = node["verify"]) {
    if (auto value = readBool(verify, child(path, "verify"), diags)) {
      out.verify = *value;
      if (!*value) {
        diags.warn(verify, child(path, "verify"),
                   "cluster " + cluster_name + ": backend certificates are not verified");
      }
    }
  }
  return out;
}

void parseRouteTls(const YAML::Node& node, const std::string& path, const YAML::Node& listener_tls,
                   const std::string& listener_name, Route& out, Diagnostics& diags) {
  if (const YAML::Node require = node["require_tls"]) {
    if (auto value = readBool(require, child(path, "require_tls"), diags)) {
      out.require_tls = *value;
      if (*value && !listener_tls) {
        diags.error(
            require, child(path, "require_tls"),
            "route " + out.name + " requires TLS but listener " + listener_name + " has no tls");
      }
    }
  }
  const YAML::Node header = node["client_cert_header"];
  if (!header) return;
  const std::string header_path = child(path, "client_cert_header");
  auto text = readString(header, header_path, diags);
  if (!text) return;
  if (!isHeaderName(*text)) {
    diags.error(header, header_path, "\"" + *text + "\" is not a valid HTTP header name");
  } else if (isManagedHeader(*text)) {
    diags.error(header, header_path,
                "\"" + *text +
                    "\" is a header the gateway sets or removes itself (choose "
                    "another, e.g. X-Client-Cert-Subject)");
  } else if (!listener_tls || !listener_tls.IsMap() || !listener_tls["client_ca"]) {
    diags.error(header, header_path,
                "listener " + listener_name +
                    " verifies no client certificates (no "
                    "tls.client_ca), so there is no verified subject to forward");
  } else {
    out.client_cert_header = *text;
  }
}

}  // namespace wsgate::config
