#include "router_core/serving/inline_router.h"
#include "router_core/serving/local_ledger.h"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/router_core/testing/fake_clock.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::core {
namespace {

using testing::FakeClock;

// Pool: "local" (self-hosted, free, 2 slots), "cheap", "mid", "strong" (API, dearer and better).
const std::vector<DeployedModel> kPool = {
    {"local", 2}, {"cheap", std::nullopt}, {"mid", std::nullopt}, {"strong", std::nullopt}};
const std::vector<DeployedModel> kApiPool = {
    {"cheap", std::nullopt}, {"mid", std::nullopt}, {"strong", std::nullopt}};

std::shared_ptr<const std::vector<std::string>> PredictedModels() {
  static const auto* models = new std::shared_ptr<const std::vector<std::string>>(
      std::make_shared<const std::vector<std::string>>(
          std::vector<std::string>{"local", "cheap", "mid", "strong"}));
  return *models;
}

// Predictions for the models of PredictedModels(), in that order.
PendingQuery Pending(std::vector<double> quality, std::vector<double> cost) {
  PendingQuery p;
  p.predicted_models = PredictedModels();
  p.predictions.quality = std::move(quality);
  for (double q : p.predictions.quality) p.predictions.quality_lower.push_back(0.9 * q);
  p.predictions.cost_usd = std::move(cost);
  return p;
}

// A query whose stronger models are `hardness`-times more worth their price; `scale` multiplies
// every cost (long prompts cost more everywhere).
PendingQuery Random(std::mt19937_64& rng, double scale) {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  const double hard = u(rng);
  return Pending({0.5 - 0.3 * hard, 0.6 - 0.3 * hard, 0.75 - 0.2 * hard, 0.9 - 0.05 * hard},
                 {0.0, 0.001 * scale, 0.004 * scale, 0.02 * scale});
}

std::unique_ptr<Ledger> MakeLedger(const FakeClock& clock,
                                   const std::vector<DeployedModel>& pool = kPool) {
  std::vector<LedgerModel> models;
  for (const DeployedModel& d : pool) models.push_back({d.name, d.slots});
  auto ledger = LocalLedger::Create(LedgerOptions(), models, &clock);
  EXPECT_THAT(ledger, IsOk());
  return *std::move(ledger);
}

std::unique_ptr<InlineRouter> MakeRouter(Ledger& ledger, const FakeClock& clock,
                                         InlineOptions options = {}) {
  auto router = InlineRouter::Create(options, &ledger, &clock);
  EXPECT_THAT(router, IsOk());
  return *std::move(router);
}

InlineOptions Window(int64_t arrivals) {
  InlineOptions options;
  options.window_arrivals = arrivals;
  return options;
}

// A fake clock and a ledger of the API-only pool.
class InlineRouterApiPoolTest : public ::testing::Test {
 protected:
  FakeClock clock;
  std::unique_ptr<Ledger> ledger = MakeLedger(clock, kApiPool);
};

// Window(arrivals) whose forecast looks one window ahead.
InlineOptions WindowAndHorizon(int64_t arrivals) {
  InlineOptions options = Window(arrivals);
  options.forecast_horizon = arrivals;
  return options;
}

BatchPolicy Capped(double avg_cost_cap_usd) {
  BatchPolicy policy;
  policy.avg_cost_cap_usd = avg_cost_cap_usd;
  return policy;
}

// Spend per window id, summed from the decisions (independently of the router's own account).
struct WindowSpend {
  std::map<std::string, double> spend;
  std::map<std::string, int> arrivals;
  void Add(const InlineDecision& d) {
    ++arrivals[d.window_id];
    if (d.outcome.status.ok()) spend[d.window_id] += d.outcome.cost_usd;
  }
};

TEST(InlineRouterTest, OptionsAreValidatedNamingTheField) {
  FakeClock clock;
  auto ledger = MakeLedger(clock);
  InlineOptions o;
  o.window_arrivals = 0;
  EXPECT_THAT(InlineRouter::Create(o, ledger.get(), &clock),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("inline.window_arrivals")));
  o = {};
  o.window_duration = absl::ZeroDuration();
  EXPECT_THAT(InlineRouter::Create(o, ledger.get(), &clock),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("inline.window_duration")));
  o = {};
  o.forecast_horizon = 0;
  EXPECT_THAT(InlineRouter::Create(o, ledger.get(), &clock),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("inline.forecast_horizon")));
  o = {};
  o.slot_price_rounds = -1;
  EXPECT_THAT(InlineRouter::Create(o, ledger.get(), &clock),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("inline.slot_price_rounds")));
  EXPECT_THAT(InlineRouter::Create(InlineOptions(), nullptr, &clock),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ledger")));
}

TEST_F(InlineRouterApiPoolTest, WithoutACapTakesTheBestModelAtZeroPrice) {
  auto router = MakeRouter(*ledger, clock);
  InlineDecision d =
      router->Route(Pending({0.5, 0.6, 0.7, 0.9}, {0, 0.001, 0.004, 0.02}), kApiPool, BatchPolicy());
  ASSERT_THAT(d.outcome.status, IsOk());
  EXPECT_EQ(d.outcome.model, "strong");
  EXPECT_EQ(d.lambda, 0.0);
  EXPECT_EQ(d.window_cap_usd, -1.0);
  EXPECT_FALSE(d.guarded);
  EXPECT_FALSE(d.outcome.assignment_id.empty());
  EXPECT_EQ(d.outcome.lease_timeout, LedgerOptions().lease_timeout);
  EXPECT_EQ(ledger->InUse("strong").value(), 1);
  EXPECT_DOUBLE_EQ(ledger->Totals()->reserved_usd, 0.02);
}

TEST_F(InlineRouterApiPoolTest, DecisionsCarryWhatTheirOutcomeIsLearnedAgainst) {
  auto router = MakeRouter(*ledger, clock);
  PendingQuery q = Pending({0.5, 0.6, 0.7, 0.9}, {0, 0.001, 0.004, 0.02});
  q.prior_quality = {0.5, 0.6, 0.7, 0.4};
  q.predictions.cluster = 7;
  q.explored = true;
  InlineDecision d = router->Route(q, kApiPool, BatchPolicy());
  ASSERT_THAT(d.outcome.status, IsOk());
  EXPECT_EQ(d.outcome.model, "strong");
  EXPECT_EQ(d.outcome.quality, 0.9);
  EXPECT_EQ(d.outcome.prior_quality, 0.4);
  EXPECT_EQ(d.outcome.cluster, 7);
  EXPECT_TRUE(d.outcome.explored);
}

TEST_F(InlineRouterApiPoolTest, AllowedModelsAreHonouredAndBadListsNamed) {
  auto router = MakeRouter(*ledger, clock);
  PendingQuery q = Pending({0.5, 0.6, 0.7, 0.9}, {0, 0.001, 0.004, 0.02});
  q.allowed = {"cheap", "mid"};
  InlineDecision d = router->Route(q, kApiPool, BatchPolicy());
  ASSERT_THAT(d.outcome.status, IsOk());
  EXPECT_EQ(d.outcome.model, "mid");
  EXPECT_EQ(d.outcome.fallbacks, std::vector<std::string>{"cheap"});
  // "local" was predicted but is not deployed in this pool: never returned, and naming it is an
  // error about the query's list.
  q.allowed = {"local"};
  d = router->Route(q, kApiPool, BatchPolicy());
  EXPECT_THAT(d.outcome.status,
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("query.allowed_models[0]")));
}

TEST_F(InlineRouterApiPoolTest, ATightCapRaisesTheSpendPrice) {
  auto router = MakeRouter(*ledger, clock, Window(10));
  std::mt19937_64 rng(7);
  std::vector<InlineDecision> decisions;
  for (int i = 0; i < 30; ++i) decisions.push_back(router->Route(Random(rng, 1.0), kApiPool, Capped(0.003)));
  int strong = 0;
  for (const InlineDecision& d : decisions) {
    ASSERT_THAT(d.outcome.status, IsOk());
    strong += d.outcome.model == "strong";
  }
  // At 0.003 USD per query on average, at most one strong answer (0.02) fits a window of 10.
  EXPECT_LE(strong, 3);
  EXPECT_GT(decisions.back().lambda, 0.0);
}

// Whatever the order, a window never spends more than its cap: expensive, hard queries at the end
// of windows (the forecast saw cheap ones), at the start, or shuffled, under several caps.
TEST(InlineRouterTest, NoWindowExceedsItsCapWhateverTheArrivalOrder) {
  for (const double cap : {0.0005, 0.001, 0.003, 0.008, 0.02}) {
    for (const int order : {0, 1, 2}) {
      FakeClock clock;
      auto ledger = MakeLedger(clock, kApiPool);
      auto router = MakeRouter(*ledger, clock, WindowAndHorizon(20));
      std::mt19937_64 rng(100 + order);
      WindowSpend windows;
      for (int w = 0; w < 10; ++w) {
        std::vector<PendingQuery> queries;
        for (int i = 0; i < 20; ++i) {
          // Costs grow tenfold through the window in order 0, shrink in order 1.
          const double scale = order == 2 ? 1.0 + 9.0 * std::uniform_real_distribution<>(0, 1)(rng)
                                          : 1.0 + 9.0 * (order == 0 ? i : 19 - i) / 19.0;
          queries.push_back(Random(rng, scale));
        }
        for (const PendingQuery& q : queries) windows.Add(router->Route(q, kApiPool, Capped(cap)));
      }
      ASSERT_EQ(windows.arrivals.size(), 10u);
      for (const auto& [id, spend] : windows.spend) {
        EXPECT_LE(spend, cap * 20 + 1e-12) << "cap " << cap << " order " << order << " " << id;
        EXPECT_EQ(windows.arrivals[id], 20);
      }
    }
  }
}

TEST_F(InlineRouterApiPoolTest, AWindowWhoseBudgetIsExactlyTheCheapestTotalServesEveryone) {
  auto router = MakeRouter(*ledger, clock, Window(25));
  std::mt19937_64 rng(3);
  WindowSpend windows;
  // Every query's cheapest model costs 0.001; the cap pays exactly that for all 25.
  for (int i = 0; i < 100; ++i) {
    InlineDecision d = router->Route(Random(rng, 1.0), kApiPool, Capped(0.001));
    ASSERT_THAT(d.outcome.status, IsOk()) << i;
    EXPECT_EQ(d.outcome.model, "cheap") << i;
    windows.Add(d);
  }
  ASSERT_EQ(windows.spend.size(), 4u);
  for (const auto& [id, spend] : windows.spend) EXPECT_NEAR(spend, 0.025, 1e-12) << id;
}

TEST_F(InlineRouterApiPoolTest, ExpensiveArrivalsAtTheEndAreServedOnceTheForecastHasSeenThem) {
  auto router = MakeRouter(*ledger, clock, WindowAndHorizon(10));
  std::mt19937_64 rng(5);
  // Each window: 5 short prompts (cheapest 0.001), then 5 long ones (cheapest 0.01); the cap is
  // the cheapest total, 0.055 per window. The second window's forecast (the first window) knows
  // long prompts come, so its guard reserves for them and all are served.
  std::vector<InlineDecision> decisions;
  for (int w = 0; w < 3; ++w) {
    for (int i = 0; i < 10; ++i) {
      decisions.push_back(router->Route(Random(rng, i < 5 ? 1.0 : 10.0), kApiPool,
                                        Capped(0.0055)));
    }
  }
  for (size_t i = 10; i < decisions.size(); ++i) {
    ASSERT_THAT(decisions[i].outcome.status, IsOk()) << i;
    EXPECT_EQ(decisions[i].outcome.model, "cheap") << i;
  }
  for (const InlineDecision& d : decisions) EXPECT_LE(d.window_spent_usd, 0.055 + 1e-12);
}

TEST_F(InlineRouterApiPoolTest, RefusesWhenTheWindowCannotPayTheCheapestModel) {
  auto router = MakeRouter(*ledger, clock, Window(2));
  PendingQuery q = Pending({0.5, 0.6, 0.7, 0.9}, {0, 0.004, 0.01, 0.02});
  q.allowed = {"mid", "strong"};
  InlineDecision d = router->Route(q, kApiPool, Capped(0.004));  // window: 0.008 < 0.01
  EXPECT_THAT(d.outcome.status,
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("USD left")));
  EXPECT_EQ(d.window_spent_usd, 0.0);
  EXPECT_EQ(ledger->Totals()->open_assignments, 0);
}

TEST(InlineRouterTest, TakesOnlyFreeSlotsAndPricesThem) {
  FakeClock clock;
  auto ledger = MakeLedger(clock);
  auto router = MakeRouter(*ledger, clock);
  std::vector<std::string> local_ids;
  for (int i = 0; i < 6; ++i) {
    // "local" is free and best for these queries: everyone wants it, it has 2 slots.
    InlineDecision d = router->Route(Pending({0.95, 0.6, 0.7, 0.9},
                                             {0, 0.001, 0.004, 0.02}),
                                     kPool, Capped(0.005));
    ASSERT_THAT(d.outcome.status, IsOk());
    if (d.outcome.model == "local") local_ids.push_back(d.outcome.assignment_id);
    EXPECT_LE(ledger->InUse("local").value(), 2);
  }
  EXPECT_EQ(local_ids.size(), 2u);
  ASSERT_THAT(ledger->Complete(local_ids[0], std::nullopt), IsOk());
  InlineDecision d = router->Route(Pending({0.95, 0.6, 0.7, 0.9}, {0, 0.001, 0.004, 0.02}),
                                   kPool, Capped(0.005));
  ASSERT_THAT(d.outcome.status, IsOk());
  EXPECT_EQ(d.outcome.model, "local");
  EXPECT_EQ(ledger->InUse("local").value(), 2);
}

TEST(InlineRouterTest, AnOversubscribedModelGetsASlotPrice) {
  FakeClock clock;
  const std::vector<DeployedModel> pool = {{"local", 3}, {"cheap", std::nullopt},
                                           {"mid", std::nullopt}, {"strong", std::nullopt}};
  auto ledger = MakeLedger(clock, pool);
  auto router = MakeRouter(*ledger, clock, Window(50));
  // Everyone prefers "local" (3 slots) over the rest; 49 more arrivals are expected.
  InlineDecision d = router->Route(Pending({0.95, 0.6, 0.7, 0.8}, {0, 0.001, 0.004, 0.02}),
                                   pool, BatchPolicy());
  ASSERT_THAT(d.outcome.status, IsOk());
  d = router->Route(Pending({0.95, 0.6, 0.7, 0.8}, {0, 0.001, 0.004, 0.02}), pool,
                    BatchPolicy());
  ASSERT_THAT(d.outcome.status, IsOk());
  EXPECT_EQ(d.outcome.model, "strong");  // local is priced out: its slots are worth more later
  EXPECT_EQ(d.expected_after, 48);
}

// The forecast prices the arrivals seen while a model was full without it (inline_pricing.h,
// WithoutModels); once it has a free slot again they want it again, so its slot is priced for
// them and the query at hand does not simply take it.
TEST(InlineRouterTest, AModelThatFreesUpIsBackInTheForecast) {
  FakeClock clock;
  const std::vector<DeployedModel> pool = {
      {"local", 1}, {"cheap", std::nullopt}, {"mid", std::nullopt}, {"strong", std::nullopt}};
  auto ledger = MakeLedger(clock, pool);
  auto router = MakeRouter(*ledger, clock, Window(50));
  const std::vector<double> quality = {0.95, 0.6, 0.7, 0.8};  // everyone prefers "local"
  const std::vector<double> cost = {0, 0.001, 0.004, 0.02};
  const std::vector<Reservation> local = {{"local", 0.0}};
  absl::StatusOr<std::vector<Lease>> held = ledger->Commit(nullptr, local);
  ASSERT_THAT(held, IsOk());
  for (const char* id : {"b", "c", "d"}) {
    const InlineDecision d = router->Route(Pending(quality, cost), pool, BatchPolicy());
    ASSERT_THAT(d.outcome.status, IsOk());
    EXPECT_EQ(d.outcome.model, "strong") << id;  // local is full
  }
  ASSERT_THAT(ledger->Complete((*held)[0].assignment_id, std::nullopt), IsOk());
  const InlineDecision e = router->Route(Pending(quality, cost), pool, BatchPolicy());
  ASSERT_THAT(e.outcome.status, IsOk());
  // b, c and d stand for 46 more arrivals that all want the one free slot: it is priced above
  // what e gains from it (with the forecast still blind to it, e would take it).
  EXPECT_EQ(e.outcome.model, "strong");
}

TEST_F(InlineRouterApiPoolTest, TimeWindowsCloseOnTheClock) {
  InlineOptions o;
  o.window_arrivals = 1000;
  o.window_duration = absl::Seconds(1);
  auto router = MakeRouter(*ledger, clock, o);
  const PendingQuery q = Pending({0.5, 0.6, 0.7, 0.9}, {0, 0.001, 0.004, 0.02});
  InlineDecision first = router->Route(q, kApiPool, Capped(0.01));
  clock.Advance(absl::Milliseconds(100));
  InlineDecision second = router->Route(q, kApiPool, Capped(0.01));
  EXPECT_EQ(first.window_id, second.window_id);
  EXPECT_EQ(second.position_in_window, 1);
  // 2 arrivals in 100 ms: about 10 per second, so about 9 more are expected in the 900 ms left.
  EXPECT_EQ(second.expected_after, 9);
  clock.Advance(absl::Milliseconds(900));
  InlineDecision third = router->Route(q, kApiPool, Capped(0.01));
  EXPECT_NE(third.window_id, second.window_id);
  EXPECT_EQ(third.position_in_window, 0);
  EXPECT_EQ(third.window_spent_usd, third.outcome.cost_usd);
}

TEST_F(InlineRouterApiPoolTest, OptionsApplyFromTheNextWindow) {
  auto router = MakeRouter(*ledger, clock, Window(3));
  const PendingQuery q = Pending({0.5, 0.6, 0.7, 0.9}, {0, 0.001, 0.004, 0.02});
  std::vector<InlineDecision> d;
  d.push_back(router->Route(q, kApiPool, BatchPolicy()));
  ASSERT_THAT(router->SetOptions(Window(2)), IsOk());
  for (int i = 0; i < 4; ++i) d.push_back(router->Route(q, kApiPool, BatchPolicy()));
  EXPECT_EQ(d[2].window_id, d[0].window_id);  // the first window keeps its 3 arrivals
  EXPECT_EQ(d[2].position_in_window, 2);
  EXPECT_NE(d[3].window_id, d[0].window_id);
  EXPECT_EQ(d[4].window_id, d[3].window_id);
  EXPECT_EQ(d[4].expected_after, 0);
  EXPECT_THAT(router->SetOptions(Window(0)), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("inline.window_arrivals")));
}

// Inline decisions and batches share one ledger: every slot and every dollar is counted once.
TEST(InlineRouterTest, SharesTheLedgerWithBatchesWithoutDoubleCounting) {
  FakeClock clock;
  const std::vector<DeployedModel> pool = {{"local", 4}, {"cheap", std::nullopt},
                                           {"mid", std::nullopt}, {"strong", std::nullopt}};
  auto ledger = MakeLedger(clock, pool);
  auto router = MakeRouter(*ledger, clock);
  std::vector<std::string> ids;
  double cost = 0;
  int local = 0;
  for (int round = 0; round < 3; ++round) {
    InlineDecision d = router->Route(Pending({0.95, 0.6, 0.7, 0.8}, {0, 0.001, 0.004, 0.02}),
                                     pool, BatchPolicy());
    ASSERT_THAT(d.outcome.status, IsOk());
    ids.push_back(d.outcome.assignment_id);
    cost += d.outcome.cost_usd;
    local += d.outcome.model == "local";
    std::vector<PendingQuery> batch;
    for (int k = 0; k < 2; ++k) {
      batch.push_back(
          Pending({0.95, 0.6, 0.7, 0.8}, {0, 0.001, 0.004, 0.02}));
    }
    BatchOutcome b = RouteBatch(batch, pool, BatchPolicy(), *ledger, clock, "b");
    for (const QueryOutcome& o : b.queries) {
      ASSERT_THAT(o.status, IsOk());
      ids.push_back(o.assignment_id);
      cost += o.cost_usd;
      local += o.model == "local";
    }
    EXPECT_LE(ledger->InUse("local").value(), 4);
  }
  EXPECT_EQ(local, 4);  // every slot used, none twice
  EXPECT_EQ(ledger->InUse("local").value(), 4);
  EXPECT_EQ(ledger->Totals()->open_assignments, 9);
  EXPECT_NEAR(ledger->Totals()->reserved_usd, cost, 1e-12);
  for (const std::string& id : ids) ASSERT_THAT(ledger->Complete(id, std::nullopt), IsOk());
  EXPECT_EQ(ledger->InUse("local").value(), 0);
  EXPECT_EQ(ledger->Totals()->open_assignments, 0);
  EXPECT_NEAR(ledger->Totals()->recorded_usd, cost, 1e-12);
  EXPECT_THAT(ledger->Complete(ids[0], std::nullopt), StatusIs(absl::StatusCode::kNotFound, HasSubstr(ids[0])));
}

// Concurrent callers: each gets one decision, the windows keep their caps and the slots hold.
TEST(InlineRouterTest, ConcurrentDecisionsKeepTheCapsAndSlots) {
  FakeClock clock;
  auto ledger = MakeLedger(clock);
  auto router = MakeRouter(*ledger, clock, Window(16));
  absl::Mutex mu;
  WindowSpend windows;
  int served = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      for (int i = 0; i < 200; ++i) {
        InlineDecision d = router->Route(Random(rng, 1.0 + t), kPool, Capped(0.002));
        absl::MutexLock lock(&mu);
        windows.Add(d);
        served += d.outcome.status.ok();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  int arrivals = 0;
  for (const auto& [id, n] : windows.arrivals) {
    arrivals += n;
    EXPECT_LE(n, 16) << id;
  }
  EXPECT_EQ(arrivals, 800);
  for (const auto& [id, spend] : windows.spend) EXPECT_LE(spend, 0.032 + 1e-12) << id;
  EXPECT_LE(ledger->InUse("local").value(), 2);
  EXPECT_EQ(ledger->Totals()->open_assignments, served);
}


// A ledger that passes every call to `inner` and says it is remote (as a shared ledger), so the
// router decides on its own thread in steps; it records each StepInline (its commits and
// arrivals), and can hold the next one until the test opens it, or run a test's action right
// after a step.
class SteppedLedger final : public Ledger {
 public:
  explicit SteppedLedger(Ledger& inner) : inner_(inner) {}
  bool remote() const override { return true; }

  struct Step {
    size_t commits = 0;
    int64_t arrivals = 0;
  };
  // The next StepInline waits, once it has started (Started), until Open.
  void HoldNextStep() {
    absl::MutexLock lock(&mu_);
    hold_ = true;
    open_ = false;
  }
  void AwaitStarted() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&waiting_));
  }
  void Open() {
    absl::MutexLock lock(&mu_);
    open_ = true;
  }
  // StepInline number `index` (from 0) answers `status` without reaching the inner ledger.
  void FailStep(size_t index, absl::Status status) {
    absl::MutexLock lock(&mu_);
    fail_index_ = index;
    fail_ = std::move(status);
  }
  // Runs `action` on the inner ledger after the next StepInline, before its answer is read.
  void AfterNextStep(std::function<void(Ledger&)> action) {
    absl::MutexLock lock(&mu_);
    after_ = std::move(action);
  }
  std::vector<Step> steps() {
    absl::MutexLock lock(&mu_);
    return steps_;
  }

  absl::StatusOr<InlineStep> StepInline(absl::Span<const InlineCommitRequest> commits,
                                        const InlineWindowSpec& spec, int64_t arrivals) override {
    std::function<void(Ledger&)> after;
    {
      absl::MutexLock lock(&mu_);
      if (steps_.size() == fail_index_) {
        steps_.push_back({commits.size(), arrivals});
        return fail_;
      }
      steps_.push_back({commits.size(), arrivals});
      if (hold_) {
        hold_ = false;
        waiting_ = true;
        mu_.Await(absl::Condition(&open_));
        waiting_ = false;
      }
      after.swap(after_);
    }
    absl::StatusOr<InlineStep> step = inner_.StepInline(commits, spec, arrivals);
    if (after) after(inner_);
    return step;
  }
  absl::Status SetModels(std::vector<LedgerModel> models) override {
    return inner_.SetModels(std::move(models));
  }
  absl::Status SetOptions(const LedgerOptions& options) override {
    return inner_.SetOptions(options);
  }
  absl::StatusOr<LedgerSnapshot> Snapshot() override { return inner_.Snapshot(); }
  absl::StatusOr<LedgerHold> Hold(const HoldRequest& request) override {
    return inner_.Hold(request);
  }
  absl::StatusOr<std::vector<Lease>> Commit(const LedgerHold* hold,
                                            absl::Span<const Reservation> reservations) override {
    return inner_.Commit(hold, reservations);
  }
  void Release(const LedgerHold& hold) override { inner_.Release(hold); }
  absl::StatusOr<CompletionRecord> Complete(absl::string_view id,
                                            std::optional<double> actual_cost_usd) override {
    return inner_.Complete(id, actual_cost_usd);
  }
  absl::StatusOr<int64_t> InUse(absl::string_view model) override { return inner_.InUse(model); }
  absl::StatusOr<LedgerTotals> Totals() override { return inner_.Totals(); }

 private:
  Ledger& inner_;
  absl::Mutex mu_;
  bool hold_ ABSL_GUARDED_BY(mu_) = false;
  bool open_ ABSL_GUARDED_BY(mu_) = true;
  bool waiting_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void(Ledger&)> after_ ABSL_GUARDED_BY(mu_);
  size_t fail_index_ ABSL_GUARDED_BY(mu_) = SIZE_MAX;
  absl::Status fail_ ABSL_GUARDED_BY(mu_);
  std::vector<Step> steps_ ABSL_GUARDED_BY(mu_);
};

// With an in-process ledger, a query is decided on the calling thread: Decide answers before it
// returns, with one arrival and one commit.
TEST(InlineRouterTest, WithAnInProcessLedgerDecideAnswersBeforeItReturns) {
  FakeClock clock;
  auto ledger = MakeLedger(clock);
  auto router = MakeRouter(*ledger, clock);
  std::optional<InlineDecision> decision;
  const std::thread::id caller = std::this_thread::get_id();
  std::thread::id answered_on;
  router->Decide(Pending({0.95, 0.6, 0.7, 0.8}, {0, 0.001, 0.004, 0.02}), kPool, BatchPolicy(),
                 [&](InlineDecision d) {
                   decision = std::move(d);
                   answered_on = std::this_thread::get_id();
                 });
  ASSERT_TRUE(decision.has_value());
  EXPECT_EQ(answered_on, caller);
  ASSERT_THAT(decision->outcome.status, IsOk());
  EXPECT_EQ(decision->window_id, "w1");
  EXPECT_EQ(ledger->Totals()->open_assignments, 1);
}

// Queries that arrive while the ledger is busy with a step wait for the next one, all together:
// one ledger call counts their arrivals (with the commit of the decision before them), and one
// more commits all their decisions. Each is answered once.
TEST(InlineRouterTest, QueriesWaitingForTheLedgerShareItsCalls) {
  FakeClock clock;
  auto inner = MakeLedger(clock);
  SteppedLedger ledger(*inner);
  auto router = MakeRouter(ledger, clock, Window(100));
  constexpr int kQueries = 20;
  std::vector<PendingQuery> queries;
  std::mt19937_64 rng(7);
  for (int k = 0; k < kQueries; ++k) queries.push_back(Random(rng, 1.0));
  absl::Mutex mu;
  std::vector<InlineDecision> decisions;
  absl::BlockingCounter answered(kQueries);
  const auto done = [&](InlineDecision d) {
    absl::MutexLock lock(&mu);
    decisions.push_back(std::move(d));
    answered.DecrementCount();
  };
  const BatchPolicy policy;  // outlives the decisions, as Decide requires
  ledger.HoldNextStep();
  router->Decide(queries[0], kPool, policy, done);
  ledger.AwaitStarted();  // the first query's arrival is with the ledger
  for (int k = 1; k < kQueries; ++k) router->Decide(queries[k], kPool, policy, done);
  EXPECT_EQ(router->queued(), kQueries - 1);
  ledger.Open();
  answered.Wait();
  EXPECT_EQ(router->queued(), 0);
  const std::vector<SteppedLedger::Step> steps = ledger.steps();
  ASSERT_EQ(steps.size(), 3u);
  EXPECT_EQ(steps[0].commits, 0u);
  EXPECT_EQ(steps[0].arrivals, 1);
  EXPECT_EQ(steps[1].commits, 1u);
  EXPECT_EQ(steps[1].arrivals, kQueries - 1);
  EXPECT_EQ(steps[2].commits, static_cast<size_t>(kQueries - 1));
  EXPECT_EQ(steps[2].arrivals, 0);
  ASSERT_EQ(decisions.size(), static_cast<size_t>(kQueries));
  std::set<std::string> ids;
  std::set<int64_t> positions;
  for (const InlineDecision& d : decisions) {
    ASSERT_THAT(d.outcome.status, IsOk());
    ids.insert(d.outcome.assignment_id);
    positions.insert(d.position_in_window);
    EXPECT_EQ(d.window_id, "w1");
  }
  EXPECT_EQ(ids.size(), static_cast<size_t>(kQueries));
  EXPECT_EQ(positions.size(), static_cast<size_t>(kQueries));
  EXPECT_EQ(inner->Totals()->open_assignments, kQueries);
  EXPECT_LE(inner->InUse("local").value(), 2);  // one step never plans a slot twice
}

// A decision whose model was taken between its step and its commit (by a batch, or another
// replica) is refused by the ledger and made again on the next step's snapshot.
TEST(InlineRouterTest, ADecisionRefusedAtItsCommitIsMadeAgain) {
  FakeClock clock;
  auto inner = MakeLedger(clock);
  SteppedLedger ledger(*inner);
  auto router = MakeRouter(ledger, clock, Window(1));
  // "local" is free and best, and no arrival is expected after it: the decision takes it.
  const PendingQuery query = Pending({0.95, 0.6, 0.7, 0.8}, {0, 0.001, 0.004, 0.02});
  ledger.AfterNextStep([](Ledger& l) {
    ASSERT_THAT(l.Commit(nullptr, std::vector<Reservation>{{"local", 0.0}, {"local", 0.0}}),
                IsOk());
  });
  const InlineDecision d = router->Route(query, kPool, BatchPolicy());
  ASSERT_THAT(d.outcome.status, IsOk());
  EXPECT_NE(d.outcome.model, "local");
  const std::vector<SteppedLedger::Step> steps = ledger.steps();
  ASSERT_EQ(steps.size(), 3u);  // the arrival, the refused commit, the second commit
  EXPECT_EQ(steps[1].commits, 1u);
  EXPECT_EQ(steps[2].commits, 1u);
  EXPECT_EQ(inner->Totals()->open_assignments, 3);
  EXPECT_EQ(inner->InUse("local").value(), 2);
}

// A ledger that cannot be reached answers every query of the step, decided or not, retryable;
// the next step reaches it again.
TEST(InlineRouterTest, AnUnreachableLedgerAnswersEveryQueryOfTheStepRetryable) {
  FakeClock clock;
  auto inner = MakeLedger(clock);
  SteppedLedger ledger(*inner);
  auto router = MakeRouter(ledger, clock);
  ledger.HoldNextStep();
  ledger.FailStep(1, absl::UnavailableError("redis 127.0.0.1:1: timed out"));
  absl::Mutex mu;
  std::vector<absl::Status> statuses;
  absl::BlockingCounter answered(3);
  const auto done = [&](InlineDecision d) {
    absl::MutexLock lock(&mu);
    statuses.push_back(d.outcome.status);
    answered.DecrementCount();
  };
  const PendingQuery query = Pending({0.95, 0.6, 0.7, 0.8}, {0, 0.001, 0.004, 0.02});
  const BatchPolicy policy;  // outlives the decisions, as Decide requires
  router->Decide(query, kPool, policy, done);  // decided in step 0, committed in step 1
  ledger.AwaitStarted();
  router->Decide(query, kPool, policy, done);  // arrive in step 1
  router->Decide(query, kPool, policy, done);
  ledger.Open();
  answered.Wait();
  ASSERT_EQ(statuses.size(), 3u);
  for (const absl::Status& st : statuses) {
    EXPECT_THAT(st, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("timed out")));
  }
  EXPECT_EQ(inner->Totals()->open_assignments, 0);
  EXPECT_THAT(router->Route(query, kPool, BatchPolicy()).outcome.status, IsOk());
}

}  // namespace
}  // namespace router::core
