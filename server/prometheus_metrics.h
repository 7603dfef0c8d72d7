// File: prometheus_metrics.h
//
// The Metrics (metrics.h) that routerd exports on /metrics, in Prometheus' conventions: prefix
// `router_`, base units, counters ending in _total, bounded labels only (method, code, model, kind,
// status, reason, mode; never query ids or tenants). References into the registry are cached at
// construction; recording is lock-free apart from prometheus-cpp's own per-metric atomics (and the
// learned-quality gauges, replaced once a second under a mutex of their own). The
// names are documented in deploy/README.md and checked by promtool (tests/deploy).
//
// Thread-safety: all methods may be called concurrently.

#ifndef ROUTER_SERVER_PROMETHEUS_METRICS_H_
#define ROUTER_SERVER_PROMETHEUS_METRICS_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/support/status.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "server/metrics.h"

namespace router::server {

class PrometheusMetrics final : public Metrics {
 public:
  explicit PrometheusMetrics(absl::string_view version);

  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

  void OnRequest(absl::string_view method, grpc::StatusCode code, absl::Duration elapsed) override;
  void OnRejected(absl::string_view reason) override;
  void OnCompletion(double predicted_usd, double recorded_usd) override;
  void OnUndelivered(absl::string_view model) override;
  void OnConfigGeneration(uint64_t generation) override;
  void OnSlots(absl::string_view model, int64_t in_use, int64_t total) override;
  void OnBudgetRemaining(double usd) override;
  // Counts the decision under mode="inline", its decision time, the current lambda, a guard
  // activation, and the assignment or rejection.
  void OnInlineDecision(const core::InlineDecision& decision) override;
  void OnBatch(const core::BatchOutcome& outcome, absl::Duration oldest_wait) override;
  void OnQueueDepth(int64_t depth) override;
  void OnExtProcStreamStarted() override;
  void OnExtProcStreamEnded(absl::string_view outcome) override;
  void OnExtProcImmediateResponse(int http_status) override;
  void OnCredentialReloadFailure(absl::string_view credential) override;
  void OnServedCertificateExpiry(absl::Time not_after) override;
  void OnLedgerCall(absl::string_view op, absl::Duration elapsed,
                    absl::string_view error) override;
  void OnLedgerDegraded(bool degraded) override;
  void OnLedgerTotals(const core::LedgerTotals& totals,
                      const core::LedgerOptions& limits) override;
  void OnOutcome(absl::string_view model, absl::string_view kind) override;
  void OnOutcomeDropped(absl::string_view reason, int64_t count) override;
  // Sets the gauge of each model given and removes the series of models no longer given.
  void OnLearnedQuality(const std::vector<std::pair<std::string, double>>& per_model) override;
  void OnLearningEnabled(bool enabled) override;
  void OnLearningSnapshotError() override;
  void OnLearningSnapshotRejected() override;
  void OnLearningSharedDegraded(bool degraded) override;
  void OnLearningSharedGap() override;
  void OnLearningSharedQueue(int64_t depth) override;

 private:
  // A routed query (assignment and predicted spend) or a query its decision refused (rejected).
  void CountOutcome(const core::QueryOutcome& outcome);

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& request_duration_;
  prometheus::Family<prometheus::Counter>& rejected_;
  prometheus::Family<prometheus::Counter>& assignments_;
  prometheus::Family<prometheus::Counter>& undelivered_;
  prometheus::Family<prometheus::Counter>& solves_;
  prometheus::Family<prometheus::Counter>& ledger_paths_;
  prometheus::Family<prometheus::Gauge>& utilization_;
  prometheus::Family<prometheus::Counter>& decisions_;
  prometheus::Counter& batch_decisions_;
  prometheus::Counter& inline_decisions_;
  prometheus::Histogram& inline_decision_duration_;
  prometheus::Gauge& inline_lambda_;
  prometheus::Counter& inline_guard_activations_;
  prometheus::Histogram& batch_size_;
  prometheus::Histogram& batch_wait_;
  prometheus::Histogram& solve_duration_;
  prometheus::Histogram& solve_gap_;
  prometheus::Histogram& cost_ratio_;
  prometheus::Counter& predicted_spend_;
  prometheus::Counter& recorded_spend_;
  prometheus::Gauge& queue_depth_;
  prometheus::Gauge& budget_remaining_;
  prometheus::Gauge& config_generation_;
  prometheus::Family<prometheus::Counter>& ext_proc_streams_;
  prometheus::Gauge& ext_proc_open_streams_;
  prometheus::Family<prometheus::Counter>& ext_proc_immediate_responses_;
  prometheus::Family<prometheus::Counter>& credential_reload_failures_;
  // Its one series appears with the first certificate served (routerd without TLS has none).
  prometheus::Family<prometheus::Gauge>& certificate_expiry_;
  prometheus::Family<prometheus::Histogram>& ledger_call_duration_;
  prometheus::Family<prometheus::Counter>& ledger_errors_;
  prometheus::Gauge& ledger_degraded_;
  prometheus::Gauge& ledger_spent_;
  prometheus::Gauge& ledger_reserved_;
  prometheus::Gauge& ledger_expired_;
  prometheus::Gauge& ledger_rate_limit_;
  prometheus::Gauge& ledger_burst_limit_;
  prometheus::Family<prometheus::Counter>& outcomes_;
  prometheus::Family<prometheus::Counter>& outcomes_dropped_;
  prometheus::Counter& explored_;
  prometheus::Family<prometheus::Gauge>& learned_quality_;
  prometheus::Gauge& learning_enabled_;
  prometheus::Counter& learning_snapshot_errors_;
  prometheus::Gauge& learning_snapshot_rejected_;
  prometheus::Gauge& learning_shared_degraded_;
  prometheus::Counter& learning_shared_gaps_;
  prometheus::Gauge& learning_shared_queue_;
  // The router_learning_quality series now exported, by model (OnLearnedQuality).
  absl::Mutex learned_mu_;
  absl::flat_hash_map<std::string, prometheus::Gauge*> learned_series_ ABSL_GUARDED_BY(learned_mu_);
};

}  // namespace router::server

#endif  // ROUTER_SERVER_PROMETHEUS_METRICS_H_
