// File: router_runtime.h
//
// The running router: the current snapshot (runtime_state.h), the ledger, the two deciders that
// share it (the batch scheduler with the batch engine, and the inline router), and the admin
// operations that change them.
//
// The decision path: a call takes its queries in (query_intake.h) and hands each as a QueryTask
// (query_task.h) to Dispatch, which decides it inline at once or queues it for a batch; RouteBatch
// hands its caller-formed batch to DispatchBatch. The scheduler thread decides each batch with the
// batch engine (ProcessBatch). Either way the task's answer is delivered to its call's sink
// exactly once: routed, refused by its decision, or refused before one (cancelled, deadline
// passed, queue full, shutting down).
//
// A change is validated as a whole, then applied in one step: ledger models and options, scheduler
// options, inline options, then the snapshot swap, so the next batch sees all of it and no batch
// sees half of it (a batch reads the snapshot once, when it is decided). Inline decisions use the
// snapshot they are handed (its pool and policy), so each one is also made entirely under one
// configuration.
//
// Learning from outcomes (outcome_learning.h): the runtime owns the learner for its whole life
// (learning.enabled only decides whether snapshots point to it), so turning learning off and on
// again keeps what was learned.
//
// One ledger: batch commits and inline commits go through the same core::Ledger, so spend and
// slots are never counted twice, and Complete releases either kind the same way. It is the
// in-process LocalLedger, or with `ledger.backend: redis` the fleet's RedisLedger (its calls and
// degraded state reported to the metrics). The gauges that describe the ledger are refreshed
// after every decision with the local ledger, and by PublishLedgerGauges' caller (routerd's
// ledger ticker) with the shared one, whose reads are round trips to Redis.
//
// Thread-safety: all methods may be called concurrently; admin changes are serialized; inline
// decisions are serialized by the inline router.
//
// Errors: INVALID_ARGUMENT naming the field; FAILED_PRECONDITION for a startup-only field or a
// stale expected_generation; NOT_FOUND for an unknown model; UNIMPLEMENTED when the estimator
// cannot add an unseen model. Refusals of queries reach their sinks as answers.

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
#include "router_core/serving/batch_scheduler.h"
#include "router_core/serving/inline_router.h"
#include "router_core/serving/ledger.h"
#include "router_core/serving/local_ledger.h"
#include "server/admission.h"
#include "server/config.h"
#include "server/ledger_redis/redis_ledger.h"
#include "server/metrics.h"
#include "server/outcome_context.h"
#include "server/outcome_learning.h"
#include "server/query_task.h"
#include "server/routing_mode.h"
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

class RouterRuntime {
 public:
  using TaskPtr = std::unique_ptr<QueryTask>;

  // `metrics` and `clock` (not owned) must outlive the runtime. `estimator_sha256` fingerprints
  // the estimator artifact for the learning snapshot (outcome_learning.h; empty = none). Starts
  // the learning's background thread (snapshots, gauges).
  static absl::StatusOr<std::unique_ptr<RouterRuntime>> Create(
      RouterConfig config, std::shared_ptr<const core::Predictor> predictor,
      Metrics* metrics = &NoMetrics(), const core::Clock* clock = &core::Clock::Real(),
      std::string estimator_sha256 = "");

  std::shared_ptr<const RuntimeState> state() const;
  core::Ledger& ledger() { return *ledger_; }
  Metrics& metrics() { return *metrics_; }
  OutcomeLearning& learning() { return *learning_; }
  const core::Clock& clock() const { return *clock_; }

  // Admits one query of `tenant` from `connection` (its peer address; may be empty when
  // limits.max_queries_per_connection is 0), to be decided in `mode`, before its prediction
  // (admission.h). Refused with UNAVAILABLE while shutting down, and with UNAVAILABLE and a retry
  // hint (status_util.h) when its tenant's or connection's bound is reached or, for a batch-mode
  // query when `check_queue` (RouteBatch's queries are bounded as a whole when queued), when the
  // batch queue is full.
  absl::StatusOr<AdmissionTicket> Admit(const RuntimeState& state, absl::string_view tenant,
                                        absl::string_view connection, RoutingMode mode,
                                        bool check_queue);
  // The retry hint of an overloaded routerd with `queued` queries ahead: how long they take to
  // drain, (queued / max_batch_size + 1) x (max_batch_delay + policy time limit), at most 10 s.
  static absl::Duration RetryAfter(const RuntimeState& state, int64_t queued);

  // Decides `task` in `mode` (kBatch or kInline), against `state` (the snapshot it was taken in
  // under): inline at once on this thread, or queued for its batch. Its answer is delivered to its
  // sink exactly once, possibly before this returns.
  void Dispatch(TaskPtr task, RoutingMode mode, const RuntimeState& state);
  // Queues a caller-formed batch, decided as one batch. On refusal (UNAVAILABLE: queue full, with
  // a retry hint, or shutting down) the tasks stay in `tasks`, undelivered, and the caller answers
  // its call.
  absl::Status DispatchBatch(std::vector<TaskPtr>& tasks);
  // Delivers `status` to a task that will not be decided, and counts it.
  void Refuse(TaskPtr task, const absl::Status& status);

  // Replaces the runtime configuration; returns the new generation (the current one for dry_run).
  absl::StatusOr<uint64_t> UpdateConfig(const RouterConfig& next,
                                        std::optional<uint64_t> expected_generation,
                                        bool dry_run);
  // Adds or updates a model's deployment; `new_model` with validation results is required when
  // the estimator lacks it, unless learning is on: the model then joins as a cold start (the
  // estimator holds it with one result at learning.cold_start_quality, and the learner predicts it
  // from its cold-start prior until its own outcomes arrive; outcome_learner.h). A new API model
  // needs a cost either way.
  absl::StatusOr<uint64_t> UpsertModel(const ModelDeploymentConfig& deployment,
                                       const std::optional<NewModel>& new_model);
  absl::StatusOr<uint64_t> RemoveModel(const std::string& name);

  // Shutdown: new work is refused with UNAVAILABLE from now on, batch (the scheduler still decides
  // what is queued) and inline alike.
  void StopAccepting();
  // Decides what is queued until `deadline`, refuses the rest (UNAVAILABLE), stops the batch
  // thread.
  void StopBatches(absl::Time deadline);

  // Queries waiting for a batch (queued, or in caller-formed batches not yet decided).
  int64_t NumQueued() { return scheduler_->NumQueued(); }

  // Shutdown waits for quiet (routerd.h, step 3): for a while no call arrived, none of Route and
  // RouteBatch is open and none closed. Handlers call NoteActivity for every call they receive;
  // Route and RouteBatch call UnaryCallOpened instead, and UnaryCallDone once their reactor is done
  // (their answer sent: that frees the call's HTTP/2 stream, which a client held at
  // grpc.max_concurrent_streams uses for a call it held back).
  void NoteActivity() { last_activity_ns_.store(absl::ToUnixNanos(clock_->Now())); }
  void UnaryCallOpened() {
    open_unary_calls_.fetch_add(1);
    NoteActivity();
  }
  void UnaryCallDone() {
    open_unary_calls_.fetch_sub(1);
    NoteActivity();
  }
  int64_t open_unary_calls() const { return open_unary_calls_.load(); }
  absl::Time last_activity() const { return absl::FromUnixNanos(last_activity_ns_.load()); }

  // Refreshes the gauges that describe the ledger (slots in use, remaining budget, totals).
  void PublishLedgerGauges();
  // PublishLedgerGauges with the in-process ledger; nothing with a shared one (see above).
  void AfterLedgerChange() {
    if (!shared_ledger_) PublishLedgerGauges();
  }
  // Whether the ledger is shared (Redis), and degraded now (always false for the local ledger).
  bool shared_ledger() const { return shared_ledger_; }
  bool ledger_degraded() const { return ledger_degraded_.load(); }

  // Releases an assignment whose answer never reached the client (the call was cancelled, or its
  // deadline passed, while it was being answered; or its stream broke): its slot and reserved cost
  // are freed now instead of at the lease timeout, with an actual cost of 0 (the model was never
  // called), and router_undelivered_assignments_total counts it. Nothing for an id the ledger no
  // longer holds open.
  void ReleaseUndelivered(absl::string_view assignment_id, absl::string_view model);

  // One completed assignment's outcome, `score` in [0, 1] of `kind` ("success" or "score"), with
  // the context its id carried (nullopt: none): learned from, or counted and dropped
  // (outcome_learning.h). Never fails.
  void RecordOutcome(const std::optional<OutcomeContext>& context, absl::string_view kind,
                     double score);
  // Shutdown, once no Complete can arrive any more: stops the learning's thread and writes its
  // last snapshot (a failure is logged).
  void FinishLearning();

 private:
  using Scheduler = core::BatchScheduler<QueryTask>;

  // Forwards the shared ledger's reports to the metrics and keeps its degraded state.
  class LedgerReports final : public RedisLedgerObserver {
   public:
    explicit LedgerReports(RouterRuntime* rt) : rt_(rt) {}
    void OnLedgerCall(absl::string_view op, absl::Duration elapsed,
                      absl::string_view error) override {
      rt_->metrics_->OnLedgerCall(op, elapsed, error);
    }
    void OnLedgerDegraded(bool degraded) override {
      rt_->ledger_degraded_.store(degraded);
      rt_->metrics_->OnLedgerDegraded(degraded);
    }

   private:
    RouterRuntime* const rt_;
  };

  RouterRuntime(Metrics* metrics, const core::Clock* clock);
  // The ledger `config` asks for.
  absl::StatusOr<std::unique_ptr<core::Ledger>> MakeLedger(const RuntimeState& state);
  // Validates `config` with `predictor` and applies both. Caller holds admin_mu_.
  absl::StatusOr<uint64_t> ApplyLocked(RouterConfig config,
                                       std::shared_ptr<const core::Predictor> predictor,
                                       bool dry_run) ABSL_EXCLUSIVE_LOCKS_REQUIRED(admin_mu_);
  // The scheduler's callback: decides one batch and delivers every answer.
  void ProcessBatch(std::vector<TaskPtr> tasks);
  // Queues `task` for an inline decision under the current state; its answer is delivered once
  // decided.
  void DecideInline(TaskPtr task);

  Metrics* const metrics_;
  const core::Clock* const clock_;
  const std::string batch_prefix_;
  std::atomic<uint64_t> next_batch_{0};
  std::atomic<int64_t> last_activity_ns_{0};
  std::atomic<int64_t> open_unary_calls_{0};
  LedgerReports ledger_reports_{this};
  bool shared_ledger_ = false;
  std::atomic<bool> ledger_degraded_{false};
  std::unique_ptr<core::Ledger> ledger_;
  std::unique_ptr<OutcomeLearning> learning_;
  std::atomic<bool> accepting_inline_{true};
  Admission admission_;
  absl::Mutex admin_mu_;
  mutable absl::Mutex state_mu_;
  std::shared_ptr<const RuntimeState> state_ ABSL_GUARDED_BY(state_mu_);
  // Last: their threads call back into the members above until they are destroyed.
  std::unique_ptr<core::InlineRouter> inline_router_;
  std::unique_ptr<Scheduler> scheduler_;
};

}  // namespace router::server

#endif  // ROUTER_SERVER_ROUTER_RUNTIME_H_
