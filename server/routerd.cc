#include "server/routerd.h"

#include <exception>
#include <memory>
#include <tuple>
#include <iostream>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/impl/server_builder_option.h"
#include "grpcpp/impl/server_builder_plugin.h"
#include "grpcpp/resource_quota.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "router_core/estimate/artifact.h"
#include "server/log.h"

#ifndef ROUTER_DEFAULT_ESTIMATOR
#error "ROUTER_DEFAULT_ESTIMATOR must be defined by the build"
#endif
#ifndef ROUTER_VERSION
#define ROUTER_VERSION "dev"
#endif

namespace router::server {
namespace {

constexpr char kRouterService[] = "router.v1.Router";
constexpr char kExtProcService[] = "envoy.service.ext_proc.v3.ExternalProcessor";

// Serves gRPC's reflection service on one server (`on`) or keeps it off that server. Not gRPC's
// InitProtoReflectionServerBuilderPlugin: that adds reflection to every server the process builds
// from then on and cannot be undone, so a second Routerd in the process (tests, benchmarks) with
// `reflection: false` would still serve it; a plugin registered that way is removed here too.
class ReflectionOption final : public grpc::ServerBuilderOption {
 public:
  explicit ReflectionOption(bool on) : on_(on) {}
  void UpdateArguments(grpc::ChannelArguments*) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>* plugins) override {
    // The name gRPC's ProtoServerReflectionPlugin gives itself.
    std::erase_if(*plugins, [](const std::unique_ptr<grpc::ServerBuilderPlugin>& p) {
      return p->name() == "proto_server_reflection";
    });
    if (on_) plugins->push_back(std::make_unique<grpc::reflection::ProtoServerReflectionPlugin>());
  }

 private:
  const bool on_;
};

// The `grpc` section's limits, reflection, and the settings every listener shares.
void ApplyServerLimits(const GrpcServerConfig& g, bool reflection, absl::Duration shutdown_grace,
                       grpc::ServerBuilder& builder) {
  builder.SetOption(std::make_unique<ReflectionOption>(reflection));
  const auto ms = [](absl::Duration d) { return static_cast<int>(absl::ToInt64Milliseconds(d)); };
  builder.SetMaxReceiveMessageSize(static_cast<int>(g.max_receive_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(g.max_send_message_bytes));
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                             static_cast<int>(g.max_concurrent_streams));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  // Keepalive enforcement: a client pinging more often than this (without data) gets a strike;
  // past max_ping_strikes its connection is closed with GOAWAY too_many_pings.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             ms(g.min_ping_interval));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, static_cast<int>(g.max_ping_strikes));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  if (g.max_connection_idle > absl::ZeroDuration()) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS, ms(g.max_connection_idle));
  }
  if (g.max_connection_age > absl::ZeroDuration()) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS, ms(g.max_connection_age));
    // Calls open at the age limit get the shutdown grace to finish.
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS, ms(shutdown_grace));
  }
  // A second routerd on the same port must fail to start, not share the port silently.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
}

// Logs what the configuration leaves open beyond this machine.
void WarnAboutExposure(const RouterConfig& c) {
  const std::string& admin_address = c.admin.listen.empty() ? c.listen : c.admin.listen;
  if (!c.tls.enabled()) {
    for (const auto& [key, file, address] :
         {std::tuple{"admin.token_file", &c.admin.token_file, &admin_address},
          std::tuple{"api.token_file", &c.api_token_file, &c.listen}}) {
      if (file->empty() || IsLoopbackAddress(*address)) continue;
      Log("warning", "token_in_clear",
          absl::StrCat("warning: ", key, " is set but ", *address,
                       " serves without TLS: the token crosses the network in clear"),
          {{"key", std::string(key)}, {"address", *address}});
    }
  }
}

const char* OutcomeVerb(ReloadOutcome outcome) {
  switch (outcome) {
    case ReloadOutcome::kUnchanged: return "unchanged";
    case ReloadOutcome::kReplaced: return "replaced";
    case ReloadOutcome::kRejected: return "refused";
    case ReloadOutcome::kRejectedAgain: return "still refused";
  }
  return "?";
}

}  // namespace

const char* DefaultEstimatorPath() { return ROUTER_DEFAULT_ESTIMATOR; }
const char* RouterdVersion() { return ROUTER_VERSION; }

absl::StatusOr<std::unique_ptr<Routerd>> Routerd::Start(RouterConfig config,
                                                        std::string config_path) {
  // Flags may have moved the listeners since the file was checked.
  if (absl::Status s = CheckSecurityKeys(config); !s.ok()) return s;
  std::unique_ptr<Routerd> d(new Routerd());
  d->config_path_ = std::move(config_path);
  if (!d->config_path_.empty()) {
    absl::StatusOr<RouterConfig> file = LoadConfigFile(d->config_path_);
    if (!file.ok()) return file.status();
    d->file_at_start_ = *std::move(file);
  }
  const std::string artifact_path =
      config.estimator.empty() ? std::string(DefaultEstimatorPath()) : config.estimator;
  absl::StatusOr<core::Artifact> artifact = core::ReadArtifactFile(artifact_path);
  if (!artifact.ok()) {
    return absl::Status(artifact.status().code(),
                        absl::StrCat("estimator: ", artifact.status().message()));
  }
  absl::StatusOr<core::Predictor> predictor = core::MakePredictor(*std::move(artifact));
  // What a learning snapshot was learned with (outcome_learning.h).
  absl::StatusOr<std::string> artifact_sha256 = FileSha256(artifact_path);
  if (!artifact_sha256.ok()) {
    return absl::Status(artifact_sha256.status().code(),
                        absl::StrCat("estimator: ", artifact_sha256.status().message()));
  }
  if (!predictor.ok()) {
    return absl::Status(predictor.status().code(),
                        absl::StrCat("estimator '", artifact_path, "': ", predictor.status().message()));
  }
  d->metrics_ = std::make_unique<PrometheusMetrics>(RouterdVersion());
  if (absl::Status s = d->LoadCredentials(config); !s.ok()) return s;
  const RouterConfig startup = config;  // the startup-only keys, for the servers below
  const bool shared_ledger = startup.ledger_backend.redis;
  const bool health_follows = startup.ledger_backend.health_requires_ledger;
  absl::StatusOr<std::unique_ptr<RouterRuntime>> runtime = RouterRuntime::Create(
      std::move(config), std::make_shared<const core::Predictor>(*std::move(predictor)),
      d->metrics_.get(), &core::Clock::Real(), *std::move(artifact_sha256));
  if (!runtime.ok()) return runtime.status();
  d->runtime_ = *std::move(runtime);
  d->router_service_ =
      std::make_unique<RouterService>(d->runtime_.get(), d->api_authorizer_.get());
  d->admin_service_ =
      std::make_unique<AdminService>(d->runtime_.get(), d->admin_authorizer_.get());
  d->ext_proc_service_ =
      std::make_unique<ExtProcService>(d->runtime_.get(), d->api_authorizer_.get());

  grpc::EnableDefaultHealthCheckService(true);
  const bool separate_admin = !startup.admin.listen.empty();
  {
    grpc::ServerBuilder builder;
    ApplyServerLimits(startup.grpc, startup.reflection, startup.shutdown_grace, builder);
    builder.AddListeningPort(startup.listen, d->ListenerCredentials(), &d->port_);
    builder.RegisterService(d->router_service_.get());
    if (!separate_admin) builder.RegisterService(d->admin_service_.get());
    builder.RegisterService(d->ext_proc_service_.get());
    grpc::ResourceQuota quota("routerd");
    quota.Resize(512 << 20);
    builder.SetResourceQuota(quota);
    d->server_ = builder.BuildAndStart();
  }
  if (d->server_ == nullptr) {
    d->runtime_->StopBatches(absl::Now());
    return absl::UnavailableError(absl::StrCat("listen: cannot listen on '", startup.listen, "'"));
  }
  // The whole server ("") is SERVING whatever the ledger: liveness never depends on Redis. The
  // Router and ext_proc services may follow the shared ledger's health (readiness).
  const bool ready = !(health_follows && d->runtime_->ledger_degraded());
  d->server_->GetHealthCheckService()->SetServingStatus(kRouterService, ready);
  d->server_->GetHealthCheckService()->SetServingStatus("", true);
  if (separate_admin) {
    grpc::ServerBuilder builder;
    ApplyServerLimits(startup.grpc, startup.reflection, startup.shutdown_grace, builder);
    builder.AddListeningPort(startup.admin.listen, d->ListenerCredentials(), &d->admin_port_);
    builder.RegisterService(d->admin_service_.get());
    grpc::ResourceQuota quota("routerd-admin");
    quota.Resize(64 << 20);
    builder.SetResourceQuota(quota);
    d->admin_server_ = builder.BuildAndStart();
    if (d->admin_server_ == nullptr) {
      d->Shutdown(absl::ZeroDuration(), absl::ZeroDuration());
      return absl::UnavailableError(
          absl::StrCat("admin.listen: cannot listen on '", startup.admin.listen, "'"));
    }
  }
  WarnAboutExposure(startup);
  if (startup.credentials_reload > absl::ZeroDuration() &&
      (d->tls_ != nullptr || d->admin_token_ != nullptr || d->api_token_ != nullptr)) {
    Routerd* raw = d.get();
    d->watcher_ = std::thread(
        [raw, interval = startup.credentials_reload] { raw->WatchCredentials(interval); });
  }

  if (!startup.gateway.listen.empty()) {
    // Its own server: a grpc::Service is registered with one server only.
    d->gateway_ext_proc_service_ =
        std::make_unique<ExtProcService>(d->runtime_.get(), d->api_authorizer_.get());
    grpc::ServerBuilder gateway_builder;
    ApplyServerLimits(startup.grpc, /*reflection=*/false, startup.shutdown_grace, gateway_builder);
    gateway_builder.AddListeningPort(startup.gateway.listen, d->ListenerCredentials(),
                                     &d->ext_proc_port_);
    gateway_builder.RegisterService(d->gateway_ext_proc_service_.get());
    d->gateway_server_ = gateway_builder.BuildAndStart();
    if (d->gateway_server_ == nullptr) {
      d->Shutdown(absl::ZeroDuration(), absl::ZeroDuration());
      return absl::UnavailableError(
          absl::StrCat("gateway.listen: cannot listen on '", startup.gateway.listen, "'"));
    }
    d->gateway_server_->GetHealthCheckService()->SetServingStatus(kExtProcService, ready);
    d->gateway_server_->GetHealthCheckService()->SetServingStatus("", true);
  }
  d->server_->GetHealthCheckService()->SetServingStatus(kExtProcService, ready);
  if (shared_ledger) {  // after both servers exist: the ticker sets their readiness
    Routerd* raw = d.get();
    d->ticker_ = std::thread([raw, health_follows] { raw->TickLedger(health_follows); });
  }

  const std::string& metrics_listen = startup.metrics_listen;
  if (!metrics_listen.empty()) {
    try {
      d->exposer_ = std::make_unique<prometheus::Exposer>(metrics_listen, 1);
    } catch (const std::exception& e) {
      d->Shutdown(absl::ZeroDuration(), absl::ZeroDuration());
      return absl::UnavailableError(
          absl::StrCat("metrics_listen: cannot listen on '", metrics_listen, "': ", e.what()));
    }
    d->exposer_->RegisterCollectable(d->metrics_->registry());
    d->metrics_port_ = d->exposer_->GetListeningPorts().at(0);
  }
  return d;
}

Routerd::~Routerd() { Shutdown(absl::ZeroDuration(), absl::ZeroDuration()); }

absl::Status Routerd::LoadCredentials(const RouterConfig& config) {
  if (config.tls.enabled()) {
    absl::StatusOr<std::unique_ptr<TlsCertificates>> tls = TlsCertificates::Create(config.tls);
    if (!tls.ok()) return tls.status();
    tls_ = *std::move(tls);
    metrics_->OnServedCertificateExpiry(tls_->not_after());
  }
  if (!config.admin.token_file.empty()) {
    absl::StatusOr<std::unique_ptr<TokenFile>> token =
        TokenFile::Load("admin.token_file", config.admin.token_file);
    if (!token.ok()) return token.status();
    admin_token_ = *std::move(token);
  }
  if (!config.api_token_file.empty()) {
    absl::StatusOr<std::unique_ptr<TokenFile>> token =
        TokenFile::Load("api.token_file", config.api_token_file);
    if (!token.ok()) return token.status();
    api_token_ = *std::move(token);
  }
  admin_authorizer_ = std::make_unique<CallAuthorizer>(CallAuthorizer::Options{
      .service = "RouterAdmin",
      .open = config.admin.allow_unauthenticated,
      .token = admin_token_.get(),
      .allowed_identities = config.admin.allowed_identities,
      .configured_by = "admin.token_file or admin.allowed_identities"});
  if (api_token_ != nullptr) {
    api_authorizer_ = std::make_unique<CallAuthorizer>(CallAuthorizer::Options{
        .service = "Router",
        .open = false,
        .token = api_token_.get(),
        .allowed_identities = {},
        .configured_by = "api.token_file"});
  }
  return absl::OkStatus();
}

std::shared_ptr<grpc::ServerCredentials> Routerd::ListenerCredentials() {
  return tls_ != nullptr ? tls_->NewServerCredentials() : grpc::InsecureServerCredentials();
}

absl::Status Routerd::ReloadCredentials(bool log_repeats) {
  absl::MutexLock lock(&reload_credentials_mu_);
  absl::Status first;
  auto report = [&](const char* credential, const ReloadResult& r) {
    if (r.outcome == ReloadOutcome::kRejected) metrics_->OnCredentialReloadFailure(credential);
    if (r.outcome == ReloadOutcome::kRejected ||
        (log_repeats && r.outcome == ReloadOutcome::kRejectedAgain)) {
      Log("error", "credential_refused",
          absl::StrCat(credential, ": new contents ", OutcomeVerb(r.outcome),
                       ", the old ones stay in use: ", r.error.message()),
          {{"credential", std::string(credential)}, {"reason", std::string(r.error.message())}});
    }
    if (first.ok()) first = r.error;
  };
  if (tls_ != nullptr) {
    const ReloadResult r = tls_->Reload();
    if (r.outcome == ReloadOutcome::kReplaced) {
      metrics_->OnServedCertificateExpiry(tls_->not_after());
      const std::string until = absl::FormatTime(tls_->not_after(), absl::UTCTimeZone());
      Log("info", "certificate_replaced",
          absl::StrCat("tls: new connections get the certificate ", tls_->subject(),
                       " (valid until ", until, ")"),
          {{"subject", tls_->subject()}, {"not_after", until}});
    }
    report("tls", r);
  }
  for (const auto& [credential, token] :
       {std::pair{"admin_token", admin_token_.get()}, std::pair{"api_token", api_token_.get()}}) {
    if (token == nullptr) continue;
    const ReloadResult r = token->Reload();
    if (r.outcome == ReloadOutcome::kReplaced) {
      Log("info", "token_replaced", absl::StrCat(token->key(), ": the new token is in use"),
          {{"key", token->key()}});
    }
    report(credential, r);
  }
  return first;
}

void Routerd::WatchCredentials(absl::Duration interval) {
  while (!stop_watching_.WaitForNotificationWithTimeout(interval)) {
    (void)ReloadCredentials(/*log_repeats=*/false);
  }
}

void Routerd::TickLedger(bool health_follows) {
  bool serving = !(health_follows && runtime_->ledger_degraded());
  for (;;) {
    {
      absl::MutexLock lock(&ticker_mu_);
      if (ticker_mu_.AwaitWithTimeout(absl::Condition(&ticker_stop_), absl::Seconds(1))) return;
      // Reads through the ledger (and, failing, keep it degraded until Redis answers again).
      runtime_->PublishLedgerGauges();
      const bool now_serving = !(health_follows && runtime_->ledger_degraded());
      // Under ticker_mu_, so a shutdown that stopped the ticker is never overridden.
      if (health_follows && now_serving != serving && server_ != nullptr) {
        server_->GetHealthCheckService()->SetServingStatus(kRouterService, now_serving);
        server_->GetHealthCheckService()->SetServingStatus(kExtProcService, now_serving);
        if (gateway_server_ != nullptr) {
          gateway_server_->GetHealthCheckService()->SetServingStatus(kExtProcService, now_serving);
        }
        std::cerr << "routerd: shared ledger " << (now_serving ? "healthy again: SERVING"
                                                               : "degraded: NOT_SERVING")
                  << std::endl;
      }
      serving = now_serving;
    }
  }
}

absl::Status Routerd::Reload() {
  if (config_path_.empty()) {
    return absl::FailedPreconditionError("routerd was started without --config; nothing to reload");
  }
  const std::shared_ptr<const RuntimeState> state = runtime_->state();
  const RouterConfig& current = state->config;
  absl::StatusOr<RouterConfig> next = LoadConfigFile(config_path_);
  if (!next.ok()) return next.status();
  // Startup-only keys take effect only at a start: a file that changes one is refused as a whole,
  // rather than applied in part. Flags may have overridden them at this start, so the file is
  // compared with itself as it was then.
  if (std::optional<std::string> key = ChangedStartupKey(*next, file_at_start_)) {
    return absl::FailedPreconditionError(absl::StrCat(
        *key, ": a startup-only key changed in ", config_path_,
        "; restart routerd to apply it (nothing applied)"));
  }
  CopyStartupKeys(current, *next);
  absl::StatusOr<uint64_t> generation =
      runtime_->UpdateConfig(*next, std::nullopt, /*dry_run=*/false);
  if (!generation.ok()) return generation.status();
  for (const std::string& limit : RemovedLimits(current, *next)) {
    Log("warning", "limit_removed", absl::StrCat("reload removes a limit: ", limit),
        {{"by", std::string("reload")}, {"limit", limit}});
  }
  return absl::OkStatus();
}

void Routerd::Shutdown(absl::Duration drain, absl::Duration grace) {
  absl::MutexLock lock(&shutdown_mu_);
  if (shut_down_ || runtime_ == nullptr) return;  // nothing started (Start failed early)
  shut_down_ = true;
  stop_watching_.Notify();
  if (watcher_.joinable()) watcher_.join();
  if (ticker_.joinable()) {
    {
      absl::MutexLock lock(&ticker_mu_);
      ticker_stop_ = true;
    }
    ticker_.join();
  }
  if (server_ != nullptr) server_->GetHealthCheckService()->SetServingStatus(kRouterService, false);
  for (grpc::Server* server : {server_.get(), gateway_server_.get()}) {
    if (server == nullptr) continue;
    server->GetHealthCheckService()->SetServingStatus(kExtProcService, false);
    server->GetHealthCheckService()->SetServingStatus("", false);
  }
  if (server_ != nullptr) absl::SleepFor(drain);
  runtime_->StopAccepting();  // batch and inline work alike
  const absl::Time deadline = absl::Now() + grace;
  runtime_->StopBatches(deadline);
  // Linger while calls keep arriving (each is answered UNAVAILABLE at once) or being answered: gRPC
  // 1.51's Server::Shutdown ends with CANCELLED, a status a gateway does not retry, every call
  // whose request it has not handed to a handler yet and every call that reaches it afterwards.
  // An answer sent counts because it frees a stream: a client at the stream limit
  // (grpc.max_concurrent_streams) holds further calls back while routerd's queued queries fill its
  // streams, so none arrives while they wait, and they arrive once those answers reach it. So the
  // server closes once no Route or RouteBatch call is open and none arrived or closed for a quiet
  // period, or at the deadline.
  while (absl::Now() < deadline &&
         (runtime_->open_unary_calls() > 0 ||
          absl::Now() - runtime_->last_activity() < kShutdownQuietPeriod)) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  if (server_ != nullptr) {
    // Calls already in a handler are answered (the stopped scheduler refuses them UNAVAILABLE);
    // only calls open past the deadline (idle streams) are cancelled by gRPC.
    const absl::Time stop = std::max(deadline, absl::Now() + absl::Milliseconds(200));
    server_->Shutdown(absl::ToChronoTime(stop));
    if (gateway_server_ != nullptr) gateway_server_->Shutdown(absl::ToChronoTime(stop));
    server_->Wait();
    if (gateway_server_ != nullptr) gateway_server_->Wait();
  }
  if (admin_server_ != nullptr) {
    // Admin calls answer at once, except a plan, which ends within its own time limit.
    admin_server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Milliseconds(200)));
    admin_server_->Wait();
  }
  // No Complete (and no reset) can arrive any more: the last snapshot has every outcome.
  runtime_->FinishLearning();
  exposer_.reset();
}

}  // namespace router::server
