#include "router_core/serving/batch_scheduler.h"

#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/router_core/testing/fake_clock.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::core {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using testing::FakeClock;

struct FakeTask {
  int id = 0;
  absl::Time due = absl::InfiniteFuture();
  absl::Time deadline() const { return due; }
};
using Scheduler = BatchScheduler<FakeTask>;
using TaskPtr = std::unique_ptr<FakeTask>;

// What the scheduler handed back: the batches (task ids, in order) and the rejected tasks.
class Recorder {
 public:
  void Process(std::vector<TaskPtr> batch) {
    absl::Notification* gate = nullptr;
    {
      absl::MutexLock lock(&mu_);
      std::vector<int> ids;
      for (const TaskPtr& t : batch) ids.push_back(t->id);
      batches_.push_back(std::move(ids));
      gate = gate_;
    }
    if (gate != nullptr) gate->WaitForNotification();
  }
  // Makes Process block, once it recorded its batch, until `gate` is notified.
  void HoldBatchesUntil(absl::Notification* gate) {
    absl::MutexLock lock(&mu_);
    gate_ = gate;
  }
  void Reject(TaskPtr task, const absl::Status& status) {
    absl::MutexLock lock(&mu_);
    rejected_.emplace_back(task->id, status);
  }
  // Blocks until `n` batches were processed.
  void AwaitBatches(size_t n) {
    absl::MutexLock lock(&mu_);
    const auto enough = [&] {
      mu_.AssertHeld();
      return batches_.size() >= n;
    };
    mu_.Await(absl::Condition(&enough));
  }
  std::vector<std::vector<int>> batches() {
    absl::MutexLock lock(&mu_);
    return batches_;
  }
  std::vector<std::pair<int, absl::Status>> rejected() {
    absl::MutexLock lock(&mu_);
    return rejected_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::vector<int>> batches_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<int, absl::Status>> rejected_ ABSL_GUARDED_BY(mu_);
  absl::Notification* gate_ ABSL_GUARDED_BY(mu_) = nullptr;
};

std::unique_ptr<Scheduler> Make(const FakeClock& clock, Recorder& recorder, int64_t max_batch_size,
                                absl::Duration delay, int64_t max_queued = 100) {
  Scheduler::Options o;
  o.queue.max_batch_size = max_batch_size;
  o.queue.max_batch_delay = delay;
  o.queue.max_queued = max_queued;
  o.queue.solve_margin = absl::Milliseconds(5);
  o.process = [&recorder](std::vector<TaskPtr> batch) { recorder.Process(std::move(batch)); };
  o.reject = [&recorder](TaskPtr t, const absl::Status& s) { recorder.Reject(std::move(t), s); };
  o.stopping_message = "stopping";
  o.clock = &clock;
  absl::StatusOr<std::unique_ptr<Scheduler>> s = Scheduler::Create(std::move(o));
  EXPECT_THAT(s, IsOk());
  return *std::move(s);
}

// Schedules a task and checks the ownership contract: taken iff OK.
absl::Status Schedule(Scheduler& s, int id, absl::Time due = absl::InfiniteFuture()) {
  TaskPtr task = std::make_unique<FakeTask>(FakeTask{id, due});
  const absl::Status status = s.Schedule(task);
  EXPECT_EQ(status.ok(), task == nullptr);
  return status;
}

// Each test's fake clock, the recorder its scheduler hands batches to, and the clock's start.
class BatchSchedulerTest : public ::testing::Test {
 protected:
  FakeClock clock;
  Recorder r;
  const absl::Time t0 = clock.Now();
};

TEST_F(BatchSchedulerTest, FullBatchesCloseAtOnceAndTheRestAfterTheDelay) {
  auto s = Make(clock, r, 3, absl::Seconds(1));
  for (int id = 0; id < 7; ++id) ASSERT_THAT(Schedule(*s, id), IsOk());
  r.AwaitBatches(2);
  // Task 6 waits for company until its arrival plus the delay.
  clock.BlockUntilWaitingUntil(t0 + absl::Seconds(1));
  EXPECT_THAT(r.batches(), ElementsAre(ElementsAre(0, 1, 2), ElementsAre(3, 4, 5)));
  clock.Advance(absl::Seconds(1) - absl::Nanoseconds(1));
  clock.BlockUntilWaitingUntil(t0 + absl::Seconds(1));
  EXPECT_EQ(r.batches().size(), 2u);
  clock.Advance(absl::Nanoseconds(1));
  r.AwaitBatches(3);
  EXPECT_THAT(r.batches().back(), ElementsAre(6));
  EXPECT_THAT(r.rejected(), IsEmpty());
}

TEST_F(BatchSchedulerTest, ABatchClosesBeforeItsEarliestDeadlineByTheMargin) {
  auto s = Make(clock, r, 10, absl::Seconds(1));
  ASSERT_THAT(Schedule(*s, 1), IsOk());
  ASSERT_THAT(Schedule(*s, 2, t0 + absl::Milliseconds(50)), IsOk());
  clock.BlockUntilWaitingUntil(t0 + absl::Milliseconds(45));
  clock.Advance(absl::Milliseconds(45));
  r.AwaitBatches(1);
  EXPECT_THAT(r.batches(), ElementsAre(ElementsAre(1, 2)));
}

TEST_F(BatchSchedulerTest, ANearerDeadlineWakesTheSleepingThread) {
  auto s = Make(clock, r, 10, absl::Seconds(1));
  ASSERT_THAT(Schedule(*s, 1), IsOk());
  clock.BlockUntilWaitingUntil(t0 + absl::Seconds(1));
  // Arrives while the thread sleeps until t0 + 1 s; its deadline needs the batch at t0 + 15 ms.
  ASSERT_THAT(Schedule(*s, 2, t0 + absl::Milliseconds(20)), IsOk());
  clock.BlockUntilWaitingUntil(t0 + absl::Milliseconds(15));
  EXPECT_THAT(r.batches(), IsEmpty());
  clock.Advance(absl::Milliseconds(15));
  r.AwaitBatches(1);
  EXPECT_THAT(r.batches(), ElementsAre(ElementsAre(1, 2)));
}

TEST_F(BatchSchedulerTest, CallerFormedBatchesGoWholeAndFirst) {
  auto s = Make(clock, r, 2, absl::Seconds(1));
  ASSERT_THAT(Schedule(*s, 1), IsOk());
  clock.BlockUntilWaitingUntil(t0 + absl::Seconds(1));
  std::vector<TaskPtr> batch;
  for (int id = 10; id < 15; ++id) batch.push_back(std::make_unique<FakeTask>(FakeTask{id}));
  ASSERT_THAT(s->ScheduleBatch(batch), IsOk());
  EXPECT_THAT(batch, IsEmpty());
  r.AwaitBatches(1);
  EXPECT_THAT(r.batches(), ElementsAre(ElementsAre(10, 11, 12, 13, 14)));  // larger than 2
  clock.Advance(absl::Seconds(1));
  r.AwaitBatches(2);
  EXPECT_THAT(r.batches().back(), ElementsAre(1));
}

TEST_F(BatchSchedulerTest, AFullQueueRefusesAndLeavesTheTaskWithTheCaller) {
  absl::Notification release;
  r.HoldBatchesUntil(&release);
  auto s = Make(clock, r, 2, absl::Seconds(1), /*max_queued=*/3);
  ASSERT_THAT(Schedule(*s, 0), IsOk());
  ASSERT_THAT(Schedule(*s, 1), IsOk());
  r.AwaitBatches(1);  // the thread now holds batch {0, 1}
  for (int id = 2; id < 5; ++id) ASSERT_THAT(Schedule(*s, id), IsOk());
  EXPECT_THAT(Schedule(*s, 5),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("queue full (3 queries waiting)")));
  std::vector<TaskPtr> batch;
  batch.push_back(std::make_unique<FakeTask>(FakeTask{40}));
  batch.push_back(std::make_unique<FakeTask>(FakeTask{41}));
  batch.push_back(std::make_unique<FakeTask>(FakeTask{42}));
  batch.push_back(std::make_unique<FakeTask>(FakeTask{43}));
  EXPECT_THAT(s->ScheduleBatch(batch), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("full")));
  EXPECT_EQ(batch.size(), 4u);  // left with the caller
  release.Notify();
  s->Stop(absl::InfiniteFuture());
  EXPECT_THAT(r.batches(), ElementsAre(ElementsAre(0, 1), ElementsAre(2, 3), ElementsAre(4)));
  EXPECT_THAT(r.rejected(), IsEmpty());
}

TEST_F(BatchSchedulerTest, StopAcceptingRefusesNewTasksAndDecidesTheQueuedAtOnce) {
  auto s = Make(clock, r, 10, absl::Seconds(1));
  ASSERT_THAT(Schedule(*s, 1), IsOk());
  ASSERT_THAT(Schedule(*s, 2), IsOk());
  clock.BlockUntilWaiters(1);
  s->StopAccepting();
  EXPECT_THAT(Schedule(*s, 3), StatusIs(absl::StatusCode::kUnavailable, "stopping"));
  r.AwaitBatches(1);  // without advancing the clock: no waiting for company
  EXPECT_THAT(r.batches(), ElementsAre(ElementsAre(1, 2)));
}

TEST_F(BatchSchedulerTest, StopRejectsWhatItCannotProcessByItsDeadline) {
  auto s = Make(clock, r, 10, absl::Seconds(1));
  for (int id = 0; id < 5; ++id) ASSERT_THAT(Schedule(*s, id), IsOk());
  clock.BlockUntilWaiters(1);
  s->Stop(clock.Now());  // the deadline has come: nothing more is processed
  EXPECT_THAT(r.batches(), IsEmpty());
  const auto rejected = r.rejected();
  ASSERT_EQ(rejected.size(), 5u);
  for (int id = 0; id < 5; ++id) {
    EXPECT_EQ(rejected[id].first, id);
    EXPECT_THAT(rejected[id].second, StatusIs(absl::StatusCode::kUnavailable, "stopping"));
  }
  EXPECT_EQ(s->NumQueued(), 0);
}

TEST_F(BatchSchedulerTest, EveryTaskIsHandedBackExactlyOnceUnderConcurrency) {
  auto s = Make(clock, r, 8, absl::Milliseconds(1), /*max_queued=*/10000);
  constexpr int kThreads = 4, kPerThread = 300;
  std::vector<std::thread> producers;
  for (int t = 0; t < kThreads; ++t) {
    producers.emplace_back([&, t] {
      for (int k = 0; k < kPerThread; ++k) {
        const int id = t * kPerThread + k;
        const absl::Time due = k % 3 == 0 ? clock.Now() + absl::Milliseconds(k % 7) : absl::InfiniteFuture();
        EXPECT_THAT(Schedule(*s, id, due), IsOk());
      }
    });
  }
  for (int step = 0; step < 50; ++step) clock.Advance(absl::Microseconds(300));
  for (std::thread& p : producers) p.join();
  s->Stop(clock.Now() + absl::Hours(1));
  std::vector<int> seen(kThreads * kPerThread, 0);
  for (const std::vector<int>& batch : r.batches()) {
    EXPECT_LE(batch.size(), 8u);
    for (int id : batch) ++seen[id];
  }
  for (const auto& [id, status] : r.rejected()) ++seen[id];
  for (int id = 0; id < kThreads * kPerThread; ++id) EXPECT_EQ(seen[id], 1) << "task " << id;
}

TEST_F(BatchSchedulerTest, RefusesBadOptions) {
  Scheduler::Options o;
  EXPECT_THAT(Scheduler::Create(o), StatusIs(absl::StatusCode::kInvalidArgument, "process: required"));
  o.process = [](std::vector<TaskPtr>) {};
  EXPECT_THAT(Scheduler::Create(o), StatusIs(absl::StatusCode::kInvalidArgument, "reject: required"));
  o.reject = [](TaskPtr, const absl::Status&) {};
  o.queue.max_batch_size = 0;
  EXPECT_THAT(Scheduler::Create(o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_batch_size")));
}

}  // namespace
}  // namespace router::core
