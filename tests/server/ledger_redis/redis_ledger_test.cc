// The Redis ledger against a real redis-server (redis_server.h): the local ledger's behavioural
// tests adapted to a shared ledger (time is Redis' clock, so expiries are waited for with short
// leases), and what only a fleet has: several replicas on one domain, completion at another
// replica, fleet-wide windows, loss and rollback detection, a stalled Redis, function reloads,
// one hash slot per domain, and the password.

#include "server/ledger_redis/redis_ledger.h"

#include <atomic>
#include <cmath>
#include <limits>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/router_core/testing/ledger_testing.h"
#include "tests/router_core/testing/status_matchers.h"
#include "tests/server/ledger_redis/redis_server.h"

namespace router::server {
namespace {

using ::router::core::HoldRequest;
using ::router::core::InlineArrival;
using ::router::core::InlineWindowSpec;
using ::router::core::Lease;
using ::router::core::Ledger;
using ::router::core::LedgerHold;
using ::router::core::LedgerModel;
using ::router::core::LedgerOptions;
using ::router::core::Reservation;
using ::router::core::testing::CommitIds;
using ::router::core::testing::LedgerTestPool;
using ::router::core::testing::Paced;
using ::router::testing::RedisServer;
using ::router::core::testing::Want;

class RedisLedgerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<RedisServer>> s = RedisServer::Start();
    ASSERT_THAT(s, IsOk());
    server_ = s->release();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }

  // Timeouts far above any call's time on a loaded machine (tests run in parallel, under
  // sanitizers, on 2 shared cores): only the stall test relies on a call timing out.
  RedisLedgerOptions Redis() const {
    RedisLedgerOptions r;
    r.address = server_->address();
    r.domain = domain_;
    r.connect_timeout = absl::Seconds(5);
    r.call_timeout = absl::Seconds(5);
    r.retry_after = absl::Milliseconds(200);
    return r;
  }
  // A replica of this test's domain (each test has its own).
  std::unique_ptr<RedisLedger> Make(const LedgerOptions& o = LedgerOptions{},
                                    std::vector<LedgerModel> models = LedgerTestPool()) {
    absl::StatusOr<std::unique_ptr<RedisLedger>> l = RedisLedger::Create(Redis(), o, models);
    EXPECT_THAT(l, IsOk());
    return *std::move(l);
  }

  static RedisServer* server_;
  const std::string domain_ =
      ::testing::UnitTest::GetInstance()->current_test_info()->name();
};

RedisServer* RedisLedgerTest::server_ = nullptr;

TEST_F(RedisLedgerTest, SlotsAreHeldUntilCompleteOrLeaseExpiry) {
  LedgerOptions o;
  o.lease_timeout = absl::Milliseconds(400);
  auto ledger = Make(o);
  auto ids = CommitIds(*ledger, {{"local", 0.0}, {"local", 0.0}, {"api", 0.01}});
  ASSERT_THAT(ids, IsOk());
  EXPECT_EQ(ledger->Snapshot()->free_slots[0], 0);
  EXPECT_EQ(ledger->Snapshot()->free_slots[1], std::nullopt);
  EXPECT_THAT(CommitIds(*ledger, {{"local", 0.0}}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("1 slots wanted, 0 free")));
  auto done = ledger->Complete((*ids)[0], std::nullopt);
  ASSERT_THAT(done, IsOk());
  EXPECT_TRUE(done->lease_was_active);
  EXPECT_EQ(ledger->Snapshot()->free_slots[0], 1);
  EXPECT_THAT(ledger->Complete((*ids)[0], std::nullopt),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("already completed")));

  absl::SleepFor(absl::Milliseconds(600));  // the other leases expire
  EXPECT_EQ(ledger->Snapshot()->free_slots[0], 2);
  EXPECT_EQ(ledger->Totals()->open_assignments, 0);
  EXPECT_EQ(ledger->Totals()->expired_assignments, 2);
  // A late completion still reconciles the spend, and says the lease was gone.
  done = ledger->Complete((*ids)[2], 0.03);
  ASSERT_THAT(done, IsOk());
  EXPECT_FALSE(done->lease_was_active);
  EXPECT_DOUBLE_EQ(ledger->Totals()->recorded_usd, 0.03);
  EXPECT_THAT(ledger->Complete((*ids)[2], 0.03), StatusIs(absl::StatusCode::kNotFound, ::testing::_));
}

TEST_F(RedisLedgerTest, AcceptsOnlyTheIdsItIssued) {
  auto ledger = Make();
  std::vector<Reservation> eight(8, {"api", 0.001});
  auto ids = CommitIds(*ledger, eight);
  ASSERT_THAT(ids, IsOk());
  const std::string& id = (*ids)[7];
  const size_t dot = id.rfind('.');
  ASSERT_NE(dot, std::string::npos);
  const std::string head = id.substr(0, dot);
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
  EXPECT_EQ(ledger->Totals()->open_assignments, 8);
  EXPECT_THAT(ledger->Complete(id, std::nullopt), IsOk());
}

// A lease belongs to the fleet: any replica completes it, once.
TEST_F(RedisLedgerTest, AnyReplicaCompletesALeaseOnce) {
  auto a = Make();
  auto b = Make();
  auto ids = CommitIds(*a, {{"local", 0.0}, {"local", 0.0}});
  ASSERT_THAT(ids, IsOk());
  EXPECT_EQ(b->Snapshot()->free_slots[0], 0);  // b sees a's leases
  EXPECT_EQ(b->InUse("local").value(), 2);
  ASSERT_THAT(b->Complete((*ids)[0], std::nullopt), IsOk());
  EXPECT_THAT(a->Complete((*ids)[0], std::nullopt), StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_EQ(a->Snapshot()->free_slots[0], 1);
}

TEST_F(RedisLedgerTest, IdsOfAnotherDomainAreUnknown) {
  auto a = Make();
  RedisLedgerOptions other = Redis();
  other.domain = domain_ + "-other";
  auto b = RedisLedger::Create(other, LedgerOptions{}, LedgerTestPool());
  ASSERT_THAT(b, IsOk());
  auto ids_a = CommitIds(*a, std::vector<Reservation>(20, {"api", 0.0}));
  auto ids_b = CommitIds(**b, std::vector<Reservation>(20, {"api", 0.0}));
  ASSERT_THAT(ids_a, IsOk());
  ASSERT_THAT(ids_b, IsOk());
  for (size_t k = 0; k < ids_a->size(); ++k) {
    EXPECT_NE((*ids_a)[k], (*ids_b)[k]);
    EXPECT_THAT((*b)->Complete((*ids_a)[k], std::nullopt),
                StatusIs(absl::StatusCode::kNotFound, HasSubstr("assignment_id")));
  }
  EXPECT_EQ((*b)->Totals()->open_assignments, 20);
}

TEST_F(RedisLedgerTest, PacingReconcilesActualCostAndRefillsByRedisTime) {
  LedgerOptions o;
  o.spend_rate_usd_per_second = 1e-6;  // 1 micro-USD per second: no visible refill in this test
  o.spend_burst_usd = 1.0;
  auto ledger = Make(o);
  EXPECT_DOUBLE_EQ(ledger->Snapshot()->spend_allowance_usd, 1.0);
  auto ids = CommitIds(*ledger, {{"api", 0.8}});
  ASSERT_THAT(ids, IsOk());
  EXPECT_NEAR(ledger->Snapshot()->spend_allowance_usd, 0.2, 1e-4);
  EXPECT_THAT(CommitIds(*ledger, {{"api", 0.3}}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("spend")));
  // The call cost more than predicted: the difference is charged.
  ASSERT_THAT(ledger->Complete((*ids)[0], 0.9), IsOk());
  EXPECT_NEAR(ledger->Snapshot()->spend_allowance_usd, 0.1, 1e-4);
  ASSERT_THAT(CommitIds(*ledger, {{"api", 0.09}}), IsOk());
  EXPECT_NEAR(ledger->Snapshot()->spend_allowance_usd, 0.01, 1e-4);

  o.spend_rate_usd_per_second = 1.0;  // refills 1 USD per second of Redis time, up to the burst
  ASSERT_THAT(ledger->SetOptions(o), IsOk());
  absl::SleepFor(absl::Milliseconds(300));
  const double refilled = ledger->Snapshot()->spend_allowance_usd;
  EXPECT_GT(refilled, 0.2);
  EXPECT_LE(refilled, 1.0);
  absl::SleepFor(absl::Seconds(1));
  EXPECT_DOUBLE_EQ(ledger->Snapshot()->spend_allowance_usd, 1.0);  // never above the burst
}

TEST_F(RedisLedgerTest, WithoutPacingSpendIsUnlimited) {
  auto ledger = Make();
  EXPECT_TRUE(std::isinf(ledger->Snapshot()->spend_allowance_usd));
  EXPECT_THAT(CommitIds(*ledger, {{"api", 1e6}}), IsOk());
  EXPECT_DOUBLE_EQ(ledger->Totals()->reserved_usd, 1e6);
}

TEST_F(RedisLedgerTest, ShrinkingAModelKeepsOpenLeasesAndGivesNoFreeSlot) {
  auto ledger = Make();
  auto ids = CommitIds(*ledger, {{"local", 0.0}, {"local", 0.0}});
  ASSERT_THAT(ids, IsOk());
  ASSERT_THAT(ledger->SetModels({{"local", 1}, {"api", std::nullopt}}), IsOk());
  EXPECT_EQ(ledger->Snapshot()->free_slots[0], 0);
  ASSERT_THAT(ledger->Complete((*ids)[0], std::nullopt), IsOk());
  EXPECT_EQ(ledger->Snapshot()->free_slots[0], 0);
  ASSERT_THAT(ledger->Complete((*ids)[1], std::nullopt), IsOk());
  EXPECT_EQ(ledger->Snapshot()->free_slots[0], 1);
}

TEST_F(RedisLedgerTest, RejectsBadInput) {
  RedisLedgerOptions bad = Redis();
  bad.address = "localhost";
  EXPECT_THAT(RedisLedger::Create(bad, LedgerOptions{}, LedgerTestPool()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("redis.address")));
  bad = Redis();
  bad.domain = "a}b";
  EXPECT_THAT(RedisLedger::Create(bad, LedgerOptions{}, LedgerTestPool()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("redis.domain")));
  bad = Redis();
  bad.call_timeout = absl::ZeroDuration();
  EXPECT_THAT(RedisLedger::Create(bad, LedgerOptions{}, LedgerTestPool()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("redis.call_timeout_ms")));
  LedgerOptions o;
  o.lease_timeout = absl::ZeroDuration();
  EXPECT_THAT(RedisLedger::Create(Redis(), o, LedgerTestPool()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("lease_timeout")));
  EXPECT_THAT(RedisLedger::Create(Redis(), LedgerOptions{}, {{"a", 1}, {"a", 2}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("models[1].name: duplicate")));
  auto ledger = Make();
  EXPECT_THAT(CommitIds(*ledger, {{"nope", 0.0}}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope")));
  EXPECT_THAT(CommitIds(*ledger, {{"api", -1.0}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("reservations[0]")));
  EXPECT_THAT(ledger->Complete("x", std::nullopt),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("assignment_id")));
  auto ids = CommitIds(*ledger, {{"api", 0.1}});
  ASSERT_THAT(ids, IsOk());
  EXPECT_THAT(ledger->Complete((*ids)[0], std::nan("")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("actual_cost_usd")));
  EXPECT_EQ(ledger->Totals()->open_assignments, 1);  // nothing half-written
}

// Three replicas, eight threads: never more than the model's slots.
TEST_F(RedisLedgerTest, ConcurrentCommitsOfSeveralReplicasNeverExceedSlots) {
  std::vector<std::unique_ptr<RedisLedger>> replicas;
  for (int r = 0; r < 3; ++r) replicas.push_back(Make());
  std::atomic<int> granted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int k = 0; k < 30; ++k) {
        if (CommitIds(*replicas[(t + k) % 3], {{"local", 0.0}}).ok()) ++granted;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(granted.load(), 2);
  EXPECT_EQ(replicas[0]->InUse("local").value(), 2);
}

TEST_F(RedisLedgerTest, AHoldKeepsWhatItHoldsFromOtherReplicasUntilItsCommit) {
  auto ledger = Make();
  auto other = Make();
  absl::StatusOr<LedgerHold> hold = ledger->Hold(Want(1e9, {{"local", 2}, {"api", 5}}));
  ASSERT_THAT(hold, IsOk());
  EXPECT_THAT(hold->slots, ::testing::ElementsAre(2, 5));
  EXPECT_EQ(other->Snapshot()->free_slots[0], 0);
  EXPECT_THAT(CommitIds(*other, {{"local", 0.0}}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("0 free")));
  EXPECT_EQ(ledger->Totals()->open_holds, 1);
  const std::vector<Reservation> one_local = {{"local", 0.0}, {"api", 0.01}};
  absl::StatusOr<std::vector<Lease>> leases = ledger->Commit(&*hold, one_local);
  ASSERT_THAT(leases, IsOk());
  ASSERT_EQ(leases->size(), 2u);
  EXPECT_EQ(ledger->Totals()->open_holds, 0);
  EXPECT_EQ(other->InUse("local").value(), 1);
  EXPECT_EQ(other->Snapshot()->free_slots[0], 1);
  EXPECT_THAT(ledger->Commit(&*hold, one_local),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("fenced")));
}

TEST_F(RedisLedgerTest, AHoldGrantsAtMostWhatIsFreeAndWhatTheBucketAllows) {
  LedgerOptions paced = Paced(1e-6, 1.0);
  auto ledger = Make(paced);
  ASSERT_THAT(CommitIds(*ledger, {{"local", 0.6}}), IsOk());
  absl::StatusOr<LedgerHold> first = ledger->Hold(Want(1.0, {{"local", 5}, {"nope", 3}}));
  ASSERT_THAT(first, IsOk());
  EXPECT_NEAR(first->spend_usd, 0.4, 1e-4);
  EXPECT_THAT(first->slots, ::testing::ElementsAre(1, 0));
  absl::StatusOr<LedgerHold> second = ledger->Hold(Want(1.0, {{"local", 1}}));
  ASSERT_THAT(second, IsOk());
  EXPECT_NEAR(second->spend_usd, 0.0, 1e-4);
  EXPECT_THAT(second->slots, ::testing::ElementsAre(0));
  ledger->Release(*first);
  ledger->Release(*first);  // a second release changes nothing
  EXPECT_NEAR(ledger->Snapshot()->spend_allowance_usd, 0.4, 1e-4);
  EXPECT_EQ(ledger->Snapshot()->free_slots[0], 1);
  ledger->Release(*second);
  EXPECT_EQ(ledger->Totals()->open_holds, 0);
}

TEST_F(RedisLedgerTest, ACommitBeyondItsHoldIsRefusedAndTheHoldGivenBack) {
  LedgerOptions paced = Paced(1e-6, 1.0);
  auto ledger = Make(paced);
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
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("the hold granted")));
  EXPECT_EQ(ledger->Totals()->open_assignments, 0);
  EXPECT_NEAR(ledger->Snapshot()->spend_allowance_usd, 1.0, 1e-4);
}

// Money is integer micro-USD in Redis: a hold granted all it asked reports the ask itself (not the
// ask rounded), and a commit of costs with fractions of a micro-USD fits the hold that granted them.
TEST_F(RedisLedgerTest, FractionsOfAMicroUsdNeverLookLikeABindingBudget) {
  LedgerOptions paced = Paced(1e-6, 1.0);
  auto ledger = Make(paced);
  absl::StatusOr<LedgerHold> hold = ledger->Hold(Want(0.0003775, {}));
  ASSERT_THAT(hold, IsOk());
  EXPECT_EQ(hold->spend_usd, 0.0003775);
  const std::vector<Reservation> two = {{"api", 0.00018875}, {"api", 0.00018875}};
  EXPECT_THAT(ledger->Commit(&*hold, two), IsOk());
  absl::StatusOr<LedgerHold> all = ledger->Hold(Want(std::numeric_limits<double>::infinity(), {}));
  ASSERT_THAT(all, IsOk());
  EXPECT_LT(all->spend_usd, 1.0);  // what the bucket allows, not the infinite ask
  EXPECT_GT(all->spend_usd, 0.99);
}

TEST_F(RedisLedgerTest, AnActualCostAboveTheLimitIsRefusedAndChangesNothing) {
  LedgerOptions paced = Paced(1e-6, 5.0);
  paced.max_actual_cost_usd = 2.0;
  auto ledger = Make(paced);
  auto ids = CommitIds(*ledger, {{"api", 0.5}});
  ASSERT_THAT(ids, IsOk());
  for (const double absurd : {2.000001, 1e300}) {
    EXPECT_THAT(ledger->Complete((*ids)[0], absurd),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_actual_cost_usd")));
  }
  EXPECT_EQ(ledger->Totals()->open_assignments, 1);
  EXPECT_NEAR(ledger->Snapshot()->spend_allowance_usd, 4.5, 1e-4);
  ASSERT_THAT(ledger->Complete((*ids)[0], 2.0), IsOk());
  EXPECT_NEAR(ledger->Snapshot()->spend_allowance_usd, 3.0, 1e-4);
}

TEST_F(RedisLedgerTest, ACommitMaySpendWhatItsHoldGrantedAfterACompletionChargedMore) {
  LedgerOptions paced = Paced(1e-6, 1.0);
  auto ledger = Make(paced);
  auto other = CommitIds(*ledger, {{"api", 0.2}});
  ASSERT_THAT(other, IsOk());
  absl::StatusOr<LedgerHold> hold = ledger->Hold(Want(0.5, {}));
  ASSERT_THAT(hold, IsOk());
  EXPECT_DOUBLE_EQ(hold->spend_usd, 0.5);
  ASSERT_THAT(ledger->Complete((*other)[0], 0.9), IsOk());  // level 0.8 - 0.7 = 0.1, below 0.5
  EXPECT_NEAR(ledger->Snapshot()->spend_allowance_usd, 0.0, 1e-4);
  const std::vector<Reservation> spend = {{"api", 0.5}};
  EXPECT_THAT(ledger->Commit(&*hold, spend), IsOk());
  EXPECT_THAT(CommitIds(*ledger, {{"api", 0.01}}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("spend")));
}

// A replica that stalls past its hold (by Redis' clock) cannot commit on it.
TEST_F(RedisLedgerTest, AnExpiredHoldIsFencedAndWhatItHeldIsFreeAgain) {
  auto ledger = Make();
  auto other = Make();
  absl::StatusOr<LedgerHold> hold =
      ledger->Hold(Want(1.0, {{"local", 2}}, absl::Milliseconds(200)));
  ASSERT_THAT(hold, IsOk());
  EXPECT_EQ(other->Snapshot()->free_slots[0], 0);
  absl::SleepFor(absl::Milliseconds(400));
  EXPECT_EQ(other->Snapshot()->free_slots[0], 2);
  ASSERT_THAT(CommitIds(*other, {{"local", 0.0}, {"local", 0.0}}), IsOk());
  const std::vector<Reservation> one_local = {{"local", 0.0}};
  EXPECT_THAT(ledger->Commit(&*hold, one_local),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("fenced")));
  EXPECT_EQ(ledger->InUse("local").value(), 2);
}

TEST_F(RedisLedgerTest, ConcurrentHoldsAndCommitsOfSeveralReplicasNeverExceedSlots) {
  std::vector<std::unique_ptr<RedisLedger>> replicas;
  for (int r = 0; r < 3; ++r) replicas.push_back(Make());
  std::atomic<bool> over{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      Ledger& ledger = *replicas[t % 3];
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
          if (!replicas[(t + 1) % 3]->Complete(id, std::nullopt).ok()) over = true;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_FALSE(over.load());
  EXPECT_EQ(replicas[0]->InUse("local").value(), 0);
  EXPECT_EQ(replicas[0]->Totals()->open_holds, 0);
  EXPECT_EQ(replicas[0]->Snapshot()->free_slots[0], 2);
}

// An inline window counts the arrivals of every replica, and its cap holds for all of them.
TEST_F(RedisLedgerTest, InlineWindowsAreFleetWide) {
  auto a = Make();
  auto b = Make();
  InlineWindowSpec spec;
  spec.arrivals = 3;
  absl::StatusOr<InlineArrival> first = a->ArriveInline(spec);
  ASSERT_THAT(first, IsOk());
  EXPECT_EQ(first->window, 1u);
  EXPECT_EQ(first->position, 0);
  EXPECT_EQ(first->time_left, absl::InfiniteDuration());
  EXPECT_EQ(first->snapshot.free_slots[0], 2);
  absl::StatusOr<InlineArrival> second = b->ArriveInline(spec);
  ASSERT_THAT(second, IsOk());
  EXPECT_EQ(second->window, 1u);
  EXPECT_EQ(second->position, 1);
  ASSERT_THAT(a->CommitInline(1, 0.05, {"api", 0.03}), IsOk());
  auto charged = b->CommitInline(1, 0.05, {"api", 0.03});
  EXPECT_THAT(charged, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("cap")));
  auto fits = b->CommitInline(1, 0.05, {"api", 0.02});
  ASSERT_THAT(fits, IsOk());
  EXPECT_NEAR(fits->window_spent_usd, 0.05, 1e-9);
  EXPECT_EQ(b->ArriveInline(spec)->position, 2);
  absl::StatusOr<InlineArrival> next = a->ArriveInline(spec);
  EXPECT_EQ(next->window, 2u);
  EXPECT_EQ(next->spent_usd, 0.0);
  // A window that closed still takes the spend decided in it, within its cap.
  EXPECT_THAT(b->CommitInline(1, 0.05, {"api", 0.01}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("cap")));
  spec.duration = absl::Milliseconds(200);
  spec.arrivals = 100;
  for (int k = 0; k < 2; ++k) b->ArriveInline(spec).IgnoreError();  // window 2 fills up
  next = a->ArriveInline(spec);
  EXPECT_EQ(next->window, 3u);
  EXPECT_LE(next->time_left, absl::Milliseconds(200));
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(b->ArriveInline(spec)->window, 4u);
}

// Redis restarted empty: never read as "nothing spent, all slots free".
TEST_F(RedisLedgerTest, AStateLostWithRedisIsDetectedAndTheFleetStaysConservative) {
  absl::StatusOr<std::unique_ptr<RedisServer>> own = RedisServer::Start();
  ASSERT_THAT(own, IsOk());
  RedisLedgerOptions r = Redis();
  r.address = (*own)->address();
  LedgerOptions o;
  o.lease_timeout = absl::Milliseconds(1500);
  o.spend_rate_usd_per_second = 1e-6;
  o.spend_burst_usd = 1.0;
  auto a = RedisLedger::Create(r, o, LedgerTestPool());
  auto b = RedisLedger::Create(r, o, LedgerTestPool());
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  auto ids = CommitIds(**a, {{"local", 0.1}});
  ASSERT_THAT(ids, IsOk());
  ASSERT_THAT((*b)->Snapshot(), IsOk());
  ASSERT_THAT((*own)->RestartEmpty(), IsOk());
  // The first call of each replica may meet a connection broken by the restart (UNAVAILABLE,
  // retryable); the retry goes through.
  absl::StatusOr<core::LedgerSnapshot> snap = (*b)->Snapshot();
  if (!snap.ok()) snap = (*b)->Snapshot();
  ASSERT_THAT(snap, IsOk());
  if (!(*a)->Snapshot().ok()) {
    ASSERT_THAT((*a)->Snapshot(), IsOk());
  }
  EXPECT_EQ(snap->free_slots[0], 0);           // leases issued before the loss may be running
  EXPECT_NEAR(snap->spend_allowance_usd, 0.0, 1e-4);  // and may have spent the burst
  EXPECT_TRUE((*b)->guarded());
  EXPECT_THAT(CommitIds(**a, {{"local", 0.0}}), StatusIs(absl::StatusCode::kFailedPrecondition, ::testing::_));
  // Their ids are unknown to the new state.
  EXPECT_THAT((*a)->Complete((*ids)[0], std::nullopt), StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  absl::SleepFor(absl::Milliseconds(1700));  // leases from before the loss have expired
  snap = (*a)->Snapshot();
  ASSERT_THAT(snap, IsOk());
  EXPECT_EQ(snap->free_slots[0], 2);
  EXPECT_FALSE((*a)->guarded());
}

// A Redis that went back to an older state (sequence below what a replica saw) is a rollback.
TEST_F(RedisLedgerTest, ARollbackIsDetectedAndTheFleetStaysConservative) {
  LedgerOptions o;
  o.lease_timeout = absl::Milliseconds(800);
  auto ledger = Make(o);
  ASSERT_THAT(CommitIds(*ledger, {{"local", 0.0}}), IsOk());
  EXPECT_EQ(ledger->Snapshot()->free_slots[0], 1);
  ASSERT_THAT(server_->Cli("HSET '{rt:" + domain_ + "}:meta' seq 1"), IsOk());
  EXPECT_EQ(ledger->Snapshot()->free_slots[0], 0);
  EXPECT_TRUE(ledger->guarded());
  absl::SleepFor(absl::Milliseconds(1000));
  EXPECT_EQ(ledger->Snapshot()->free_slots[0], 2);
}

// Replicas of another ledger layout never write the same keys: the state's layout is checked.
TEST_F(RedisLedgerTest, AStateOfAnotherLayoutIsRefused) {
  auto ledger = Make();
  ASSERT_THAT(CommitIds(*ledger, {{"local", 0.0}}), IsOk());
  ASSERT_THAT(server_->Cli("HSET '{rt:" + domain_ + "}:meta' layout 1"), IsOk());
  EXPECT_THAT(ledger->Snapshot(), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("layout 1")));
  EXPECT_TRUE(ledger->degraded());
}

TEST_F(RedisLedgerTest, FunctionsLostByRedisAreReloaded) {
  auto ledger = Make();
  ASSERT_THAT(CommitIds(*ledger, {{"local", 0.0}}), IsOk());
  ASSERT_THAT(server_->Cli("FUNCTION FLUSH"), IsOk());
  EXPECT_EQ(ledger->Snapshot()->free_slots[0], 1);
  EXPECT_FALSE(ledger->degraded());
}

// Killed and restarted from its append-only file, Redis keeps every lease and hold.
TEST_F(RedisLedgerTest, ARestartFromTheAppendOnlyFileKeepsTheState) {
  absl::StatusOr<std::unique_ptr<RedisServer>> own = RedisServer::Start();
  ASSERT_THAT(own, IsOk());
  RedisLedgerOptions r = Redis();
  r.address = (*own)->address();
  auto ledger = RedisLedger::Create(r, LedgerOptions{}, LedgerTestPool());
  ASSERT_THAT(ledger, IsOk());
  auto ids = CommitIds(**ledger, {{"local", 0.0}});
  ASSERT_THAT(ids, IsOk());
  ASSERT_THAT((*own)->KillAndRestart(), IsOk());
  absl::StatusOr<core::LedgerSnapshot> snap = (*ledger)->Snapshot();
  if (!snap.ok()) snap = (*ledger)->Snapshot();  // a connection broken by the restart
  ASSERT_THAT(snap, IsOk());
  EXPECT_EQ(snap->free_slots[0], 1);
  EXPECT_FALSE((*ledger)->guarded());
  EXPECT_THAT((*ledger)->Complete((*ids)[0], std::nullopt), IsOk());
}

// A stalled Redis: calls fail within their timeout (fail closed), the ledger is degraded and
// refuses at once while its circuit is open, and recovers by itself.
TEST_F(RedisLedgerTest, AStalledRedisFailsClosedAndRecovers) {
  absl::StatusOr<std::unique_ptr<RedisServer>> own = RedisServer::Start();
  ASSERT_THAT(own, IsOk());
  RedisLedgerOptions r = Redis();
  r.address = (*own)->address();
  r.call_timeout = absl::Milliseconds(50);
  r.retry_after = absl::Milliseconds(300);
  auto ledger = RedisLedger::Create(r, LedgerOptions{}, LedgerTestPool());
  ASSERT_THAT(ledger, IsOk());
  // Before the stall and after it, a 50 ms call may still time out on a loaded machine: wait (a
  // bounded number of times) for one that does not.
  auto snapshot_once_healthy = [&]() {
    absl::StatusOr<core::LedgerSnapshot> snap = (*ledger)->Snapshot();
    for (int k = 0; k < 40 && !snap.ok(); ++k) {
      absl::SleepFor(r.retry_after + absl::Milliseconds(50));
      snap = (*ledger)->Snapshot();
    }
    return snap;
  };
  ASSERT_THAT(snapshot_once_healthy(), IsOk());
  (*own)->Stall();
  EXPECT_THAT(CommitIds(**ledger, {{"local", 0.0}}),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("retry after")));
  EXPECT_TRUE((*ledger)->degraded());
  EXPECT_THAT((*ledger)->Snapshot(), StatusIs(absl::StatusCode::kUnavailable, ::testing::_));
  (*own)->Resume();
  ASSERT_THAT(snapshot_once_healthy(), IsOk());
  EXPECT_FALSE((*ledger)->degraded());
  // A commit sent before the stall ended may have gone through: never more than the slots.
  EXPECT_LE((*ledger)->InUse("local").value(), 1);
}

TEST_F(RedisLedgerTest, AnUnreachableRedisIsNotFatalAtStart) {
  RedisLedgerOptions r = Redis();
  r.address = "127.0.0.1:1";
  auto ledger = RedisLedger::Create(r, LedgerOptions{}, LedgerTestPool());
  ASSERT_THAT(ledger, IsOk());
  EXPECT_TRUE((*ledger)->degraded());
  EXPECT_THAT((*ledger)->Snapshot(), StatusIs(absl::StatusCode::kUnavailable, ::testing::_));
}

TEST_F(RedisLedgerTest, APasswordIsSentAndNeverShown) {
  router::testing::RedisServerOptions with_password;
  with_password.password = "s3cret-pass";
  absl::StatusOr<std::unique_ptr<RedisServer>> own = RedisServer::Start(with_password);
  ASSERT_THAT(own, IsOk());
  RedisLedgerOptions r = Redis();
  r.address = (*own)->address();
  r.password = "s3cret-pass";
  auto ledger = RedisLedger::Create(r, LedgerOptions{}, LedgerTestPool());
  ASSERT_THAT(ledger, IsOk());
  EXPECT_THAT(CommitIds(**ledger, {{"local", 0.0}}), IsOk());
  r.password = "wrong-pass";
  auto wrong = RedisLedger::Create(r, LedgerOptions{}, LedgerTestPool());
  ASSERT_THAT(wrong, IsOk());
  absl::StatusOr<core::LedgerSnapshot> snap = (*wrong)->Snapshot();
  EXPECT_THAT(snap, StatusIs(absl::StatusCode::kUnavailable, ::testing::_));
  EXPECT_THAT(std::string(snap.status().message()), ::testing::Not(HasSubstr("wrong-pass")));
}

// CRC16 (XMODEM) of Redis Cluster's key slots, over the hash tag when the key has one.
int KeySlot(absl::string_view key) {
  const size_t open = key.find('{');
  if (open != absl::string_view::npos) {
    const size_t close = key.find('}', open + 1);
    if (close != absl::string_view::npos && close > open + 1) {
      key = key.substr(open + 1, close - open - 1);
    }
  }
  uint16_t crc = 0;
  for (unsigned char c : key) {
    crc ^= static_cast<uint16_t>(c) << 8;
    for (int i = 0; i < 8; ++i) crc = (crc & 0x8000) ? (crc << 1) ^ 0x1021 : crc << 1;
  }
  return crc % 16384;
}

// Every key a domain's calls create lives in one Redis Cluster hash slot.
TEST_F(RedisLedgerTest, EveryKeyOfADomainSharesOneHashSlot) {
  EXPECT_EQ(KeySlot("123456789"), 12739);  // Redis Cluster's specification example
  LedgerOptions o;
  o.lease_timeout = absl::Milliseconds(100);
  o.spend_rate_usd_per_second = 1.0;
  o.spend_burst_usd = 10.0;
  auto ledger = Make(o, {{"local", 4}, {"api", std::nullopt}, {"odd name {x}", 3}});
  auto hold = ledger->Hold(Want(1.0, {{"local", 2}, {"odd name {x}", 1}}));
  ASSERT_THAT(hold, IsOk());
  ASSERT_THAT(ledger->Commit(&*hold, std::vector<Reservation>{{"local", 0.1}, {"odd name {x}", 0.1}}),
              IsOk());
  ASSERT_THAT(ledger->ArriveInline({10, absl::Seconds(1)}), IsOk());
  ASSERT_THAT(ledger->CommitInline(1, 1.0, {"api", 0.1}), IsOk());
  absl::SleepFor(absl::Milliseconds(200));
  ASSERT_THAT(ledger->Totals(), IsOk());  // expires into the remembered set
  absl::StatusOr<std::string> keys = server_->Cli("--raw KEYS '*" + domain_ + "*'");
  ASSERT_THAT(keys, IsOk());
  std::set<int> slots;
  int count = 0;
  for (absl::string_view key : absl::StrSplit(*keys, '\n', absl::SkipEmpty())) {
    slots.insert(KeySlot(key));
    ++count;
  }
  EXPECT_GE(count, 6);  // meta, bucket, lease sets, windows, remembered expiries
  EXPECT_EQ(slots.size(), 1u) << *keys;
}

}  // namespace
}  // namespace router::server
