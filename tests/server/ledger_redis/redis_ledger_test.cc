// The Redis ledger against a real redis-server (redis_server.h): the ledger conformance suite
// (ledger_conformance.h) on three replicas of one domain, waiting on Redis' clock, and what only
// a fleet on Redis has: domains, its options, loss and rollback detection, layouts, function
// reloads, a restart from the append-only file, a stalled or unreachable Redis, the password,
// replicas of the previous build, and one hash slot per domain.

#include "server/ledger_redis/redis_ledger.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "router_core/clock.h"
#include "router_core/serving/inline_router.h"
#include "tests/router_core/testing/ledger_conformance.h"
#include "tests/router_core/testing/ledger_testing.h"
#include "tests/router_core/testing/status_matchers.h"
#include "tests/server/ledger_redis/shared_redis_server.h"

namespace router::server {
namespace {

using ::router::core::InlineWindowSpec;
using ::router::core::Ledger;
using ::router::core::LedgerModel;
using ::router::core::LedgerOptions;
using ::router::core::Reservation;
using ::router::core::testing::CommitIds;
using ::router::core::testing::LedgerFleet;
using ::router::core::testing::LedgerTestPool;
using ::router::core::testing::Want;
using ::router::testing::AddSharedRedisServer;
using ::router::testing::RedisServer;
using ::router::testing::SharedRedisServer;
using ::testing::ElementsAre;

// The redis-server of this test process, started before its first test (each test uses its own
// domain).
::testing::Environment* const kRedisEnvironment = AddSharedRedisServer({});

// Timeouts far above any call's time on a loaded machine (tests run in parallel, under
// sanitizers, on 2 shared cores): only the stall test relies on a call timing out.
RedisLedgerOptions TestRedis(const std::string& domain) {
  RedisLedgerOptions r;
  r.address = SharedRedisServer().address();
  r.domain = domain;
  r.connect_timeout = absl::Seconds(5);
  r.call_timeout = absl::Seconds(5);
  r.retry_after = absl::Milliseconds(200);
  return r;
}

// kReplicas replicas on a domain of their own; time is Redis' clock, so waiting is sleeping.
class RedisFleet final : public LedgerFleet {
 public:
  absl::Status Start(const LedgerOptions& options, std::vector<LedgerModel> models) override {
    static std::atomic<int> fleets{0};
    const RedisLedgerOptions redis = TestRedis(absl::StrCat("conformance-", ++fleets));
    for (int k = 0; k < kReplicas; ++k) {
      absl::StatusOr<std::unique_ptr<RedisLedger>> l = RedisLedger::Create(redis, options, models);
      if (!l.ok()) return l.status();
      replicas_.push_back(*std::move(l));
    }
    return absl::OkStatus();
  }
  Ledger& replica(int k) override { return *replicas_.at(static_cast<size_t>(k)); }
  void Wait(absl::Duration d) override { absl::SleepFor(d); }

 private:
  std::vector<std::unique_ptr<RedisLedger>> replicas_;
};

std::unique_ptr<LedgerFleet> MakeRedisFleet() { return std::make_unique<RedisFleet>(); }

}  // namespace
}  // namespace router::server

namespace router::core::testing {
INSTANTIATE_TEST_SUITE_P(Redis, LedgerConformanceTest,
                         ::testing::Values(LedgerBackend{"three_replicas",
                                                         &::router::server::MakeRedisFleet}),
                         BackendName);
}  // namespace router::core::testing

namespace router::server {
namespace {

class RedisLedgerTest : public ::testing::Test {
 protected:
  RedisLedgerOptions Redis() const { return TestRedis(domain_); }
  // A replica of this test's domain (each test has its own).
  std::unique_ptr<RedisLedger> Make(const LedgerOptions& o = LedgerOptions{},
                                    std::vector<LedgerModel> models = LedgerTestPool()) {
    absl::StatusOr<std::unique_ptr<RedisLedger>> l = RedisLedger::Create(Redis(), o, models);
    EXPECT_THAT(l, IsOk());
    return *std::move(l);
  }

  // redis-cli arguments calling Function `function` on this test's domain as a replica would,
  // through the common arguments: no incarnation known, sequence 0, a 60 s lease timeout, no
  // pacing, 1,000 expired leases remembered. The domain's key names are spelt out again, as
  // another build would.
  std::string Fcall(absl::string_view function) const {
    std::string fcall = absl::StrCat("--raw FCALL ", function, " 10");
    for (const char* name : {"meta", "bucket", "holds", "hexp", "commits", "cexp", "gexp",
                             "held", "used", "win"}) {
      absl::StrAppend(&fcall, " '{rt:", domain_, "}:", name, "'");
    }
    absl::StrAppend(&fcall, " '' 0 60000000 0 0 1000");
    return fcall;
  }

  RedisServer* const server_ = &SharedRedisServer();
  const std::string domain_ =
      ::testing::UnitTest::GetInstance()->current_test_info()->name();
};

TEST_F(RedisLedgerTest, RejectsBadOptions) {
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
}

// A commit's reply carries what may be used after it: the recent snapshot, equal to what Snapshot
// then reads, with no call of its own; it is not kept across a model change, nor decided on past
// redis.recent_snapshot_ms (at 0, never).
TEST_F(RedisLedgerTest, ACommitsReplyIsTheRecentSnapshot) {
  const LedgerOptions paced = core::testing::Paced(1e-9, 1.0);
  RedisLedgerOptions patient = Redis();
  patient.recent_snapshot_for = absl::Hours(1);  // however slow the machine between two lines
  patient.refresh_snapshot_for = absl::ZeroDuration();  // no snapshot read but the replies'
  absl::StatusOr<std::unique_ptr<RedisLedger>> created =
      RedisLedger::Create(patient, paced, LedgerTestPool());
  ASSERT_THAT(created, IsOk());
  RedisLedger* const replica = created->get();
  auto other = Make(paced);
  ASSERT_THAT(other->Commit(nullptr, {{"local", 0.0}}), IsOk());
  ASSERT_THAT(replica->Commit(nullptr, {{"local", 0.25}, {"api", 0.5}}), IsOk());
  const std::optional<core::LedgerSnapshot> recent = replica->RecentSnapshot();
  ASSERT_TRUE(recent.has_value());
  EXPECT_THAT(recent->models, ElementsAre("local", "api"));
  EXPECT_THAT(recent->free_slots, ElementsAre(std::optional<int64_t>(0), std::nullopt));
  EXPECT_NEAR(recent->spend_allowance_usd, 0.25, 1e-6);
  const absl::StatusOr<core::LedgerSnapshot> now = other->Snapshot();
  ASSERT_THAT(now, IsOk());
  EXPECT_EQ(now->free_slots, recent->free_slots);
  EXPECT_NEAR(now->spend_allowance_usd, recent->spend_allowance_usd, 1e-6);

  ASSERT_THAT(replica->SetModels({{"local", 3}, {"api", std::nullopt}}), IsOk());
  EXPECT_FALSE(replica->RecentSnapshot().has_value());

  RedisLedgerOptions never = Redis();
  never.recent_snapshot_for = absl::ZeroDuration();
  absl::StatusOr<std::unique_ptr<RedisLedger>> holding =
      RedisLedger::Create(never, paced, LedgerTestPool());
  ASSERT_THAT(holding, IsOk());
  ASSERT_THAT((*holding)->Commit(nullptr, {{"api", 0.1}}), IsOk());
  EXPECT_FALSE((*holding)->RecentSnapshot().has_value());
}

// Counts a ledger's successful calls by operation, and waits for them.
class CallCounter : public RedisLedgerObserver {
 public:
  void OnLedgerCall(absl::string_view op, absl::Duration, absl::string_view error) override {
    absl::MutexLock lock(&mu_);
    if (error.empty()) ++calls_[std::string(op)];
  }
  void OnLedgerDegraded(bool) override {}
  // Waits until `op` has been called `n` times, or for `limit` (real time); returns its count.
  int64_t AwaitCalls(const std::string& op, int64_t n, absl::Duration limit) {
    absl::MutexLock lock(&mu_);
    awaited_op_ = op;
    awaited_n_ = n;
    mu_.AwaitWithTimeout(absl::Condition(this, &CallCounter::Reached), limit);
    return calls_[op];
  }

 private:
  bool Reached() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const auto it = calls_.find(awaited_op_);
    return it != calls_.end() && it->second >= awaited_n_;
  }
  absl::Mutex mu_;
  std::map<std::string, int64_t> calls_ ABSL_GUARDED_BY(mu_);
  std::string awaited_op_ ABSL_GUARDED_BY(mu_);
  int64_t awaited_n_ ABSL_GUARDED_BY(mu_) = 0;
};

// For redis.refresh_snapshot_ms after a batch last asked for the recent snapshot, the ledger reads
// one of its own whenever no reply renewed it for half of redis.recent_snapshot_ms (so the first
// batch after a pause decides on it), and then stops; at 0, it never does.
TEST_F(RedisLedgerTest, TheRecentSnapshotIsKeptFreshAfterABatchAsked) {
  CallCounter counter;
  RedisLedgerOptions o = Redis();
  o.recent_snapshot_for = absl::Milliseconds(20);
  o.refresh_snapshot_for = absl::Milliseconds(500);
  absl::StatusOr<std::unique_ptr<RedisLedger>> created =
      RedisLedger::Create(o, LedgerOptions{}, LedgerTestPool(), &counter);
  ASSERT_THAT(created, IsOk());
  ASSERT_THAT((*created)->Commit(nullptr, {{"api", 0.1}}), IsOk());
  (*created)->RecentSnapshot();  // a batch asks
  // About one read every 10 ms for 500 ms after it asked.
  EXPECT_GE(counter.AwaitCalls("snapshot", 3, absl::Seconds(60)), 3);
  // Then none: 2.5 s after it asked, about 50 reads, where reading on would have made 250.
  EXPECT_LE(counter.AwaitCalls("snapshot", 1'000'000, absl::Milliseconds(2500)), 120);

  CallCounter never_counter;
  o.refresh_snapshot_for = absl::ZeroDuration();
  absl::StatusOr<std::unique_ptr<RedisLedger>> never =
      RedisLedger::Create(o, LedgerOptions{}, LedgerTestPool(), &never_counter);
  ASSERT_THAT(never, IsOk());
  ASSERT_THAT((*never)->Commit(nullptr, {{"api", 0.1}}), IsOk());
  (*never)->RecentSnapshot();
  EXPECT_EQ(never_counter.AwaitCalls("snapshot", 1, absl::Milliseconds(500)), 0);
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

// Two replicas' inline routers on one domain, deciding concurrently in steps: a window (numbered
// by Redis, so the same for both) never spends more than its cap nor counts more than its
// arrivals, the self-hosted model never has more leases than slots, and every query gets one
// answer (the routers' Route returns once per query; answers are counted).
TEST_F(RedisLedgerTest, InlineRoutersOfTwoReplicasKeepTheFleetsCapsAndSlots) {
  const std::vector<core::DeployedModel> pool = {
      {"local", 2}, {"cheap", std::nullopt}, {"dear", std::nullopt}};
  std::vector<LedgerModel> models;
  for (const core::DeployedModel& d : pool) models.push_back({d.name, d.slots});
  auto predicted = std::make_shared<const std::vector<std::string>>(
      std::vector<std::string>{"local", "cheap", "dear"});
  core::BatchPolicy policy;
  policy.avg_cost_cap_usd = 0.002;
  core::InlineOptions options;
  options.window_arrivals = 10;
  std::vector<std::unique_ptr<RedisLedger>> ledgers;
  std::vector<std::unique_ptr<core::InlineRouter>> routers;
  for (int r = 0; r < 2; ++r) {
    ledgers.push_back(Make(LedgerOptions{}, models));
    auto router = core::InlineRouter::Create(options, ledgers.back().get(), &core::Clock::Real());
    ASSERT_THAT(router, IsOk());
    routers.push_back(*std::move(router));
  }
  absl::Mutex mu;
  std::map<std::string, double> spend;
  std::map<std::string, int> arrivals;
  int answers = 0, served = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      std::uniform_real_distribution<double> u(0.0, 1.0);
      for (int k = 0; k < 40; ++k) {
        core::PendingQuery q;
        q.predicted_models = predicted;
        const double hard = u(rng);
        q.predictions.quality = {0.5 - 0.3 * hard, 0.6 - 0.3 * hard, 0.9 - 0.05 * hard};
        for (double v : q.predictions.quality) q.predictions.quality_lower.push_back(0.9 * v);
        q.predictions.cost_usd = {0.0, 0.001, 0.01};
        const core::InlineDecision d = routers[t % 2]->Route(q, pool, policy);
        absl::MutexLock lock(&mu);
        ++answers;
        ++arrivals[d.window_id];
        if (d.outcome.status.ok()) {
          ++served;
          spend[d.window_id] += d.outcome.cost_usd;
        } else {
          // Out of budget or slots, or (retryable) refused three times by a ledger that another
          // replica's decisions kept changing.
          EXPECT_TRUE(absl::IsResourceExhausted(d.outcome.status) ||
                      absl::IsUnavailable(d.outcome.status))
              << d.outcome.status;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(answers, 240);
  for (const auto& [window, n] : arrivals) EXPECT_LE(n, 10) << window;
  for (const auto& [window, usd] : spend) EXPECT_LE(usd, 0.02 + 1e-9) << window;
  EXPECT_LE(ledgers[0]->InUse("local").value(), 2);
  EXPECT_EQ(ledgers[0]->Totals()->open_assignments, served);
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

// A commit's leases are kept in records of at most 4,095 leases each; a model's name may hold any
// character, the record's separators included.
TEST_F(RedisLedgerTest, LeasesOfLargeCommitsAndOddModelNamesComplete) {
  auto ledger = Make(LedgerOptions{}, {{"a|b;c", 3}, {"api", std::nullopt}});
  std::vector<Reservation> many(5000, {"api", 0.000001});
  many[0] = {"a|b;c", 0.25};
  many[4999] = {"a|b;c", 0.5};
  auto ids = CommitIds(*ledger, many);
  ASSERT_THAT(ids, IsOk());
  ASSERT_EQ(ids->size(), 5000u);
  EXPECT_EQ(std::set<std::string>(ids->begin(), ids->end()).size(), 5000u);
  EXPECT_EQ(ledger->InUse("a|b;c").value(), 2);
  EXPECT_EQ(ledger->Totals()->open_assignments, 5000);
  for (size_t k : {size_t{0}, size_t{4094}, size_t{4095}, size_t{4999}}) {
    absl::StatusOr<core::CompletionRecord> done = ledger->Complete((*ids)[k], std::nullopt);
    ASSERT_THAT(done, IsOk()) << k;
    EXPECT_TRUE(done->lease_was_active);
    EXPECT_NEAR(done->predicted_cost_usd, many[k].predicted_cost_usd, 1e-9) << k;
    EXPECT_THAT(ledger->Complete((*ids)[k], std::nullopt),
                StatusIs(absl::StatusCode::kNotFound, HasSubstr("assignment_id")));
  }
  EXPECT_EQ(ledger->InUse("a|b;c").value(), 0);
  EXPECT_EQ(ledger->Totals()->open_assignments, 4996);
}

// rl3_complete_many as a replica sends it for a group of Completes: each lease is answered as if
// completed alone, in order; a lease named twice is completed once, an unknown one is -1.
TEST_F(RedisLedgerTest, CompletesInOneCallAreAnsweredEachAsIfAlone) {
  auto ledger = Make(LedgerOptions{}, {{"local", 2}, {"api", std::nullopt}});
  auto ids = CommitIds(*ledger, {{"local", 0.25}, {"api", 0.5}});
  ASSERT_THAT(ids, IsOk());
  // "<incarnation prefix>-<lease number>.<tag>"
  std::vector<std::pair<std::string, std::string>> leases;
  for (const std::string& id : *ids) {
    const std::vector<std::string> parts = absl::StrSplit(id, absl::ByAnyChar("-."));
    ASSERT_EQ(parts.size(), 3u) << id;
    leases.emplace_back(parts[1], parts[2]);
  }
  const std::string fcall = Fcall("rl3_complete_many");
  EXPECT_THAT(server_->Cli(fcall + " 0"), IsOkAndHolds(HasSubstr("INVALID completes")));
  const std::string unknown_tag(16, '0');
  absl::StatusOr<std::string> out = server_->Cli(absl::StrCat(
      fcall, " 4 ", leases[0].first, " ", leases[0].second, " -1 ", leases[0].first, " ",
      leases[0].second, " -1 ", leases[1].first, " ", leases[1].second, " 700000 ",
      leases[1].first, " ", unknown_tag, " -1"));
  ASSERT_THAT(out, IsOk());
  std::vector<std::string> lines = absl::StrSplit(absl::StripAsciiWhitespace(*out), '\n');
  ASSERT_EQ(lines.size(), 13u) << *out;
  lines.erase(lines.begin());  // the sequence number
  EXPECT_THAT(lines, ElementsAre("250000", "250000", "1",   // completed as predicted
                                 "-1", "-1", "0",           // already completed
                                 "500000", "700000", "1",   // completed at its actual cost
                                 "-1", "-1", "0"))          // no such tag
      << *out;
  EXPECT_EQ(ledger->InUse("local").value(), 0);
  EXPECT_EQ(ledger->Totals()->open_assignments, 0);
  EXPECT_THAT(ledger->Complete((*ids)[1], std::nullopt),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("assignment_id")));
}

// A commit's reservations go packed as their record keeps them (rl3_commit_packed); Redis checks
// every entry before it writes, and replicas built before it still commit with triples
// (rl3_commit), whose leases any replica completes.
TEST_F(RedisLedgerTest, PackedReservationsAreCheckedAndTriplesStillCommit) {
  auto ledger = Make(LedgerOptions{}, {{"local", 2}, {"api", std::nullopt}});
  ASSERT_THAT(CommitIds(*ledger, {{"api", 0.5}}), IsOk());  // creates the domain's state
  // No hold, no inline window, no cap, the pool, then the reservations.
  const std::string commit =
      absl::StrCat(Fcall("rl3_commit_packed"), " '' 0 -1 2 local 2 api -1");
  const std::string tag(16, 'a');
  auto entry = [&](const char* index, const char* micros, const char* mark) {
    return absl::StrCat(index, micros, tag, mark);
  };
  const std::string head = "2|5|local3|api";
  const struct {
    std::string reservations;
    const char* error;
  } kBad[] = {
      {absl::StrCat("1 '", head, entry("0001", "0000000000250000", "1"), "x'"),
       "INVALID reservations: 1 entries of 37 characters"},
      {absl::StrCat("1 '", head, entry("0003", "0000000000250000", "1"), "'"),
       "INVALID reservations[0]: model index 3 is not in the header"},
      {absl::StrCat("1 '", head, entry("0001", "00000000002500x0", "1"), "'"),
       "INVALID reservations[0]: model index and micro-USD must be digits"},
      {absl::StrCat("1 '", head, entry("0002", "2000000000000000", "0"), "'"),
       "INVALID reservations[0]: predicted_cost_usd: must be in [0, 1e9]"},
      // Spellings Lua reads as numbers, but not as a whole number of micro-USD in range.
      {absl::StrCat("1 '", head, entry("0002", "-000000000000001", "0"), "'"),
       "INVALID reservations[0]: predicted_cost_usd: must be in [0, 1e9]"},
      {absl::StrCat("1 '", head, entry("0002", "0000000000000.50", "0"), "'"),
       "INVALID reservations[0]: micro-USD must be a whole number"},
      {absl::StrCat("1 '", head, entry("0002", "             nan", "0"), "'"),
       "INVALID reservations[0]: micro-USD must be a whole number"},
      {absl::StrCat("1 '", head, entry("1.50", "0000000000250000", "0"), "'"),
       "INVALID reservations[0]: model index 1.5 is not in the header"},
      {absl::StrCat("2 '", head, entry("0001", "0000000000250000", "1"),
                    entry("0001", "0000000000250000", "0"), "'"),
       "INVALID reservations[1]: slot-limit mark must be 1 for a model with a slot limit"},
      {absl::StrCat("1 '", head, entry("0002", "0000000000250000", "1"), "'"),
       "INVALID reservations[0]: slot-limit mark must be 1 for a model with a slot limit"},
      {absl::StrCat("1 '", head, entry("0001", "0000000000250000", "x"), "'"),
       "INVALID reservations[0]: slot-limit mark must be 1 for a model with a slot limit"},
      {absl::StrCat("1 '2|3|api3|api", entry("0001", "0000000000250000", "0"), "'"),
       "INVALID reservations: model 'api' empty or twice in the header"},
      {absl::StrCat("1 '1|4|gpt5", entry("0001", "0000000000250000", "0"), "'"),
       "NOTFOUND unknown model 'gpt5'"},
      {"1", "INVALID reservations: missing"},
  };
  for (const auto& bad : kBad) {
    EXPECT_THAT(server_->Cli(absl::StrCat(commit, " ", bad.reservations)),
                IsOkAndHolds(HasSubstr(bad.error)))
        << bad.reservations;
  }
  for (double cost : {2e9, 1e300, std::nan("")}) {
    const std::vector<Reservation> dear = {{"api", 0.5}, {"api", cost}};
    EXPECT_THAT(ledger->Commit(nullptr, dear),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("reservations[1].predicted_cost_usd: must be in [0, 1e9]")));
  }
  EXPECT_EQ(ledger->InUse("local").value(), 0);
  EXPECT_EQ(ledger->Totals()->open_assignments, 1);
  // Entries are checked before anything is written: a refused commit leaves its hold usable.
  core::HoldRequest want;
  want.slots = {{"local", 1}};
  want.hold_for = absl::Seconds(30);
  absl::StatusOr<core::LedgerHold> hold = ledger->Hold(want);
  ASSERT_THAT(hold, IsOk());
  const std::string hold_number = hold->id.substr(hold->id.rfind("-h") + 2);
  EXPECT_THAT(server_->Cli(absl::StrCat(Fcall("rl3_commit_packed"), " ", hold_number,
                                        " 0 -1 2 local 2 api -1 1 '", head,
                                        entry("0001", "0000000000250000", "0"), "'")),
              IsOkAndHolds(HasSubstr("INVALID reservations[0]: slot-limit mark")));
  const std::vector<Reservation> one_local = {{"local", 0.25}};
  ASSERT_THAT(ledger->Commit(&*hold, one_local), IsOk());
  EXPECT_EQ(ledger->InUse("local").value(), 1);
  EXPECT_EQ(ledger->Totals()->open_assignments, 2);

  // A replica of the previous build commits one lease of each model as triples.
  absl::StatusOr<std::string> out = server_->Cli(
      absl::StrCat(Fcall("rl3_commit"), " '' 0 -1 2 local 2 api -1 2 local 250000 ", tag,
                   " api 500000 ", tag));
  ASSERT_THAT(out, IsOk());
  std::vector<std::string> lines = absl::StrSplit(absl::StripAsciiWhitespace(*out), '\n');
  ASSERT_GE(lines.size(), 4u) << *out;
  EXPECT_EQ(ledger->InUse("local").value(), 2);
  EXPECT_EQ(ledger->Totals()->open_assignments, 4);
  const std::string id = (*CommitIds(*ledger, {{"api", 0.5}}))[0];
  const std::string prefix = id.substr(0, id.find('-'));
  for (int k : {2, 3}) {
    absl::StatusOr<core::CompletionRecord> done =
        ledger->Complete(absl::StrCat(prefix, "-", lines[k], ".", tag), std::nullopt);
    ASSERT_THAT(done, IsOk()) << lines[k];
    EXPECT_NEAR(done->predicted_cost_usd, k == 2 ? 0.25 : 0.5, 1e-9);
  }
  EXPECT_EQ(ledger->InUse("local").value(), 1);  // the lease committed on the hold
}

// Completes from many threads at once, each lease twice: every Complete is answered once (one
// of a lease's two completes it, the other is NOT_FOUND), and Redis received each once, alone
// (rl3_complete) or in a group (rl3_complete_many), as its slow log shows.
TEST_F(RedisLedgerTest, ConcurrentCompletesAreEachAnsweredOnce) {
  constexpr int kLeases = 96, kThreads = 16;
  auto ledger = Make(LedgerOptions{}, {{"local", kLeases / 2}, {"api", std::nullopt}});
  std::vector<Reservation> reservations;
  for (int k = 0; k < kLeases; ++k) reservations.push_back({k % 2 == 0 ? "local" : "api", 0.01});
  auto ids = CommitIds(*ledger, reservations);
  ASSERT_THAT(ids, IsOk());
  ASSERT_THAT(server_->Cli("CONFIG SET slowlog-log-slower-than 0"), IsOk());
  ASSERT_THAT(server_->Cli("CONFIG SET slowlog-max-len 100000"), IsOk());
  ASSERT_THAT(server_->Cli("SLOWLOG RESET"), IsOk());
  std::vector<int> order;
  for (int k = 0; k < 2 * kLeases; ++k) order.push_back(k % kLeases);
  std::shuffle(order.begin(), order.end(), std::mt19937(7));
  std::vector<absl::StatusCode> codes(order.size(), absl::StatusCode::kUnknown);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (size_t i = t; i < order.size(); i += kThreads) {
        codes[i] = ledger->Complete((*ids)[order[i]], std::nullopt).status().code();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  absl::StatusOr<std::string> slowlog = server_->Cli("--raw SLOWLOG GET 100000");
  ASSERT_THAT(server_->Cli("CONFIG SET slowlog-log-slower-than 10000"), IsOk());
  std::map<int, std::vector<absl::StatusCode>> by_lease;
  for (size_t i = 0; i < order.size(); ++i) by_lease[order[i]].push_back(codes[i]);
  for (auto& [lease, got] : by_lease) {
    EXPECT_THAT(got, ::testing::UnorderedElementsAre(absl::StatusCode::kOk,
                                                     absl::StatusCode::kNotFound))
        << "lease " << lease;
  }
  EXPECT_EQ(ledger->InUse("local").value(), 0);
  EXPECT_EQ(ledger->Totals()->open_assignments, 0);
  // Each slow log entry lists the call's arguments one per line: FCALL, the function, 10, the
  // keys, the 6 common arguments, then (rl3_complete_many) the count of Completes.
  ASSERT_THAT(slowlog, IsOk());
  const std::vector<std::string> lines = absl::StrSplit(*slowlog, '\n');
  int sent = 0, calls = 0;
  for (size_t i = 1; i < lines.size(); ++i) {
    if (lines[i - 1] != "FCALL") continue;
    if (lines[i] == "rl3_complete") {
      ++sent;
      ++calls;
    } else if (lines[i] == "rl3_complete_many") {
      ASSERT_LT(i + 18, lines.size());
      int n = 0;
      ASSERT_TRUE(absl::SimpleAtoi(lines[i + 18], &n)) << lines[i + 18];
      sent += n;
      ++calls;
    }
  }
  EXPECT_EQ(sent, 2 * kLeases);
  std::printf("%d Completes in %d calls\n", sent, calls);
}

// A hold's end fences its commit and a lease's end decides whether a Complete came in time: both
// are stored to the microsecond of Redis' clock, as their expiry sets score them (Lua's own
// conversion of a number keeps 14 digits, and a time in microseconds has 16).
TEST_F(RedisLedgerTest, RecordsKeepTheirTimesToTheMicrosecond) {
  auto ledger = Make(core::testing::Paced(1.0, 10.0));
  const std::string key = "'{rt:" + domain_ + "}:";
  // The first field of the only member of hash `records`, and the score of the only member of
  // sorted set `expiries`.
  auto first_field_and_score = [&](const std::string& records, const std::string& expiries) {
    absl::StatusOr<std::string> rec = server_->Cli("--raw HVALS " + key + records + "'");
    absl::StatusOr<std::string> scored =
        server_->Cli("--raw ZRANGE " + key + expiries + "' 0 -1 WITHSCORES");
    EXPECT_THAT(rec, IsOk());
    EXPECT_THAT(scored, IsOk());
    const std::vector<std::string> fields = absl::StrSplit(absl::StripAsciiWhitespace(*rec), '|');
    const std::vector<std::string> member_score =
        absl::StrSplit(absl::StripAsciiWhitespace(*scored), '\n');
    EXPECT_EQ(member_score.size(), 2u) << *scored;
    return std::make_pair(fields, member_score.back());
  };

  auto hold = ledger->Hold(Want(1.0, {{"local", 1}}));
  ASSERT_THAT(hold, IsOk());
  const auto [hold_fields, hold_score] = first_field_and_score("holds", "hexp");
  ASSERT_GE(hold_fields.size(), 2u);
  EXPECT_EQ(hold_fields[0], hold_score);  // "expiry|spend|model|count"
  EXPECT_EQ(hold_score.size(), 16u) << hold_score;  // microseconds since 1970, not 1.7e+15

  ASSERT_THAT(ledger->Commit(&*hold, std::vector<Reservation>{{"local", 0.1}}), IsOk());
  // The commit's record: "expiry|models|" then each model's "length|name", then one entry per
  // lease (model index, micro-USD in 16 digits, tag, tracked), then the commit's totals
  // ("micro-USD|", its models with a slot limit as a header, then "leases|" of each).
  absl::StatusOr<std::string> rec = server_->Cli("--raw HGET " + key + "commits' r1");
  const std::string commit_score = first_field_and_score("commits", "cexp").second;
  ASSERT_THAT(rec, IsOk());
  const std::vector<std::string> fields = absl::StrSplit(absl::StripAsciiWhitespace(*rec), '|');
  ASSERT_EQ(fields.size(), 8u) << *rec;
  EXPECT_EQ(fields[0], commit_score);
  EXPECT_EQ(commit_score.size(), 16u) << commit_score;
  EXPECT_EQ(fields[1], "1");  // one model
  EXPECT_EQ(fields[2], "5");  // of 5 characters
  ASSERT_EQ(fields[3].size(), 5u + 37u + 6u) << fields[3];
  EXPECT_EQ(fields[3].substr(0, 25), "local00010000000000100000") << fields[3];
  EXPECT_EQ(fields[3].substr(41), "1100000") << fields[3];  // tracked; 100000 micro-USD in all
  EXPECT_THAT(std::vector<std::string>(fields.begin() + 4, fields.end()),
              ElementsAre("1", "5", "local1", ""));  // one model, "local", 1 lease
}

// A record that ends with its entries, as builds before the commits' totals wrote them, expires
// lease by lease: replicas of both builds share a domain during a rolling upgrade.
TEST_F(RedisLedgerTest, ARecordWithoutTotalsExpiresLeaseByLease) {
  LedgerOptions o;
  o.lease_timeout = absl::Milliseconds(300);
  auto ledger = Make(o);
  ASSERT_THAT(CommitIds(*ledger, {{"local", 0.25}, {"api", 0.5}}), IsOk());
  const std::string commits = "'{rt:" + domain_ + "}:commits'";
  absl::StatusOr<std::string> rec = server_->Cli("--raw HGET " + commits + " r1");
  ASSERT_THAT(rec, IsOk());
  const std::string whole(absl::StripAsciiWhitespace(*rec));
  const std::string totals = "750000|1|5|local1|";  // micro-USD, then "local": 1 lease
  ASSERT_TRUE(absl::EndsWith(whole, totals)) << whole;
  const std::string entries_only = whole.substr(0, whole.size() - totals.size());
  ASSERT_THAT(server_->Cli("HSET " + commits + " r1 '" + entries_only + "'"), IsOk());
  EXPECT_EQ(ledger->Snapshot()->free_slots[0], 1);

  absl::SleepFor(absl::Milliseconds(500));  // Redis' clock: the commit expires
  EXPECT_EQ(ledger->Snapshot()->free_slots[0], 2);
  absl::StatusOr<core::LedgerTotals> after = ledger->Totals();
  ASSERT_THAT(after, IsOk());
  EXPECT_EQ(after->open_assignments, 0);
  EXPECT_EQ(after->expired_assignments, 2);
  EXPECT_NEAR(after->reserved_usd, 0.0, 1e-6);
  EXPECT_NEAR(after->recorded_usd, 0.75, 1e-6);
}

// ---------------------------------------------------------------------------------------------
// Escrow (redis_ledger.h): a bounded share drawn from Redis while it answers, decided on alone
// while it does not.

class RedisEscrowTest : public RedisLedgerTest {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<RedisServer>> s = RedisServer::Start();
    ASSERT_THAT(s, IsOk());
    own_ = *std::move(s);
  }
  // A replica on this test's own redis-server; `escrow` empty = none. Short calls, so that a
  // stalled Redis fails fast.
  std::unique_ptr<RedisLedger> Replica(const LedgerOptions& o,
                                       std::optional<RedisLedgerOptions::Escrow> escrow,
                                       std::vector<LedgerModel> models = LedgerTestPool()) {
    RedisLedgerOptions r = Redis();
    r.address = own_->address();
    if (escrow.has_value()) {
      r.call_timeout = absl::Milliseconds(100);
      r.retry_after = absl::Milliseconds(200);
      r.escrow = *escrow;
    }
    absl::StatusOr<std::unique_ptr<RedisLedger>> l = RedisLedger::Create(r, o, models);
    EXPECT_THAT(l, IsOk());
    return *std::move(l);
  }
  // A call that went through (a connection broken by a restart, or a loaded machine's slow call,
  // may fail a bounded number of times first).
  static absl::StatusOr<core::LedgerSnapshot> Healthy(RedisLedger& l) {
    absl::StatusOr<core::LedgerSnapshot> snap = l.Snapshot();
    for (int k = 0; k < 40 && !snap.ok(); ++k) {
      absl::SleepFor(absl::Milliseconds(250));
      snap = l.Snapshot();
    }
    return snap;
  }
  static RedisLedgerOptions::Escrow Escrow(double spend_usd, int64_t slots) {
    RedisLedgerOptions::Escrow e;
    e.spend_usd = spend_usd;
    e.slots = slots;
    return e;
  }

  std::unique_ptr<RedisServer> own_;
};

TEST_F(RedisLedgerTest, EscrowOptionsAreValidated) {
  RedisLedgerOptions r = Redis();
  r.escrow.spend_usd = -1;
  EXPECT_THAT(ValidateRedisLedgerOptions(r),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("redis.escrow.spend_usd")));
  r = Redis();
  r.escrow.slots = -1;
  EXPECT_THAT(ValidateRedisLedgerOptions(r),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("redis.escrow.slots")));
  r = Redis();
  r.escrow.validity = absl::Seconds(2);
  EXPECT_THAT(ValidateRedisLedgerOptions(r),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("redis.escrow.validity_ms")));
  r = Redis();
  r.escrow.renew_every = absl::Seconds(28);
  EXPECT_THAT(ValidateRedisLedgerOptions(r), StatusIs(absl::StatusCode::kInvalidArgument,
                                                      HasSubstr("redis.escrow.renew_every_ms")));
  EXPECT_THAT(ValidateRedisLedgerOptions(Redis()), IsOk());
  // Off by default: nothing drawn.
  auto ledger = Make();
  ASSERT_THAT(ledger->Snapshot(), IsOk());
  EXPECT_FALSE(ledger->EscrowLeft().has_value());
}

// The escrow is taken from the fleet while Redis answers; while Redis is stalled, the replica
// decides within it and never beyond; once Redis answers again, what it spent is settled and the
// slot of its lease still open stays held.
TEST_F(RedisEscrowTest, TheFleetSeesTheEscrowAndTheReplicaDecidesWithinItAlone) {
  LedgerOptions o = core::testing::Paced(1e-6, 1.0);
  o.lease_timeout = absl::Seconds(60);
  auto a = Replica(o, Escrow(0.3, 1));
  auto b = Replica(o, std::nullopt);
  ASSERT_THAT(Healthy(*a), IsOk());  // draws the escrow
  ASSERT_TRUE(a->EscrowLeft().has_value());
  EXPECT_EQ(a->EscrowLeft()->free_slots[0], 1);
  EXPECT_NEAR(a->EscrowLeft()->spend_allowance_usd, 0.3, 1e-6);
  absl::StatusOr<core::LedgerSnapshot> seen = b->Snapshot();
  ASSERT_THAT(seen, IsOk());
  EXPECT_EQ(seen->free_slots[0], 1);  // 2 slots, 1 in a's escrow
  EXPECT_NEAR(seen->spend_allowance_usd, 0.7, 1e-4);

  own_->Stall();
  auto first = CommitIds(*a, {{"local", 0.1}});
  ASSERT_THAT(first, IsOk());
  EXPECT_THAT((*first)[0], HasSubstr("-e"));
  EXPECT_TRUE(a->degraded());
  // Never beyond: no second slot, no spend past 0.3 USD.
  EXPECT_THAT(CommitIds(*a, {{"local", 0.0}}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("escrow")));
  ASSERT_THAT(CommitIds(*a, {{"api", 0.15}}), IsOk());
  EXPECT_THAT(CommitIds(*a, {{"api", 0.1}}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("escrow")));
  // A hold gets what is left: spend only.
  auto hold = a->Hold(Want(std::numeric_limits<double>::infinity(), {{"local", 2}}));
  ASSERT_THAT(hold, IsOk());
  EXPECT_EQ(hold->slots[0], 0);
  EXPECT_NEAR(hold->spend_usd, 0.05, 1e-6);
  EXPECT_THAT(a->Commit(&*hold, std::vector<Reservation>{{"api", 0.06}}),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  // A Complete at this replica frees the slot and corrects the spend (0.1 -> 0.05).
  auto done = a->Complete((*first)[0], 0.05);
  ASSERT_THAT(done, IsOk());
  EXPECT_TRUE(done->lease_was_active);
  EXPECT_THAT(a->Complete((*first)[0], std::nullopt),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  auto second = CommitIds(*a, {{"local", 0.1}});
  ASSERT_THAT(second, IsOk());
  EXPECT_NEAR(a->EscrowLeft()->spend_allowance_usd, 0.0, 1e-6);  // 0.05 + 0.15 + 0.1 spent

  own_->Resume();
  ASSERT_THAT(Healthy(*a), IsOk());
  EXPECT_FALSE(a->degraded());
  ASSERT_THAT(a->Snapshot(), IsOk());  // healthy: reports what the escrow spent, tops it up
  EXPECT_NEAR(a->EscrowLeft()->spend_allowance_usd, 0.3, 1e-6);
  EXPECT_EQ(a->EscrowLeft()->free_slots[0], 0);  // its slot is the open lease's
  seen = b->Snapshot();
  ASSERT_THAT(seen, IsOk());
  // 1.0 - 0.3 spent - 0.3 held again by the escrow; 1 slot held by the escrow. The commit that
  // timed out when the stall began may have been run by Redis once it resumed (then it counts
  // twice, conservatively, until its lease ends): 0.1 USD and 1 slot less.
  EXPECT_LE(seen->spend_allowance_usd, 0.4 + 1e-4);
  EXPECT_GE(seen->spend_allowance_usd, 0.3 - 1e-4);
  EXPECT_EQ(seen->free_slots[0], seen->spend_allowance_usd > 0.35 ? 1 : 0);
  auto totals = b->Totals();
  ASSERT_THAT(totals, IsOk());
  EXPECT_NEAR(totals->recorded_usd, 0.3, 1e-6);
  // Its replica still takes the Complete of an escrow lease; another one does not.
  EXPECT_THAT(b->Complete((*second)[0], std::nullopt),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_THAT(a->Complete((*second)[0], std::nullopt), IsOk());
  EXPECT_EQ(a->EscrowLeft()->free_slots[0], 1);
}

// While Redis is stalled, inline steps are decided within the escrow too: arrivals are counted in
// windows the replica numbers alone, whose caps hold; a commit to one of the fleet's windows is
// refused; nothing passes the escrow's slots or spend. Commits to the escrow's windows stay the
// escrow's once Redis answers again.
TEST_F(RedisEscrowTest, InlineStepsDecideWithinTheEscrowWhileRedisIsStalled) {
  LedgerOptions o = core::testing::Paced(1e-6, 1.0);
  o.lease_timeout = absl::Seconds(60);
  auto a = Replica(o, Escrow(0.3, 1));
  ASSERT_THAT(Healthy(*a), IsOk());  // draws the escrow
  const InlineWindowSpec spec{4, absl::InfiniteDuration()};
  absl::StatusOr<core::InlineStep> fleet = a->StepInline({}, spec, 1);
  ASSERT_THAT(fleet, IsOk());
  const uint64_t fleet_window = fleet->arrivals[0].window;

  own_->Stall();
  absl::StatusOr<core::InlineStep> first = a->StepInline({}, spec, 2);
  ASSERT_THAT(first, IsOk());
  ASSERT_EQ(first->arrivals.size(), 2u);
  const uint64_t w = first->arrivals[0].window;
  EXPECT_NE(w, fleet_window);
  EXPECT_EQ(first->arrivals[1].window, w);
  EXPECT_EQ(first->arrivals[0].position, 0);
  EXPECT_EQ(first->arrivals[1].position, 1);
  EXPECT_EQ(first->arrivals[0].window_arrivals, 4);
  EXPECT_EQ(first->snapshot.free_slots[0], 1);
  EXPECT_NEAR(first->snapshot.spend_allowance_usd, 0.3, 1e-6);

  const std::vector<core::InlineCommitRequest> commits = {
      {w, 0.25, {"local", 0.1}},             // fits
      {fleet_window, 1.0, {"api", 0.01}},    // the fleet's window: Redis cannot be reached
      {w, 0.25, {"api", 0.2}},               // past the window's cap
      {w, 0.25, {"local", 0.0}}};            // the escrow's only slot is taken
  absl::StatusOr<core::InlineStep> second = a->StepInline(commits, spec, 3);
  ASSERT_THAT(second, IsOk());
  ASSERT_EQ(second->commits.size(), 4u);
  ASSERT_THAT(second->commits[0], IsOk());
  EXPECT_THAT(second->commits[0]->lease.assignment_id, HasSubstr("-e"));
  EXPECT_NEAR(second->commits[0]->window_spent_usd, 0.1, 1e-6);
  EXPECT_THAT(second->commits[1], StatusIs(absl::StatusCode::kFailedPrecondition,
                                           HasSubstr(absl::StrCat("w", fleet_window))));
  EXPECT_THAT(second->commits[2],
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("left of its cap")));
  EXPECT_THAT(second->commits[3],
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("escrow")));
  ASSERT_EQ(second->arrivals.size(), 3u);
  EXPECT_EQ(second->arrivals[0].window, w);
  EXPECT_EQ(second->arrivals[1].position, 3);
  EXPECT_EQ(second->arrivals[2].window, w + 1);  // w was full
  EXPECT_EQ(second->arrivals[2].position, 0);
  EXPECT_NEAR(second->arrivals[0].spent_usd, 0.1, 1e-6);
  EXPECT_EQ(second->snapshot.free_slots[0], 0);
  EXPECT_NEAR(second->snapshot.spend_allowance_usd, 0.2, 1e-6);

  // Never past the escrow's spend, whatever the window's cap.
  absl::StatusOr<core::InlineStep> third = a->StepInline({{w + 1, 1.0, {"api", 0.25}}}, spec, 0);
  ASSERT_THAT(third, IsOk());
  EXPECT_THAT(third->commits[0],
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("escrow")));
  ASSERT_THAT(a->Complete(second->commits[0]->lease.assignment_id, std::nullopt), IsOk());

  own_->Resume();
  ASSERT_THAT(Healthy(*a), IsOk());
  absl::StatusOr<core::InlineStep> after = a->StepInline({{w + 1, 1.0, {"local", 0.05}}}, spec, 1);
  ASSERT_THAT(after, IsOk());
  ASSERT_THAT(after->commits[0], IsOk());
  EXPECT_THAT(after->commits[0]->lease.assignment_id, HasSubstr("-e"));
  EXPECT_NEAR(after->commits[0]->window_spent_usd, 0.05, 1e-6);
  EXPECT_LT(after->arrivals[0].window, w);  // counted in the fleet's windows again
}

// An escrow ends, by the replica's clock, skew_margin before its validity; its leases end with
// it.
TEST_F(RedisEscrowTest, AnEscrowEndsBeforeItsValidity) {
  LedgerOptions o = core::testing::Paced(1e-6, 1.0);
  o.lease_timeout = absl::Seconds(60);
  RedisLedgerOptions::Escrow e = Escrow(0.5, 2);
  e.validity = absl::Milliseconds(2000);
  e.skew_margin = absl::Milliseconds(800);
  e.renew_every = absl::Milliseconds(500);
  auto a = Replica(o, e);
  const absl::Time before = absl::Now();
  ASSERT_THAT(Healthy(*a), IsOk());
  own_->Stall();
  auto leases = a->Commit(nullptr, std::vector<Reservation>{{"local", 0.1}});
  if (leases.ok()) {
    EXPECT_LE(leases->front().lease_timeout, absl::Milliseconds(1200));
  } else {
    // Only if the machine was so slow that the escrow had already ended.
    EXPECT_GE(absl::Now() - before, absl::Milliseconds(1200));
  }
  absl::SleepFor(before + absl::Milliseconds(2300) - absl::Now());
  EXPECT_FALSE(a->EscrowLeft().has_value());
  EXPECT_THAT(CommitIds(*a, {{"api", 0.01}}),
              StatusIs(absl::StatusCode::kUnavailable, ::testing::_));
  own_->Resume();
}

// An escrow that expires in Redis before its replica reported what it spent has all it held
// charged; the replica's next report gives back what it did not spend.
TEST_F(RedisEscrowTest, AnEscrowThatExpiredIsChargedUntilReported) {
  LedgerOptions o = core::testing::Paced(1e-6, 1.0);
  RedisLedgerOptions::Escrow e = Escrow(0.3, 0);
  e.validity = absl::Milliseconds(1500);
  e.skew_margin = absl::Milliseconds(500);
  e.renew_every = absl::Milliseconds(400);
  auto a = Replica(o, e);
  ASSERT_THAT(Healthy(*a), IsOk());
  ASSERT_TRUE(a->EscrowLeft().has_value());
  own_->Stall();
  EXPECT_THAT(a->Snapshot(), StatusIs(absl::StatusCode::kUnavailable, ::testing::_));
  ASSERT_THAT(CommitIds(*a, {{"api", 0.1}}), IsOk());
  absl::SleepFor(absl::Milliseconds(2500));  // past the escrow's validity in Redis
  own_->Resume();
  auto b = Replica(o, std::nullopt);
  absl::StatusOr<core::LedgerSnapshot> seen = b->Snapshot();
  ASSERT_THAT(seen, IsOk());
  EXPECT_NEAR(seen->spend_allowance_usd, 0.7, 1e-4);  // all 0.3 charged
  ASSERT_THAT(Healthy(*a), IsOk());
  ASSERT_THAT(a->Snapshot(), IsOk());  // reports 0.1 spent: 0.2 back; a new escrow of 0.3
  seen = b->Snapshot();
  ASSERT_THAT(seen, IsOk());
  EXPECT_NEAR(seen->spend_allowance_usd, 0.6, 1e-4);
  EXPECT_NEAR(b->Totals()->recorded_usd, 0.1, 1e-6);
  EXPECT_NEAR(a->EscrowLeft()->spend_allowance_usd, 0.3, 1e-6);
}

// A rollback (Redis older than what the replica saw) voids the escrow: Redis may no longer hold it.
TEST_F(RedisEscrowTest, ARollbackVoidsTheEscrow) {
  LedgerOptions o = core::testing::Paced(1e-6, 1.0);
  o.lease_timeout = absl::Seconds(30);
  auto a = Replica(o, Escrow(0.3, 1));
  ASSERT_THAT(Healthy(*a), IsOk());
  ASSERT_THAT(a->Snapshot(), IsOk());
  ASSERT_TRUE(a->EscrowLeft().has_value());
  ASSERT_THAT(own_->Cli("HSET '{rt:" + domain_ + "}:meta' seq 1"), IsOk());
  ASSERT_THAT(a->Snapshot(), IsOk());
  EXPECT_TRUE(a->guarded());
  EXPECT_FALSE(a->EscrowLeft().has_value());
  ASSERT_THAT(a->Snapshot(), IsOk());  // the next one, drawn while guarded, holds nothing
  ASSERT_TRUE(a->EscrowLeft().has_value());
  EXPECT_EQ(a->EscrowLeft()->free_slots[0], 0);
  EXPECT_NEAR(a->EscrowLeft()->spend_allowance_usd, 0.0, 1e-4);
}

// Three replicas with escrows of 1 slot of a model with 2: the third gets none, and with Redis
// stalled the fleet holds at most 2 leases of it.
TEST_F(RedisEscrowTest, TheFleetNeverOverReserves) {
  LedgerOptions o = core::testing::Paced(1e-6, 1.0);
  o.lease_timeout = absl::Seconds(60);
  std::vector<std::unique_ptr<RedisLedger>> fleet;
  for (int k = 0; k < 3; ++k) {
    fleet.push_back(Replica(o, Escrow(0.4, 1)));
    ASSERT_THAT(Healthy(*fleet.back()), IsOk());
  }
  int64_t drawn_slots = 0;
  double drawn_spend = 0;
  for (auto& r : fleet) {
    ASSERT_TRUE(r->EscrowLeft().has_value());
    drawn_slots += *r->EscrowLeft()->free_slots[0];
    drawn_spend += r->EscrowLeft()->spend_allowance_usd;
  }
  EXPECT_EQ(drawn_slots, 2);
  EXPECT_NEAR(drawn_spend, 1.0, 1e-4);  // 0.4 + 0.4 + what was left
  own_->Stall();
  std::atomic<int> slots_taken{0};
  std::vector<std::thread> threads;
  for (auto& r : fleet) {
    threads.emplace_back([&slots_taken, l = r.get()] {
      for (int k = 0; k < 3; ++k) {
        if (CommitIds(*l, {{"local", 0.01}}).ok()) ++slots_taken;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(slots_taken.load(), 2);
  own_->Resume();
  for (auto& r : fleet) ASSERT_THAT(Healthy(*r), IsOk());
  auto b = Replica(o, std::nullopt);
  EXPECT_EQ(b->InUse("local").value(), 0);  // escrow leases are held, not leases
  EXPECT_EQ(b->Snapshot()->free_slots[0], 0);
}

// Redis restarted empty: the escrow is void and the new state is conservative, so the next escrow
// holds nothing until the conservative period ends.
TEST_F(RedisEscrowTest, ARedisRestartedEmptyVoidsTheEscrow) {
  LedgerOptions o = core::testing::Paced(1e-6, 1.0);
  o.lease_timeout = absl::Seconds(30);
  auto a = Replica(o, Escrow(0.3, 1));
  ASSERT_THAT(Healthy(*a), IsOk());
  ASSERT_THAT(CommitIds(*a, {{"local", 0.1}}), IsOk());  // a lease in Redis
  ASSERT_THAT(own_->RestartEmpty(), IsOk());
  ASSERT_THAT(Healthy(*a), IsOk());  // finds the state lost: voids the escrow
  ASSERT_THAT(Healthy(*a), IsOk());  // draws the next one
  EXPECT_TRUE(a->guarded());
  ASSERT_TRUE(a->EscrowLeft().has_value());
  EXPECT_EQ(a->EscrowLeft()->free_slots[0], 0);
  EXPECT_NEAR(a->EscrowLeft()->spend_allowance_usd, 0.0, 1e-4);
  own_->Stall();
  EXPECT_THAT(CommitIds(*a, {{"local", 0.0}}), StatusIs(absl::StatusCode::kFailedPrecondition, ::testing::_));
  EXPECT_THAT(CommitIds(*a, {{"api", 0.01}}), StatusIs(absl::StatusCode::kFailedPrecondition, ::testing::_));
  own_->Resume();
}

}  // namespace
}  // namespace router::server
