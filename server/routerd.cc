#include "server/routerd.h"

#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
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

}  // namespace

const char* DefaultEstimatorPath() { return ROUTER_DEFAULT_ESTIMATOR; }
const char* RouterdVersion() { return ROUTER_VERSION; }

absl::StatusOr<std::unique_ptr<Routerd>> Routerd::Start(RouterConfig config,
                                                        std::string config_path) {
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
  if (!predictor.ok()) {
    return absl::Status(predictor.status().code(),
                        absl::StrCat("estimator '", artifact_path, "': ", predictor.status().message()));
  }
  d->metrics_ = std::make_unique<PrometheusMetrics>(RouterdVersion());
  const std::string listen = config.listen;
  const std::string gateway_listen = config.gateway.listen;
  const std::string metrics_listen = config.metrics_listen;
  const bool reflection = config.reflection;
  absl::StatusOr<std::unique_ptr<RouterRuntime>> runtime = RouterRuntime::Create(
      std::move(config), std::make_shared<const core::Predictor>(*std::move(predictor)),
      d->metrics_.get());
  if (!runtime.ok()) return runtime.status();
  d->runtime_ = *std::move(runtime);
  d->router_service_ = std::make_unique<RouterService>(d->runtime_.get());
  d->admin_service_ = std::make_unique<AdminService>(d->runtime_.get());
  d->ext_proc_service_ = std::make_unique<ExtProcService>(d->runtime_.get());

  grpc::EnableDefaultHealthCheckService(true);
  if (reflection) grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &d->port_);
  builder.RegisterService(d->router_service_.get());
  builder.RegisterService(d->admin_service_.get());
  builder.RegisterService(d->ext_proc_service_.get());
  // The largest legitimate requests are a RouteBatch of max_batch_request_queries texts and an
  // ext_proc request body (gateway.request.max_body_bytes), which is also sent back rewritten.
  builder.SetMaxReceiveMessageSize(kMaxGrpcMessageBytes);
  builder.SetMaxSendMessageSize(kMaxGrpcMessageBytes);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // A second routerd on the same port must fail to start, not share the port silently.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  grpc::ResourceQuota quota("routerd");
  quota.Resize(512 << 20);
  builder.SetResourceQuota(quota);
  d->server_ = builder.BuildAndStart();
  if (d->server_ == nullptr) {
    d->runtime_->StopBatches(absl::Now());
    return absl::UnavailableError(absl::StrCat("listen: cannot listen on '", listen, "'"));
  }
  d->server_->GetHealthCheckService()->SetServingStatus(kRouterService, true);
  d->server_->GetHealthCheckService()->SetServingStatus("", true);

  if (!gateway_listen.empty()) {
    // Its own server: a grpc::Service is registered with one server only.
    d->gateway_ext_proc_service_ = std::make_unique<ExtProcService>(d->runtime_.get());
    grpc::ServerBuilder gateway_builder;
    gateway_builder.AddListeningPort(gateway_listen, grpc::InsecureServerCredentials(),
                                     &d->ext_proc_port_);
    gateway_builder.RegisterService(d->gateway_ext_proc_service_.get());
    gateway_builder.SetMaxReceiveMessageSize(kMaxGrpcMessageBytes);
    gateway_builder.SetMaxSendMessageSize(kMaxGrpcMessageBytes);
    gateway_builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    d->gateway_server_ = gateway_builder.BuildAndStart();
    if (d->gateway_server_ == nullptr) {
      d->Shutdown(absl::ZeroDuration(), absl::ZeroDuration());
      return absl::UnavailableError(
          absl::StrCat("gateway.listen: cannot listen on '", gateway_listen, "'"));
    }
    d->gateway_server_->GetHealthCheckService()->SetServingStatus(kExtProcService, true);
    d->gateway_server_->GetHealthCheckService()->SetServingStatus("", true);
  }
  d->server_->GetHealthCheckService()->SetServingStatus(kExtProcService, true);

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
  for (const auto& [key, changed] :
       {std::pair{"listen", next->listen != file_at_start_.listen},
        std::pair{"metrics_listen", next->metrics_listen != file_at_start_.metrics_listen},
        std::pair{"estimator", next->estimator != file_at_start_.estimator},
        std::pair{"reflection", next->reflection != file_at_start_.reflection}}) {
    if (changed) {
      return absl::FailedPreconditionError(absl::StrCat(
          key, ": a startup-only key changed in ", config_path_,
          "; restart routerd to apply it (nothing applied)"));
    }
  }
  next->listen = current.listen;
  next->metrics_listen = current.metrics_listen;
  next->estimator = current.estimator;
  next->reflection = current.reflection;
  next->gateway.listen = current.gateway.listen;
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
  // Linger while calls keep arriving (each is answered UNAVAILABLE at once): gRPC's Shutdown kills
  // the calls it has received but not yet dispatched to a handler with CANCELLED, a status a
  // gateway does not retry. So the server closes only after a quiet period, or at the deadline.
  constexpr absl::Duration kQuietPeriod = absl::Milliseconds(200);
  while (absl::Now() < deadline && absl::Now() - runtime_->last_arrival() < kQuietPeriod) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  if (server_ != nullptr) {
    // Calls received but not yet dispatched to a handler (an overloaded server has many) are still
    // dispatched until the deadline and answered UNAVAILABLE by the stopped scheduler; only calls
    // open past the deadline (idle streams) are cancelled by gRPC.
    const absl::Time stop = std::max(deadline, absl::Now() + absl::Milliseconds(200));
    server_->Shutdown(absl::ToChronoTime(stop));
    if (gateway_server_ != nullptr) gateway_server_->Shutdown(absl::ToChronoTime(stop));
    server_->Wait();
    if (gateway_server_ != nullptr) gateway_server_->Wait();
  }
  exposer_.reset();
}

}  // namespace router::server
