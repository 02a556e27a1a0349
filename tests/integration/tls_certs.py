"""Test certificates made with the `openssl` CLI (Debian package `openssl`) in a temp dir, once per
test session (the `tls_certs` fixture); none is ever committed.

    root CA ─┬─ intermediate CA ─┬─ chat      ECDSA P-256  DNS:chat.example.com
             │                   ├─ wild      RSA-2048     DNS:*.example.org
             │                   ├─ loopback  ECDSA P-256  DNS:localhost, IP:127.0.0.1, IP:::1
             │                   ├─ loopback2 ECDSA P-256  the same names, another key
             │                   └─ backend   ECDSA P-256  DNS:backend.internal
             └─ alice     client certificate (clientAuth)
    other root CA (unrelated) ── mallory  client certificate (clientAuth)
    stray_key: a P-256 key that matches no certificate

A server's `cert` file holds its full chain as a server sends it (leaf, then intermediate); `leaf`
holds the leaf alone. `openssl` runs with a config file of its own (OPENSSL_CONF), so the system's
openssl.cnf changes nothing here."""
import base64
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field

import pytest

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
DAYS = 30

# Enough for `req -new` with -subj; no default extensions: each certificate's come from its own
# extension section below.
MINIMAL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
"""

CA_EXT = """\
basicConstraints = critical, CA:TRUE{pathlen}
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
{aki}"""

LEAF_EXT = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, {usage}
extendedKeyUsage = {eku}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
{san}"""


@dataclass
class Cert:
    """One certificate and its key, as files. `cert` is what a server or client presents (the
    leaf, then any intermediate); `leaf` is the leaf alone; `subject` is in RFC 2253 form
    (`CN=...,O=...`); `parts` is the subject as a set of `KEY=value` strings."""
    name: str
    cert: str
    key: str
    leaf: str
    subject: str = ""
    parts: frozenset = frozenset()
    sans: list = field(default_factory=list)
    is_root: bool = False


class CertFactory:
    """Makes keys and certificates with the `openssl` CLI in `directory`."""

    def __init__(self, directory):
        assert os.access(OPENSSL, os.X_OK), "openssl is not installed (Debian package openssl)"
        self.dir = directory
        self.cnf = self.path("openssl.cnf")
        with open(self.cnf, "w") as f:
            f.write(MINIMAL_CNF)
        self.env = dict(os.environ, OPENSSL_CONF=self.cnf)

    def path(self, name):
        return os.path.join(self.dir, name)

    def openssl(self, *args, data=None):
        """Runs `openssl args...`; returns its stdout (bytes); fails with its stderr."""
        result = subprocess.run([OPENSSL, *args], input=data, capture_output=True,
                                env=self.env, timeout=60)
        assert result.returncode == 0, \
            f"openssl {' '.join(args)} failed: {result.stderr.decode(errors='replace')}"
        return result.stdout

    def key(self, name, kind="ec"):
        """A new private key: `ec` (P-256) or `rsa` (2048 bits), PEM, in NAME.key."""
        out = self.path(f"{name}.key")
        if kind == "ec":
            self.openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                         "-out", out)
        else:
            assert kind == "rsa", kind
            self.openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                         "-out", out)
        return out

    def _issue(self, name, subject, extensions, issuer=None, kind="ec"):
        """A certificate for a new key, signed by `issuer` (a Cert) or by itself."""
        key = self.key(name, kind)
        csr = self.path(f"{name}.csr")
        self.openssl("req", "-new", "-key", key, "-subj", subject, "-config", self.cnf,
                     "-out", csr)
        ext = self.path(f"{name}.ext")
        with open(ext, "w") as f:
            f.write("[ext]\n" + extensions + "\n")
        leaf = self.path(f"{name}.leaf.pem")
        serial = "0x" + os.urandom(12).hex()
        signer = (["-CA", issuer.leaf, "-CAkey", issuer.key] if issuer
                  else ["-signkey", key])
        self.openssl("x509", "-req", "-in", csr, *signer, "-set_serial", serial,
                     "-days", str(DAYS), "-sha256", "-extfile", ext, "-extensions", "ext",
                     "-out", leaf)
        # What its holder presents: the leaf, then its issuer's chain unless that is a root
        # (which the peer has, or it is no use).
        chain = [leaf] + ([issuer.cert] if issuer is not None and not issuer.is_root else [])
        cert = self.path(f"{name}.pem")
        with open(cert, "wb") as out:
            for part in chain:
                with open(part, "rb") as f:
                    out.write(f.read())
        subject_line = self.openssl("x509", "-in", leaf, "-noout", "-subject",
                                    "-nameopt", "RFC2253").decode().strip()
        rfc2253 = subject_line.split("=", 1)[1] if subject_line.startswith("subject=") \
            else subject_line
        return Cert(name, cert, key, leaf, rfc2253, subject_parts(rfc2253),
                    is_root=issuer is None)

    def ca(self, name, cn, issuer=None):
        ext = CA_EXT.format(pathlen=", pathlen:0" if issuer else "",
                            aki="authorityKeyIdentifier = keyid, issuer\n" if issuer else "")
        return self._issue(name, f"/O=wsgate tests/CN={cn}", ext, issuer)

    def server(self, name, issuer, sans, kind="ec"):
        """A server certificate whose subject CN is the first SAN, with every SAN in `sans`
        (`DNS:name` or `IP:address`)."""
        ext = LEAF_EXT.format(
            usage="digitalSignature" + (", keyEncipherment" if kind == "rsa" else ""),
            eku="serverAuth", san="subjectAltName = " + ", ".join(sans))
        cert = self._issue(name, f"/O=wsgate tests/CN={sans[0].split(':', 1)[1]}", ext,
                           issuer, kind)
        cert.sans = list(sans)
        return cert

    def client(self, name, issuer, cn):
        ext = LEAF_EXT.format(usage="digitalSignature", eku="clientAuth", san="")
        return self._issue(name, f"/O=wsgate tests/OU=clients/CN={cn}", ext, issuer)

    def spki_sha256(self, cert_path):
        """base64(SHA-256(DER SubjectPublicKeyInfo)) of the first certificate in the file: what
        Chromium's --ignore-certificate-errors-spki-list takes."""
        pem = self.openssl("x509", "-in", cert_path, "-noout", "-pubkey")
        der = self.openssl("pkey", "-pubin", "-outform", "DER", data=pem)
        return base64.b64encode(hashlib.sha256(der).digest()).decode()


def subject_parts(subject):
    """The `KEY=value` parts of a distinguished name in RFC 2253 (`CN=a,O=b`), OpenSSL's oneline
    (`/O=b/CN=a`) or its default (`O = b, CN = a`) form, as a set; the values here hold no `,`
    `/` or `+`."""
    parts = set()
    for piece in subject.replace("/", ",").split(","):
        if "=" in piece:
            k, v = piece.split("=", 1)
            parts.add(f"{k.strip()}={v.strip()}")
    return frozenset(parts)


class TestCerts:
    """Every certificate the tests use (see the module docstring), made once."""

    def __init__(self, directory):
        f = self.factory = CertFactory(directory)
        self.dir = directory
        self.root = f.ca("root", "wsgate test root CA")
        self.intermediate = f.ca("intermediate", "wsgate test intermediate CA", self.root)
        self.other_root = f.ca("other_root", "unrelated test root CA")
        self.chat = f.server("chat", self.intermediate, ["DNS:chat.example.com"])
        self.wild = f.server("wild", self.intermediate, ["DNS:*.example.org"], kind="rsa")
        loopback = ["DNS:localhost", "IP:127.0.0.1", "IP:::1"]
        self.loopback = f.server("loopback", self.intermediate, loopback)
        self.loopback2 = f.server("loopback2", self.intermediate, loopback)
        self.backend = f.server("backend", self.intermediate, ["DNS:backend.internal"])
        self.alice = f.client("alice", self.root, "alice")
        self.mallory = f.client("mallory", self.other_root, "mallory")
        self.stray_key = f.key("stray")

    def spki(self, cert):
        return self.factory.spki_sha256(cert.leaf)


def make_certs(directory):
    return TestCerts(directory)


@pytest.fixture(scope="session")
def tls_certs():
    """The test certificates (TestCerts), made once per session in a temp dir removed at the
    end."""
    directory = tempfile.mkdtemp(prefix="wsgate-tls-")
    try:
        yield make_certs(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
