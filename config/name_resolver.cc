#include "config/name_resolver.h"

#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <array>
#include <memory>

#include <boost/asio/ip/address.hpp>

namespace wsgate::config {

namespace {

// One lookup of getaddrinfo_a. A lookup still running at the deadline is cancelled; one that
// cannot be cancelled keeps writing into its block from glibc's thread, so that block is
// deliberately never freed (at most one per stuck name and load).
struct Lookup {
  std::string name;
  addrinfo hints{};
  gaicb block{};
};

std::string ipOf(const addrinfo& info) {
  if (info.ai_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(info.ai_addr);
    std::array<unsigned char, 4> bytes;
    std::copy_n(reinterpret_cast<const unsigned char*>(&in->sin_addr), 4, bytes.begin());
    return boost::asio::ip::make_address_v4(bytes).to_string();
  }
  const auto* in6 = reinterpret_cast<const sockaddr_in6*>(info.ai_addr);
  std::array<unsigned char, 16> bytes;
  std::copy_n(reinterpret_cast<const unsigned char*>(&in6->sin6_addr), 16, bytes.begin());
  return boost::asio::ip::make_address_v6(bytes).to_string();
}

std::vector<Resolved> resolveAll(const std::vector<std::string>& names,
                                 std::chrono::milliseconds timeout) {
  std::vector<Resolved> results(names.size());
  if (names.empty()) return results;
  std::vector<std::unique_ptr<Lookup>> lookups;
  std::vector<gaicb*> list;
  for (const auto& name : names) {
    auto lookup = std::make_unique<Lookup>();
    lookup->name = name;
    lookup->hints.ai_family = AF_UNSPEC;
    lookup->hints.ai_socktype = SOCK_STREAM;
    lookup->block.ar_name = lookup->name.c_str();
    lookup->block.ar_request = &lookup->hints;
    list.push_back(&lookup->block);
    lookups.push_back(std::move(lookup));
  }
  if (const int rc = getaddrinfo_a(GAI_NOWAIT, list.data(), static_cast<int>(list.size()),
                                   nullptr);
      rc != 0) {
    for (auto& r : results) r.error = gai_strerror(rc);
    return results;
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::vector<const gaicb*> waiting(list.begin(), list.end());
  for (;;) {
    for (auto& entry : waiting) {
      if (entry && gai_error(const_cast<gaicb*>(entry)) != EAI_INPROGRESS) entry = nullptr;
    }
    if (std::all_of(waiting.begin(), waiting.end(), [](const gaicb* e) { return !e; })) break;
    const auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::nanoseconds::zero()) break;
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
    const timespec wait{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
    gai_suspend(waiting.data(), static_cast<int>(waiting.size()), &wait);
  }
  for (size_t i = 0; i < lookups.size(); ++i) {
    gaicb* block = &lookups[i]->block;
    int rc = gai_error(block);
    if (rc == EAI_INPROGRESS) {
      const int cancelled = gai_cancel(block);
      if (cancelled != EAI_ALLDONE) {
        results[i].error = "no answer within " + std::to_string(timeout.count()) + "ms";
        if (cancelled == EAI_NOTCANCELED) lookups[i].release();  // see Lookup
        continue;
      }
      rc = gai_error(block);  // it finished meanwhile
    }
    if (rc != 0) {
      results[i].error = rc == EAI_SYSTEM ? "system error" : gai_strerror(rc);
      continue;
    }
    for (const addrinfo* a = block->ar_result; a != nullptr; a = a->ai_next) {
      if (a->ai_family != AF_INET && a->ai_family != AF_INET6) continue;
      std::string ip = ipOf(*a);
      auto& ips = results[i].ips;
      if (std::find(ips.begin(), ips.end(), ip) == ips.end()) ips.push_back(std::move(ip));
    }
    freeaddrinfo(block->ar_result);
    if (results[i].ips.empty()) results[i].error = "no IPv4 or IPv6 address";
  }
  return results;
}

}  // namespace

NameResolver systemNameResolver(std::chrono::milliseconds timeout) {
  return [timeout](const std::vector<std::string>& names) { return resolveAll(names, timeout); };
}

bool isHostName(const std::string& text) {
  if (text.empty() || text.size() > 253 || text.back() == '.') return false;
  size_t label = 0;
  bool digits_only = true;
  char previous = '.';
  for (const char c : text) {
    if (c == '.') {
      if (label == 0 || previous == '-') return false;
      label = 0;
      digits_only = true;
    } else if (std::isalnum(static_cast<unsigned char>(c)) || c == '-') {
      if ((label == 0 && c == '-') || ++label > 63) return false;
      digits_only = digits_only && std::isdigit(static_cast<unsigned char>(c));
    } else {
      return false;
    }
    previous = c;
  }
  return previous != '-' && !digits_only;
}

}  // namespace wsgate::config
