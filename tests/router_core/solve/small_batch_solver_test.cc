#include "router_core/solve/small_batch_solver.h"

#include <cmath>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "router_core/solve/admission.h"
#include "router_core/solve/instance.h"
#include "router_core/solve/lagrangian_solver.h"
#include "router_core/solve/solution.h"
#include "tests/router_core/testing/brute_force.h"
#include "tests/router_core/testing/fake_clock.h"
#include "tests/router_core/testing/random_instance.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::core {
namespace {

using testing::BruteForce;
using testing::ExpectFinishedWithinGap;
using testing::RandomInstanceOptions;
using testing::RandomProblem;
using testing::SmallOptions;

Instance SmallInstance(uint64_t seed) {
  return BuildInstance(RandomProblem(SmallOptions(seed)), ValueSource::kQuality);
}

// Where SolveBatch starts the search: the fast solver's assignment and prices. nullopt when some
// query cannot be served (the search requires every query servable).
std::optional<SmallBatchStart> FastStart(const Instance& inst) {
  const Admission admission = AdmitQueries(inst);
  if (static_cast<int>(admission.served.size()) != inst.num_queries) return std::nullopt;
  const LagrangianResult fast = SolveLagrangian(inst, admission.fallback);
  return SmallBatchStart{fast.model_of_query, fast.budget_price, fast.slot_price};
}

void ExpectFeasibleAndConsistent(const Instance& inst, const SmallBatchResult& r) {
  ASSERT_EQ(static_cast<int>(r.model_of_query.size()), inst.num_queries);
  for (int m : r.model_of_query) EXPECT_NE(m, kUnserved);
  EXPECT_THAT(CheckFeasible(inst, r.model_of_query), IsOk());
  EXPECT_NEAR(r.objective, AssignmentValue(inst, r.model_of_query), 1e-9);
}

// At relative gap 0 the search is exact from the fast solver's prices, from zero prices and from
// arbitrary ones alike (its bounds are valid for any prices >= 0; prices given for unlimited
// models are ignored).
TEST(SmallBatchSolverTest, MatchesBruteForceAtZeroGap) {
  int checked = 0;
  for (uint64_t seed = 1; seed <= 300; ++seed) {
    const Instance inst = SmallInstance(seed);
    const std::optional<SmallBatchStart> start = FastStart(inst);
    const auto best = BruteForce(inst);
    ASSERT_EQ(start.has_value(), best.has_value()) << "seed " << seed;
    if (!best.has_value()) continue;
    ++checked;
    const SmallBatchStart unpriced{start->model_of_query, 0.0, {}};
    const SmallBatchStart overpriced{start->model_of_query, 1.0,
                                     std::vector<double>(inst.num_models, 1.0)};
    for (const SmallBatchStart& s : {*start, unpriced, overpriced}) {
      const SmallBatchResult r = SolveSmallBatch(inst, s);
      ExpectFeasibleAndConsistent(inst, r);
      EXPECT_TRUE(r.finished) << "seed " << seed;
      EXPECT_NEAR(r.objective, best->objective, 1e-9) << "seed " << seed;
      EXPECT_GE(r.upper_bound, best->objective - 1e-9) << "seed " << seed;
      EXPECT_LE(r.upper_bound, r.objective + 1e-9) << "seed " << seed;
    }
  }
  EXPECT_GT(checked, 200);
}

// Repeated rows: the queries of a group take models in non-decreasing rank, which must not cut off
// the optimum.
TEST(SmallBatchSolverTest, RepeatedQueriesMatchBruteForce) {
  int checked = 0;
  for (uint64_t seed = 1; seed <= 150; ++seed) {
    RandomInstanceOptions o;
    o.seed = seed;
    o.num_queries = 9;  // budget and slots sized for 9 queries of which 3 rows are repeated
    o.num_models = 2 + static_cast<int>(seed % 2);
    o.num_limited = 1;
    o.slot_fraction = 0.3;
    o.budget_fraction = seed % 3 == 0 ? -1.0 : 0.4;
    const Instance inst = SelectQueries(BuildInstance(RandomProblem(o), ValueSource::kQuality),
                                        {0, 1, 0, 2, 1, 0, 2, 0, 1});
    const std::optional<SmallBatchStart> start = FastStart(inst);
    const auto best = BruteForce(inst);
    if (!start.has_value() || !best.has_value()) continue;
    ++checked;
    const SmallBatchResult r = SolveSmallBatch(inst, *start);
    ExpectFeasibleAndConsistent(inst, r);
    EXPECT_TRUE(r.finished);
    EXPECT_NEAR(r.objective, best->objective, 1e-9) << "seed " << seed;
  }
  EXPECT_GT(checked, 80);
}

// With a gap, the answer is within it of the optimum and the bound is above the optimum.
TEST(SmallBatchSolverTest, AnswerIsWithinTheRequestedGap) {
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    const Instance inst = SmallInstance(seed);
    const std::optional<SmallBatchStart> start = FastStart(inst);
    if (!start.has_value()) continue;
    const auto best = BruteForce(inst);
    ASSERT_TRUE(best.has_value());
    const SmallBatchResult r = SolveSmallBatch(inst, *start, {.relative_gap = 0.05});
    ExpectFeasibleAndConsistent(inst, r);
    ExpectFinishedWithinGap(r, best->objective, 0.05, seed);
  }
}

// With a value the caller already has, the search prunes what cannot beat it: at the optimum the
// bound still holds, with fewer nodes from a poor start (the admission's fallback, zero prices);
// just below the optimum it still finds the optimum.
TEST(SmallBatchSolverTest, PrunesWhatCannotBeatAKnownValue) {
  int saved = 0;
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    const Instance inst = SmallInstance(seed);
    const Admission admission = AdmitQueries(inst);
    if (static_cast<int>(admission.served.size()) != inst.num_queries) continue;
    const auto best = BruteForce(inst);
    ASSERT_TRUE(best.has_value());
    const SmallBatchStart poor{admission.fallback, 0.0, {}};
    const SmallBatchResult plain = SolveSmallBatch(inst, poor);
    const SmallBatchResult known = SolveSmallBatch(inst, poor, {.known_value = best->objective});
    ExpectFeasibleAndConsistent(inst, known);
    ASSERT_TRUE(known.finished);
    EXPECT_LE(known.nodes, plain.nodes) << "seed " << seed;
    EXPECT_GE(known.upper_bound, best->objective - 1e-9) << "seed " << seed;
    const SmallBatchResult below =
        SolveSmallBatch(inst, poor, {.known_value = best->objective - 1e-6});
    EXPECT_NEAR(below.objective, best->objective, 1e-9) << "seed " << seed;
    saved += known.nodes < plain.nodes;
  }
  EXPECT_GT(saved, 20);
}

// A 0/1 knapsack of 24 distinct items (model 0 takes an item, model 1 leaves it, for nothing):
// from zero prices only the budget prunes, so the search needs far more than 256 nodes.
Instance KnapsackInstance() {
  Instance inst;
  inst.num_queries = 24;
  inst.num_models = 2;
  inst.slots = {kUnlimited, kUnlimited};
  double total_cost = 0.0;
  for (int i = 0; i < inst.num_queries; ++i) {
    const double cost = 1.0 + static_cast<double>(i * 53 % 19) / 19.0;
    inst.value.insert(inst.value.end(), {1.0 + static_cast<double>(i * 37 % 17) / 17.0, 0.0});
    inst.cost.insert(inst.cost.end(), {cost, 0.0});
    inst.allowed.insert(inst.allowed.end(), {1, 1});
    total_cost += cost;
  }
  inst.deviation.assign(inst.value.size(), 0.0);
  inst.budget = total_cost / 2;
  return inst;
}

// Leaves every item out: feasible, and far from the optimum.
SmallBatchStart EmptyKnapsack(const Instance& inst) {
  return {std::vector<int>(inst.num_queries, 1), 0.0, {}};
}

TEST(SmallBatchSolverTest, StopsAtTheNodeLimitWithTheBestFound) {
  const Instance inst = KnapsackInstance();
  const SmallBatchResult r = SolveSmallBatch(inst, EmptyKnapsack(inst), {.max_nodes = 100});
  ExpectFeasibleAndConsistent(inst, r);
  EXPECT_FALSE(r.finished);
  EXPECT_EQ(r.nodes, 101);      // the node that found the limit exceeded is counted
  EXPECT_GT(r.objective, 0.0);  // depth first reaches leaves at once, better than taking nothing
}

TEST(SmallBatchSolverTest, StopsAtTheDeadline) {
  const Instance inst = KnapsackInstance();
  testing::FakeClock clock;
  const SmallBatchResult r =
      SolveSmallBatch(inst, EmptyKnapsack(inst), {.deadline = clock.Now(), .clock = &clock});
  ExpectFeasibleAndConsistent(inst, r);
  EXPECT_FALSE(r.finished);
  EXPECT_EQ(r.nodes, 256);  // the clock is read every 256 nodes
}

}  // namespace
}  // namespace router::core
