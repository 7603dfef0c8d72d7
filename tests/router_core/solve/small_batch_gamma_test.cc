#include "router_core/solve/small_batch_gamma.h"

#include <cmath>
#include <cstdint>
#include <optional>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "router_core/solve/admission.h"
#include "router_core/solve/instance.h"
#include "router_core/solve/robust_gamma.h"
#include "router_core/solve/solution.h"
#include "tests/router_core/testing/brute_force.h"
#include "tests/router_core/testing/fake_clock.h"
#include "tests/router_core/testing/random_instance.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::core {
namespace {

using testing::BruteForce;
using testing::ExpectFinishedWithinGap;
using testing::GammaObjective;
using testing::RandomProblem;
using testing::SmallOptions;

Instance SmallInstance(uint64_t seed) {
  return BuildInstance(RandomProblem(SmallOptions(seed)), ValueSource::kQuality);
}

// Where SolveBatch starts it: the theta grid's assignment. nullopt when some query cannot be
// served (the search requires every query servable).
std::optional<std::vector<int>> GridStart(const Instance& inst, double gamma) {
  const Admission admission = AdmitQueries(inst);
  if (static_cast<int>(admission.served.size()) != inst.num_queries) return std::nullopt;
  return SolveGammaRobust(inst, gamma, admission.fallback, 0.0).model_of_query;
}

void ExpectFeasibleAndConsistent(const Instance& inst, const SmallBatchGammaResult& r,
                                 double gamma) {
  ASSERT_EQ(static_cast<int>(r.model_of_query.size()), inst.num_queries);
  for (int m : r.model_of_query) EXPECT_NE(m, kUnserved);
  EXPECT_THAT(CheckFeasible(inst, r.model_of_query), IsOk());
  EXPECT_NEAR(r.objective, GammaObjective(inst, r.model_of_query, gamma), 1e-9);
}

// At relative gap 0 the search over thetas is exact, for integer and fractional gamma, from the
// grid's assignment and from the admission's fallback alike.
TEST(SmallBatchGammaTest, MatchesBruteForceAtZeroGap) {
  int checked = 0;
  int improved_on_grid = 0;
  for (uint64_t seed = 1; seed <= 250; ++seed) {
    const Instance inst = SmallInstance(seed);
    for (const double gamma : {0.0, 1.0, 1.5, 3.0}) {
      if (gamma > inst.num_queries) continue;
      const std::optional<std::vector<int>> grid = GridStart(inst, gamma);
      const auto best = BruteForce(inst, gamma);
      ASSERT_EQ(grid.has_value(), best.has_value()) << "seed " << seed;
      if (!best.has_value()) continue;
      ++checked;
      const std::vector<int> fallback = AdmitQueries(inst).fallback;
      for (const std::vector<int>& start : {*grid, fallback}) {
        const SmallBatchGammaResult r = SolveSmallBatchGamma(inst, gamma, start);
        ExpectFeasibleAndConsistent(inst, r, gamma);
        EXPECT_TRUE(r.finished) << "seed " << seed << " gamma " << gamma;
        EXPECT_NEAR(r.objective, best->objective, 1e-9) << "seed " << seed << " gamma " << gamma;
        EXPECT_GE(r.upper_bound, best->objective - 1e-9) << "seed " << seed;
        EXPECT_LE(r.upper_bound, r.objective + 1e-9) << "seed " << seed << " gamma " << gamma;
      }
      improved_on_grid += GammaObjective(inst, *grid, gamma) < best->objective - 1e-9;
    }
  }
  EXPECT_GT(checked, 500);
  EXPECT_GT(improved_on_grid, 0);  // the grid alone is not exact on these instances
}

// With a gap, the answer is within it of the optimum and the bound is above the optimum.
TEST(SmallBatchGammaTest, AnswerIsWithinTheRequestedGap) {
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    const Instance inst = SmallInstance(seed);
    const double gamma = std::min(2.0, static_cast<double>(inst.num_queries));
    const std::optional<std::vector<int>> grid = GridStart(inst, gamma);
    if (!grid.has_value()) continue;
    const auto best = BruteForce(inst, gamma);
    ASSERT_TRUE(best.has_value());
    const SmallBatchGammaResult r =
        SolveSmallBatchGamma(inst, gamma, *grid, {.relative_gap = 0.05});
    ExpectFeasibleAndConsistent(inst, r, gamma);
    ExpectFinishedWithinGap(r, best->objective, 0.05, seed);
  }
}

// Stopped early (node limit or deadline), it reports finished = false with a bound that still
// holds, and an assignment no worse than its start.
TEST(SmallBatchGammaTest, StoppedEarlyItsBoundStillHolds) {
  int stopped = 0;
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    const Instance inst = SmallInstance(seed);
    const double gamma = std::min(1.0, static_cast<double>(inst.num_queries));
    const std::optional<std::vector<int>> grid = GridStart(inst, gamma);
    if (!grid.has_value()) continue;
    const std::vector<int> fallback = AdmitQueries(inst).fallback;
    const auto best = BruteForce(inst, gamma);
    testing::FakeClock clock;
    for (const SmallBatchOptions& options :
         {SmallBatchOptions{.max_nodes = 1},
          SmallBatchOptions{.deadline = clock.Now(), .clock = &clock}}) {
      const SmallBatchGammaResult r = SolveSmallBatchGamma(inst, gamma, fallback, options);
      ExpectFeasibleAndConsistent(inst, r, gamma);
      EXPECT_GE(r.objective, GammaObjective(inst, fallback, gamma) - 1e-9) << "seed " << seed;
      EXPECT_GE(r.upper_bound, best->objective - 1e-9) << "seed " << seed;
      stopped += !r.finished;
    }
  }
  EXPECT_GT(stopped, 50);
}

}  // namespace
}  // namespace router::core
