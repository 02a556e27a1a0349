#!/usr/bin/env bash
# Installs, from the archive of the Debian release it runs on (12 bookworm or 13 trixie), whatever
# of wsgate's build, test or bench dependencies is missing.
# Usage: scripts/install-deps.sh [build|test|bench|fuzz]... (default: build test).
set -euo pipefail

# The few names that differ between releases. Boost is pinned to the version whose Asio internals
# io/reactor_op.h was checked against (another Boost builds with Asio's stock operations).
release=$( . /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-${VERSION_ID:-}}" )
case $release in
  bookworm | 12) boost=libboost1.81-dev clang_rt=libclang-rt-14-dev ;;
  trixie | 13) boost=libboost1.83-dev clang_rt=libclang-rt-dev ;;
  *)
    echo "install-deps: Debian release '${release:-unknown}' not known (12 bookworm, 13 trixie);" \
         "trying Debian 13's package names" >&2
    boost=libboost-dev clang_rt=libclang-rt-dev ;;
esac

build_pkgs=(
  build-essential cmake ninja-build   # compiler and build
  "$boost"                            # Asio (I/O) and Beast (HTTP, WebSocket for the echo upstream)
  libssl-dev                          # OpenSSL 3: TLS, SHA-1 for Sec-WebSocket-Accept
  openssl                             # the CLI: make run's self-signed quick-start certificate
  libyaml-cpp-dev                     # configuration files
  prometheus-cpp-dev                  # /metrics text format
  libspdlog-dev libfmt-dev            # logging
  libcli11-dev                        # command line
  libgtest-dev                        # unit tests
  nlohmann-json3-dev                  # the bench's load generator, which trains every build
)
test_pkgs=(
  python3 python3-websockets python3-pytest   # integration tests: real WebSocket peers
  prometheus                                  # a real Prometheus server, promtool
  systemd                                     # systemd-analyze verify of deploy/wsgate.service
  chromium chromium-driver python3-selenium   # a real browser as the client
  nodejs node-ws                              # a Node `ws` backend
  procps iproute2                             # ps; ip: a test in a network namespace of its own
  openssl                                     # the CLI: test certificates, s_client
)
bench_pkgs=(nginx haproxy openssl)  # openssl: the wss scenarios' certificate
fuzz_pkgs=(clang "$clang_rt")  # libFuzzer (`make fuzz`)

groups=("$@")
[[ ${#groups[@]} -gt 0 ]] || groups=(build test)
wanted=()
for group in "${groups[@]}"; do
  case $group in
    build) wanted+=("${build_pkgs[@]}") ;;
    test) wanted+=("${test_pkgs[@]}") ;;
    bench) wanted+=("${bench_pkgs[@]}") ;;
    fuzz) wanted+=("${fuzz_pkgs[@]}") ;;
    *) echo "install-deps: unknown group '$group' (build, test, bench, fuzz)" >&2; exit 2 ;;
  esac
done

missing=()
for pkg in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
sudo=()
[[ $(id -u) -eq 0 ]] || sudo=(sudo)
export DEBIAN_FRONTEND=noninteractive
# Package install scripts must not start services (nginx, prometheus) on this machine.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
  "${sudo[@]}" chmod +x "$policy"
  created_policy=1
fi
trap '[[ $created_policy -eq 1 ]] && "${sudo[@]}" rm -f "$policy"' EXIT
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done" >&2
