#include "server/batch_scheduler.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace router::server {
namespace {

absl::Status ShuttingDown() {
  return absl::UnavailableError("routerd is shutting down; retry on another replica");
}

}  // namespace

absl::StatusOr<std::unique_ptr<BatchScheduler>> BatchScheduler::Create(
    const core::BatchQueueOptions& options, std::shared_ptr<const BatchContext> context,
    core::Ledger* ledger, const core::Clock* clock, BatchObserver* observer) {
  absl::StatusOr<core::BatchQueue<TaskPtr>> queue = core::BatchQueue<TaskPtr>::Create(options);
  if (!queue.ok()) return queue.status();
  return std::unique_ptr<BatchScheduler>(
      new BatchScheduler(*std::move(queue), std::move(context), ledger, clock, observer));
}

BatchScheduler::BatchScheduler(core::BatchQueue<TaskPtr> queue,
                               std::shared_ptr<const BatchContext> context, core::Ledger* ledger,
                               const core::Clock* clock, BatchObserver* observer)
    : ledger_(ledger),
      clock_(clock),
      observer_(observer),
      queue_(std::move(queue)),
      context_(std::move(context)),
      batch_prefix_(absl::StrCat("b", absl::Hex(absl::ToUnixMicros(clock->Now())), "-")) {
  thread_ = std::thread([this] { Run(); });
}

BatchScheduler::~BatchScheduler() { Stop(clock_->Now()); }

absl::Status BatchScheduler::Submit(TaskPtr& task) {
  const absl::Time now = clock_->Now();
  task->query.arrival = now;
  absl::MutexLock lock(&mu_);
  if (!accepting_) return ShuttingDown();
  const absl::Time deadline = task->deadline;
  // Add moves from `task` only on success; a refused task stays with the caller.
  absl::Status s = queue_.Add(std::move(task), now, deadline);
  // Wake the batch thread only if this arrival makes its batch close earlier than it sleeps until
  // (the batch is now full, or this query's deadline is nearer). A wake-up per query cost a context
  // switch per query for nothing: the thread would find the batch not yet due and sleep again.
  if (s.ok() && queue_.NextClose() < sleeping_until_) wake_ = true;
  return s;
}

absl::Status BatchScheduler::SubmitBatch(std::vector<TaskPtr>& tasks) {
  const absl::Time now = clock_->Now();
  for (TaskPtr& t : tasks) t->query.arrival = now;
  absl::MutexLock lock(&mu_);
  if (!accepting_) return ShuttingDown();
  const int64_t n = static_cast<int64_t>(tasks.size());
  if (batch_job_queries_ + n > queue_.options().max_queued) {
    return absl::UnavailableError(absl::StrCat("batch queue full (", batch_job_queries_,
                                               " queries waiting); retry with backoff"));
  }
  batch_job_queries_ += n;
  batch_jobs_.push_back(std::move(tasks));
  tasks.clear();
  wake_ = true;
  return absl::OkStatus();
}

absl::Status BatchScheduler::SetOptions(const core::BatchQueueOptions& options) {
  absl::MutexLock lock(&mu_);
  absl::Status s = queue_.SetOptions(options);
  wake_ = true;
  return s;
}

void BatchScheduler::SetContext(std::shared_ptr<const BatchContext> context) {
  absl::MutexLock lock(&mu_);
  context_ = std::move(context);
}

void BatchScheduler::StopAccepting() {
  absl::MutexLock lock(&mu_);
  accepting_ = false;
  queue_.Close();
  wake_ = true;
}

void BatchScheduler::Stop(absl::Time deadline) {
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

int64_t BatchScheduler::queued() {
  absl::MutexLock lock(&mu_);
  return queue_.size() + batch_job_queries_;
}

void BatchScheduler::Run() {
  mu_.Lock();
  while (clock_->Now() < hard_deadline_) {
    if (!batch_jobs_.empty()) {
      std::vector<TaskPtr> job = std::move(batch_jobs_.front());
      batch_jobs_.pop_front();
      batch_job_queries_ -= static_cast<int64_t>(job.size());
      mu_.Unlock();
      Decide(std::move(job));
      mu_.Lock();
      continue;
    }
    // Once no new work can arrive, waiting for company only delays the answers.
    std::vector<TaskPtr> batch = queue_.TakeBatch(clock_->Now(), /*force=*/!accepting_);
    if (!batch.empty()) {
      mu_.Unlock();
      Decide(std::move(batch));
      mu_.Lock();
      continue;
    }
    if (stop_) break;  // drained
    if (observer_ != nullptr) observer_->OnQueueDepth(queue_.size());
    wake_ = false;
    sleeping_until_ = std::min(queue_.NextClose(), hard_deadline_);
    mu_.AwaitWithDeadline(absl::Condition(&wake_), sleeping_until_);
    sleeping_until_ = absl::InfinitePast();
  }
  std::vector<TaskPtr> rest = queue_.TakeBatch(absl::InfiniteFuture(), /*force=*/true);
  while (!rest.empty()) {
    std::vector<TaskPtr> more = queue_.TakeBatch(absl::InfiniteFuture(), /*force=*/true);
    if (more.empty()) break;
    for (TaskPtr& t : more) rest.push_back(std::move(t));
  }
  for (std::vector<TaskPtr>& job : batch_jobs_) {
    for (TaskPtr& t : job) rest.push_back(std::move(t));
  }
  batch_jobs_.clear();
  batch_job_queries_ = 0;
  if (observer_ != nullptr) observer_->OnQueueDepth(0);
  mu_.Unlock();
  for (TaskPtr& t : rest) t->Fail(ShuttingDown());
}

void BatchScheduler::Decide(std::vector<TaskPtr> tasks) {
  const absl::Time now = clock_->Now();
  std::vector<TaskPtr> live;
  std::vector<core::PendingQuery> queries;
  absl::Time oldest = now;
  for (TaskPtr& t : tasks) {
    if (t->Cancelled()) {
      t->Fail(absl::CancelledError("the client cancelled the call"));
    } else if (now >= t->deadline) {
      t->Fail(absl::DeadlineExceededError("the deadline passed before the query's batch closed"));
    } else {
      oldest = std::min(oldest, t->query.arrival);
      queries.push_back(std::move(t->query));
      live.push_back(std::move(t));
    }
  }
  if (live.empty()) return;
  std::shared_ptr<const BatchContext> context;
  {
    absl::MutexLock lock(&mu_);
    context = context_;
  }
  const core::BatchOutcome outcome =
      core::RouteBatch(queries, context->pool, context->policy, *ledger_, *clock_,
                       absl::StrCat(batch_prefix_, next_batch_.fetch_add(1)));
  if (observer_ != nullptr) observer_->OnBatch(outcome, now - oldest);
  for (size_t k = 0; k < live.size(); ++k) live[k]->Answer(outcome, k);
  for (TaskPtr& t : live) t->Flush();
}

}  // namespace router::server
