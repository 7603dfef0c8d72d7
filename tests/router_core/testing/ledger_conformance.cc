// The ledger conformance suite (ledger_conformance.h): what every Ledger does, whichever backend.
// Money is compared within 1e-4 USD (a shared ledger counts integer micro-USD) and paced tests
// refill at 1 micro-USD per second unless refilling is what they test.

#include "tests/router_core/testing/ledger_conformance.h"

#include <atomic>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::core::testing {

Ledger& LedgerConformanceTest::Start(const LedgerOptions& options,
                                     std::vector<LedgerModel> models) {
  fleet_ = GetParam().make();
  const absl::Status started = fleet_->Start(options, std::move(models));
  if (!started.ok()) {
    std::cerr << "ledger conformance: the fleet cannot start: " << started << "\n";
    std::abort();
  }
  return fleet_->replica(0);
}

namespace {

using ::testing::DoubleNear;
using ::testing::ElementsAre;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kUsd = 1e-4;  // money tolerance

// Paced, but refilling too slowly to show within a test.
LedgerOptions SlowlyPaced(double burst_usd) { return Paced(1e-6, burst_usd); }

TEST_P(LedgerConformanceTest, SlotsAreHeldUntilCompleteOrLeaseExpiry) {
  LedgerOptions o;
  o.lease_timeout = absl::Milliseconds(400);
  Ledger& ledger = Start(o);
  auto ids = CommitIds(ledger, {{"local", 0.0}, {"local", 0.0}, {"api", 0.01}});
  ASSERT_THAT(ids, IsOk());
  EXPECT_EQ(ledger.Snapshot()->free_slots[0], 0);
  EXPECT_EQ(ledger.Snapshot()->free_slots[1], std::nullopt);
  EXPECT_THAT(CommitIds(ledger, {{"local", 0.0}}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("1 slots wanted, 0 free")));
  auto done = ledger.Complete((*ids)[0], std::nullopt);
  ASSERT_THAT(done, IsOk());
  EXPECT_TRUE(done->lease_was_active);
  EXPECT_EQ(ledger.Snapshot()->free_slots[0], 1);
  EXPECT_THAT(ledger.Complete((*ids)[0], std::nullopt),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("already completed")));

  Wait(absl::Milliseconds(600));  // the other leases expire
  EXPECT_EQ(ledger.Snapshot()->free_slots[0], 2);
  EXPECT_EQ(ledger.Totals()->open_assignments, 0);
  EXPECT_EQ(ledger.Totals()->expired_assignments, 2);
  // A late completion still reconciles the spend, and says the lease was gone.
  done = ledger.Complete((*ids)[2], 0.03);
  ASSERT_THAT(done, IsOk());
  EXPECT_FALSE(done->lease_was_active);
  EXPECT_NEAR(ledger.Totals()->recorded_usd, 0.03, kUsd);
  EXPECT_THAT(ledger.Complete((*ids)[2], 0.03),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("assignment_id")));
}

// A commit none of whose leases completed expires whole: every slot comes back, every estimate is
// charged, and each lease still takes its late Complete. (The Redis ledger keeps such a commit's
// totals apart from its leases; a commit with a completed lease expires lease by lease.)
TEST_P(LedgerConformanceTest, ACommitThatExpiresWholeGivesBackItsSlotsAndChargesItsEstimates) {
  LedgerOptions o;
  o.lease_timeout = absl::Milliseconds(300);
  Ledger& ledger = Start(o);
  auto whole = CommitIds(ledger, {{"local", 0.01}, {"api", 0.03}, {"local", 0.02}});
  ASSERT_THAT(whole, IsOk());
  auto partly = CommitIds(ledger, {{"api", 0.04}, {"api", 0.05}});
  ASSERT_THAT(partly, IsOk());
  ASSERT_THAT(ledger.Complete((*partly)[0], 0.06), IsOk());
  EXPECT_EQ(ledger.Snapshot()->free_slots[0], 0);
  EXPECT_NEAR(ledger.Totals()->reserved_usd, 0.11, kUsd);

  Wait(absl::Milliseconds(500));
  absl::StatusOr<LedgerTotals> totals = ledger.Totals();
  ASSERT_THAT(totals, IsOk());
  EXPECT_EQ(ledger.Snapshot()->free_slots[0], 2);
  EXPECT_EQ(totals->open_assignments, 0);
  EXPECT_EQ(totals->expired_assignments, 4);
  EXPECT_NEAR(totals->reserved_usd, 0.0, kUsd);
  EXPECT_NEAR(totals->recorded_usd, 0.06 + 0.01 + 0.03 + 0.02 + 0.05, kUsd);
  absl::StatusOr<CompletionRecord> late = ledger.Complete((*whole)[2], 0.07);
  ASSERT_THAT(late, IsOk());
  EXPECT_FALSE(late->lease_was_active);
  EXPECT_NEAR(ledger.Totals()->recorded_usd, 0.06 + 0.01 + 0.03 + 0.07 + 0.05, kUsd);
  // The slots of a commit that expired whole are free for new commits, and only those.
  EXPECT_THAT(CommitIds(ledger, {{"local", 0.0}, {"local", 0.0}}), IsOk());
  EXPECT_THAT(CommitIds(ledger, {{"local", 0.0}}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("1 slots wanted, 0 free")));
}

// Leases that expired without a Complete are remembered for a late one, up to
// max_expired_remembered: beyond it, the oldest are forgotten first.
TEST_P(LedgerConformanceTest, ExpiredLeasesBeyondWhatIsRememberedAreForgottenOldestFirst) {
  LedgerOptions o;
  o.lease_timeout = absl::Milliseconds(300);
  o.max_expired_remembered = 3;
  Ledger& ledger = Start(o);
  auto older = CommitIds(ledger, {{"api", 0.01}, {"api", 0.01}});
  ASSERT_THAT(older, IsOk());
  Wait(absl::Milliseconds(500));
  EXPECT_EQ(ledger.Totals()->expired_assignments, 2);
  auto newer = CommitIds(ledger, {{"api", 0.01}, {"api", 0.01}, {"api", 0.01}});
  ASSERT_THAT(newer, IsOk());
  Wait(absl::Milliseconds(500));
  EXPECT_EQ(ledger.Totals()->expired_assignments, 5);
  for (const std::string& id : *older) {
    EXPECT_THAT(ledger.Complete(id, std::nullopt),
                StatusIs(absl::StatusCode::kNotFound, HasSubstr("assignment_id")));
  }
  for (const std::string& id : *newer) {
    absl::StatusOr<CompletionRecord> late = ledger.Complete(id, 0.02);
    ASSERT_THAT(late, IsOk());
    EXPECT_FALSE(late->lease_was_active);
  }
  EXPECT_NEAR(ledger.Totals()->recorded_usd, 0.02 + 3 * 0.02, kUsd);
}

TEST_P(LedgerConformanceTest, AcceptsOnlyTheIdsItIssued) {
  Ledger& ledger = Start();
  std::vector<Reservation> eight(8, {"api", 0.001});
  auto ids = CommitIds(ledger, eight);
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
    EXPECT_THAT(ledger.Complete(forged, std::nullopt),
                StatusIs(absl::StatusCode::kNotFound, HasSubstr("assignment_id")))
        << forged;
  }
  EXPECT_EQ(ledger.Totals()->open_assignments, 8);  // no forged id completed anything
  EXPECT_THAT(ledger.Complete(id, std::nullopt), IsOk());
}

// A lease belongs to the fleet: any replica completes it, once.
TEST_P(LedgerConformanceTest, AnyReplicaCompletesALeaseOnce) {
  Ledger& a = Start();
  Ledger& b = Replica(1);
  auto ids = CommitIds(a, {{"local", 0.0}, {"local", 0.0}});
  ASSERT_THAT(ids, IsOk());
  EXPECT_EQ(b.Snapshot()->free_slots[0], 0);  // b sees a's leases
  EXPECT_EQ(b.InUse("local").value(), 2);
  ASSERT_THAT(b.Complete((*ids)[0], std::nullopt), IsOk());
  EXPECT_THAT(a.Complete((*ids)[0], std::nullopt),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("assignment_id")));
  EXPECT_EQ(a.Snapshot()->free_slots[0], 1);
}

TEST_P(LedgerConformanceTest, PacingReconcilesActualCost) {
  Ledger& ledger = Start(SlowlyPaced(1.0));
  EXPECT_NEAR(ledger.Snapshot()->spend_allowance_usd, 1.0, kUsd);
  auto ids = CommitIds(ledger, {{"api", 0.8}});
  ASSERT_THAT(ids, IsOk());
  EXPECT_NEAR(ledger.Snapshot()->spend_allowance_usd, 0.2, kUsd);
  EXPECT_THAT(CommitIds(ledger, {{"api", 0.3}}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("spend")));
  // The call cost more than predicted: the difference is charged.
  ASSERT_THAT(ledger.Complete((*ids)[0], 0.9), IsOk());
  EXPECT_NEAR(ledger.Snapshot()->spend_allowance_usd, 0.1, kUsd);
  ASSERT_THAT(CommitIds(ledger, {{"api", 0.09}}), IsOk());
  EXPECT_NEAR(ledger.Snapshot()->spend_allowance_usd, 0.01, kUsd);
  EXPECT_NEAR(ledger.Totals()->reserved_usd, 0.09, kUsd);
  EXPECT_NEAR(ledger.Totals()->recorded_usd, 0.9, kUsd);
}

TEST_P(LedgerConformanceTest, PacingRefillsUpToTheBurst) {
  LedgerOptions o = Paced(1.0, 1.0);  // 1 USD per second of the ledger's clock
  Ledger& ledger = Start(o);
  ASSERT_THAT(CommitIds(ledger, {{"api", 0.8}}), IsOk());
  Wait(absl::Milliseconds(300));
  const double refilled = ledger.Snapshot()->spend_allowance_usd;
  EXPECT_GE(refilled, 0.5 - kUsd);
  EXPECT_LE(refilled, 1.0);
  Wait(absl::Seconds(1));
  EXPECT_DOUBLE_EQ(ledger.Snapshot()->spend_allowance_usd, 1.0);  // never above the burst
}

TEST_P(LedgerConformanceTest, WithoutPacingSpendIsUnlimited) {
  Ledger& ledger = Start();
  EXPECT_TRUE(std::isinf(ledger.Snapshot()->spend_allowance_usd));
  EXPECT_THAT(CommitIds(ledger, {{"api", 1e6}}), IsOk());
  EXPECT_DOUBLE_EQ(ledger.Totals()->reserved_usd, 1e6);
}

TEST_P(LedgerConformanceTest, ShrinkingAModelKeepsOpenLeasesAndGivesNoFreeSlot) {
  Ledger& ledger = Start();
  auto ids = CommitIds(ledger, {{"local", 0.0}, {"local", 0.0}});
  ASSERT_THAT(ids, IsOk());
  ASSERT_THAT(ledger.SetModels({{"local", 1}, {"api", std::nullopt}}), IsOk());
  EXPECT_EQ(ledger.Snapshot()->free_slots[0], 0);
  ASSERT_THAT(ledger.Complete((*ids)[0], std::nullopt), IsOk());
  EXPECT_EQ(ledger.Snapshot()->free_slots[0], 0);  // 1 in use of 1
  ASSERT_THAT(ledger.Complete((*ids)[1], std::nullopt), IsOk());
  EXPECT_EQ(ledger.Snapshot()->free_slots[0], 1);
}

TEST_P(LedgerConformanceTest, RefusesBadReservationsAndCompletions) {
  Ledger& ledger = Start();
  EXPECT_THAT(CommitIds(ledger, {{"nope", 0.0}}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope")));
  EXPECT_THAT(CommitIds(ledger, {{"api", -1.0}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("reservations[0]")));
  EXPECT_THAT(ledger.Complete("x", std::nullopt),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("assignment_id")));
  auto ids = CommitIds(ledger, {{"api", 0.1}});
  ASSERT_THAT(ids, IsOk());
  EXPECT_THAT(ledger.Complete((*ids)[0], std::nan("")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("actual_cost_usd")));
  EXPECT_EQ(ledger.Totals()->open_assignments, 1);  // nothing half-written
}

// Eight threads on the replicas: never more than the model's slots.
TEST_P(LedgerConformanceTest, ConcurrentCommitsNeverExceedSlots) {
  Start();
  std::atomic<int> granted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int k = 0; k < 30; ++k) {
        if (CommitIds(Replica((t + k) % LedgerFleet::kReplicas), {{"local", 0.0}}).ok()) {
          ++granted;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(granted.load(), 2);
  EXPECT_EQ(Replica(0).InUse("local").value(), 2);
}

// One report of an absurd actual cost must not drain the paced budget: it is refused, and the
// lease stays open for a correct Complete.
TEST_P(LedgerConformanceTest, AnActualCostAboveTheLimitIsRefusedAndChangesNothing) {
  LedgerOptions paced = SlowlyPaced(5.0);
  paced.max_actual_cost_usd = 2.0;
  Ledger& ledger = Start(paced);
  auto ids = CommitIds(ledger, {{"api", 0.5}});
  ASSERT_THAT(ids, IsOk());
  for (const double absurd : {2.000001, 1e300}) {
    EXPECT_THAT(ledger.Complete((*ids)[0], absurd),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_actual_cost_usd")));
  }
  EXPECT_EQ(ledger.Totals()->open_assignments, 1);
  EXPECT_NEAR(ledger.Snapshot()->spend_allowance_usd, 4.5, kUsd);
  ASSERT_THAT(ledger.Complete((*ids)[0], 2.0), IsOk());
  EXPECT_NEAR(ledger.Snapshot()->spend_allowance_usd, 3.0, kUsd);
}

TEST_P(LedgerConformanceTest, AHoldKeepsWhatItHoldsFromOtherDecisionsUntilItsCommit) {
  Ledger& ledger = Start();
  Ledger& other = Replica(1);
  absl::StatusOr<LedgerHold> hold = ledger.Hold(Want(1e9, {{"local", 2}, {"api", 5}}));
  ASSERT_THAT(hold, IsOk());
  EXPECT_THAT(hold->slots, ElementsAre(2, 5));  // the API model needs no hold
  EXPECT_EQ(other.Snapshot()->free_slots[0], 0);
  EXPECT_THAT(CommitIds(other, {{"local", 0.0}}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("0 free")));
  EXPECT_EQ(ledger.Totals()->open_holds, 1);
  const std::vector<Reservation> one_local = {{"local", 0.0}, {"api", 0.01}};
  absl::StatusOr<std::vector<Lease>> leases = ledger.Commit(&*hold, one_local);
  ASSERT_THAT(leases, IsOk());
  ASSERT_EQ(leases->size(), 2u);
  EXPECT_EQ(ledger.Totals()->open_holds, 0);
  EXPECT_EQ(other.InUse("local").value(), 1);
  EXPECT_EQ(other.Snapshot()->free_slots[0], 1);  // the unused held slot came back
  // A hold is used once.
  EXPECT_THAT(ledger.Commit(&*hold, one_local),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("fenced")));
}

TEST_P(LedgerConformanceTest, AHoldGrantsAtMostWhatIsFreeAndWhatTheBucketAllows) {
  Ledger& ledger = Start(SlowlyPaced(1.0));
  ASSERT_THAT(CommitIds(ledger, {{"local", 0.6}}), IsOk());
  absl::StatusOr<LedgerHold> first = ledger.Hold(Want(1.0, {{"local", 5}, {"nope", 3}}));
  ASSERT_THAT(first, IsOk());
  EXPECT_NEAR(first->spend_usd, 0.4, kUsd);
  EXPECT_THAT(first->slots, ElementsAre(1, 0));  // 1 free; an unknown model gets none
  absl::StatusOr<LedgerHold> second = ledger.Hold(Want(1.0, {{"local", 1}}));
  ASSERT_THAT(second, IsOk());
  EXPECT_NEAR(second->spend_usd, 0.0, kUsd);
  EXPECT_THAT(second->slots, ElementsAre(0));
  EXPECT_NEAR(ledger.Snapshot()->spend_allowance_usd, 0.0, kUsd);
  ledger.Release(*first);
  ledger.Release(*first);  // a second release changes nothing
  EXPECT_NEAR(ledger.Snapshot()->spend_allowance_usd, 0.4, kUsd);
  EXPECT_EQ(ledger.Snapshot()->free_slots[0], 1);
  ledger.Release(*second);
  EXPECT_EQ(ledger.Totals()->open_holds, 0);
}

TEST_P(LedgerConformanceTest, ACommitBeyondItsHoldIsRefusedAndTheHoldGivenBack) {
  Ledger& ledger = Start(SlowlyPaced(1.0));
  absl::StatusOr<LedgerHold> hold = ledger.Hold(Want(0.5, {{"local", 1}}));
  ASSERT_THAT(hold, IsOk());
  const std::vector<Reservation> two_local = {{"local", 0.0}, {"local", 0.0}};
  EXPECT_THAT(ledger.Commit(&*hold, two_local),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("the hold granted 1")));
  EXPECT_EQ(ledger.Totals()->open_holds, 0);
  hold = ledger.Hold(Want(0.5, {}));
  ASSERT_THAT(hold, IsOk());
  const std::vector<Reservation> dear = {{"api", 0.6}};
  EXPECT_THAT(ledger.Commit(&*hold, dear),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("the hold granted")));
  EXPECT_EQ(ledger.Totals()->open_assignments, 0);
  EXPECT_NEAR(ledger.Snapshot()->spend_allowance_usd, 1.0, kUsd);
}

// A hold granted all it asked reports the ask itself (never the ask rounded, which a decision
// would read as the paced allowance binding), and commits of costs with fractions of a micro-USD
// fit the hold that granted them.
TEST_P(LedgerConformanceTest, FractionsOfAMicroUsdNeverLookLikeABindingBudget) {
  Ledger& ledger = Start(SlowlyPaced(1.0));
  absl::StatusOr<LedgerHold> hold = ledger.Hold(Want(0.0003775, {}));
  ASSERT_THAT(hold, IsOk());
  EXPECT_EQ(hold->spend_usd, 0.0003775);
  const std::vector<Reservation> two = {{"api", 0.00018875}, {"api", 0.00018875}};
  EXPECT_THAT(ledger.Commit(&*hold, two), IsOk());
  absl::StatusOr<LedgerHold> all = ledger.Hold(Want(kInf, {}));
  ASSERT_THAT(all, IsOk());
  EXPECT_LT(all->spend_usd, 1.0);  // what the bucket allows, not the infinite ask
  EXPECT_GT(all->spend_usd, 0.99);
}

// Spend a hold granted stays the decision's when a completion charges more than predicted and the
// bucket falls below it meanwhile.
TEST_P(LedgerConformanceTest, ACommitMaySpendWhatItsHoldGrantedAfterACompletionChargedMore) {
  Ledger& ledger = Start(SlowlyPaced(1.0));
  auto other = CommitIds(ledger, {{"api", 0.2}});
  ASSERT_THAT(other, IsOk());
  absl::StatusOr<LedgerHold> hold = ledger.Hold(Want(0.5, {}));
  ASSERT_THAT(hold, IsOk());
  EXPECT_DOUBLE_EQ(hold->spend_usd, 0.5);
  ASSERT_THAT(ledger.Complete((*other)[0], 0.9), IsOk());  // level 0.8 - 0.7 = 0.1, below 0.5
  EXPECT_NEAR(ledger.Snapshot()->spend_allowance_usd, 0.0, kUsd);
  const std::vector<Reservation> spend = {{"api", 0.5}};
  EXPECT_THAT(ledger.Commit(&*hold, spend), IsOk());
  EXPECT_THAT(CommitIds(ledger, {{"api", 0.01}}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("spend")));
}

// A decision (or a replica) that stalls past its hold cannot commit on it: what it held may have
// gone to others.
TEST_P(LedgerConformanceTest, AnExpiredHoldIsFencedAndWhatItHeldIsFreeAgain) {
  Ledger& ledger = Start();
  Ledger& other = Replica(1);
  absl::StatusOr<LedgerHold> hold = ledger.Hold(Want(1.0, {{"local", 2}}, absl::Milliseconds(200)));
  ASSERT_THAT(hold, IsOk());
  EXPECT_EQ(other.Snapshot()->free_slots[0], 0);
  Wait(absl::Milliseconds(400));
  EXPECT_EQ(other.Snapshot()->free_slots[0], 2);
  ASSERT_THAT(CommitIds(other, {{"local", 0.0}, {"local", 0.0}}), IsOk());
  const std::vector<Reservation> one_local = {{"local", 0.0}};
  EXPECT_THAT(ledger.Commit(&*hold, one_local),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("fenced")));
  EXPECT_EQ(ledger.InUse("local").value(), 2);
}

// Holds, commits on holds, direct commits, releases and completions (at another replica) from
// several threads: what is in use plus what is held never exceeds the slots, and everything held
// ends given back.
TEST_P(LedgerConformanceTest, ConcurrentHoldsAndCommitsNeverExceedSlots) {
  Start();
  std::atomic<bool> over{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      Ledger& ledger = Replica(t % LedgerFleet::kReplicas);
      Ledger& completer = Replica((t + 1) % LedgerFleet::kReplicas);
      for (int k = 0; k < 60; ++k) {
        std::vector<std::string> ids;
        if ((t + k) % 3 == 0) {
          auto direct = CommitIds(ledger, {{"local", 0.0}});
          if (direct.ok()) ids = *direct;
        } else {
          absl::StatusOr<LedgerHold> hold = ledger.Hold(Want(1.0, {{"local", 2}}));
          if (!hold.ok()) continue;
          std::vector<Reservation> use(static_cast<size_t>(hold->slots[0]), {"local", 0.0});
          if (k % 5 == 0) {
            ledger.Release(*hold);
          } else if (auto leases = ledger.Commit(&*hold, use); leases.ok()) {
            for (const Lease& l : *leases) ids.push_back(l.assignment_id);
          }
        }
        const absl::StatusOr<int64_t> in_use = ledger.InUse("local");
        if (!in_use.ok() || *in_use > 2) over = true;
        for (const std::string& id : ids) {
          if (!completer.Complete(id, std::nullopt).ok()) over = true;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_FALSE(over.load());
  EXPECT_EQ(Replica(0).InUse("local").value(), 0);
  EXPECT_EQ(Replica(0).Totals()->open_holds, 0);
  EXPECT_EQ(Replica(0).Snapshot()->free_slots[0], 2);
}

// An inline window counts the arrivals of every replica, opens the next window when it is full
// or too old, and refuses a commit that would pass its cap, whichever replica sends it.
TEST_P(LedgerConformanceTest, InlineWindowsCountEveryArrivalAndHoldTheirCap) {
  Ledger& a = Start();
  Ledger& b = Replica(1);
  InlineWindowSpec spec;
  spec.arrivals = 3;
  EXPECT_THAT(a.ArriveInline({0, absl::Seconds(1)}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("inline.window_arrivals")));
  absl::StatusOr<InlineArrival> arrival = a.ArriveInline(spec);
  ASSERT_THAT(arrival, IsOk());
  EXPECT_EQ(arrival->window, 1u);
  EXPECT_EQ(arrival->position, 0);
  EXPECT_EQ(arrival->window_arrivals, 3);
  EXPECT_EQ(arrival->time_left, absl::InfiniteDuration());
  EXPECT_EQ(arrival->spent_usd, 0.0);
  EXPECT_EQ(arrival->snapshot.free_slots[0], 2);
  arrival = b.ArriveInline(spec);
  ASSERT_THAT(arrival, IsOk());
  EXPECT_EQ(arrival->window, 1u);
  EXPECT_EQ(arrival->position, 1);
  absl::StatusOr<InlineCommit> commit = a.CommitInline(1, 0.05, {"api", 0.03});
  ASSERT_THAT(commit, IsOk());
  EXPECT_NEAR(commit->window_spent_usd, 0.03, kUsd);
  EXPECT_THAT(b.CommitInline(1, 0.05, {"api", 0.03}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("cap")));
  EXPECT_EQ(a.Totals()->open_assignments, 1);  // the refused commit left nothing
  commit = b.CommitInline(1, 0.05, {"local", 0.02});
  ASSERT_THAT(commit, IsOk());
  EXPECT_NEAR(commit->window_spent_usd, 0.05, kUsd);
  // A commit that does not fit the slots charges nothing to the window.
  ASSERT_THAT(a.CommitInline(1, 1.0, {"local", 0.0}), IsOk());
  EXPECT_THAT(b.CommitInline(1, 1.0, {"local", 0.01}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("free")));
  arrival = b.ArriveInline(spec);
  EXPECT_EQ(arrival->position, 2);
  EXPECT_NEAR(arrival->spent_usd, 0.05, kUsd);
  arrival = a.ArriveInline(spec);  // the fourth arrival opens window 2
  EXPECT_EQ(arrival->window, 2u);
  EXPECT_EQ(arrival->position, 0);
  EXPECT_EQ(arrival->spent_usd, 0.0);
  // A window closed to arrivals still takes the spend decided in it, within its cap.
  EXPECT_THAT(b.CommitInline(1, 0.05, {"api", 0.01}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("cap")));
  commit = b.CommitInline(1, 1.0, {"api", 0.01});
  ASSERT_THAT(commit, IsOk());
  EXPECT_NEAR(commit->window_spent_usd, 0.06, kUsd);
  // A window also closes `duration` after it opened; a new one takes the spec of its opening.
  spec.duration = absl::Milliseconds(300);
  spec.arrivals = 100;
  for (int k = 0; k < 2; ++k) ASSERT_THAT(b.ArriveInline(spec), IsOk());  // window 2 fills up
  arrival = a.ArriveInline(spec);
  EXPECT_EQ(arrival->window, 3u);
  EXPECT_EQ(arrival->window_arrivals, 100);
  EXPECT_LE(arrival->time_left, absl::Milliseconds(300));
  EXPECT_GE(arrival->time_left, absl::ZeroDuration());
  Wait(absl::Milliseconds(400));
  EXPECT_EQ(b.ArriveInline(spec)->window, 4u);
}

// A step commits each decision on its own (a refused one changes nothing and the ones after it
// are still tried), then counts its arrivals, and reports what may be used after both.
TEST_P(LedgerConformanceTest, AnInlineStepCommitsEachDecisionOnItsOwnThenCountsItsArrivals) {
  Ledger& ledger = Start(SlowlyPaced(1.0));
  InlineWindowSpec spec;
  spec.arrivals = 2;
  absl::StatusOr<InlineStep> step = ledger.StepInline({}, spec, 5);
  ASSERT_THAT(step, IsOk());
  EXPECT_TRUE(step->commits.empty());
  ASSERT_EQ(step->arrivals.size(), 5u);
  const std::vector<std::pair<uint64_t, int64_t>> where = {{1, 0}, {1, 1}, {2, 0}, {2, 1}, {3, 0}};
  for (size_t k = 0; k < where.size(); ++k) {
    EXPECT_EQ(step->arrivals[k].window, where[k].first) << k;
    EXPECT_EQ(step->arrivals[k].position, where[k].second) << k;
    EXPECT_EQ(step->arrivals[k].window_arrivals, 2) << k;
    EXPECT_EQ(step->arrivals[k].spent_usd, 0.0) << k;
  }
  EXPECT_EQ(step->snapshot.free_slots[0], 2);
  EXPECT_NEAR(step->snapshot.spend_allowance_usd, 1.0, kUsd);
  EXPECT_THAT(step->window_spent,
              UnorderedElementsAre(Pair(1u, 0.0), Pair(2u, 0.0), Pair(3u, 0.0)));

  const std::vector<InlineCommitRequest> commits = {
      {1, 0.5, {"local", 0.2}},
      {1, 0.5, {"local", 0.4}},  // passes window 1's cap
      {2, kInf, {"local", 0.1}},
      {2, kInf, {"local", 0.1}},  // no slot left
      {3, kInf, {"nope", 0.1}},   // unknown model
      {3, kInf, {"api", 0.9}},    // passes the paced allowance (0.7 left)
      {3, kInf, {"api", 0.6}},
  };
  step = ledger.StepInline(commits, spec, 1);
  ASSERT_THAT(step, IsOk());
  ASSERT_EQ(step->commits.size(), commits.size());
  ASSERT_THAT(step->commits[0], IsOk());
  EXPECT_NEAR(step->commits[0]->window_spent_usd, 0.2, kUsd);
  EXPECT_THAT(step->commits[1], StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("cap")));
  ASSERT_THAT(step->commits[2], IsOk());
  EXPECT_NEAR(step->commits[2]->window_spent_usd, 0.1, kUsd);
  EXPECT_THAT(step->commits[3], StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("free")));
  EXPECT_THAT(step->commits[4], StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope")));
  EXPECT_THAT(step->commits[5],
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("spend")));
  ASSERT_THAT(step->commits[6], IsOk());
  EXPECT_NEAR(step->commits[6]->window_spent_usd, 0.6, kUsd);
  EXPECT_NE(step->commits[0]->lease.assignment_id, step->commits[2]->lease.assignment_id);
  ASSERT_EQ(step->arrivals.size(), 1u);
  EXPECT_EQ(step->arrivals[0].window, 3u);
  EXPECT_EQ(step->arrivals[0].position, 1);
  EXPECT_NEAR(step->arrivals[0].spent_usd, 0.6, kUsd);
  EXPECT_EQ(step->snapshot.free_slots[0], 0);
  EXPECT_NEAR(step->snapshot.spend_allowance_usd, 0.1, kUsd);
  EXPECT_THAT(step->window_spent,
              UnorderedElementsAre(Pair(1u, DoubleNear(0.2, kUsd)), Pair(2u, DoubleNear(0.1, kUsd)),
                                   Pair(3u, DoubleNear(0.6, kUsd))));
  EXPECT_EQ(ledger.Totals()->open_assignments, 3);
  EXPECT_THAT(ledger.Complete(step->commits[6]->lease.assignment_id, std::nullopt), IsOk());
}

TEST_P(LedgerConformanceTest, AnInlineStepRefusesBadInput) {
  Ledger& ledger = Start();
  EXPECT_THAT(ledger.StepInline({}, {0, absl::Seconds(1)}, 1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("inline.window_arrivals")));
  EXPECT_THAT(ledger.StepInline({}, {0, absl::Seconds(1)}, 0), IsOk());  // no arrival: no spec
  EXPECT_THAT(ledger.StepInline({}, {}, kMaxInlineStep + 1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("arrivals")));
  EXPECT_THAT(ledger.StepInline({}, {}, -1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("arrivals")));
  ASSERT_THAT(ledger.StepInline({}, {}, 1), IsOk());  // window 1
  const std::vector<InlineCommitRequest> many(kMaxInlineStep + 1, {1, kInf, {"api", 0.0}});
  EXPECT_THAT(ledger.StepInline(many, {}, 0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("commits")));
  EXPECT_EQ(ledger.Totals()->open_assignments, 0);
  // Bad commits are refused one by one.
  const std::vector<InlineCommitRequest> bad = {{1, -1.0, {"api", 0.0}},
                                                {1, kInf, {"api", -1.0}},
                                                {1, kInf, {"api", std::nan("")}},
                                                {1, kInf, {"api", 0.5}}};
  absl::StatusOr<InlineStep> step = ledger.StepInline(bad, {}, 0);
  ASSERT_THAT(step, IsOk());
  EXPECT_THAT(step->commits[0],
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cap_usd")));
  EXPECT_THAT(step->commits[1],
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("predicted_cost_usd")));
  EXPECT_THAT(step->commits[2],
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("predicted_cost_usd")));
  EXPECT_THAT(step->commits[3], IsOk());
  EXPECT_EQ(ledger.Totals()->open_assignments, 1);
}

// Only the last kInlineWindowsKept windows are remembered: a decision whose window is older (or
// not opened yet) is refused and charges nothing.
TEST_P(LedgerConformanceTest, ACommitToAWindowNoLongerRememberedIsRefused) {
  Ledger& ledger = Start();
  absl::StatusOr<InlineStep> step =
      ledger.StepInline({}, {1, absl::InfiniteDuration()}, kInlineWindowsKept + 1);
  ASSERT_THAT(step, IsOk());
  EXPECT_EQ(step->arrivals.back().window, kInlineWindowsKept + 1);
  EXPECT_THAT(ledger.CommitInline(1, kInf, {"api", 0.1}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("closed")));
  EXPECT_THAT(ledger.CommitInline(kInlineWindowsKept + 2, kInf, {"api", 0.1}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("closed")));
  EXPECT_EQ(ledger.Totals()->open_assignments, 0);
  EXPECT_THAT(ledger.CommitInline(2, kInf, {"api", 0.1}), IsOk());
}

}  // namespace
}  // namespace router::core::testing
