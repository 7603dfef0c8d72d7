#include "router_core/solve/lagrangian_solver.h"

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

RandomInstanceOptions Small(uint64_t seed) {
  RandomInstanceOptions o;
  o.seed = seed;
  o.num_queries = 3 + static_cast<int>(seed % 5);
  o.num_models = 2 + static_cast<int>(seed % 3);
  o.num_limited = static_cast<int>(seed % o.num_models);
  o.slot_fraction = 0.15 * static_cast<double>(seed % 5);
  o.budget_fraction = 0.05 + 0.1 * static_cast<double>(seed % 6);
  o.disallow_probability = seed % 3 == 0 ? 0.3 : 0.0;
  o.adversarial = seed % 2 == 0;
  return o;
}

TEST(LagrangianSolverTest, FeasibleAndBoundIsValidAgainstBruteForce) {
  int checked = 0;
  for (uint64_t seed = 1; seed <= 1500; ++seed) {
    const Instance inst = BuildInstance(RandomProblem(Small(seed)), ValueSource::kQuality);
    const auto best = BruteForce(inst);
    if (!best.has_value()) continue;
    const Admission admission = AdmitQueries(inst);
    ASSERT_EQ(admission.served.size(), static_cast<size_t>(inst.num_queries)) << "seed " << seed;
    const LagrangianResult r = SolveLagrangian(inst, admission.fallback);
    ++checked;
    ASSERT_TRUE(CheckFeasible(inst, r.model_of_query).ok()) << "seed " << seed;
    EXPECT_NEAR(r.objective, AssignmentValue(inst, r.model_of_query), 1e-12);
    EXPECT_LE(r.objective, best->objective + 1e-9) << "seed " << seed;
    EXPECT_GE(r.upper_bound, best->objective - 1e-9) << "seed " << seed;
  }
  EXPECT_GT(checked, 500);
}

TEST(LagrangianSolverTest, WithoutBindingBudgetItIsExact) {
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    RandomInstanceOptions o = Small(seed);
    o.budget_fraction = -1;
    const Instance inst = BuildInstance(RandomProblem(o), ValueSource::kQuality);
    const auto best = BruteForce(inst);
    if (!best.has_value()) continue;
    const LagrangianResult r = SolveLagrangian(inst, AdmitQueries(inst).fallback);
    EXPECT_NEAR(r.objective, best->objective, 1e-9) << "seed " << seed;
    EXPECT_NEAR(r.upper_bound, best->objective, 1e-9) << "seed " << seed;
  }
}

TEST(LagrangianSolverTest, GapIsSmallOnRealisticBatches) {
  for (uint64_t seed = 1; seed <= 10; ++seed) {
    const RandomInstanceOptions o = {.num_queries = 256,
                                     .num_models = 20,
                                     .num_limited = 6,
                                     .slot_fraction = 0.04,
                                     .budget_fraction = 0.2,
                                     .adversarial = seed % 2 == 0,
                                     .seed = seed};
    const Instance inst = BuildInstance(RandomProblem(o), ValueSource::kQuality);
    const Admission admission = AdmitQueries(inst);
    ASSERT_EQ(admission.served.size(), 256u);
    const LagrangianResult r = SolveLagrangian(inst, admission.fallback);
    ASSERT_TRUE(CheckFeasible(inst, r.model_of_query).ok());
    EXPECT_GE(r.upper_bound, r.objective);
    // Half a percent: the documented target of the fast path (bench/README.md).
    EXPECT_LE((r.upper_bound - r.objective) / r.upper_bound, 5e-3) << "seed " << seed;
  }
}

// Past its deadline the search starts no transportation solve: the answer is the feasible start
// after one greedy pass, with a bound that is still valid (prices 0).
TEST(LagrangianSolverTest, PastItsDeadlineItSolvesNothingAndKeepsAValidBound) {
  const testing::FakeClock clock;
  const Deadline passed(clock.Now(), clock);
  int checked = 0;
  for (uint64_t seed = 1; seed <= 300; ++seed) {
    const Instance inst = BuildInstance(RandomProblem(Small(seed)), ValueSource::kQuality);
    const auto best = BruteForce(inst);
    if (!best.has_value()) continue;
    const Admission admission = AdmitQueries(inst);
    const LagrangianResult r =
        SolveLagrangian(inst, admission.fallback, kDefaultBoundTolerance, passed);
    ++checked;
    EXPECT_EQ(r.iterations, 0) << "seed " << seed;
    ASSERT_TRUE(CheckFeasible(inst, r.model_of_query).ok()) << "seed " << seed;
    EXPECT_GE(r.objective, AssignmentValue(inst, admission.fallback)) << "seed " << seed;
    EXPECT_GE(r.upper_bound, best->objective - 1e-9) << "seed " << seed;
  }
  EXPECT_GT(checked, 100);
}

}  // namespace
}  // namespace router::core
