#include "router_core/solve/transport.h"

#include <algorithm>
#include <limits>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "router_core/solve/admission.h"
#include "router_core/solve/solution.h"
#include "tests/router_core/testing/brute_force.h"
#include "tests/router_core/testing/fake_clock.h"
#include "tests/router_core/testing/random_instance.h"

namespace router::core {
namespace {

using testing::BruteForce;
using testing::RandomInstanceOptions;
using testing::RandomProblem;

// The Lagrangian dual of the slot rows at the given prices; an upper bound on the optimum.
double DualValue(const Instance& inst, const std::vector<double>& price) {
  double total = 0.0;
  for (int j = 0; j < inst.num_models; ++j) {
    if (inst.is_limited(j)) total += price[j] * static_cast<double>(inst.slots[j]);
  }
  for (int i = 0; i < inst.num_queries; ++i) {
    double best = -std::numeric_limits<double>::infinity();
    for (int j = 0; j < inst.num_models; ++j) {
      if (inst.is_allowed(i, j)) best = std::max(best, inst.value[inst.index(i, j)] - price[j]);
    }
    total += best;
  }
  return total;
}

Instance NoBudget(Instance inst) {
  inst.budget = std::numeric_limits<double>::infinity();
  return inst;
}

TEST(TransportTest, MatchesBruteForceAndDualCertifiesIt) {
  int checked = 0;
  for (uint64_t seed = 1; seed <= 400; ++seed) {
    RandomInstanceOptions o;
    o.seed = seed;
    o.num_queries = 3 + static_cast<int>(seed % 5);
    o.num_models = 2 + static_cast<int>(seed % 3);
    o.num_limited = 1 + static_cast<int>(seed % o.num_models);
    o.slot_fraction = 0.1 + 0.15 * static_cast<double>(seed % 4);
    o.disallow_probability = seed % 2 == 0 ? 0.3 : 0.0;
    o.budget_fraction = -1;
    const Instance inst = NoBudget(BuildInstance(RandomProblem(o), ValueSource::kQuality));
    const TransportResult result = *SolveTransport(inst, inst.value);
    const auto best = BruteForce(inst);
    if (!best.has_value()) {
      EXPECT_GT(result.num_unserved, 0) << "seed " << seed;
      continue;
    }
    ++checked;
    ASSERT_EQ(result.num_unserved, 0) << "seed " << seed;
    ASSERT_TRUE(CheckFeasible(inst, result.model_of_query).ok()) << "seed " << seed;
    EXPECT_NEAR(result.value, best->objective, 1e-9) << "seed " << seed;
    EXPECT_NEAR(AssignmentValue(inst, result.model_of_query), result.value, 1e-9);
    for (double p : result.slot_price) EXPECT_GE(p, 0.0);
    EXPECT_NEAR(DualValue(inst, result.slot_price), best->objective, 1e-7) << "seed " << seed;
  }
  EXPECT_GT(checked, 200);
}

TEST(TransportTest, LargeInstanceIsFeasibleAndDualIsTight) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    const RandomInstanceOptions o = {.num_queries = 300,
                                     .num_models = 12,
                                     .num_limited = 5,
                                     .slot_fraction = 0.05,
                                     .disallow_probability = 0.2,
                                     .seed = seed};
    const Instance inst = NoBudget(BuildInstance(RandomProblem(o), ValueSource::kQuality));
    const TransportResult result = *SolveTransport(inst, inst.value);
    ASSERT_TRUE(CheckFeasible(inst, result.model_of_query).ok());
    EXPECT_NEAR(DualValue(inst, result.slot_price), result.value, 1e-7 * result.value);
  }
}

TEST(TransportTest, LeavesTheMinimumNumberUnserved) {
  // Three queries may only use m0 (one slot); one of them can also use the unlimited m1.
  Instance inst;
  inst.num_queries = 3;
  inst.num_models = 2;
  inst.value = {0.9, 0.1, 0.8, 0.0, 0.7, 0.0};
  inst.deviation.assign(6, 0.0);
  inst.cost.assign(6, 0.0);
  inst.allowed = {1, 1, 1, 0, 1, 0};
  inst.slots = {1, kUnlimited};
  const TransportResult result = *SolveTransport(inst, inst.value);
  EXPECT_EQ(result.num_unserved, 1);
  EXPECT_EQ(result.model_of_query[0], 1);  // the flexible query yields the slot
  EXPECT_EQ(result.model_of_query[1], 0);  // the best of the other two takes it
  EXPECT_EQ(result.model_of_query[2], kUnserved);
}

TEST(AdmissionTest, DropsTheDearestQueriesUntilTheBudgetFits) {
  Instance inst;
  inst.num_queries = 3;
  inst.num_models = 1;
  inst.value = {0.5, 0.5, 0.5};
  inst.deviation.assign(3, 0.0);
  inst.cost = {1.0, 3.0, 2.0};
  inst.allowed = {1, 1, 1};
  inst.slots = {kUnlimited};
  inst.budget = 3.5;
  const Admission a = AdmitQueries(inst);
  EXPECT_THAT(a.fallback, ::testing::ElementsAre(0, kUnserved, 0));
  EXPECT_EQ(a.reason[1], UnservedReason::kNoBudget);
  EXPECT_THAT(a.served, ::testing::ElementsAre(0, 2));
  EXPECT_DOUBLE_EQ(a.fallback_cost, 3.0);
}

TEST(AdmissionTest, FallbackIsAlwaysFeasible) {
  for (uint64_t seed = 1; seed <= 300; ++seed) {
    RandomInstanceOptions o;
    o.seed = seed;
    o.num_queries = 5 + static_cast<int>(seed % 60);
    o.num_models = 2 + static_cast<int>(seed % 6);
    o.num_limited = static_cast<int>(seed % o.num_models);
    o.slot_fraction = 0.05 * static_cast<double>(seed % 7);
    o.budget_fraction = 0.01 * static_cast<double>(seed % 20);
    o.disallow_probability = 0.4;
    const Instance inst = BuildInstance(RandomProblem(o), ValueSource::kQuality);
    const Admission a = AdmitQueries(inst);
    ASSERT_TRUE(CheckFeasible(inst, a.fallback).ok()) << "seed " << seed;
    EXPECT_LE(a.fallback_cost, inst.budget);
  }
}

// Regression: more slot-only queries than slots, with the large unserved penalty, once made the
// eviction path loop forever (found by the heuristic policies' stress run).
TEST(TransportTest, OversubscribedSlotOnlyQueriesTerminate) {
  for (uint64_t seed = 1; seed <= 2000; ++seed) {
    const RandomInstanceOptions o = {.num_queries = 20 + static_cast<int>(seed % 120),
                                     .num_models = 4,
                                     .num_limited = 2,
                                     .slot_fraction = 0.01 + 0.001 * static_cast<double>(seed % 40),
                                     .budget_fraction = 0.11,
                                     .disallow_probability = 0.5,
                                     .adversarial = true,
                                     .seed = seed};
    const Instance inst = BuildInstance(RandomProblem(o), ValueSource::kQuality);
    const Admission a = AdmitQueries(inst);
    ASSERT_TRUE(CheckFeasible(inst, a.fallback).ok()) << "seed " << seed;
  }
  const RandomInstanceOptions o = {.num_queries = 118,
                                   .num_models = 4,
                                   .num_limited = 2,
                                   .slot_fraction = 0.025664897283956704,
                                   .budget_fraction = 0.11001508953721176,
                                   .disallow_probability = 0.5,
                                   .adversarial = true,
                                   .seed = 756};
  const Instance inst = BuildInstance(RandomProblem(o), ValueSource::kQuality);
  EXPECT_TRUE(CheckFeasible(inst, AdmitQueries(inst).fallback).ok());
}

// A flow stopped half-way is no optimum and has no valid prices: past its deadline the solve gives
// nothing back; before it, the same answer as without one.
TEST(TransportTest, GivesUpOnceItsDeadlineHasPassed) {
  const RandomInstanceOptions o = {.num_queries = 256,
                                   .num_models = 20,
                                   .num_limited = 6,
                                   .slot_fraction = 0.04,
                                   .adversarial = true,
                                   .seed = 7};
  const Instance inst = BuildInstance(RandomProblem(o), ValueSource::kQuality);
  const testing::FakeClock clock;
  EXPECT_FALSE(SolveTransport(inst, inst.value, Deadline(clock.Now(), clock)).has_value());

  const std::optional<TransportResult> unbounded = SolveTransport(inst, inst.value);
  const std::optional<TransportResult> in_time =
      SolveTransport(inst, inst.value, Deadline(clock.Now() + absl::Seconds(1), clock));
  ASSERT_TRUE(unbounded.has_value());
  ASSERT_TRUE(in_time.has_value());
  EXPECT_EQ(in_time->model_of_query, unbounded->model_of_query);
  EXPECT_EQ(in_time->slot_price, unbounded->slot_price);
}

}  // namespace
}  // namespace router::core
