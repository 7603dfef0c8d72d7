#include "server/query_intake.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "server/trace_context.h"

namespace router::server {
namespace {

absl::Status Invalid(absl::string_view field, absl::string_view sub, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ".", sub, ": ", what));
}

// The mode `query` asks for; nullopt for ROUTING_MODE_UNSPECIFIED.
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

}  // namespace

absl::StatusOr<Intake> TakeIn(const v1::Query& query, absl::string_view field,
                              const RuntimeState& state, absl::Time now, absl::Time deadline,
                              AdmitFn admit) {
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
  absl::StatusOr<std::optional<RoutingMode>> requested = RequestedMode(query, field);
  if (!requested.ok()) return requested.status();
  if (query.input_tokens() < 0) return Invalid(field, "input_tokens", "must be >= 0");
  if (query.output_tokens() < 0) return Invalid(field, "output_tokens", "must be >= 0");
  Intake intake;
  core::PendingQuery& pending = intake.query;
  const std::vector<core::DeployedModel>& pool = state.pool;
  for (int k = 0; k < query.allowed_models_size(); ++k) {
    const std::string& name = query.allowed_models(k);
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

  intake.mode = ResolveRoutingMode(*requested, query.tenant(), state.config.routing, deadline - now,
                                   BatchLatency(state.config.batching.max_batch_delay,
                                                state.config.policy.solve.time_limit));
  absl::StatusOr<AdmissionTicket> ticket = admit(query, intake.mode);
  if (!ticket.ok()) return ticket.status();
  intake.ticket = *std::move(ticket);

  // The predictor checks the embedding (its dimension and values) and names what is wrong.
  core::PredictRequest request;
  request.text = query.text();
  if (has_embedding) {
    request.embedding = absl::MakeConstSpan(query.embedding().data(), query.embedding_size());
  }
  if (!query.task().empty()) request.task = query.task();
  if (query.input_tokens() > 0) request.input_tokens = static_cast<double>(query.input_tokens());
  if (query.output_tokens() > 0) request.output_tokens = static_cast<double>(query.output_tokens());
  absl::StatusOr<core::Predictions> predictions = state.predictor->Predict(request);
  if (!predictions.ok()) {
    return absl::Status(predictions.status().code(),
                        absl::StrCat(field, ".", predictions.status().message()));
  }
  if (state.learner != nullptr) {
    // What was learned from outcomes (outcome_learner.h), before any pool view or solve reads the
    // predictions, whichever mode decides the query; the prior stays for the assignment.
    thread_local absl::BitGen rng;
    if (!state.cold_columns.empty()) {
      // A cold-start model has no prediction of its own: its column is the query's baseline (how
      // hard the query is for the others), which its outcomes are then recorded against.
      const double baseline =
          state.learner->ColdStartBaseline(*state.predicted_models, predictions->quality);
      for (const int j : state.cold_columns) {
        predictions->quality[j] = baseline;
        predictions->quality_lower[j] = baseline;
      }
    }
    pending.prior_quality = predictions->quality;
    pending.explored = state.learner->Adjust(*state.predicted_models, predictions->cluster,
                                             absl::MakeSpan(predictions->quality),
                                             absl::MakeSpan(predictions->quality_lower), rng);
  }
  pending.predicted_models = state.predicted_models;
  pending.predictions = *std::move(predictions);
  pending.arrival = now;
  pending.deadline = deadline;
  return intake;
}

std::string TraceIdOf(const grpc::CallbackServerContext* ctx) {
  const auto& metadata = ctx->client_metadata();
  const auto it = metadata.find("traceparent");
  if (it == metadata.end()) return "";
  return TraceIdOf(absl::string_view(it->second.data(), it->second.size()));
}

absl::Time DeadlineOf(const grpc::CallbackServerContext* ctx) {
  const auto tp = ctx->deadline();
  if (tp == std::chrono::system_clock::time_point::max()) return absl::InfiniteFuture();
  return absl::FromChrono(tp);
}

}  // namespace router::server
