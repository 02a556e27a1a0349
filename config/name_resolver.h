// Host names in cluster endpoints ("backend.internal:9000") are resolved once, when the config is
// loaded (as nginx and HAProxy do by default): a name that resolves to several addresses becomes
// one endpoint per address. The loader takes the resolver as a function, so that tests and
// fuzzers load configs without touching the network.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace wsgate::config {

struct Resolved {
  std::vector<std::string> ips;  // in the resolver's order, without duplicates
  std::string error;             // why there are none
};

// Called once per load with every distinct name of the file; answers in the same order.
using NameResolver = std::function<std::vector<Resolved>(const std::vector<std::string>& names)>;

// The system's resolver (getaddrinfo: /etc/hosts, then DNS as nsswitch.conf says), every name
// looked up at once and all of them bounded by `timeout`.
NameResolver systemNameResolver(std::chrono::milliseconds timeout);

// A DNS name (RFC 1123 labels, no trailing dot) whose last label is not all digits, which would
// make it a mistyped IPv4 address instead.
bool isHostName(const std::string& text);

}  // namespace wsgate::config
