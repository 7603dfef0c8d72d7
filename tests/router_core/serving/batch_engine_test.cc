#include "router_core/serving/batch_engine.h"
#include "router_core/serving/local_ledger.h"

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/router_core/testing/fake_clock.h"
#include "tests/router_core/testing/random_instance.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::core {
namespace {

using ::testing::ElementsAre;
using testing::FakeClock;

// Pool: "local" (self-hosted, free, 2 slots, mediocre), "cheap" (API), "strong" (API, dear).
const std::vector<DeployedModel> kPool = {{"local", 2}, {"cheap", std::nullopt}, {"strong", std::nullopt}};

std::shared_ptr<const std::vector<std::string>> PredictedModels() {
  static const auto* models =
      new std::shared_ptr<const std::vector<std::string>>(std::make_shared<const std::vector<std::string>>(
          std::vector<std::string>{"local", "cheap", "strong"}));
  return *models;
}

PendingQuery Pending(double q_local, double q_cheap, double q_strong) {
  PendingQuery p;
  p.predicted_models = PredictedModels();
  p.predictions.quality = {q_local, q_cheap, q_strong};
  p.predictions.quality_lower = {q_local * 0.9, q_cheap * 0.9, q_strong * 0.9};
  p.predictions.cost_usd = {0.0, 0.001, 0.01};
  return p;
}

std::unique_ptr<Ledger> MakeLedger(const FakeClock& clock, LedgerOptions o = {}) {
  std::vector<LedgerModel> models;
  for (const DeployedModel& d : kPool) models.push_back({d.name, d.slots});
  auto l = LocalLedger::Create(o, models, &clock);
  EXPECT_THAT(l, IsOk());
  return *std::move(l);
}

// An in-process ledger that also offers a recent snapshot, as a shared ledger does (`recent`, or
// none), and counts the holds and commits it is asked for.
class RecentSnapshotLedger final : public Ledger {
 public:
  explicit RecentSnapshotLedger(std::unique_ptr<Ledger> inner) : inner_(std::move(inner)) {}

  std::optional<LedgerSnapshot> recent;
  int holds = 0;
  int commits = 0;

  std::optional<LedgerSnapshot> RecentSnapshot() override { return recent; }
  absl::StatusOr<LedgerHold> Hold(const HoldRequest& request) override {
    ++holds;
    return inner_->Hold(request);
  }
  absl::StatusOr<std::vector<Lease>> Commit(const LedgerHold* hold,
                                            absl::Span<const Reservation> reservations) override {
    ++commits;
    return inner_->Commit(hold, reservations);
  }
  absl::Status SetModels(std::vector<LedgerModel> models) override {
    return inner_->SetModels(std::move(models));
  }
  absl::Status SetOptions(const LedgerOptions& options) override {
    return inner_->SetOptions(options);
  }
  absl::StatusOr<LedgerSnapshot> Snapshot() override { return inner_->Snapshot(); }
  void Release(const LedgerHold& hold) override { inner_->Release(hold); }
  absl::StatusOr<CompletionRecord> Complete(absl::string_view id,
                                            std::optional<double> actual_cost_usd) override {
    return inner_->Complete(id, actual_cost_usd);
  }
  absl::StatusOr<InlineStep> StepInline(absl::Span<const InlineCommitRequest> commits,
                                        const InlineWindowSpec& spec, int64_t arrivals) override {
    return inner_->StepInline(commits, spec, arrivals);
  }
  absl::StatusOr<int64_t> InUse(absl::string_view model) override { return inner_->InUse(model); }
  absl::StatusOr<LedgerTotals> Totals() override { return inner_->Totals(); }

 private:
  std::unique_ptr<Ledger> inner_;
};

TEST(BatchEngineTest, OnAnUpToDateRecentSnapshotABatchCommitsWithoutAHold) {
  FakeClock clock;
  RecentSnapshotLedger ledger(MakeLedger(clock));
  ledger.recent = *ledger.Snapshot();
  BatchOutcome out = RouteBatch({Pending(0.9, 0.5, 0.6), Pending(0.2, 0.5, 0.9)}, kPool,
                                BatchPolicy{}, ledger, clock, "b");
  ASSERT_THAT(out.queries[0].status, IsOk());
  ASSERT_THAT(out.queries[1].status, IsOk());
  EXPECT_EQ(out.queries[0].model, "local");
  EXPECT_EQ(out.queries[1].model, "strong");
  EXPECT_EQ(out.ledger_path, LedgerPath::kRecent);
  EXPECT_EQ(ledger.holds, 0);
  EXPECT_EQ(ledger.commits, 1);
  EXPECT_EQ(ledger.InUse("local").value(), 1);
}

// A snapshot staler than the ledger (slots freed since) may choose a worse model, as if the batch
// had closed when it was read, but refuses no query: the batch is decided again on a hold, which
// sees the free slots.
TEST(BatchEngineTest, ARecentSnapshotChoosesOnItsOwnButRefusesNothing) {
  FakeClock clock;
  RecentSnapshotLedger ledger(MakeLedger(clock));
  ledger.recent = *ledger.Snapshot();
  ledger.recent->free_slots[0] = 0;
  BatchOutcome chosen = RouteBatch({Pending(0.9, 0.5, 0.6)}, kPool, BatchPolicy{}, ledger, clock,
                                   "chosen");
  ASSERT_THAT(chosen.queries[0].status, IsOk());
  EXPECT_EQ(chosen.queries[0].model, "strong");
  EXPECT_EQ(chosen.ledger_path, LedgerPath::kRecent);
  EXPECT_EQ(ledger.holds, 0);

  PendingQuery a = Pending(0.9, 0.5, 0.6), b = Pending(0.9, 0.2, 0.5);
  a.allowed = b.allowed = {"local"};
  ledger.commits = 0;
  BatchOutcome out = RouteBatch({a, b}, kPool, BatchPolicy{}, ledger, clock, "b");
  for (const QueryOutcome& o : out.queries) {
    ASSERT_THAT(o.status, IsOk());
    EXPECT_EQ(o.model, "local");
  }
  EXPECT_EQ(out.ledger_path, LedgerPath::kRecentThenHold);
  EXPECT_EQ(ledger.holds, 1);
  EXPECT_EQ(ledger.commits, 1);
}

// A snapshot that promised slots others took since: its commit is refused, and the batch is
// decided again on a hold within what is really free.
TEST(BatchEngineTest, ABatchWhoseSnapshotNoLongerFitsIsDecidedAgainOnAHold) {
  FakeClock clock;
  RecentSnapshotLedger ledger(MakeLedger(clock));
  ledger.recent = *ledger.Snapshot();
  const Reservation local{"local", 0.0};
  ASSERT_THAT(ledger.Commit(nullptr, {local, local}), IsOk());  // another replica's, say
  ledger.commits = 0;
  BatchOutcome out = RouteBatch({Pending(0.9, 0.5, 0.6), Pending(0.8, 0.2, 0.5)}, kPool,
                                BatchPolicy{}, ledger, clock, "b");
  for (const QueryOutcome& o : out.queries) {
    ASSERT_THAT(o.status, IsOk());
    EXPECT_NE(o.model, "local");
  }
  EXPECT_EQ(out.ledger_path, LedgerPath::kRecentThenHold);
  EXPECT_EQ(ledger.holds, 1);
  EXPECT_EQ(ledger.commits, 2);
  EXPECT_EQ(ledger.InUse("local").value(), 2);
}

TEST(BatchEngineTest, RespectsTheCapAndTheFreeSlotsAcrossBatches) {
  FakeClock clock;
  auto ledger = MakeLedger(clock);
  BatchPolicy policy;
  policy.avg_cost_cap_usd = 0.004;  // 4 queries: 0.016 USD, one strong answer at most
  std::vector<PendingQuery> batch = {Pending(0.65, 0.6, 0.9), Pending(0.62, 0.6, 0.85),
                                     Pending(0.55, 0.5, 0.9), Pending(0.75, 0.7, 0.8)};
  BatchOutcome first = RouteBatch(batch, kPool, policy, *ledger, clock, "b1");
  ASSERT_EQ(first.queries.size(), 4u);
  double spent = 0;
  int local = 0;
  for (const QueryOutcome& o : first.queries) {
    ASSERT_THAT(o.status, IsOk());
    spent += o.cost_usd;
    local += o.model == "local";
    EXPECT_FALSE(o.assignment_id.empty());
  }
  EXPECT_LE(spent, 0.016 + 1e-12);
  EXPECT_EQ(local, 2);
  EXPECT_DOUBLE_EQ(first.budget_usd, 0.016);
  EXPECT_THAT(first.binding_constraints, ElementsAre("budget", "slots:local"));

  // The two local slots are still held: the next batch cannot use "local".
  BatchOutcome second = RouteBatch({Pending(0.9, 0.1, 0.1)}, kPool, policy, *ledger, clock, "b2");
  ASSERT_THAT(second.queries[0].status, IsOk());
  EXPECT_NE(second.queries[0].model, "local");
  EXPECT_EQ(ledger->InUse("local").value(), 2);

  // Completing one local assignment frees its slot for the next batch.
  for (const QueryOutcome& o : first.queries) {
    if (o.model == "local") {
      ASSERT_THAT(ledger->Complete(o.assignment_id, std::nullopt), IsOk());
      break;
    }
  }
  BatchOutcome third = RouteBatch({Pending(0.9, 0.1, 0.1)}, kPool, policy, *ledger, clock, "b3");
  EXPECT_EQ(third.queries[0].model, "local");
}

TEST(BatchEngineTest, BadQueriesGetTheirOwnErrorsAndTheRestAreRouted) {
  FakeClock clock;
  auto ledger = MakeLedger(clock);
  PendingQuery unknown = Pending(0.5, 0.5, 0.5);
  unknown.allowed = {"cheap", "gpt-9"};
  PendingQuery ok = Pending(0.5, 0.6, 0.7);
  ok.allowed = {"cheap", "strong"};
  BatchOutcome out = RouteBatch({unknown, ok}, kPool, BatchPolicy{}, *ledger, clock, "b");
  EXPECT_THAT(out.queries[0].status, StatusIs(absl::StatusCode::kInvalidArgument,
                                              HasSubstr("query.allowed_models[1]: unknown model 'gpt-9'")));
  ASSERT_THAT(out.queries[1].status, IsOk());
  EXPECT_EQ(out.queries[1].model, "strong");
  EXPECT_THAT(out.queries[1].fallbacks, ElementsAre("cheap"));
}

TEST(BatchEngineTest, WithEveryModelAllowedTheFallbacksComeFromTheWholePool) {
  FakeClock clock;
  auto ledger = MakeLedger(clock);
  BatchOutcome out =
      RouteBatch({Pending(0.6, 0.5, 0.7)}, kPool, BatchPolicy{}, *ledger, clock, "b");
  ASSERT_THAT(out.queries[0].status, IsOk());
  EXPECT_EQ(out.queries[0].model, "strong");
  EXPECT_THAT(out.queries[0].fallbacks, ElementsAre("local", "cheap"));
}

// What an outcome is learned against: the chosen model's prior quality (not the adjusted one the
// decision used), the query's cluster, and whether it was explored.
TEST(BatchEngineTest, AnswersCarryWhatTheirOutcomeIsLearnedAgainst) {
  FakeClock clock;
  auto ledger = MakeLedger(clock);
  PendingQuery adjusted = Pending(0.6, 0.5, 0.7);
  adjusted.prior_quality = {0.6, 0.5, 0.95};
  adjusted.predictions.cluster = 3;
  adjusted.explored = true;
  BatchOutcome out =
      RouteBatch({adjusted, Pending(0.6, 0.5, 0.7)}, kPool, BatchPolicy{}, *ledger, clock, "b");
  ASSERT_THAT(out.queries[0].status, IsOk());
  EXPECT_EQ(out.queries[0].model, "strong");
  EXPECT_EQ(out.queries[0].quality, 0.7);
  EXPECT_EQ(out.queries[0].prior_quality, 0.95);
  EXPECT_EQ(out.queries[0].cluster, 3);
  EXPECT_TRUE(out.queries[0].explored);
  // Without an adjustment the prior is the prediction.
  ASSERT_THAT(out.queries[1].status, IsOk());
  EXPECT_EQ(out.queries[1].prior_quality, out.queries[1].quality);
  EXPECT_EQ(out.queries[1].cluster, 0);
  EXPECT_FALSE(out.queries[1].explored);
}

TEST(BatchEngineTest, AnswersCarryTheLeaseTimeoutTheirCommitApplied) {
  FakeClock clock;
  LedgerOptions o;
  o.lease_timeout = absl::Seconds(7);
  auto ledger = MakeLedger(clock, o);
  BatchOutcome first =
      RouteBatch({Pending(0.6, 0.5, 0.7)}, kPool, BatchPolicy{}, *ledger, clock, "b1");
  o.lease_timeout = absl::Seconds(3);
  ASSERT_THAT(ledger->SetOptions(o), IsOk());
  BatchOutcome second =
      RouteBatch({Pending(0.6, 0.5, 0.7)}, kPool, BatchPolicy{}, *ledger, clock, "b2");
  ASSERT_THAT(first.queries[0].status, IsOk());
  ASSERT_THAT(second.queries[0].status, IsOk());
  EXPECT_EQ(first.queries[0].lease_timeout, absl::Seconds(7));
  EXPECT_EQ(second.queries[0].lease_timeout, absl::Seconds(3));
}

TEST(BatchEngineTest, QueriesTheBudgetCannotPayAreRefusedNotOverspent) {
  FakeClock clock;
  LedgerOptions paced;
  paced.spend_rate_usd_per_second = 1e-6;
  paced.spend_burst_usd = 0.0015;  // one "cheap" answer
  auto ledger = MakeLedger(clock, paced);
  PendingQuery a = Pending(0.5, 0.6, 0.7), b = Pending(0.5, 0.6, 0.7);
  a.allowed = b.allowed = {"cheap", "strong"};
  BatchOutcome out = RouteBatch({a, b}, kPool, BatchPolicy{}, *ledger, clock, "b");
  int served = 0, refused = 0;
  for (const QueryOutcome& o : out.queries) {
    if (o.status.ok()) {
      ++served;
    } else {
      EXPECT_THAT(o.status, StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("budget")));
      ++refused;
    }
  }
  EXPECT_EQ(served, 1);
  EXPECT_EQ(refused, 1);
  EXPECT_LE(ledger->Totals()->reserved_usd, 0.0015);
}

TEST(BatchEngineTest, AModelAddedAfterPredictionIsNotUsedForThatQuery) {
  FakeClock clock;
  std::vector<DeployedModel> pool = kPool;
  pool.push_back({"new", std::nullopt});
  std::vector<LedgerModel> models;
  for (const DeployedModel& d : pool) models.push_back({d.name, d.slots});
  auto ledger = LocalLedger::Create(LedgerOptions{}, models, &clock);
  ASSERT_THAT(ledger, IsOk());
  BatchOutcome out = RouteBatch({Pending(0.1, 0.2, 0.3)}, pool, BatchPolicy{}, **ledger, clock, "b");
  ASSERT_THAT(out.queries[0].status, IsOk());
  EXPECT_NE(out.queries[0].model, "new");
}

// Random batches against a paced ledger with a per-batch cap: no batch ever exceeds its budget or
// the free slots, whatever the policy, and whatever a recent snapshot says (none, up to date, or
// wrong either way).
TEST(BatchEngineTest, RandomBatchesNeverBreakCapsOrSlots) {
  FakeClock clock;
  LedgerOptions paced;
  paced.spend_rate_usd_per_second = 0.01;
  paced.spend_burst_usd = 0.05;
  paced.lease_timeout = absl::Seconds(3);
  RecentSnapshotLedger recent_ledger(MakeLedger(clock, paced));
  Ledger* ledger = &recent_ledger;
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  const PolicyKind policies[] = {PolicyKind::kBatch, PolicyKind::kBatchRobust, PolicyKind::kPerQuery,
                                 PolicyKind::kThreshold, PolicyKind::kNdchP};
  for (int round = 0; round < 60; ++round) {
    BatchPolicy policy;
    policy.policy = policies[round % 5];
    policy.avg_cost_cap_usd = 0.002 + 0.004 * u(rng);
    std::vector<PendingQuery> batch;
    const int n = 1 + static_cast<int>(u(rng) * 12);
    for (int i = 0; i < n; ++i) batch.push_back(Pending(u(rng), u(rng), u(rng)));
    const LedgerSnapshot before = *ledger->Snapshot();
    recent_ledger.recent.reset();
    if (round % 3 != 0) {
      recent_ledger.recent = before;
      if (round % 3 == 2) {
        recent_ledger.recent->free_slots[0] = static_cast<int64_t>(u(rng) * 4);
        recent_ledger.recent->spend_allowance_usd = 0.1 * u(rng);
      }
    }
    BatchOutcome out = RouteBatch(batch, kPool, policy, *ledger, clock, "r");
    double spent = 0;
    int local = 0;
    for (const QueryOutcome& o : out.queries) {
      if (!o.status.ok()) continue;
      spent += o.cost_usd;
      local += o.model == "local";
    }
    EXPECT_LE(spent, std::min(before.spend_allowance_usd, *policy.avg_cost_cap_usd * n) + 1e-12);
    EXPECT_LE(local, *before.free_slots[0]);
    EXPECT_LE(ledger->InUse("local").value(), 2);
    clock.Advance(absl::Milliseconds(700));
  }
}

// The solve ends by the batch's earliest member deadline, whatever the time limit.
TEST(BatchEngineTest, ABatchIsSolvedByItsEarliestMemberDeadline) {
  const BatchProblem problem = testing::RandomProblem(testing::LongSearchOptions());
  std::vector<DeployedModel> pool;
  std::vector<LedgerModel> models;
  auto names = std::make_shared<std::vector<std::string>>();
  for (const ModelSpec& m : problem.models) {
    pool.push_back({m.name, m.slots});
    models.push_back({m.name, m.slots});
    names->push_back(m.name);
  }
  std::vector<PendingQuery> batch;
  for (const Query& q : problem.queries) {
    PendingQuery p;
    p.predicted_models = names;
    p.predictions = {q.quality, q.quality_lower, q.cost};
    batch.push_back(std::move(p));
  }
  BatchPolicy policy;
  policy.avg_cost_cap_usd = *problem.budget / static_cast<double>(problem.queries.size());
  policy.solve.time_limit = absl::Seconds(100);
  policy.solve.relative_gap = 0.0;
  policy.solve.small_batch_max_nodes = 2'000'000;

  testing::FakeClock clock;
  auto unhurried = LocalLedger::Create(LedgerOptions{}, models, &clock);
  ASSERT_THAT(unhurried, IsOk());
  const BatchOutcome slow = RouteBatch(batch, pool, policy, **unhurried, clock, "slow");
  EXPECT_NE(slow.method, "admission");

  // A member whose deadline has come: the solve ends at once, with the admission's assignment.
  batch[17].deadline = clock.Now();
  auto ledger = LocalLedger::Create(LedgerOptions{}, models, &clock);
  ASSERT_THAT(ledger, IsOk());
  const BatchOutcome out = RouteBatch(batch, pool, policy, **ledger, clock, "urgent");
  EXPECT_EQ(out.solve_time, absl::ZeroDuration());
  EXPECT_EQ(out.method, "admission");
  for (const QueryOutcome& q : out.queries) EXPECT_THAT(q.status, IsOk());
}

}  // namespace
}  // namespace router::core
