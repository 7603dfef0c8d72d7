// File: routerd.h
//
// The assembled service: loads the estimator artifact, builds the runtime, starts the gRPC server
// (Router, RouterAdmin, Envoy's ExternalProcessor, health, reflection), a second one serving only
// ExternalProcessor and health when gateway.listen is set, the admin server when `admin.listen` is
// set (then RouterAdmin is served there only, with health and reflection), and the Prometheus
// endpoint, and shuts them down in the order that loses nothing:
//   1. health: NOT_SERVING ("" and router.v1.Router), so load balancers stop sending; routing goes
//      on for `shutdown.drain_s` while they notice;
//   2. new work is refused (UNAVAILABLE, retryable; inline queries too) and the scheduler decides
//      what is queued, batch after batch, until everything is answered or `grace` has passed (the
//      rest: UNAVAILABLE); inline queries are answered on their handler thread, so none is left;
//   3. once no Route or RouteBatch call is open and none arrived or closed for 200 ms (an answer
//      sent frees a stream, which a client held at grpc.max_concurrent_streams uses for a call it
//      held back), or at the grace deadline, the gRPC servers shut down, which ends every call
//      reaching them later CANCELLED
//      (gRPC 1.51 waits for every reactor to finish, which step 2 guarantees for queries; Envoy
//      ext_proc streams still open at the grace deadline are cancelled, which releases their
//      assignments), then the admin server; then the learning snapshot is written (every
//      Complete received is in it; outcome_learning.h), then the metrics endpoint stops.
// So a shutdown takes at most drain + grace + the solve of one batch + gRPC's own teardown.
//
// Transport security and authorization (docs/configuration.md, "Transport security"): with `tls`,
// every listener serves TLS (tls_credentials.h) and, with a client CA, requires client
// certificates; RouterAdmin calls, and Router calls with api.token_file, are authorized by
// call_auth.h. The credential files' contents are re-read on ReloadCredentials (SIGHUP) and every
// `credentials_reload_s` by a thread of routerd's own; new contents that fail their checks are
// refused (logged, counted in router_credential_reload_failures_total) and the old ones stay.
// The gRPC server limits of the `grpc` section apply to every listener.
//
// With a shared ledger (`ledger.backend: redis`), a ledger ticker thread refreshes the ledger's
// gauges every second (fleet-wide slots in use, budget, totals; each a round trip to Redis, so not
// after every decision) and, with `ledger.health_requires_ledger`, sets the health of
// router.v1.Router and of the ext_proc service NOT_SERVING while the ledger is degraded and
// SERVING again once it recovers (readiness); the whole server's health ("", liveness) never
// depends on Redis. It stops when the shutdown starts.
//
// Thread-safety: after Start, any thread may call Reload, ReloadCredentials and Shutdown;
// concurrent Shutdown calls wait for the first one, later ones return at once.
//
// Errors: Start returns the config, artifact, credential file or listen error with the path or
// address named.

#ifndef ROUTER_SERVER_ROUTERD_H_
#define ROUTER_SERVER_ROUTERD_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "grpcpp/server.h"
#include "prometheus/exposer.h"
#include "server/admin_service.h"
#include "server/call_auth.h"
#include "server/config.h"
#include "server/ext_proc_call.h"
#include "server/prometheus_metrics.h"
#include "server/router_runtime.h"
#include "server/router_service.h"
#include "server/tls_credentials.h"

namespace router::server {

// The artifact routerd loads when the config names none (set at build time).
const char* DefaultEstimatorPath();
// This build's version string (router_build_info).
const char* RouterdVersion();

class Routerd {
 public:
  // `config_path` is what Reload() re-reads (empty: Reload is refused).
  static absl::StatusOr<std::unique_ptr<Routerd>> Start(RouterConfig config,
                                                        std::string config_path);
  ~Routerd();

  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }
  // The port of gateway.listen; 0 when it is not set.
  int ext_proc_port() const { return ext_proc_port_; }
  // The admin listener's port; 0 without admin.listen.
  int admin_port() const { return admin_port_; }
  RouterRuntime& runtime() { return *runtime_; }

  // Re-reads the config file and applies it (RouterAdmin.UpdateConfig semantics). Refused, and
  // nothing applied, when the file is empty or changes a startup-only key (FAILED_PRECONDITION
  // naming the key: it would only take effect at the next start). Each limit the new config
  // removes is logged.
  absl::Status Reload();
  // Re-reads the credential files (tls.*, admin.token_file, api.token_file). Contents that pass
  // their checks replace the ones in use (new TLS connections get the new certificate; open ones
  // keep theirs); refused contents are logged and counted once per new contents (again in the log
  // when `log_repeats`), and the old ones stay. Returns the first refusal, or OK.
  absl::Status ReloadCredentials(bool log_repeats);
  // `drain` and `grace` as in the config's shutdown section.
  void Shutdown(absl::Duration drain, absl::Duration grace);
  // How long no call may have arrived or closed before the gRPC servers shut down (step 3 above).
  static constexpr absl::Duration kShutdownQuietPeriod = absl::Milliseconds(200);

 private:
  Routerd() = default;

  std::string config_path_;
  // The startup-only keys as the config file had them at the start (before flags overrode them),
  // against which a reload's are compared.
  RouterConfig file_at_start_;
  // Loads the credential files and builds the authorizers.
  absl::Status LoadCredentials(const RouterConfig& config);
  // Checks the credential files every `interval` until Shutdown.
  void WatchCredentials(absl::Duration interval);
  // Credentials for one more listener: TLS (its own fetcher) or plaintext.
  std::shared_ptr<grpc::ServerCredentials> ListenerCredentials();

  std::unique_ptr<PrometheusMetrics> metrics_;
  // Credentials outlive the servers and services that use them.
  std::unique_ptr<TlsCertificates> tls_;  // null without TLS
  std::unique_ptr<TokenFile> admin_token_;
  std::unique_ptr<TokenFile> api_token_;
  std::unique_ptr<CallAuthorizer> admin_authorizer_;
  std::unique_ptr<CallAuthorizer> api_authorizer_;  // null without api.token_file
  std::unique_ptr<RouterRuntime> runtime_;
  std::unique_ptr<RouterService> router_service_;
  std::unique_ptr<AdminService> admin_service_;
  std::unique_ptr<ExtProcService> ext_proc_service_;
  std::unique_ptr<ExtProcService> gateway_ext_proc_service_;  // gateway.listen's (one per server)
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<grpc::Server> gateway_server_;
  std::unique_ptr<grpc::Server> admin_server_;  // null without admin.listen
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;
  int admin_port_ = 0;
  int metrics_port_ = 0;
  int ext_proc_port_ = 0;
  absl::Mutex reload_credentials_mu_;
  absl::Notification stop_watching_;
  std::thread watcher_;
  absl::Mutex shutdown_mu_;
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;
  // The ledger ticker (shared ledger only).
  void TickLedger(bool health_follows);
  absl::Mutex ticker_mu_;
  bool ticker_stop_ ABSL_GUARDED_BY(ticker_mu_) = false;
  std::thread ticker_;
};

}  // namespace router::server

#endif  // ROUTER_SERVER_ROUTERD_H_
