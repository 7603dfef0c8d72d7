#include "server/admin_service.h"

#include <algorithm>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "router_core/planner/plan_json.h"
#include "server/log.h"
#include "server/raw_message.h"
#include "server/status_util.h"

namespace router::server {

grpc::ServerUnaryReactor* AdminService::Answer(grpc::CallbackServerContext* ctx,
                                               absl::string_view method, absl::Time start,
                                               const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  runtime_->metrics().OnRequest(method, static_cast<grpc::StatusCode>(status.code()),
                                runtime_->clock().Now() - start);
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

template <typename Request, typename Response>
grpc::ServerUnaryReactor* AdminService::Serve(
    grpc::CallbackServerContext* ctx, absl::string_view method, const grpc::ByteBuffer* raw_request,
    grpc::ByteBuffer* raw_response,
    absl::Status (AdminService::*handle)(const Request&, Response&)) {
  const absl::Time start = runtime_->clock().Now();
  Request request;
  Response response;
  absl::Status status = authorizer_->Check(*ctx);
  if (status.ok()) status = ParseRequest(*raw_request, request);
  if (status.ok()) status = (this->*handle)(request, response);
  if (status.ok()) SerializeAnswer(response, *raw_response);
  return Answer(ctx, method, start, status);
}

absl::Status AdminService::FillStatus(const RuntimeState& state, const std::string& name,
                              v1::ModelStatus* out) {
  v1::ModelDeployment* d = out->mutable_deployment();
  d->set_name(name);
  for (const ModelDeploymentConfig& m : state.config.models) {
    if (m.name == name) {
      d->set_instances(static_cast<int32_t>(m.instances));
      d->set_slots_per_instance(static_cast<int32_t>(m.slots_per_instance));
    }
  }
  int64_t total = -1;
  for (const core::DeployedModel& p : state.pool) {
    if (p.name == name && p.slots.has_value()) total = *p.slots;
  }
  out->set_slots_total(total);
  absl::StatusOr<int64_t> in_use = runtime_->ledger().InUse(name);
  if (!in_use.ok()) return in_use.status();
  out->set_slots_in_use(*in_use);
  const auto& known = state.predictor->models();
  out->set_in_estimator(std::find(known.begin(), known.end(), name) != known.end());
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* AdminService::ListModels(grpc::CallbackServerContext* ctx,
                                                   const grpc::ByteBuffer* request,
                                                   grpc::ByteBuffer* response) {
  return Serve(ctx, "ListModels", request, response, &AdminService::DoListModels);
}

absl::Status AdminService::DoListModels(const v1::ListModelsRequest&,
                                        v1::ListModelsResponse& response) {
  const std::shared_ptr<const RuntimeState> state = runtime_->state();
  for (const core::DeployedModel& p : state->pool) {
    if (absl::Status s = FillStatus(*state, p.name, response.add_models()); !s.ok()) return s;
  }
  response.set_config_generation(state->generation);
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* AdminService::UpsertModel(grpc::CallbackServerContext* ctx,
                                                    const grpc::ByteBuffer* request,
                                                    grpc::ByteBuffer* response) {
  return Serve(ctx, "UpsertModel", request, response, &AdminService::DoUpsertModel);
}

absl::Status AdminService::DoUpsertModel(const v1::UpsertModelRequest& request,
                                         v1::UpsertModelResponse& response) {
  ModelDeploymentConfig deployment;
  deployment.name = request.deployment().name();
  deployment.instances = request.deployment().instances();
  deployment.slots_per_instance = request.deployment().slots_per_instance();
  std::optional<NewModel> new_model;
  if (request.validation_size() > 0 || request.has_input_usd_per_mtok() ||
      request.has_output_usd_per_mtok() || request.has_mean_cost_usd()) {
    NewModel nm;
    for (const v1::ValidationResult& v : request.validation()) {
      nm.texts.push_back(v.text());
      nm.embeddings.emplace_back(v.embedding().begin(), v.embedding().end());
      nm.scores.push_back(v.score());
    }
    if (request.has_input_usd_per_mtok()) nm.input_usd_per_mtok = request.input_usd_per_mtok();
    if (request.has_output_usd_per_mtok()) nm.output_usd_per_mtok = request.output_usd_per_mtok();
    if (request.has_mean_cost_usd()) nm.mean_cost_usd = request.mean_cost_usd();
    new_model = std::move(nm);
  }
  absl::StatusOr<uint64_t> generation = runtime_->UpsertModel(deployment, new_model);
  if (!generation.ok()) return generation.status();
  response.set_config_generation(*generation);
  return FillStatus(*runtime_->state(), deployment.name, response.mutable_model());
}

grpc::ServerUnaryReactor* AdminService::RemoveModel(grpc::CallbackServerContext* ctx,
                                                    const grpc::ByteBuffer* request,
                                                    grpc::ByteBuffer* response) {
  return Serve(ctx, "RemoveModel", request, response, &AdminService::DoRemoveModel);
}

absl::Status AdminService::DoRemoveModel(const v1::RemoveModelRequest& request,
                                         v1::RemoveModelResponse& response) {
  absl::StatusOr<uint64_t> generation = runtime_->RemoveModel(request.name());
  if (generation.ok()) response.set_config_generation(*generation);
  return generation.status();
}

grpc::ServerUnaryReactor* AdminService::GetConfig(grpc::CallbackServerContext* ctx,
                                                  const grpc::ByteBuffer* request,
                                                  grpc::ByteBuffer* response) {
  return Serve(ctx, "GetConfig", request, response, &AdminService::DoGetConfig);
}

absl::Status AdminService::DoGetConfig(const v1::GetConfigRequest&,
                                       v1::GetConfigResponse& response) {
  const std::shared_ptr<const RuntimeState> state = runtime_->state();
  response.set_yaml(ConfigToYaml(state->config));
  response.set_config_generation(state->generation);
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* AdminService::UpdateConfig(grpc::CallbackServerContext* ctx,
                                                     const grpc::ByteBuffer* request,
                                                     grpc::ByteBuffer* response) {
  return Serve(ctx, "UpdateConfig", request, response, &AdminService::DoUpdateConfig);
}

absl::Status AdminService::DoUpdateConfig(const v1::UpdateConfigRequest& request,
                                          v1::UpdateConfigResponse& response) {
  const std::shared_ptr<const RuntimeState> current = runtime_->state();
  absl::StatusOr<RouterConfig> next = ParseConfigUpdateYaml(request.yaml(), current->config);
  if (!next.ok()) return next.status();
  std::optional<uint64_t> expected;
  if (request.has_expected_generation()) expected = request.expected_generation();
  absl::StatusOr<uint64_t> generation = runtime_->UpdateConfig(*next, expected, request.dry_run());
  if (!generation.ok()) return generation.status();
  response.set_config_generation(*generation);
  if (!request.dry_run()) {
    for (const std::string& limit : RemovedLimits(current->config, *next)) {
      Log("warning", "limit_removed", absl::StrCat("UpdateConfig removes a limit: ", limit),
          {{"by", std::string("UpdateConfig")}, {"limit", limit}});
    }
  }
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* AdminService::GetLearnedStats(grpc::CallbackServerContext* ctx,
                                                        const grpc::ByteBuffer* request,
                                                        grpc::ByteBuffer* response) {
  return Serve(ctx, "GetLearnedStats", request, response, &AdminService::DoGetLearnedStats);
}

grpc::ServerUnaryReactor* AdminService::ResetLearnedStats(grpc::CallbackServerContext* ctx,
                                                          const grpc::ByteBuffer* request,
                                                          grpc::ByteBuffer* response) {
  return Serve(ctx, "ResetLearnedStats", request, response, &AdminService::DoResetLearnedStats);
}

namespace {

// The optional model and cluster filters of a learned-stats request.
template <typename Request>
absl::Status ReadFilter(const Request& request, std::optional<std::string>& model,
                        std::optional<int>& cluster) {
  if (request.has_model()) {
    if (request.model().empty()) {
      return absl::InvalidArgumentError("model: empty (omit it for every model)");
    }
    model = request.model();
  }
  if (request.has_cluster()) {
    if (request.cluster() < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("cluster: must be >= 0, got ", request.cluster()));
    }
    cluster = request.cluster();
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status AdminService::DoGetLearnedStats(const v1::GetLearnedStatsRequest& request,
                                             v1::GetLearnedStatsResponse& response) {
  std::optional<std::string> model;
  std::optional<int> cluster;
  if (absl::Status s = ReadFilter(request, model, cluster); !s.ok()) return s;
  OutcomeLearning& learning = runtime_->learning();
  response.set_enabled(runtime_->state()->config.learning.enabled);
  for (const core::OutcomeCell& c : learning.Cells(model, cluster)) {
    v1::LearnedCell* out = response.add_cells();
    out->set_model(c.model);
    out->set_cluster(c.cluster);
    out->set_weight(c.weight);
    out->set_observed_mean(c.observed_mean);
    out->set_prior_mean(c.prior_mean);
    out->set_learned_shift(c.learned_shift);
    out->set_outcomes(c.outcomes);
  }
  response.set_dropped_outcomes(learning.dropped_outcomes());
  return absl::OkStatus();
}

absl::Status AdminService::DoResetLearnedStats(const v1::ResetLearnedStatsRequest& request,
                                               v1::ResetLearnedStatsResponse& response) {
  std::optional<std::string> model;
  std::optional<int> cluster;
  if (absl::Status s = ReadFilter(request, model, cluster); !s.ok()) return s;
  absl::StatusOr<int64_t> reset = runtime_->learning().Reset(model, cluster);
  if (!reset.ok()) return reset.status();
  const int64_t removed = *reset;
  response.set_cells_removed(removed);
  Log("info", "learning_reset",
      absl::StrCat("learning: reset ", removed, " cells (model ", model.value_or("*"),
                   ", cluster ", cluster.has_value() ? absl::StrCat(*cluster) : "*", ")"),
      {{"model", model.value_or("*")},
       {"cluster", cluster.has_value() ? absl::StrCat(*cluster) : std::string("*")},
       {"cells_removed", removed}});
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* AdminService::PlanInstances(grpc::CallbackServerContext* ctx,
                                                      const grpc::ByteBuffer* raw_request,
                                                      grpc::ByteBuffer* raw_response) {
  const absl::Time start = runtime_->clock().Now();
  if (absl::Status s = authorizer_->Check(*ctx); !s.ok()) {
    return Answer(ctx, "PlanInstances", start, s);
  }
  auto request = std::make_unique<v1::PlanInstancesRequest>();
  if (absl::Status s = ParseRequest(*raw_request, *request); !s.ok()) {
    return Answer(ctx, "PlanInstances", start, s);
  }
  if (planning_.exchange(true)) {
    return Answer(ctx, "PlanInstances", start,
                  absl::ResourceExhaustedError("a plan is already running; retry when it is done"));
  }
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  // The reactor and raw_response stay valid until Finish; the service outlives the server.
  std::thread([this, reactor, request = std::move(request), raw_response, start] {
    absl::StatusOr<std::string> plan = core::PlanScenarioJson(request->scenario_json());
    if (plan.ok()) {
      v1::PlanInstancesResponse response;
      response.set_plan_json(*plan);
      SerializeAnswer(response, *raw_response);
    }
    const absl::Status status = plan.status();
    runtime_->metrics().OnRequest("PlanInstances", static_cast<grpc::StatusCode>(status.code()),
                                  runtime_->clock().Now() - start);
    planning_.store(false);
    reactor->Finish(ToGrpcStatus(status));
  }).detach();
  return reactor;
}

}  // namespace router::server
