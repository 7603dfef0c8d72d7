// File: batch_scheduler.h
//
// The batch thread of routerd: the single authority that decides batches. Handlers hand it work
// and return at once; it forms batches from single queries (batch_queue.h: size, delay and
// deadline rules), runs caller-formed batches (RouteBatch) as they come, decides each with the
// batch engine against the shared ledger, and answers every task exactly once.
//
// Exactly once: a task is answered by exactly one of Answer() (it was routed, or its batch gave it
// a per-query error) and Fail() (refused, cancelled, deadline passed, shutdown). The scheduler owns
// each task from a successful Submit until that call; a refused Submit leaves the task with the
// caller, who answers it.
//
// Shutdown: StopAccepting() refuses new work with UNAVAILABLE; queued work is still decided,
// batch after batch without waiting for the delay; Stop(deadline) then joins the thread, failing
// with UNAVAILABLE whatever is still queued at `deadline`.
//
// Thread-safety: all public methods may be called from any thread.

#ifndef ROUTER_SERVER_BATCH_SCHEDULER_H_
#define ROUTER_SERVER_BATCH_SCHEDULER_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "router_core/clock.h"
#include "router_core/serving/batch_engine.h"
#include "router_core/serving/batch_queue.h"
#include "router_core/serving/ledger.h"

namespace router::server {

// One query waiting for its answer.
class RouteTask {
 public:
  virtual ~RouteTask() = default;
  // The query routed (or given its own error) in `batch`; `index` is its outcome in batch.queries.
  virtual void Answer(const core::BatchOutcome& batch, size_t index) = 0;
  virtual void Fail(const absl::Status& status) = 0;
  // Called once after Answer (never after Fail), when every task of the batch has had its Answer:
  // a task whose answer shares a channel with others (a stream) may hold it until now, so that
  // the channel sends them together.
  virtual void Flush() {}
  // True once the client has gone; the task is then failed with CANCELLED instead of routed.
  virtual bool Cancelled() const = 0;

  core::PendingQuery query;
  absl::Time deadline = absl::InfiniteFuture();
};

using TaskPtr = std::unique_ptr<RouteTask>;

// What a batch is decided with; swapped atomically between batches by the admin path.
struct BatchContext {
  std::vector<core::DeployedModel> pool;
  core::BatchPolicy policy;
};

// Observer of decided batches (metrics); called on the batch thread.
class BatchObserver {
 public:
  virtual ~BatchObserver() = default;
  virtual void OnBatch(const core::BatchOutcome& outcome, absl::Duration oldest_wait) = 0;
  virtual void OnQueueDepth(int64_t depth) = 0;
};

class BatchScheduler {
 public:
  // `ledger`, `clock` and `observer` (may be null) must outlive the scheduler. Starts the batch
  // thread. INVALID_ARGUMENT for bad options (batch_queue.h).
  static absl::StatusOr<std::unique_ptr<BatchScheduler>> Create(
      const core::BatchQueueOptions& options, std::shared_ptr<const BatchContext> context,
      core::Ledger* ledger, const core::Clock* clock, BatchObserver* observer);
  ~BatchScheduler();  // Stop(now) if still running

  // Queues one query. UNAVAILABLE (queue full or shutting down); the task then stays with the
  // caller.
  absl::Status Submit(TaskPtr& task);
  // Queues a caller-formed batch, decided on its own. Same errors and ownership rule.
  absl::Status SubmitBatch(std::vector<TaskPtr>& tasks);

  // Applied from the next batch on.
  absl::Status SetOptions(const core::BatchQueueOptions& options);
  void SetContext(std::shared_ptr<const BatchContext> context);

  void StopAccepting();
  // Decides what is queued until `deadline`, fails the rest, joins the thread. Idempotent.
  void Stop(absl::Time deadline);

  int64_t queued();

 private:
  BatchScheduler(core::BatchQueue<TaskPtr> queue, std::shared_ptr<const BatchContext> context,
                 core::Ledger* ledger, const core::Clock* clock, BatchObserver* observer);
  void Run();
  // Decides `tasks` as one batch and answers each task exactly once.
  void Decide(std::vector<TaskPtr> tasks);

  core::Ledger* const ledger_;
  const core::Clock* const clock_;
  BatchObserver* const observer_;

  absl::Mutex mu_;
  core::BatchQueue<TaskPtr> queue_ ABSL_GUARDED_BY(mu_);
  std::deque<std::vector<TaskPtr>> batch_jobs_ ABSL_GUARDED_BY(mu_);
  int64_t batch_job_queries_ ABSL_GUARDED_BY(mu_) = 0;
  std::shared_ptr<const BatchContext> context_ ABSL_GUARDED_BY(mu_);
  bool accepting_ ABSL_GUARDED_BY(mu_) = true;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time hard_deadline_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  // What the batch thread sleeps until; InfinitePast while it is awake (it looks at the queue
  // before sleeping again, so an arrival then needs no wake-up).
  absl::Time sleeping_until_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  const std::string batch_prefix_;
  std::atomic<uint64_t> next_batch_{0};
  std::thread thread_;
};

}  // namespace router::server

#endif  // ROUTER_SERVER_BATCH_SCHEDULER_H_
