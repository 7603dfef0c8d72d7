// File: router_runtime.h
//
// The running router: the current snapshot (runtime_state.h), the ledger, the two deciders that
// share it (the batch scheduler and the inline router), and the admin operations that change
// them. A change is validated as a whole, then applied in one step: ledger models and options,
// scheduler options and batch context, inline options, then the snapshot swap, so the next batch
// sees all of it and no batch sees half of it. Inline decisions use the snapshot they are handed
// (its pool and policy), so each one is also made entirely under one configuration.
//
// One ledger: batch commits and inline commits go through the same core::Ledger, so spend and
// slots are never counted twice, and Complete releases either kind the same way.
//
// Thread-safety: all methods may be called concurrently; admin changes are serialized; inline
// decisions are serialized by the inline router.
//
// Errors: INVALID_ARGUMENT naming the field; FAILED_PRECONDITION for a startup-only field or a
// stale expected_generation; NOT_FOUND for an unknown model; UNIMPLEMENTED when the estimator
// cannot add an unseen model; UNAVAILABLE for inline work once StopAccepting was called.

#ifndef ROUTER_SERVER_ROUTER_RUNTIME_H_
#define ROUTER_SERVER_ROUTER_RUNTIME_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "router_core/clock.h"
#include "router_core/estimate/predictor.h"
#include "router_core/serving/inline_router.h"
#include "router_core/serving/ledger.h"
#include "server/batch_scheduler.h"
#include "server/config.h"
#include "server/metrics.h"
#include "server/runtime_state.h"

namespace router::server {

// A model the estimator has not seen: its validation results and its cost.
struct NewModel {
  std::vector<std::string> texts;              // featurized, or
  std::vector<std::vector<float>> embeddings;  // the caller's own vectors (one of the two per row)
  std::vector<double> scores;                  // per row, in [0, 1]
  std::optional<double> input_usd_per_mtok;
  std::optional<double> output_usd_per_mtok;
  std::optional<double> mean_cost_usd;
};

// Also the scheduler's batch observer: forwards to the metrics and refreshes the ledger gauges
// after every batch.
class RouterRuntime final : public BatchObserver {
 public:
  // `metrics` (may be null) and `clock` must outlive the runtime.
  static absl::StatusOr<std::unique_ptr<RouterRuntime>> Create(
      RouterConfig config, std::shared_ptr<const core::Predictor> predictor,
      RouterMetrics* metrics, const core::Clock* clock = &core::Clock::Real());

  std::shared_ptr<const RuntimeState> state() const;
  core::Ledger& ledger() { return *ledger_; }
  BatchScheduler& scheduler() { return *scheduler_; }
  core::InlineRouter& inline_router() { return *inline_router_; }
  RouterMetrics* metrics() { return metrics_; }
  const core::Clock& clock() const { return *clock_; }

  // Replaces the runtime configuration; returns the new generation (the current one for dry_run).
  absl::StatusOr<uint64_t> UpdateConfig(const RouterConfig& next,
                                        std::optional<uint64_t> expected_generation,
                                        bool dry_run);
  // Adds or updates a model's deployment; `new_model` is required when the estimator lacks it.
  absl::StatusOr<uint64_t> UpsertModel(const ModelDeploymentConfig& deployment,
                                       const std::optional<NewModel>& new_model);
  absl::StatusOr<uint64_t> RemoveModel(const std::string& name);

  // Decides `query` inline now, against `state`'s pool and policy (the snapshot the query was
  // predicted under), committing to the shared ledger; records the metrics. The decision's own
  // outcome says whether it routed the query (inline_router.h). UNAVAILABLE (nothing decided) once
  // StopAccepting was called.
  absl::StatusOr<core::InlineDecision> RouteInline(core::PendingQuery query,
                                                   const RuntimeState& state);

  // Shutdown: new work is refused with UNAVAILABLE from now on, batch (the scheduler, which still
  // decides what is queued) and inline alike.
  void StopAccepting();

  // Handlers call this for every call they receive; shutdown waits for a quiet period (routerd.h).
  void NoteArrival() { last_arrival_ns_.store(absl::ToUnixNanos(clock_->Now())); }
  absl::Time last_arrival() const { return absl::FromUnixNanos(last_arrival_ns_.load()); }

  // Refreshes the gauges that describe the ledger (slots in use, remaining budget).
  void PublishLedgerGauges();

  // Releases an assignment whose answer never reached the client (the call was cancelled, or its
  // deadline passed, while it was being answered; or its stream broke): its slot and reserved cost
  // are freed now instead of at the lease timeout, with an actual cost of 0 (the model was never
  // called), and router_undelivered_assignments_total counts it. Nothing for an id the ledger no
  // longer holds open.
  void ReleaseUndelivered(absl::string_view assignment_id, absl::string_view model);

  // BatchObserver
  void OnBatch(const core::BatchOutcome& outcome, absl::Duration oldest_wait) override;
  void OnQueueDepth(int64_t depth) override;

 private:
  RouterRuntime(RouterMetrics* metrics, const core::Clock* clock) : metrics_(metrics), clock_(clock) {}
  // Validates `config` with `predictor` and applies both. Caller holds admin_mu_.
  absl::StatusOr<uint64_t> ApplyLocked(RouterConfig config,
                                       std::shared_ptr<const core::Predictor> predictor,
                                       bool dry_run) ABSL_EXCLUSIVE_LOCKS_REQUIRED(admin_mu_);

  RouterMetrics* const metrics_;
  const core::Clock* const clock_;
  std::atomic<int64_t> last_arrival_ns_{0};
  std::unique_ptr<core::Ledger> ledger_;
  std::unique_ptr<BatchScheduler> scheduler_;
  std::unique_ptr<core::InlineRouter> inline_router_;
  std::atomic<bool> accepting_inline_{true};
  absl::Mutex admin_mu_;
  mutable absl::Mutex state_mu_;
  std::shared_ptr<const RuntimeState> state_ ABSL_GUARDED_BY(state_mu_);
};

}  // namespace router::server

#endif  // ROUTER_SERVER_ROUTER_RUNTIME_H_
