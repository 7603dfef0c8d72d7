// File: batch_scheduler.h
//
// Forms batches from tasks that arrive one at a time and hands each batch to a callback on the
// scheduler's own thread, as TF Serving's BasicBatchScheduler does. It knows nothing about the
// work: a task is any type with `absl::Time deadline() const` (InfiniteFuture = none), and what
// happens to a batch is the `process` callback.
//
// PARAMETERS AND BEHAVIOR
//   Tasks queue in a BatchQueue (batch_queue.h): a batch closes when it holds max_batch_size
//   tasks, when its oldest task has waited max_batch_delay, or at its earliest task deadline minus
//   solve_margin, whichever comes first; a task whose deadline is nearer than the one the thread
//   sleeps until wakes it. Caller-formed batches (ScheduleBatch) skip the queue: each is processed
//   whole, before queued tasks, in the order they came. Batches are processed one at a time, in
//   order.
//
// OWNERSHIP AND EXACTLY ONCE
//   Schedule and ScheduleBatch take the tasks if and only if they return OK; otherwise the tasks
//   stay with the caller, who answers them. Every task taken is handed exactly once either to
//   `process` (in a batch) or to `reject` (with UNAVAILABLE and `stopping_message`, when Stop's
//   deadline comes before its batch).
//
// SHUTDOWN
//   StopAccepting() refuses new tasks (UNAVAILABLE, `stopping_message`) and closes batches at once
//   instead of waiting for company. Stop(deadline) processes what is queued, batch after batch,
//   until `deadline` on the clock, rejects the rest and joins the thread; the destructor calls
//   Stop(now).
//
// LATENCY
//   A task not refused waits at most min(max_batch_delay, deadline - solve_margin - arrival) plus
//   the processing of the batches ahead of its own.
//
// Thread-safety: all public methods may be called from any thread. The callbacks run on the
// scheduler thread, one at a time; `process` and `reject` run without the scheduler's lock held,
// so they may call Schedule; `on_queue_depth` runs with it held and must not call the scheduler.
// Time comes from the clock in the options (not owned), including the thread's sleeps, so tests
// drive the scheduler with a fake clock.
//
// Errors: Create: INVALID_ARGUMENT naming the option. Schedule, ScheduleBatch: UNAVAILABLE when
// the queue is full (retryable) or the scheduler is stopping.
//
// Cost: Schedule O(1); forming a batch O(batch size); a caller-formed batch O(its size).

#ifndef ROUTER_CORE_SERVING_BATCH_SCHEDULER_H_
#define ROUTER_CORE_SERVING_BATCH_SCHEDULER_H_

#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "router_core/clock.h"
#include "router_core/serving/batch_queue.h"

namespace router::core {

template <typename Task>
class BatchScheduler {
 public:
  using TaskPtr = std::unique_ptr<Task>;

  struct Options {
    // How batches form (batch_queue.h); max_queued also bounds the tasks of queued caller-formed
    // batches.
    BatchQueueOptions queue;
    // Required. Called with each batch, on the scheduler thread.
    std::function<void(std::vector<TaskPtr>)> process;
    // Required. Called with each task given back unprocessed, and why.
    std::function<void(TaskPtr, const absl::Status&)> reject;
    // Optional. Called with the number of queued tasks each time the thread goes to sleep.
    std::function<void(int64_t)> on_queue_depth;
    // The message of the UNAVAILABLE status given to tasks refused or rejected while stopping.
    std::string stopping_message = "shutting down; retry";
    // Not owned; must outlive the scheduler.
    const Clock* clock = &Clock::Real();
  };

  // Starts the scheduler thread. INVALID_ARGUMENT for bad queue options or a missing callback.
  static absl::StatusOr<std::unique_ptr<BatchScheduler>> Create(Options options);
  ~BatchScheduler() { Stop(options_.clock->Now()); }

  BatchScheduler(const BatchScheduler&) = delete;
  BatchScheduler& operator=(const BatchScheduler&) = delete;

  // Queues one task. On OK the scheduler owns it and `task` is null; otherwise `task` is left as
  // it was.
  absl::Status Schedule(TaskPtr& task);
  // Queues a caller-formed batch, processed whole. On OK `tasks` is left empty; otherwise as it was.
  absl::Status ScheduleBatch(std::vector<TaskPtr>& tasks);

  // Applies to the batches that close from now on.
  absl::Status SetQueueOptions(const BatchQueueOptions& options);

  void StopAccepting();
  // Processes what is queued until `deadline`, rejects the rest, joins the thread. Idempotent.
  void Stop(absl::Time deadline);

  // Tasks queued and not yet handed to a callback.
  int64_t NumQueued();

 private:
  BatchScheduler(Options options, BatchQueue<TaskPtr> queue)
      : options_(std::move(options)), queue_(std::move(queue)) {
    thread_ = std::thread([this] { Run(); });
  }
  void Run();
  absl::Status Stopping() const { return absl::UnavailableError(options_.stopping_message); }

  const Options options_;
  absl::Mutex mu_;
  BatchQueue<TaskPtr> queue_ ABSL_GUARDED_BY(mu_);
  std::deque<std::vector<TaskPtr>> caller_batches_ ABSL_GUARDED_BY(mu_);
  int64_t caller_batch_tasks_ ABSL_GUARDED_BY(mu_) = 0;
  bool accepting_ ABSL_GUARDED_BY(mu_) = true;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time hard_deadline_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  // Set to make the sleeping thread look at the queue again.
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  // What the thread sleeps until; InfinitePast while it is awake (it looks at the queue before
  // sleeping again, so an arrival then needs no wake-up).
  absl::Time sleeping_until_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::thread thread_;
};

//////////
// Implementation details follow. API users need not read.

template <typename Task>
absl::StatusOr<std::unique_ptr<BatchScheduler<Task>>> BatchScheduler<Task>::Create(
    Options options) {
  if (!options.process) return absl::InvalidArgumentError("process: required");
  if (!options.reject) return absl::InvalidArgumentError("reject: required");
  if (options.clock == nullptr) return absl::InvalidArgumentError("clock: required");
  absl::StatusOr<BatchQueue<TaskPtr>> queue = BatchQueue<TaskPtr>::Create(options.queue);
  if (!queue.ok()) return queue.status();
  return std::unique_ptr<BatchScheduler>(
      new BatchScheduler(std::move(options), *std::move(queue)));
}

template <typename Task>
absl::Status BatchScheduler<Task>::Schedule(TaskPtr& task) {
  const absl::Time now = options_.clock->Now();
  const absl::Time deadline = task->deadline();
  absl::MutexLock lock(&mu_);
  if (!accepting_) return Stopping();
  // Add moves from `task` only on success.
  absl::Status s = queue_.Add(std::move(task), now, deadline);
  // Wake the thread only if this arrival makes the next batch close earlier than it sleeps until
  // (the batch is now full, or this task's deadline is nearer): otherwise it would wake to find
  // nothing due and sleep again.
  if (s.ok() && queue_.NextClose() < sleeping_until_) wake_ = true;
  return s;
}

template <typename Task>
absl::Status BatchScheduler<Task>::ScheduleBatch(std::vector<TaskPtr>& tasks) {
  absl::MutexLock lock(&mu_);
  if (!accepting_) return Stopping();
  const int64_t n = static_cast<int64_t>(tasks.size());
  if (caller_batch_tasks_ + n > queue_.options().max_queued) {
    return absl::UnavailableError(absl::StrCat("batch queue full (", caller_batch_tasks_,
                                               " queries waiting); retry with backoff"));
  }
  caller_batch_tasks_ += n;
  caller_batches_.push_back(std::move(tasks));
  tasks.clear();
  wake_ = true;
  return absl::OkStatus();
}

template <typename Task>
absl::Status BatchScheduler<Task>::SetQueueOptions(const BatchQueueOptions& options) {
  absl::MutexLock lock(&mu_);
  absl::Status s = queue_.SetOptions(options);
  wake_ = true;
  return s;
}

template <typename Task>
void BatchScheduler<Task>::StopAccepting() {
  absl::MutexLock lock(&mu_);
  accepting_ = false;
  queue_.Close();
  wake_ = true;
}

template <typename Task>
void BatchScheduler<Task>::Stop(absl::Time deadline) {
  {
    absl::MutexLock lock(&mu_);
    accepting_ = false;
    queue_.Close();
    stop_ = true;
    hard_deadline_ = std::min(hard_deadline_, deadline);
    wake_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

template <typename Task>
int64_t BatchScheduler<Task>::NumQueued() {
  absl::MutexLock lock(&mu_);
  return queue_.size() + caller_batch_tasks_;
}

template <typename Task>
void BatchScheduler<Task>::Run() {
  const Clock& clock = *options_.clock;
  mu_.Lock();
  while (clock.Now() < hard_deadline_) {
    std::vector<TaskPtr> batch;
    if (!caller_batches_.empty()) {
      batch = std::move(caller_batches_.front());
      caller_batches_.pop_front();
      caller_batch_tasks_ -= static_cast<int64_t>(batch.size());
    } else {
      // Once no new task can arrive, waiting for company only delays the answers.
      batch = queue_.TakeBatch(clock.Now(), /*force=*/!accepting_);
    }
    if (!batch.empty()) {
      mu_.Unlock();
      options_.process(std::move(batch));
      mu_.Lock();
      continue;
    }
    if (stop_) break;  // drained
    if (options_.on_queue_depth) options_.on_queue_depth(queue_.size());
    wake_ = false;
    sleeping_until_ = std::min(queue_.NextClose(), hard_deadline_);
    clock.AwaitWithDeadline(mu_, absl::Condition(&wake_), sleeping_until_);
    sleeping_until_ = absl::InfinitePast();
  }
  std::vector<TaskPtr> rest;
  for (std::vector<TaskPtr>& batch : caller_batches_) {
    for (TaskPtr& t : batch) rest.push_back(std::move(t));
  }
  caller_batches_.clear();
  caller_batch_tasks_ = 0;
  for (std::vector<TaskPtr> more = queue_.TakeBatch(absl::InfiniteFuture(), /*force=*/true);
       !more.empty(); more = queue_.TakeBatch(absl::InfiniteFuture(), /*force=*/true)) {
    for (TaskPtr& t : more) rest.push_back(std::move(t));
  }
  if (options_.on_queue_depth) options_.on_queue_depth(0);
  mu_.Unlock();
  const absl::Status stopping = Stopping();
  for (TaskPtr& t : rest) options_.reject(std::move(t), stopping);
}

}  // namespace router::core

#endif  // ROUTER_CORE_SERVING_BATCH_SCHEDULER_H_
