#include "router_core/serving/local_ledger.h"

#include <atomic>
#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/router_core/testing/fake_clock.h"
#include "tests/router_core/testing/ledger_testing.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::core {
namespace {

using testing::CommitIds;
using testing::FakeClock;
using testing::LedgerTestPool;
using testing::Paced;
using testing::Want;

std::unique_ptr<Ledger> Make(const LedgerOptions& o, const FakeClock& clock) {
  absl::StatusOr<std::unique_ptr<LocalLedger>> l =
      LocalLedger::Create(o, LedgerTestPool(), &clock);
  EXPECT_THAT(l, IsOk());
  return *std::move(l);
}

TEST(LocalLedgerTest, SlotsAreHeldUntilCompleteOrLeaseExpiry) {
  FakeClock clock;
  LedgerOptions o;
  o.lease_timeout = absl::Seconds(10);
  auto ledger = Make(o, clock);
  auto ids = CommitIds(*ledger, {{"local", 0.0}, {"local", 0.0}, {"api", 0.01}});
  ASSERT_THAT(ids, IsOk());
  EXPECT_EQ(ledger->Snapshot()->free_slots[0], 0);
  EXPECT_EQ(ledger->Snapshot()->free_slots[1], std::nullopt);
  EXPECT_THAT(CommitIds(*ledger, {{"local", 0.0}}), StatusIs(absl::StatusCode::kFailedPrecondition,
                                                         HasSubstr("1 slots wanted, 0 free")));

  auto done = ledger->Complete((*ids)[0], std::nullopt);
  ASSERT_THAT(done, IsOk());
  EXPECT_TRUE(done->lease_was_active);
  EXPECT_EQ(ledger->Snapshot()->free_slots[0], 1);
  EXPECT_THAT(ledger->Complete((*ids)[0], std::nullopt), StatusIs(absl::StatusCode::kNotFound, HasSubstr("already completed")));

  clock.Advance(absl::Seconds(10));  // the second lease expires
  EXPECT_EQ(ledger->Snapshot()->free_slots[0], 2);
  EXPECT_EQ(ledger->Totals()->open_assignments, 0);
  // A late completion still reconciles the spend, and says the lease was gone.
  done = ledger->Complete((*ids)[2], 0.03);
  ASSERT_THAT(done, IsOk());
  EXPECT_FALSE(done->lease_was_active);
  EXPECT_DOUBLE_EQ(ledger->Totals()->recorded_usd, 0.03);
}

TEST(LocalLedgerTest, ALeaseTimeoutShortenedAtRuntimeExpiresTheNewerLeaseFirst) {
  FakeClock clock;
  LedgerOptions o;
  o.lease_timeout = absl::Seconds(10);
  auto ledger = Make(o, clock);
  auto older = CommitIds(*ledger, {{"local", 0.0}});
  ASSERT_THAT(older, IsOk());
  o.lease_timeout = absl::Seconds(2);
  ASSERT_THAT(ledger->SetOptions(o), IsOk());
  auto newer = CommitIds(*ledger, {{"local", 0.0}});
  ASSERT_THAT(newer, IsOk());

  clock.Advance(absl::Seconds(3));
  EXPECT_EQ(ledger->InUse("local").value(), 1);
  auto done = ledger->Complete((*newer)[0], std::nullopt);
  ASSERT_THAT(done, IsOk());
  EXPECT_FALSE(done->lease_was_active);
  done = ledger->Complete((*older)[0], std::nullopt);
  ASSERT_THAT(done, IsOk());
  EXPECT_TRUE(done->lease_was_active);
}

TEST(LocalLedgerTest, LeasesLeftOpenAmongManyCompletedStillExpireOnTime) {
  FakeClock clock;
  LedgerOptions o;
  o.lease_timeout = absl::Seconds(10);
  auto ledger = Make(o, clock);
  std::vector<Reservation> many(500, {"api", 0.001});
  auto ids = CommitIds(*ledger, many);
  ASSERT_THAT(ids, IsOk());
  // Completing all but every 49th lease (odd and even sequence numbers) drops the completed ones
  // from the expiry order.
  for (size_t k = 0; k < ids->size(); ++k) {
    if (k % 49 != 0) {
      ASSERT_THAT(ledger->Complete((*ids)[k], std::nullopt), IsOk());
    }
  }
  EXPECT_EQ(ledger->Totals()->open_assignments, 11);
  clock.Advance(absl::Seconds(9));
  EXPECT_EQ(ledger->Totals()->open_assignments, 11);
  clock.Advance(absl::Seconds(1));
  EXPECT_EQ(ledger->Totals()->open_assignments, 0);
  EXPECT_NEAR(ledger->Totals()->reserved_usd, 0.0, 1e-12);
  auto late = ledger->Complete((*ids)[49], std::nullopt);
  ASSERT_THAT(late, IsOk());
  EXPECT_FALSE(late->lease_was_active);
}

TEST(LocalLedgerTest, AcceptsOnlyTheIdsItIssued) {
  FakeClock clock;
  auto ledger = Make(LedgerOptions{}, clock);
  std::vector<Reservation> eight(8, {"api", 0.001});
  auto ids = CommitIds(*ledger, eight);
  ASSERT_THAT(ids, IsOk());
  const std::string& id = (*ids)[7];
  const size_t dot = id.rfind('.');
  ASSERT_NE(dot, std::string::npos);
  const std::string head = id.substr(0, dot);  // prefix and sequence number
  const std::string tag = id.substr(dot + 1);
  ASSERT_EQ(tag.size(), 16u);
  const size_t digits = head.find_last_not_of("0123456789") + 1;
  const std::string prefix = head.substr(0, digits), number = head.substr(digits);
  std::string other_tag = tag;
  other_tag[15] = other_tag[15] == '0' ? '1' : '0';
  std::string upper_tag = tag;
  for (char& c : upper_tag) c = static_cast<char>(std::toupper(c));
  for (const std::string& forged :
       {head + "." + other_tag, head, head + ".", prefix + "+" + number + "." + tag,
        prefix + "0" + number + "." + tag, prefix + " " + number + "." + tag, id + " ", "x" + id,
        prefix + "99999999999999999999999." + tag, head + "." + tag + "0",
        upper_tag == tag ? head + ".g" + tag.substr(1) : head + "." + upper_tag}) {
    EXPECT_THAT(ledger->Complete(forged, std::nullopt),
                StatusIs(absl::StatusCode::kNotFound, HasSubstr("assignment_id")))
        << forged;
  }
  EXPECT_EQ(ledger->Totals()->open_assignments, 8);  // no forged id completed anything
  EXPECT_THAT(ledger->Complete(id, std::nullopt), IsOk());
}

// Ids carry a random tag: knowing how ids are numbered does not give another caller's id.
TEST(LocalLedgerTest, IdsAreNotGuessableFromTheirNumbering) {
  FakeClock clock;  // both ledgers start at the same time, so their prefixes are the same
  auto a = Make(LedgerOptions{}, clock);
  auto b = Make(LedgerOptions{}, clock);
  auto ids_a = CommitIds(*a, std::vector<Reservation>(50, {"api", 0.0}));
  auto ids_b = CommitIds(*b, std::vector<Reservation>(50, {"api", 0.0}));
  ASSERT_THAT(ids_a, IsOk());
  ASSERT_THAT(ids_b, IsOk());
  for (size_t k = 0; k < ids_a->size(); ++k) {
    EXPECT_NE((*ids_a)[k], (*ids_b)[k]);
    EXPECT_THAT(b->Complete((*ids_a)[k], std::nullopt),
                StatusIs(absl::StatusCode::kNotFound, HasSubstr("assignment_id")));
  }
  EXPECT_EQ(b->Totals()->open_assignments, 50);
}

TEST(LocalLedgerTest, PacingRefillsAndReconcilesActualCost) {
  FakeClock clock;
  auto ledger = Make(Paced(0.5, 1.0), clock);
  EXPECT_DOUBLE_EQ(ledger->Snapshot()->spend_allowance_usd, 1.0);
  auto ids = CommitIds(*ledger, {{"api", 0.8}});
  ASSERT_THAT(ids, IsOk());
  EXPECT_NEAR(ledger->Snapshot()->spend_allowance_usd, 0.2, 1e-12);
  EXPECT_THAT(CommitIds(*ledger, {{"api", 0.3}}), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("spend")));
  clock.Advance(absl::Seconds(1));
  EXPECT_NEAR(ledger->Snapshot()->spend_allowance_usd, 0.7, 1e-12);
  // The call cost more than predicted: the difference is charged.
  ASSERT_THAT(ledger->Complete((*ids)[0], 1.4), IsOk());
  // Level: 0.7 + 0.8 (predicted back) - 1.4 (actual) = 0.1.
  EXPECT_NEAR(ledger->Snapshot()->spend_allowance_usd, 0.1, 1e-12);
  ASSERT_THAT(CommitIds(*ledger, {{"api", 0.1}}), IsOk());
  EXPECT_NEAR(ledger->Snapshot()->spend_allowance_usd, 0.0, 1e-12);
  clock.Advance(absl::Seconds(100));  // never above the burst
  EXPECT_DOUBLE_EQ(ledger->Snapshot()->spend_allowance_usd, 1.0);
}

TEST(LocalLedgerTest, WithoutPacingSpendIsUnlimited) {
  FakeClock clock;
  auto ledger = Make(LedgerOptions{}, clock);
  EXPECT_TRUE(std::isinf(ledger->Snapshot()->spend_allowance_usd));
  EXPECT_THAT(CommitIds(*ledger, {{"api", 1e6}}), IsOk());
  EXPECT_DOUBLE_EQ(ledger->Totals()->reserved_usd, 1e6);
}

TEST(LocalLedgerTest, ShrinkingAModelKeepsOpenLeasesAndGivesNoFreeSlot) {
  FakeClock clock;
  auto ledger = Make(LedgerOptions{}, clock);
  auto ids = CommitIds(*ledger, {{"local", 0.0}, {"local", 0.0}});
  ASSERT_THAT(ids, IsOk());
  ASSERT_THAT(ledger->SetModels({{"local", 1}, {"api", std::nullopt}}), IsOk());
  EXPECT_EQ(ledger->Snapshot()->free_slots[0], 0);
  ASSERT_THAT(ledger->Complete((*ids)[0], std::nullopt), IsOk());
  EXPECT_EQ(ledger->Snapshot()->free_slots[0], 0);  // 1 in use of 1
  ASSERT_THAT(ledger->Complete((*ids)[1], std::nullopt), IsOk());
  EXPECT_EQ(ledger->Snapshot()->free_slots[0], 1);
}

TEST(LocalLedgerTest, RejectsBadInput) {
  FakeClock clock;
  LedgerOptions o;
  o.lease_timeout = absl::ZeroDuration();
  EXPECT_THAT(LocalLedger::Create(o, LedgerTestPool(), &clock),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("lease_timeout")));
  LedgerOptions negative;
  negative.spend_burst_usd = -1;  // refused whether or not pacing is on
  EXPECT_THAT(LocalLedger::Create(negative, LedgerTestPool(), &clock),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("spend_burst_usd")));
  EXPECT_THAT(LocalLedger::Create(LedgerOptions{}, {{"a", 1}, {"a", 2}}, &clock),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("models[1].name: duplicate")));
  auto ledger = Make(LedgerOptions{}, clock);
  EXPECT_THAT(CommitIds(*ledger, {{"nope", 0.0}}), StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope")));
  EXPECT_THAT(CommitIds(*ledger, {{"api", -1.0}}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("reservations[0]")));
  EXPECT_THAT(ledger->Complete("x", std::nullopt), StatusIs(absl::StatusCode::kNotFound, HasSubstr("assignment_id")));
  auto ids = CommitIds(*ledger, {{"api", 0.1}});
  ASSERT_THAT(ids, IsOk());
  EXPECT_THAT(ledger->Complete((*ids)[0], std::nan("")), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("actual_cost_usd")));
}

TEST(LocalLedgerTest, ConcurrentCommitsNeverExceedSlots) {
  FakeClock clock;
  auto ledger = Make(LedgerOptions{}, clock);
  std::atomic<int> granted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int k = 0; k < 50; ++k) {
        if (CommitIds(*ledger, {{"local", 0.0}}).ok()) ++granted;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(granted.load(), 2);
  EXPECT_EQ(ledger->InUse("local").value(), 2);
}

// One report of an absurd actual cost must not drain the paced budget: it is refused, and the
// lease stays open for a correct Complete.
TEST(LocalLedgerTest, AnActualCostAboveTheLimitIsRefusedAndChangesNothing) {
  FakeClock clock;
  LedgerOptions paced = Paced(0.01, 5.0);
  paced.max_actual_cost_usd = 2.0;
  auto ledger = Make(paced, clock);
  auto ids = CommitIds(*ledger, {{"api", 0.5}});
  ASSERT_THAT(ids, IsOk());
  for (const double absurd : {2.000001, 1e300}) {
    EXPECT_THAT(ledger->Complete((*ids)[0], absurd),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_actual_cost_usd")));
  }
  EXPECT_EQ(ledger->Totals()->open_assignments, 1);
  EXPECT_NEAR(ledger->Snapshot()->spend_allowance_usd, 4.5, 1e-12);
  ASSERT_THAT(ledger->Complete((*ids)[0], 2.0), IsOk());
  EXPECT_NEAR(ledger->Snapshot()->spend_allowance_usd, 3.0, 1e-12);
}

TEST(LocalLedgerTest, AHoldKeepsWhatItHoldsFromOtherDecisionsUntilItsCommit) {
  FakeClock clock;
  auto ledger = Make(LedgerOptions{}, clock);
  absl::StatusOr<LedgerHold> hold = ledger->Hold(Want(1e9, {{"local", 2}, {"api", 5}}));
  ASSERT_THAT(hold, IsOk());
  EXPECT_THAT(hold->slots, ::testing::ElementsAre(2, 5));  // the API model needs no hold
  EXPECT_EQ(ledger->Snapshot()->free_slots[0], 0);
  EXPECT_THAT(CommitIds(*ledger, {{"local", 0.0}}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("0 free")));
  EXPECT_EQ(ledger->Totals()->open_holds, 1);
  const std::vector<Reservation> one_local = {{"local", 0.0}, {"api", 0.01}};
  absl::StatusOr<std::vector<Lease>> leases = ledger->Commit(&*hold, one_local);
  ASSERT_THAT(leases, IsOk());
  ASSERT_EQ(leases->size(), 2u);
  EXPECT_EQ(ledger->Totals()->open_holds, 0);
  EXPECT_EQ(ledger->InUse("local").value(), 1);
  EXPECT_EQ(ledger->Snapshot()->free_slots[0], 1);  // the unused held slot came back
  // A hold is used once.
  EXPECT_THAT(ledger->Commit(&*hold, one_local),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("fenced")));
}

TEST(LocalLedgerTest, AHoldGrantsAtMostWhatIsFreeAndWhatTheBucketAllows) {
  FakeClock clock;
  auto ledger = Make(Paced(0.001, 1.0), clock);
  ASSERT_THAT(CommitIds(*ledger, {{"local", 0.6}}), IsOk());
  absl::StatusOr<LedgerHold> first = ledger->Hold(Want(1.0, {{"local", 5}, {"nope", 3}}));
  ASSERT_THAT(first, IsOk());
  EXPECT_NEAR(first->spend_usd, 0.4, 1e-12);
  EXPECT_THAT(first->slots, ::testing::ElementsAre(1, 0));  // 1 free; an unknown model gets none
  absl::StatusOr<LedgerHold> second = ledger->Hold(Want(1.0, {{"local", 1}}));
  ASSERT_THAT(second, IsOk());
  EXPECT_EQ(second->spend_usd, 0.0);
  EXPECT_THAT(second->slots, ::testing::ElementsAre(0));
  EXPECT_EQ(ledger->Snapshot()->spend_allowance_usd, 0.0);
  ledger->Release(*first);
  ledger->Release(*first);  // a second release changes nothing
  EXPECT_NEAR(ledger->Snapshot()->spend_allowance_usd, 0.4, 1e-12);
  EXPECT_EQ(ledger->Snapshot()->free_slots[0], 1);
  ledger->Release(*second);
  EXPECT_EQ(ledger->Totals()->open_holds, 0);
}

TEST(LocalLedgerTest, ACommitBeyondItsHoldIsRefusedAndTheHoldGivenBack) {
  FakeClock clock;
  auto ledger = Make(Paced(0.001, 1.0), clock);
  absl::StatusOr<LedgerHold> hold = ledger->Hold(Want(0.5, {{"local", 1}}));
  ASSERT_THAT(hold, IsOk());
  const std::vector<Reservation> two_local = {{"local", 0.0}, {"local", 0.0}};
  EXPECT_THAT(ledger->Commit(&*hold, two_local),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("the hold granted 1")));
  EXPECT_EQ(ledger->Totals()->open_holds, 0);
  hold = ledger->Hold(Want(0.5, {}));
  ASSERT_THAT(hold, IsOk());
  const std::vector<Reservation> dear = {{"api", 0.6}};
  EXPECT_THAT(ledger->Commit(&*hold, dear),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("the hold granted 0.5")));
  EXPECT_EQ(ledger->Totals()->open_assignments, 0);
  EXPECT_DOUBLE_EQ(ledger->Snapshot()->spend_allowance_usd, 1.0);
}

// Spend a hold granted stays the decision's when a completion charges more than predicted and the
// bucket falls below it meanwhile.
TEST(LocalLedgerTest, ACommitMaySpendWhatItsHoldGrantedAfterACompletionChargedMore) {
  FakeClock clock;
  auto ledger = Make(Paced(0.001, 1.0), clock);
  auto other = CommitIds(*ledger, {{"api", 0.2}});
  ASSERT_THAT(other, IsOk());
  absl::StatusOr<LedgerHold> hold = ledger->Hold(Want(0.5, {}));
  ASSERT_THAT(hold, IsOk());
  EXPECT_DOUBLE_EQ(hold->spend_usd, 0.5);
  ASSERT_THAT(ledger->Complete((*other)[0], 0.9), IsOk());  // level 0.8 - 0.7 = 0.1, below 0.5
  EXPECT_EQ(ledger->Snapshot()->spend_allowance_usd, 0.0);
  const std::vector<Reservation> spend = {{"api", 0.5}};
  EXPECT_THAT(ledger->Commit(&*hold, spend), IsOk());
  EXPECT_THAT(CommitIds(*ledger, {{"api", 0.01}}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("spend")));
}

// A decision that stalls past its hold cannot commit on it: what it held may have gone to others.
TEST(LocalLedgerTest, AnExpiredHoldIsFencedAndWhatItHeldIsFreeAgain) {
  FakeClock clock;
  auto ledger = Make(LedgerOptions{}, clock);
  absl::StatusOr<LedgerHold> hold = ledger->Hold(Want(1.0, {{"local", 2}}, absl::Seconds(1)));
  ASSERT_THAT(hold, IsOk());
  EXPECT_EQ(ledger->Snapshot()->free_slots[0], 0);
  clock.Advance(absl::Seconds(1));
  EXPECT_EQ(ledger->Snapshot()->free_slots[0], 2);
  ASSERT_THAT(CommitIds(*ledger, {{"local", 0.0}, {"local", 0.0}}), IsOk());
  const std::vector<Reservation> one_local = {{"local", 0.0}};
  EXPECT_THAT(ledger->Commit(&*hold, one_local),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("fenced")));
  EXPECT_EQ(ledger->InUse("local").value(), 2);
}

// Holds, commits on holds, direct commits, releases and completions from several threads: what
// is in use plus what is held never exceeds the slots, and everything held ends given back.
TEST(LocalLedgerTest, ConcurrentHoldsAndCommitsNeverExceedSlots) {
  FakeClock clock;
  LedgerOptions paced;
  paced.spend_rate_usd_per_second = 0.0;
  auto ledger = Make(paced, clock);
  std::atomic<bool> over{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      for (int k = 0; k < 300; ++k) {
        std::vector<std::string> ids;
        if ((t + k) % 3 == 0) {
          auto direct = CommitIds(*ledger, {{"local", 0.0}});
          if (direct.ok()) ids = *direct;
        } else {
          absl::StatusOr<LedgerHold> hold = ledger->Hold(Want(1.0, {{"local", 2}}));
          if (!hold.ok()) continue;
          std::vector<Reservation> use(static_cast<size_t>(hold->slots[0]), {"local", 0.0});
          if (k % 5 == 0) {
            ledger->Release(*hold);
          } else if (auto leases = ledger->Commit(&*hold, use); leases.ok()) {
            for (const Lease& l : *leases) ids.push_back(l.assignment_id);
          }
        }
        if (ledger->InUse("local").value() > 2) over = true;
        for (const std::string& id : ids) {
          if (!ledger->Complete(id, std::nullopt).ok()) over = true;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_FALSE(over.load());
  EXPECT_EQ(ledger->InUse("local").value(), 0);
  EXPECT_EQ(ledger->Totals()->open_holds, 0);
  EXPECT_EQ(ledger->Snapshot()->free_slots[0], 2);
}

// The ledger keeps inline windows: it counts arrivals, opens the next window when one is full or
// too old, and refuses a commit that would pass the window's cap.
TEST(LocalLedgerTest, InlineWindowsCountArrivalsAndHoldTheirCap) {
  FakeClock clock;
  auto ledger = Make(LedgerOptions{}, clock);
  InlineWindowSpec spec;
  spec.arrivals = 3;
  spec.duration = absl::Seconds(10);
  EXPECT_THAT(ledger->ArriveInline({0, absl::Seconds(1)}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("inline.window_arrivals")));
  absl::StatusOr<InlineArrival> a = ledger->ArriveInline(spec);
  ASSERT_THAT(a, IsOk());
  EXPECT_EQ(a->window, 1u);
  EXPECT_EQ(a->position, 0);
  EXPECT_EQ(a->window_arrivals, 3);
  EXPECT_EQ(a->time_left, absl::Seconds(10));
  EXPECT_EQ(a->snapshot.free_slots[0], 2);
  absl::StatusOr<InlineCommit> c = ledger->CommitInline(1, 0.05, {"api", 0.03});
  ASSERT_THAT(c, IsOk());
  EXPECT_DOUBLE_EQ(c->window_spent_usd, 0.03);
  EXPECT_THAT(ledger->CommitInline(1, 0.05, {"api", 0.03}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("cap")));
  EXPECT_EQ(ledger->Totals()->open_assignments, 1);  // the refused commit left nothing
  a = ledger->ArriveInline(spec);
  EXPECT_EQ(a->position, 1);
  EXPECT_DOUBLE_EQ(a->spent_usd, 0.03);
  ASSERT_THAT(ledger->CommitInline(1, 0.05, {"local", 0.02}), IsOk());
  // A commit that does not fit the slots charges nothing to the window.
  ASSERT_THAT(ledger->CommitInline(1, 1.0, {"local", 0.0}), IsOk());
  EXPECT_THAT(ledger->CommitInline(1, 1.0, {"local", 0.01}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("free")));
  a = ledger->ArriveInline(spec);
  EXPECT_EQ(a->position, 2);
  EXPECT_NEAR(a->spent_usd, 0.05, 1e-12);
  a = ledger->ArriveInline(spec);  // the fourth arrival opens window 2
  EXPECT_EQ(a->window, 2u);
  EXPECT_EQ(a->position, 0);
  EXPECT_EQ(a->spent_usd, 0.0);
  EXPECT_THAT(ledger->CommitInline(1, 1.0, {"api", 0.01}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("closed")));
  clock.Advance(absl::Seconds(4));
  a = ledger->ArriveInline(spec);
  EXPECT_EQ(a->window, 2u);
  EXPECT_EQ(a->time_left, absl::Seconds(6));
  clock.Advance(absl::Seconds(6));  // window 2 is 10 s old: the next arrival opens window 3
  spec.arrivals = 5;
  a = ledger->ArriveInline(spec);
  EXPECT_EQ(a->window, 3u);
  EXPECT_EQ(a->window_arrivals, 5);
}

}  // namespace
}  // namespace router::core