#include "router_core/serving/ledger.h"

#include <atomic>
#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/router_core/testing/fake_clock.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::core {
namespace {

using ::testing::HasSubstr;
using testing::FakeClock;
using testing::IsOk;
using testing::StatusIs;

std::vector<LedgerModel> Pool() { return {{"local", 2}, {"api", std::nullopt}}; }

std::unique_ptr<Ledger> Make(const LedgerOptions& o, const FakeClock& clock) {
  absl::StatusOr<std::unique_ptr<Ledger>> l = Ledger::Create(o, Pool(), &clock);
  EXPECT_THAT(l, IsOk());
  return *std::move(l);
}

TEST(LedgerTest, SlotsAreHeldUntilCompleteOrLeaseExpiry) {
  FakeClock clock;
  LedgerOptions o;
  o.lease_timeout = absl::Seconds(10);
  auto ledger = Make(o, clock);
  auto ids = ledger->Commit({{"local", 0.0}, {"local", 0.0}, {"api", 0.01}});
  ASSERT_THAT(ids, IsOk());
  EXPECT_EQ(ledger->Snapshot().free_slots[0], 0);
  EXPECT_EQ(ledger->Snapshot().free_slots[1], std::nullopt);
  EXPECT_THAT(ledger->Commit({{"local", 0.0}}), StatusIs(absl::StatusCode::kFailedPrecondition,
                                                         HasSubstr("1 slots wanted, 0 free")));

  auto done = ledger->Complete((*ids)[0], std::nullopt);
  ASSERT_THAT(done, IsOk());
  EXPECT_TRUE(done->lease_was_active);
  EXPECT_EQ(ledger->Snapshot().free_slots[0], 1);
  EXPECT_THAT(ledger->Complete((*ids)[0], std::nullopt), StatusIs(absl::StatusCode::kNotFound, HasSubstr("already completed")));

  clock.Advance(absl::Seconds(10));  // the second lease expires
  EXPECT_EQ(ledger->Snapshot().free_slots[0], 2);
  EXPECT_EQ(ledger->Totals().open_assignments, 0);
  // A late completion still reconciles the spend, and says the lease was gone.
  done = ledger->Complete((*ids)[2], 0.03);
  ASSERT_THAT(done, IsOk());
  EXPECT_FALSE(done->lease_was_active);
  EXPECT_DOUBLE_EQ(ledger->Totals().recorded_usd, 0.03);
}

TEST(LedgerTest, ALeaseTimeoutShortenedAtRuntimeExpiresTheNewerLeaseFirst) {
  FakeClock clock;
  LedgerOptions o;
  o.lease_timeout = absl::Seconds(10);
  auto ledger = Make(o, clock);
  auto older = ledger->Commit({{"local", 0.0}});
  ASSERT_THAT(older, IsOk());
  o.lease_timeout = absl::Seconds(2);
  ASSERT_THAT(ledger->SetOptions(o), IsOk());
  auto newer = ledger->Commit({{"local", 0.0}});
  ASSERT_THAT(newer, IsOk());

  clock.Advance(absl::Seconds(3));
  EXPECT_EQ(ledger->InUse("local"), 1);
  auto done = ledger->Complete((*newer)[0], std::nullopt);
  ASSERT_THAT(done, IsOk());
  EXPECT_FALSE(done->lease_was_active);
  done = ledger->Complete((*older)[0], std::nullopt);
  ASSERT_THAT(done, IsOk());
  EXPECT_TRUE(done->lease_was_active);
}

TEST(LedgerTest, LeasesLeftOpenAmongManyCompletedStillExpireOnTime) {
  FakeClock clock;
  LedgerOptions o;
  o.lease_timeout = absl::Seconds(10);
  auto ledger = Make(o, clock);
  std::vector<Reservation> many(500, {"api", 0.001});
  auto ids = ledger->Commit(many);
  ASSERT_THAT(ids, IsOk());
  // Completing all but every 49th lease (odd and even sequence numbers) drops the completed ones
  // from the expiry order.
  for (size_t k = 0; k < ids->size(); ++k) {
    if (k % 49 != 0) {
      ASSERT_THAT(ledger->Complete((*ids)[k], std::nullopt), IsOk());
    }
  }
  EXPECT_EQ(ledger->Totals().open_assignments, 11);
  clock.Advance(absl::Seconds(9));
  EXPECT_EQ(ledger->Totals().open_assignments, 11);
  clock.Advance(absl::Seconds(1));
  EXPECT_EQ(ledger->Totals().open_assignments, 0);
  EXPECT_NEAR(ledger->Totals().reserved_usd, 0.0, 1e-12);
  auto late = ledger->Complete((*ids)[49], std::nullopt);
  ASSERT_THAT(late, IsOk());
  EXPECT_FALSE(late->lease_was_active);
}

TEST(LedgerTest, AcceptsOnlyTheIdsItIssued) {
  FakeClock clock;
  auto ledger = Make(LedgerOptions{}, clock);
  std::vector<Reservation> eight(8, {"api", 0.001});
  auto ids = ledger->Commit(eight);
  ASSERT_THAT(ids, IsOk());
  const std::string& id = (*ids)[7];
  const std::string prefix = id.substr(0, id.find_last_not_of("0123456789") + 1);
  const std::string number = id.substr(prefix.size());
  ASSERT_FALSE(number.empty());
  for (const std::string& other :
       {prefix + "+" + number, prefix + "0" + number, prefix + " " + number, prefix + number + " ",
        "x" + id, prefix, prefix + "99999999999999999999999"}) {
    EXPECT_THAT(ledger->Complete(other, std::nullopt),
                StatusIs(absl::StatusCode::kNotFound, HasSubstr("assignment_id")))
        << other;
  }
  EXPECT_THAT(ledger->Complete(id, std::nullopt), IsOk());
}

TEST(LedgerTest, PacingRefillsAndReconcilesActualCost) {
  FakeClock clock;
  LedgerOptions o;
  o.spend_rate_usd_per_second = 0.5;
  o.spend_burst_usd = 1.0;
  auto ledger = Make(o, clock);
  EXPECT_DOUBLE_EQ(ledger->Snapshot().spend_allowance_usd, 1.0);
  auto ids = ledger->Commit({{"api", 0.8}});
  ASSERT_THAT(ids, IsOk());
  EXPECT_NEAR(ledger->Snapshot().spend_allowance_usd, 0.2, 1e-12);
  EXPECT_THAT(ledger->Commit({{"api", 0.3}}), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("spend")));
  clock.Advance(absl::Seconds(1));
  EXPECT_NEAR(ledger->Snapshot().spend_allowance_usd, 0.7, 1e-12);
  // The call cost more than predicted: the difference is charged.
  ASSERT_THAT(ledger->Complete((*ids)[0], 1.4), IsOk());
  // Level: 0.7 + 0.8 (predicted back) - 1.4 (actual) = 0.1.
  EXPECT_NEAR(ledger->Snapshot().spend_allowance_usd, 0.1, 1e-12);
  ASSERT_THAT(ledger->Commit({{"api", 0.1}}), IsOk());
  EXPECT_NEAR(ledger->Snapshot().spend_allowance_usd, 0.0, 1e-12);
  clock.Advance(absl::Seconds(100));  // never above the burst
  EXPECT_DOUBLE_EQ(ledger->Snapshot().spend_allowance_usd, 1.0);
}

TEST(LedgerTest, WithoutPacingSpendIsUnlimited) {
  FakeClock clock;
  auto ledger = Make(LedgerOptions{}, clock);
  EXPECT_TRUE(std::isinf(ledger->Snapshot().spend_allowance_usd));
  EXPECT_THAT(ledger->Commit({{"api", 1e6}}), IsOk());
  EXPECT_DOUBLE_EQ(ledger->Totals().reserved_usd, 1e6);
}

TEST(LedgerTest, ShrinkingAModelKeepsOpenLeasesAndGivesNoFreeSlot) {
  FakeClock clock;
  auto ledger = Make(LedgerOptions{}, clock);
  auto ids = ledger->Commit({{"local", 0.0}, {"local", 0.0}});
  ASSERT_THAT(ids, IsOk());
  ASSERT_THAT(ledger->SetModels({{"local", 1}, {"api", std::nullopt}}), IsOk());
  EXPECT_EQ(ledger->Snapshot().free_slots[0], 0);
  ASSERT_THAT(ledger->Complete((*ids)[0], std::nullopt), IsOk());
  EXPECT_EQ(ledger->Snapshot().free_slots[0], 0);  // 1 in use of 1
  ASSERT_THAT(ledger->Complete((*ids)[1], std::nullopt), IsOk());
  EXPECT_EQ(ledger->Snapshot().free_slots[0], 1);
}

TEST(LedgerTest, RejectsBadInput) {
  FakeClock clock;
  LedgerOptions o;
  o.lease_timeout = absl::ZeroDuration();
  EXPECT_THAT(Ledger::Create(o, Pool(), &clock), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("lease_timeout")));
  EXPECT_THAT(Ledger::Create(LedgerOptions{}, {{"a", 1}, {"a", 2}}, &clock),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("models[1].name: duplicate")));
  auto ledger = Make(LedgerOptions{}, clock);
  EXPECT_THAT(ledger->Commit({{"nope", 0.0}}), StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope")));
  EXPECT_THAT(ledger->Commit({{"api", -1.0}}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("reservations[0]")));
  EXPECT_THAT(ledger->Complete("x", std::nullopt), StatusIs(absl::StatusCode::kNotFound, HasSubstr("assignment_id")));
  auto ids = ledger->Commit({{"api", 0.1}});
  ASSERT_THAT(ids, IsOk());
  EXPECT_THAT(ledger->Complete((*ids)[0], std::nan("")), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("actual_cost_usd")));
}

TEST(LedgerTest, ConcurrentCommitsNeverExceedSlots) {
  FakeClock clock;
  auto ledger = Make(LedgerOptions{}, clock);
  std::atomic<int> granted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int k = 0; k < 50; ++k) {
        if (ledger->Commit({{"local", 0.0}}).ok()) ++granted;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(granted.load(), 2);
  EXPECT_EQ(ledger->InUse("local"), 2);
}

}  // namespace
}  // namespace router::core
