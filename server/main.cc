// wsgate: command line, logging setup, config loading, then the server.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "config/loader.h"
#include "filters/registry.h"
#include "server/logging.h"
#include "server/server.h"

namespace {
constexpr std::chrono::milliseconds kResolveTimeout{5000};
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"wsgate: a WebSocket edge gateway (RFC 6455 handshake, routes, frame-aware relay)"};
  std::string config_path;
  std::string log_level = "info";
  bool check = false;
  app.add_option("-c,--config", config_path, "YAML configuration file")->check(CLI::ExistingFile);
  app.add_flag("--check", check, "validate the configuration, print every error, then exit");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  app.set_version_flag("-V,--version", std::string("wsgate ") + WSGATE_VERSION);
  CLI11_PARSE(app, argc, argv);
  if (config_path.empty()) {
    std::cerr << "--config is required\nRun with --help for more information.\n";
    return 2;
  }

  // One line per event on stderr; stdout stays free. Declared first so that every return below
  // (and the stop after a signal) writes the queued lines before the process exits.
  wsgate::gateway::Logging logging(spdlog::level::from_str(log_level));

  // Host names in endpoints are looked up here, once, each bounded like a connect.
  auto loaded = wsgate::config::loadFile(config_path, wsgate::filters::Registry::global(),
                                         wsgate::config::systemNameResolver(kResolveTimeout));
  const auto& warnings = loaded.diagnostics.warnings();
  if (!loaded.config) {
    std::cerr << loaded.diagnostics.format();
    for (const auto& warning : warnings) std::cerr << "warning: " << warning.format() << "\n";
    std::cerr << config_path << ": " << loaded.diagnostics.errors().size()
              << " error(s); configuration rejected\n";
    return 1;
  }
  // --check prints them whatever the log level, as it prints errors.
  for (const auto& warning : warnings) {
    if (check) {
      std::cerr << "warning: " << warning.format() << "\n";
    } else {
      spdlog::warn("{}", warning.format());
    }
  }
  for (const auto& cluster : loaded.config->clusters) {
    for (const auto& endpoint : cluster.endpoints) {
      if (!endpoint.host.empty()) spdlog::info("cluster {}: endpoint {}", cluster.name, endpoint.text());
    }
  }
  if (check) {
    std::cout << config_path << ": configuration OK";
    if (!warnings.empty()) std::cout << " (" << warnings.size() << " warning(s))";
    std::cout << "\n";
    return 0;
  }

  std::signal(SIGPIPE, SIG_IGN);
  wsgate::gateway::Server server(loaded.config, [config_path] {
    return wsgate::config::loadFile(config_path, wsgate::filters::Registry::global(),
                                    wsgate::config::systemNameResolver(kResolveTimeout));
  });
  if (!server.start()) return 1;
  return server.run();
}
