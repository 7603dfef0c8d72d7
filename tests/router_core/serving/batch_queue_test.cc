#include "router_core/serving/batch_queue.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/router_core/testing/fake_clock.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::core {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using testing::FakeClock;

BatchQueue<int> Make(int64_t max_size, absl::Duration delay, int64_t max_queued = 100) {
  BatchQueueOptions o;
  o.max_batch_size = max_size;
  o.max_batch_delay = delay;
  o.max_queued = max_queued;
  o.solve_margin = absl::Milliseconds(2);
  absl::StatusOr<BatchQueue<int>> q = BatchQueue<int>::Create(o);
  EXPECT_THAT(q, IsOk());
  return *std::move(q);
}

TEST(BatchQueueTest, ClosesOnSizeAtOnce) {
  FakeClock clock;
  BatchQueue<int> q = Make(3, absl::Milliseconds(10));
  for (int k = 0; k < 4; ++k) ASSERT_THAT(q.Add(int{k}, clock.Now(), absl::InfiniteFuture()), IsOk());
  EXPECT_EQ(q.NextClose(), absl::InfinitePast());
  EXPECT_THAT(q.TakeBatch(clock.Now()), ElementsAre(0, 1, 2));
  // The remaining one waits for its delay.
  EXPECT_EQ(q.NextClose(), clock.Now() + absl::Milliseconds(10));
  EXPECT_THAT(q.TakeBatch(clock.Now()), IsEmpty());
  clock.Advance(absl::Milliseconds(10));
  EXPECT_THAT(q.TakeBatch(clock.Now()), ElementsAre(3));
}

TEST(BatchQueueTest, ClosesAfterTheOldestItemsDelay) {
  FakeClock clock;
  BatchQueue<int> q = Make(10, absl::Milliseconds(5));
  ASSERT_THAT(q.Add(1, clock.Now(), absl::InfiniteFuture()), IsOk());
  clock.Advance(absl::Milliseconds(3));
  ASSERT_THAT(q.Add(2, clock.Now(), absl::InfiniteFuture()), IsOk());
  clock.Advance(absl::Milliseconds(1));
  EXPECT_THAT(q.TakeBatch(clock.Now()), IsEmpty());
  clock.Advance(absl::Milliseconds(1));
  EXPECT_THAT(q.TakeBatch(clock.Now()), ElementsAre(1, 2));
  EXPECT_EQ(q.NextClose(), absl::InfiniteFuture());
}

TEST(BatchQueueTest, ClosesEarlyForAMembersDeadline) {
  FakeClock clock;
  BatchQueue<int> q = Make(10, absl::Milliseconds(50));
  ASSERT_THAT(q.Add(1, clock.Now(), absl::InfiniteFuture()), IsOk());
  ASSERT_THAT(q.Add(2, clock.Now(), clock.Now() + absl::Milliseconds(7)), IsOk());
  // Deadline 7 ms minus the 2 ms solve margin.
  EXPECT_EQ(q.NextClose(), clock.Now() + absl::Milliseconds(5));
  clock.Advance(absl::Milliseconds(5));
  EXPECT_THAT(q.TakeBatch(clock.Now()), ElementsAre(1, 2));
}

TEST(BatchQueueTest, ADeadlineStopsCountingOnceItsItemIsTakenOrRemoved) {
  FakeClock clock;
  BatchQueue<int> q = Make(3, absl::Milliseconds(50));
  ASSERT_THAT(q.Add(1, clock.Now(), clock.Now() + absl::Milliseconds(7)), IsOk());
  ASSERT_THAT(q.Add(2, clock.Now(), absl::InfiniteFuture()), IsOk());
  ASSERT_THAT(q.Add(3, clock.Now(), absl::InfiniteFuture()), IsOk());
  ASSERT_THAT(q.Add(4, clock.Now(), clock.Now() + absl::Milliseconds(20)), IsOk());
  EXPECT_THAT(q.TakeBatch(clock.Now()), ElementsAre(1, 2, 3));
  // Item 1's deadline left with it: the next close is item 4's (20 ms - 2 ms margin).
  EXPECT_EQ(q.NextClose(), clock.Now() + absl::Milliseconds(18));
  EXPECT_THAT(q.TakeBatch(clock.Now(), /*force=*/true), ElementsAre(4));
  ASSERT_THAT(q.Add(5, clock.Now(), absl::InfiniteFuture()), IsOk());
  EXPECT_EQ(q.NextClose(), clock.Now() + absl::Milliseconds(50));
  // A later, nearer deadline moves the close earlier again.
  ASSERT_THAT(q.Add(6, clock.Now(), clock.Now() + absl::Milliseconds(10)), IsOk());
  EXPECT_EQ(q.NextClose(), clock.Now() + absl::Milliseconds(8));
}

TEST(BatchQueueTest, FullOrClosedQueueRefusesWithUnavailable) {
  FakeClock clock;
  BatchQueue<int> q = Make(2, absl::Milliseconds(5), /*max_queued=*/2);
  ASSERT_THAT(q.Add(1, clock.Now(), absl::InfiniteFuture()), IsOk());
  ASSERT_THAT(q.Add(2, clock.Now(), absl::InfiniteFuture()), IsOk());
  EXPECT_THAT(q.Add(3, clock.Now(), absl::InfiniteFuture()),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("queue full")));
  q.Close();
  EXPECT_THAT(q.TakeBatch(clock.Now()), ElementsAre(1, 2));  // queued items are still served
  EXPECT_THAT(q.Add(4, clock.Now(), absl::InfiniteFuture()),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("shutting down")));
}

TEST(BatchQueueTest, ForceTakesWhatIsThere) {
  FakeClock clock;
  BatchQueue<int> q = Make(10, absl::Seconds(1));
  for (int k = 0; k < 5; ++k) ASSERT_THAT(q.Add(int{k}, clock.Now(), absl::InfiniteFuture()), IsOk());
  EXPECT_THAT(q.TakeBatch(clock.Now()), ElementsAre());
  EXPECT_THAT(q.TakeBatch(clock.Now(), /*force=*/true), ElementsAre(0, 1, 2, 3, 4));
}

TEST(BatchQueueTest, RejectsBadOptions) {
  BatchQueueOptions o;
  o.max_batch_size = 0;
  EXPECT_THAT(BatchQueue<int>::Create(o), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_batch_size")));
  o = BatchQueueOptions{};
  o.max_queued = o.max_batch_size - 1;
  EXPECT_THAT(BatchQueue<int>::Create(o), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_queued")));
  o = BatchQueueOptions{};
  o.max_batch_delay = absl::Milliseconds(-1);
  EXPECT_THAT(BatchQueue<int>::Create(o), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_batch_delay")));
}

}  // namespace
}  // namespace router::core
