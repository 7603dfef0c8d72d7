// routerd: the routing service. Usage:
//   routerd [--config FILE] [--port N | --listen ADDR] [--metrics_port N | --metrics_listen ADDR]
//           [--admin_port N] [--estimator FILE] [--check_config]
// Without --config it runs on the embedded defaults (docs/configuration.md). Flags override the
// file: --port, --metrics_port and --admin_port replace the port of the configured `listen`,
// `metrics_listen` and `admin.listen` addresses (0 = any free port), --listen and --metrics_listen
// the whole address.
// SIGTERM/SIGINT: drain and exit 0 (routerd.h); SIGHUP: reload the config file and re-read the
// credential files (certificates, tokens).
// --check_config validates the configuration (and loads the estimator) and exits.

#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "server/config.h"
#include "server/log.h"
#include "server/log_limiter.h"
#include "server/process_settings.h"
#include "server/routerd.h"

namespace {

// Tells systemd (Type=notify) the service state; a no-op outside systemd.
void NotifySystemd(const char* state) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr || path[0] == '\0') return;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path, sizeof(addr.sun_path) - 1);
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';  // abstract socket
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  const socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + std::strlen(path));
  sendto(fd, state, std::strlen(state), 0, reinterpret_cast<sockaddr*>(&addr), len);
  close(fd);
}

int Usage(const std::string& problem) {
  std::cerr << "routerd: " << problem << "\n"
            << "usage: routerd [--config FILE] [--port N | --listen ADDR] "
               "[--metrics_port N | --metrics_listen ADDR] [--admin_port N] [--estimator FILE] "
               "[--check_config]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  // A client can make protobuf log an error per request (invalid UTF-8 in a string field).
  router::server::LimitProtobufLogs();
  std::string config_path, listen, metrics_listen, port, metrics_port, admin_port, estimator;
  bool check_only = false, have_metrics_listen = false;
  for (int k = 1; k < argc; ++k) {
    const std::string arg = argv[k];
    auto value = [&](std::string& out) {
      if (k + 1 >= argc) return false;
      out = argv[++k];
      return true;
    };
    if (arg == "--config") {
      if (!value(config_path)) return Usage("--config needs a file");
    } else if (arg == "--listen") {
      if (!value(listen)) return Usage("--listen needs an address");
    } else if (arg == "--port") {
      if (!value(port)) return Usage("--port needs a port number");
    } else if (arg == "--metrics_port") {
      if (!value(metrics_port)) return Usage("--metrics_port needs a port number");
    } else if (arg == "--admin_port") {
      if (!value(admin_port)) return Usage("--admin_port needs a port number");
    } else if (arg == "--metrics_listen") {
      if (!value(metrics_listen)) return Usage("--metrics_listen needs an address");
      have_metrics_listen = true;
    } else if (arg == "--estimator") {
      if (!value(estimator)) return Usage("--estimator needs a file");
    } else if (arg == "--check_config") {
      check_only = true;
    } else if (arg == "--help" || arg == "-h") {
      Usage("help");
      return 0;
    } else {
      return Usage(absl::StrCat("unknown flag '", arg, "'"));
    }
  }
  if (!port.empty() && !listen.empty()) return Usage("--port and --listen: give one of them");
  if (!metrics_port.empty() && have_metrics_listen) {
    return Usage("--metrics_port and --metrics_listen: give one of them");
  }
  absl::StatusOr<router::server::RouterConfig> config =
      config_path.empty() ? router::server::ParseConfigYaml("")
                          : router::server::LoadConfigFile(config_path);
  if (!config.ok()) {
    std::cerr << "routerd: " << config.status().message() << "\n";
    return 1;
  }
  if (!listen.empty()) config->listen = listen;
  if (have_metrics_listen) config->metrics_listen = metrics_listen;
  if (!admin_port.empty() && config->admin.listen.empty()) {
    return Usage("--admin_port: the config sets no admin.listen (RouterAdmin is on `listen`)");
  }
  for (auto [flag, value, address] : {std::tuple{"--port", &port, &config->listen},
                                      std::tuple{"--metrics_port", &metrics_port,
                                                 &config->metrics_listen},
                                      std::tuple{"--admin_port", &admin_port,
                                                 &config->admin.listen}}) {
    if (value->empty()) continue;
    absl::StatusOr<std::string> replaced = router::server::ReplacePort(*address, *value, flag);
    if (!replaced.ok()) return Usage(std::string(replaced.status().message()));
    *address = *std::move(replaced);
  }
  if (!estimator.empty()) config->estimator = estimator;

  router::server::ApplyProcessSettings();

  // Signals are taken by one thread with sigwait, never in a handler; block them everywhere first
  // so every thread started below inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  const absl::Duration drain = config->shutdown_drain;
  const absl::Duration grace = config->shutdown_grace;
  absl::StatusOr<std::unique_ptr<router::server::Routerd>> routerd =
      router::server::Routerd::Start(*std::move(config), config_path);
  if (!routerd.ok()) {
    std::cerr << "routerd: " << routerd.status().message() << "\n";
    return 1;
  }
  if (check_only) {
    (*routerd)->Shutdown(absl::ZeroDuration(), absl::ZeroDuration());
    std::cout << "routerd: configuration OK\n";
    return 0;
  }
  using router::server::Log;
  Log("info", "serving",
      absl::StrCat("serving on port ", (*routerd)->port(),
                   (*routerd)->metrics_port() > 0
                       ? absl::StrCat(", metrics on port ", (*routerd)->metrics_port())
                       : "",
                   (*routerd)->ext_proc_port() > 0
                       ? absl::StrCat(", Envoy ext_proc also on port ", (*routerd)->ext_proc_port())
                       : "",
                   (*routerd)->admin_port() > 0
                       ? absl::StrCat(", RouterAdmin on port ", (*routerd)->admin_port())
                       : "",
                   " (version ", router::server::RouterdVersion(), ")"),
      {{"version", std::string(router::server::RouterdVersion())},
       {"port", int64_t{(*routerd)->port()}},
       {"metrics_port", int64_t{(*routerd)->metrics_port()}},
       {"ext_proc_port", int64_t{(*routerd)->ext_proc_port()}},
       {"admin_port", int64_t{(*routerd)->admin_port()}}});
  NotifySystemd("READY=1");
  for (;;) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) continue;
    if (sig == SIGHUP) {
      NotifySystemd("RELOADING=1");
      absl::Status s = (*routerd)->Reload();
      Log(s.ok() ? "info" : "error", "reload",
          absl::StrCat("reload ", s.ok() ? "applied" : s.message()),
          {{"code", absl::StatusCodeToString(s.code())}});
      // Logs each credential file it refuses; the old contents stay in use.
      (void)(*routerd)->ReloadCredentials(/*log_repeats=*/true);
      NotifySystemd("READY=1");
      continue;
    }
    Log("info", "draining",
        absl::StrCat(strsignal(sig), ", draining (", absl::FormatDuration(drain), ", then up to ",
                     absl::FormatDuration(grace), ")"),
        {{"signal", std::string(strsignal(sig))}});
    NotifySystemd("STOPPING=1");
    (*routerd)->Shutdown(drain, grace);
    Log("info", "stopped", "stopped");
    return 0;
  }
}
