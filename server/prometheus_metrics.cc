#include "server/prometheus_metrics.h"

#include <cmath>
#include <cstdint>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"

namespace router::server {
namespace {

const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::UNKNOWN: return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED: return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS: return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    default: return "OTHER";
  }
}

const prometheus::Histogram::BucketBoundaries kSecondsBuckets = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};
// Inline decisions take microseconds.
const prometheus::Histogram::BucketBoundaries kDecisionSecondsBuckets = {
    0.000001, 0.0000025, 0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001,
    0.0025, 0.01};
// Ledger calls are a loopback round trip or a timeout.
const prometheus::Histogram::BucketBoundaries kLedgerSecondsBuckets = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1};
const prometheus::Histogram::BucketBoundaries kSizeBuckets = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
const prometheus::Histogram::BucketBoundaries kGapBuckets = {0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.05, 0.1};
const prometheus::Histogram::BucketBoundaries kRatioBuckets = {0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2, 4};

}  // namespace

PrometheusMetrics::PrometheusMetrics(absl::string_view version)
    : registry_(std::make_shared<prometheus::Registry>()),
      requests_(prometheus::BuildCounter().Name("router_requests_total")
                    .Help("RPCs answered, by method and gRPC status code.").Register(*registry_)),
      request_duration_(prometheus::BuildHistogram().Name("router_request_duration_seconds")
                            .Help("Time from an RPC's arrival to its answer, by method.")
                            .Register(*registry_)),
      rejected_(prometheus::BuildCounter().Name("router_rejected_total")
                    .Help("Queries answered without a model, by reason.").Register(*registry_)),
      assignments_(prometheus::BuildCounter().Name("router_assignments_total")
                       .Help("Queries routed, by model.").Register(*registry_)),
      undelivered_(prometheus::BuildCounter().Name("router_undelivered_assignments_total")
                       .Help("Assignments whose answer never reached the client (cancelled or "
                             "past its deadline as it was answered, or a broken stream), by model; "
                             "their slot and reserved cost were released at once.")
                       .Register(*registry_)),
      solves_(prometheus::BuildCounter().Name("router_solves_total")
                  .Help("Batches decided, by solver status.").Register(*registry_)),
      ledger_paths_(prometheus::BuildCounter().Name("router_batch_ledger_paths_total")
                        .Help("Batches decided, by how they read what they may use: hold (a "
                              "hold, then the commit), recent (the ledger's recent snapshot, "
                              "committed without a hold), recent_then_hold (the snapshot, then "
                              "a hold because it would have refused a query or no longer fitted).")
                        .Register(*registry_)),
      utilization_(prometheus::BuildGauge().Name("router_model_capacity_utilization_ratio")
                       .Help("Slots in use over slots deployed, per self-hosted model.")
                       .Register(*registry_)),
      decisions_(prometheus::BuildCounter().Name("router_decisions_total")
                     .Help("Queries decided (routed or refused by the decision), by the mode that "
                           "decided them: batch or inline.")
                     .Register(*registry_)),
      batch_decisions_(decisions_.Add({{"mode", "batch"}})),
      inline_decisions_(decisions_.Add({{"mode", "inline"}})),
      inline_decision_duration_(
          prometheus::BuildHistogram().Name("router_inline_decision_duration_seconds")
              .Help("Time of one inline decision (prices, choice, ledger commit), excluding "
                    "prediction.")
              .Register(*registry_).Add({}, kDecisionSecondsBuckets)),
      inline_lambda_(prometheus::BuildGauge().Name("router_inline_lambda")
                         .Help("Spend price (lambda, quality units per USD) of the latest inline "
                               "decision.")
                         .Register(*registry_).Add({})),
      inline_guard_activations_(
          prometheus::BuildCounter().Name("router_inline_guard_activations_total")
              .Help("Inline decisions where the window-cap guard replaced the priced choice (by a "
                    "cheaper model or a refusal).")
              .Register(*registry_).Add({})),
      batch_size_(prometheus::BuildHistogram().Name("router_batch_size")
                      .Help("Queries per decided batch.").Register(*registry_).Add({}, kSizeBuckets)),
      batch_wait_(prometheus::BuildHistogram().Name("router_batch_wait_seconds")
                      .Help("Wait of a batch's oldest query before the batch closed.")
                      .Register(*registry_).Add({}, kSecondsBuckets)),
      solve_duration_(prometheus::BuildHistogram().Name("router_solve_duration_seconds")
                          .Help("Solve time per batch.").Register(*registry_).Add({}, kSecondsBuckets)),
      solve_gap_(prometheus::BuildHistogram().Name("router_solve_gap_ratio")
                     .Help("Certified relative gap per exact batch.").Register(*registry_)
                     .Add({}, kGapBuckets)),
      cost_ratio_(prometheus::BuildHistogram().Name("router_predicted_vs_actual_cost_ratio")
                      .Help("Predicted over actual cost of completed calls with an actual cost.")
                      .Register(*registry_).Add({}, kRatioBuckets)),
      predicted_spend_(prometheus::BuildCounter().Name("router_predicted_spend_usd_total")
                           .Help("Predicted cost reserved by assignments, USD.").Register(*registry_)
                           .Add({})),
      recorded_spend_(prometheus::BuildCounter().Name("router_recorded_spend_usd_total")
                          .Help("Spend recorded by Complete (actual where reported), USD.")
                          .Register(*registry_).Add({})),
      queue_depth_(prometheus::BuildGauge().Name("router_queue_depth")
                       .Help("Queries waiting for a batch.").Register(*registry_).Add({})),
      budget_remaining_(prometheus::BuildGauge().Name("router_budget_remaining_usd")
                            .Help("Spend the paced budget allows now, USD (+Inf without pacing).")
                            .Register(*registry_).Add({})),
      config_generation_(prometheus::BuildGauge().Name("router_config_generation")
                             .Help("Generation of the applied runtime configuration.")
                             .Register(*registry_).Add({})),
      ext_proc_streams_(prometheus::BuildCounter().Name("router_ext_proc_streams_total")
                            .Help("Envoy ext_proc streams ended, by outcome: completed_actual, "
                                  "completed_predicted, released, unknown_assignment, "
                                  "ledger_error, not_routed, refused, protocol_error, abandoned.")
                            .Register(*registry_)),
      ext_proc_open_streams_(prometheus::BuildGauge().Name("router_ext_proc_open_streams")
                                 .Help("Envoy ext_proc streams open now.")
                                 .Register(*registry_).Add({})),
      ext_proc_immediate_responses_(
          prometheus::BuildCounter().Name("router_ext_proc_immediate_responses_total")
              .Help("Local replies sent to Envoy instead of routing, by HTTP status code.")
              .Register(*registry_)),
      credential_reload_failures_(
          prometheus::BuildCounter().Name("router_credential_reload_failures_total")
              .Help("Reloads that refused new contents of a credential file (the old stay in "
                    "use), by credential: tls, admin_token, api_token.")
              .Register(*registry_)),
      certificate_expiry_(
          prometheus::BuildGauge().Name("router_tls_certificate_expiry_timestamp_seconds")
              .Help("notAfter of the TLS certificate served to new connections, Unix seconds.")
              .Register(*registry_)),
      ledger_call_duration_(prometheus::BuildHistogram().Name("router_ledger_call_duration_seconds")
                                .Help("Time of one call to the shared ledger (Redis), by operation.")
                                .Register(*registry_)),
      ledger_errors_(prometheus::BuildCounter().Name("router_ledger_errors_total")
                         .Help("Failed or refused calls to the shared ledger, by kind: timeout, "
                               "connection, circuit_open, fenced, lost_state, server.")
                         .Register(*registry_)),
      // Exported from startup on, so alerts and dashboards can rely on it; the in-process ledger
      // is never degraded.
      ledger_degraded_(prometheus::BuildGauge().Name("router_ledger_degraded")
                           .Help("1 while the ledger's shared state is unreachable or in doubt, "
                                 "else 0.")
                           .Register(*registry_).Add({})),
      ledger_spent_(prometheus::BuildGauge().Name("router_ledger_spent_usd")
                        .Help("Spend recorded by the ledger (completed and expired leases, actual "
                              "where known), USD; fleet-wide with a shared ledger.")
                        .Register(*registry_).Add({})),
      ledger_reserved_(prometheus::BuildGauge().Name("router_ledger_reserved_usd")
                           .Help("Predicted cost of open leases, USD; fleet-wide with a shared "
                                 "ledger.")
                           .Register(*registry_).Add({})),
      ledger_expired_(prometheus::BuildGauge().Name("router_ledger_leases_expired")
                          .Help("Leases that expired without a Complete since the ledger's state "
                                "was created; fleet-wide with a shared ledger.")
                          .Register(*registry_).Add({})),
      ledger_rate_limit_(prometheus::BuildGauge().Name("router_ledger_spend_limit_usd_per_second")
                             .Help("Pacing rate of the spend budget, USD per second (0 = no "
                                   "pacing).")
                             .Register(*registry_).Add({})),
      ledger_burst_limit_(prometheus::BuildGauge().Name("router_ledger_spend_burst_usd")
                              .Help("Pacing burst (bucket capacity) of the spend budget, USD.")
                              .Register(*registry_).Add({})),
      outcomes_(prometheus::BuildCounter().Name("router_outcomes_total")
                    .Help("Outcomes reported by Complete (success or score), by model and kind, "
                          "learned from or not.")
                    .Register(*registry_)),
      outcomes_dropped_(prometheus::BuildCounter().Name("router_learning_outcomes_dropped_total")
                            .Help("Outcomes not learned from, by reason: learning_off, no_context, "
                                  "unknown_model, unknown_cluster, invalid, memory_full, "
                                  "queue_full.")
                            .Register(*registry_)),
      explored_(prometheus::BuildCounter().Name("router_learning_explored_decisions_total")
                    .Help("Queries routed on predictions sampled from the learned posterior "
                          "(exploration); over router_decisions_total, the exploration share.")
                    .Register(*registry_).Add({})),
      learned_quality_(prometheus::BuildGauge().Name("router_learning_quality")
                           .Help("Learned quality per model: the mean over its learned cells, "
                                 "weighted by their evidence, of the estimator's prediction plus "
                                 "the learned shift; absent for a model without outcomes.")
                           .Register(*registry_)),
      learning_enabled_(prometheus::BuildGauge().Name("router_learning_enabled")
                            .Help("1 while decisions use what was learned from outcomes "
                                  "(learning.enabled), else 0.")
                            .Register(*registry_).Add({})),
      learning_snapshot_errors_(
          prometheus::BuildCounter().Name("router_learning_snapshot_errors_total")
              .Help("Writes of learning.snapshot_file that failed (retried at the next interval).")
              .Register(*registry_).Add({})),
      learning_snapshot_rejected_(
          prometheus::BuildGauge().Name("router_learning_snapshot_rejected")
              .Help("1 when the learning snapshot found at start could not be restored (moved "
                    "aside; learning started empty), else 0.")
              .Register(*registry_).Add({})),
      learning_shared_degraded_(
          prometheus::BuildGauge().Name("router_learning_shared_degraded")
              .Help("1 while the fleet's shared learning log in Redis cannot be written or read "
                    "(outcomes wait in the queue, learning pauses; decisions go on), else 0.")
              .Register(*registry_).Add({})),
      learning_shared_gaps_(
          prometheus::BuildCounter().Name("router_learning_shared_gaps_total")
              .Help("Times entries of the shared learning log were lost (trimmed or Redis "
                    "emptied) before this replica applied them.")
              .Register(*registry_).Add({})),
      learning_shared_queue_(
          prometheus::BuildGauge().Name("router_learning_shared_queue")
              .Help("Outcomes waiting to be written to the shared learning log.")
              .Register(*registry_).Add({})) {
  for (const char* credential : {"tls", "admin_token", "api_token"}) {
    credential_reload_failures_.Add({{"credential", credential}});
  }
  for (const char* reason : {"learning_off", "no_context", "unknown_model", "unknown_cluster",
                             "invalid", "memory_full", "queue_full"}) {
    outcomes_dropped_.Add({{"reason", reason}});
  }
  prometheus::BuildGauge().Name("router_build_info").Help("Build of this routerd.")
      .Register(*registry_).Add({{"version", std::string(version)}}).Set(1);
}

void PrometheusMetrics::OnRequest(absl::string_view method, grpc::StatusCode code,
                              absl::Duration elapsed) {
  requests_.Add({{"method", std::string(method)}, {"code", CodeName(code)}}).Increment();
  request_duration_.Add({{"method", std::string(method)}}, kSecondsBuckets)
      .Observe(absl::ToDoubleSeconds(elapsed));
}

void PrometheusMetrics::OnRejected(absl::string_view reason) {
  rejected_.Add({{"reason", std::string(reason)}}).Increment();
}

void PrometheusMetrics::OnCompletion(double predicted_usd, double recorded_usd) {
  recorded_spend_.Increment(recorded_usd);
  if (recorded_usd > 0) cost_ratio_.Observe(predicted_usd / recorded_usd);
}

void PrometheusMetrics::OnUndelivered(absl::string_view model) {
  undelivered_.Add({{"model", std::string(model)}}).Increment();
}

void PrometheusMetrics::OnConfigGeneration(uint64_t generation) {
  config_generation_.Set(static_cast<double>(generation));
}

void PrometheusMetrics::OnSlots(absl::string_view model, int64_t in_use, int64_t total) {
  utilization_.Add({{"model", std::string(model)}})
      .Set(total > 0 ? static_cast<double>(in_use) / static_cast<double>(total) : 0.0);
}

void PrometheusMetrics::OnBudgetRemaining(double usd) { budget_remaining_.Set(usd); }

void PrometheusMetrics::OnInlineDecision(const core::InlineDecision& decision) {
  inline_decisions_.Increment();
  inline_decision_duration_.Observe(absl::ToDoubleSeconds(decision.decision_time));
  if (std::isfinite(decision.lambda)) inline_lambda_.Set(decision.lambda);
  if (decision.guarded) inline_guard_activations_.Increment();
  CountOutcome(decision.outcome);
}

void PrometheusMetrics::CountOutcome(const core::QueryOutcome& q) {
  if (q.status.ok()) {
    assignments_.Add({{"model", q.model}}).Increment();
    predicted_spend_.Increment(q.cost_usd);
    if (q.explored) explored_.Increment();
  } else if (absl::IsResourceExhausted(q.status)) {
    OnRejected("budget_or_slots");
  } else if (absl::IsInvalidArgument(q.status)) {
    OnRejected("invalid");
  } else {
    OnRejected("error");
  }
}

void PrometheusMetrics::OnBatch(const core::BatchOutcome& outcome, absl::Duration oldest_wait) {
  batch_decisions_.Increment(static_cast<double>(outcome.queries.size()));
  batch_size_.Observe(static_cast<double>(outcome.size));
  batch_wait_.Observe(absl::ToDoubleSeconds(oldest_wait));
  solve_duration_.Observe(absl::ToDoubleSeconds(outcome.solve_time));
  solves_.Add({{"status", core::SolveStatusName(outcome.status)}}).Increment();
  ledger_paths_.Add({{"path", core::LedgerPathName(outcome.ledger_path)}}).Increment();
  if (outcome.status != core::SolveStatus::kHeuristic && std::isfinite(outcome.relative_gap)) {
    solve_gap_.Observe(outcome.relative_gap);
  }
  // Routed queries are counted per model once per batch: a labelled Add builds a label map, hashes
  // it and takes the family's mutex, which once per model per batch does instead of once per query.
  absl::flat_hash_map<absl::string_view, int64_t> routed;
  double predicted_usd = 0.0;
  int64_t explored = 0;
  for (const core::QueryOutcome& q : outcome.queries) {
    if (q.status.ok()) {
      ++routed[q.model];
      predicted_usd += q.cost_usd;
      explored += q.explored;
    } else {
      CountOutcome(q);
    }
  }
  for (const auto& [model, count] : routed) {
    assignments_.Add({{"model", std::string(model)}}).Increment(static_cast<double>(count));
  }
  if (predicted_usd > 0.0) predicted_spend_.Increment(predicted_usd);
  if (explored > 0) explored_.Increment(static_cast<double>(explored));
}

void PrometheusMetrics::OnQueueDepth(int64_t depth) { queue_depth_.Set(static_cast<double>(depth)); }

void PrometheusMetrics::OnExtProcStreamStarted() { ext_proc_open_streams_.Increment(); }

void PrometheusMetrics::OnExtProcStreamEnded(absl::string_view outcome) {
  ext_proc_open_streams_.Decrement();
  ext_proc_streams_.Add({{"outcome", std::string(outcome)}}).Increment();
}

void PrometheusMetrics::OnExtProcImmediateResponse(int http_status) {
  ext_proc_immediate_responses_.Add({{"code", std::to_string(http_status)}}).Increment();
}

void PrometheusMetrics::OnCredentialReloadFailure(absl::string_view credential) {
  credential_reload_failures_.Add({{"credential", std::string(credential)}}).Increment();
}

void PrometheusMetrics::OnServedCertificateExpiry(absl::Time not_after) {
  certificate_expiry_.Add({}).Set(absl::ToDoubleSeconds(not_after - absl::UnixEpoch()));
}

void PrometheusMetrics::OnLedgerCall(absl::string_view op, absl::Duration elapsed,
                                     absl::string_view error) {
  if (elapsed > absl::ZeroDuration()) {
    ledger_call_duration_.Add({{"op", std::string(op)}}, kLedgerSecondsBuckets)
        .Observe(absl::ToDoubleSeconds(elapsed));
  }
  if (!error.empty()) ledger_errors_.Add({{"kind", std::string(error)}}).Increment();
}

void PrometheusMetrics::OnLedgerDegraded(bool degraded) { ledger_degraded_.Set(degraded ? 1 : 0); }

void PrometheusMetrics::OnLedgerTotals(const core::LedgerTotals& totals,
                                       const core::LedgerOptions& limits) {
  ledger_spent_.Set(totals.recorded_usd);
  ledger_reserved_.Set(totals.reserved_usd);
  ledger_expired_.Set(static_cast<double>(totals.expired_assignments));
  ledger_rate_limit_.Set(limits.spend_rate_usd_per_second);
  ledger_burst_limit_.Set(limits.spend_rate_usd_per_second > 0 ? limits.spend_burst_usd : 0.0);
}

void PrometheusMetrics::OnOutcome(absl::string_view model, absl::string_view kind) {
  outcomes_.Add({{"model", std::string(model)}, {"kind", std::string(kind)}}).Increment();
}

void PrometheusMetrics::OnOutcomeDropped(absl::string_view reason, int64_t count) {
  outcomes_dropped_.Add({{"reason", std::string(reason)}}).Increment(static_cast<double>(count));
}

void PrometheusMetrics::OnLearnedQuality(
    const std::vector<std::pair<std::string, double>>& per_model) {
  absl::MutexLock lock(&learned_mu_);
  absl::flat_hash_map<std::string, prometheus::Gauge*> now;
  for (const auto& [model, quality] : per_model) {
    auto it = learned_series_.find(model);
    prometheus::Gauge* gauge = it != learned_series_.end()
                                   ? it->second
                                   : &learned_quality_.Add({{"model", model}});
    gauge->Set(quality);
    now.emplace(model, gauge);
  }
  // A model whose cells were reset (or that left the learner) has no learned quality any more.
  for (const auto& [model, gauge] : learned_series_) {
    if (!now.contains(model)) learned_quality_.Remove(gauge);
  }
  learned_series_ = std::move(now);
}

void PrometheusMetrics::OnLearningEnabled(bool enabled) { learning_enabled_.Set(enabled ? 1 : 0); }

void PrometheusMetrics::OnLearningSnapshotError() { learning_snapshot_errors_.Increment(); }

void PrometheusMetrics::OnLearningSnapshotRejected() { learning_snapshot_rejected_.Set(1); }

void PrometheusMetrics::OnLearningSharedDegraded(bool degraded) {
  learning_shared_degraded_.Set(degraded ? 1 : 0);
}

void PrometheusMetrics::OnLearningSharedGap() { learning_shared_gaps_.Increment(); }

void PrometheusMetrics::OnLearningSharedQueue(int64_t depth) {
  learning_shared_queue_.Set(static_cast<double>(depth));
}

}  // namespace router::server
