#include "server/query_intake.h"

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"

namespace router::server {
namespace {

absl::Status Invalid(absl::string_view field, absl::string_view sub, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ".", sub, ": ", what));
}

void SetDuration(absl::Duration d, google::protobuf::Duration* out) {
  const int64_t nanos = absl::ToInt64Nanoseconds(d);
  out->set_seconds(nanos / 1'000'000'000);
  out->set_nanos(static_cast<int32_t>(nanos % 1'000'000'000));
}

v1::SolverStatus ToProto(core::SolveStatus s) {
  switch (s) {
    case core::SolveStatus::kOptimal:
      return v1::SOLVER_STATUS_OPTIMAL;
    case core::SolveStatus::kFeasible:
      return v1::SOLVER_STATUS_FEASIBLE;
    case core::SolveStatus::kHeuristic:
      return v1::SOLVER_STATUS_HEURISTIC;
  }
  return v1::SOLVER_STATUS_UNSPECIFIED;
}

}  // namespace

absl::StatusOr<core::PendingQuery> PrepareQuery(const v1::Query& query, absl::string_view field,
                                                const RuntimeState& state) {
  if (query.id().empty()) return Invalid(field, "id", "required");
  if (query.id().size() > kMaxQueryIdBytes) {
    return Invalid(field, "id", absl::StrCat("longer than ", kMaxQueryIdBytes, " bytes"));
  }
  const bool has_embedding = query.embedding_size() > 0;
  if (!has_embedding && query.text().empty()) {
    return Invalid(field, "text", "required (or send an embedding instead)");
  }
  if (static_cast<int64_t>(query.text().size()) > state.config.max_text_bytes) {
    return Invalid(field, "text",
                   absl::StrCat(query.text().size(), " bytes is over the limit of ",
                                state.config.max_text_bytes, " (limits.max_text_bytes)"));
  }
  if (has_embedding) {
    if (query.embedding_size() != state.predictor->feature_dim()) {
      return Invalid(field, "embedding",
                     absl::StrCat("expected ", state.predictor->feature_dim(), " values, got ",
                                  query.embedding_size()));
    }
    for (int k = 0; k < query.embedding_size(); ++k) {
      if (!std::isfinite(query.embedding(k))) {
        return Invalid(field, absl::StrCat("embedding[", k, "]"), "not finite");
      }
    }
  }
  if (absl::StatusOr<std::optional<RoutingMode>> mode = RequestedMode(query, field); !mode.ok()) {
    return mode.status();
  }
  if (query.input_tokens() < 0) return Invalid(field, "input_tokens", "must be >= 0");
  if (query.output_tokens() < 0) return Invalid(field, "output_tokens", "must be >= 0");
  core::PendingQuery pending;
  pending.query_id = query.id();
  for (int k = 0; k < query.allowed_models_size(); ++k) {
    const std::string& name = query.allowed_models(k);
    const auto& pool = state.batch_context->pool;
    if (std::none_of(pool.begin(), pool.end(),
                     [&](const core::DeployedModel& d) { return d.name == name; })) {
      return Invalid(field, absl::StrCat("allowed_models[", k, "]"),
                     absl::StrCat("unknown model '", name, "'"));
    }
    for (int e = 0; e < k; ++e) {
      if (query.allowed_models(e) == name) {
        return Invalid(field, absl::StrCat("allowed_models[", k, "]"),
                       absl::StrCat("model '", name, "' listed twice"));
      }
    }
    pending.allowed.push_back(name);
  }

  core::PredictRequest request;
  request.text = query.text();
  if (has_embedding) {
    request.embedding = absl::MakeConstSpan(query.embedding().data(), query.embedding_size());
  }
  if (!query.task().empty()) request.task = query.task();
  if (query.input_tokens() > 0) request.input_tokens = static_cast<double>(query.input_tokens());
  if (query.output_tokens() > 0) request.output_tokens = static_cast<double>(query.output_tokens());
  absl::StatusOr<std::vector<core::ModelPrediction>> predictions = state.predictor->Predict(request);
  if (!predictions.ok()) {
    return absl::Status(predictions.status().code(),
                        absl::StrCat(field, ": ", predictions.status().message()));
  }
  pending.predicted_models = state.predicted_models;
  pending.quality.reserve(predictions->size());
  for (const core::ModelPrediction& p : *predictions) {
    pending.quality.push_back(p.quality);
    pending.quality_lower.push_back(p.quality_lower);
    pending.cost_usd.push_back(p.cost_usd);
  }
  return pending;
}

absl::StatusOr<std::optional<RoutingMode>> RequestedMode(const v1::Query& query,
                                                         absl::string_view field) {
  switch (query.mode()) {
    case v1::ROUTING_MODE_UNSPECIFIED:
      return std::nullopt;
    case v1::ROUTING_MODE_BATCH:
      return RoutingMode::kBatch;
    case v1::ROUTING_MODE_INLINE:
      return RoutingMode::kInline;
    case v1::ROUTING_MODE_AUTO:
      return RoutingMode::kAuto;
    default:
      return Invalid(field, "mode",
                     absl::StrCat("unknown routing mode ", static_cast<int>(query.mode()),
                                  " (ROUTING_MODE_BATCH, _INLINE or _AUTO, or unset)"));
  }
}

RoutingMode DecidingMode(const v1::Query& query, const RuntimeState& state,
                         absl::Duration time_left) {
  absl::StatusOr<std::optional<RoutingMode>> requested = RequestedMode(query, "query");
  return ResolveRoutingMode(requested.ok() ? *requested : std::nullopt, query.tenant(),
                            state.config.routing, time_left,
                            BatchLatency(state.config.batching.max_batch_delay,
                                         state.config.policy.time_limit));
}

namespace {

// What every assignment says, whichever mode decided it.
void FillRouted(const core::QueryOutcome& outcome, v1::Assignment* out) {
  out->set_model(outcome.model);
  out->set_predicted_quality(outcome.quality);
  out->set_predicted_quality_lower(outcome.quality_lower);
  out->set_predicted_cost_usd(outcome.cost_usd);
  out->set_assignment_id(outcome.assignment_id);
  SetDuration(outcome.lease_timeout, out->mutable_lease_timeout());
  for (const std::string& f : outcome.fallbacks) out->add_fallback_models(f);
}

}  // namespace

void FillAssignment(const core::BatchOutcome& batch, const core::QueryOutcome& outcome,
                    absl::Time arrival, absl::Time batch_closed, v1::Assignment* out) {
  FillRouted(outcome, out);
  v1::Decision* d = out->mutable_decision();
  d->set_batch_id(batch.batch_id);
  d->set_batch_size(static_cast<int32_t>(batch.size));
  d->set_policy(std::string(core::PolicyKindName(batch.policy)));
  d->set_solver_status(ToProto(batch.status));
  d->set_relative_gap(batch.relative_gap);
  d->set_method(batch.method);
  SetDuration(std::max(absl::ZeroDuration(), batch_closed - arrival), d->mutable_waited());
  SetDuration(batch.solve_time, d->mutable_solve_time());
  for (const std::string& b : batch.binding_constraints) d->add_binding_constraints(b);
  out->set_decision_mode(v1::ROUTING_MODE_BATCH);
}

void FillInlineAssignment(const std::string& query_id, const core::InlineDecision& decision,
                          v1::Assignment* out) {
  out->set_query_id(query_id);
  FillRouted(decision.outcome, out);
  out->set_decision_mode(v1::ROUTING_MODE_INLINE);
  v1::InlineDecision* d = out->mutable_inline_decision();
  d->set_lambda_per_usd(decision.lambda);
  d->set_slot_price(decision.slot_price);
  d->set_window_id(decision.window_id);
  d->set_position_in_window(decision.position_in_window);
  d->set_expected_after(decision.expected_after);
  d->set_window_cap_usd(decision.window_cap_usd);
  d->set_window_spent_usd(decision.window_spent_usd);
  d->set_guarded(decision.guarded);
  SetDuration(decision.decision_time, d->mutable_decision_time());
}

}  // namespace router::server
