#include "router_core/solve/cbc_solver.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "router_core/solve/instance.h"
#include "router_core/solve/solution.h"
#include "tests/router_core/testing/brute_force.h"
#include "tests/router_core/testing/random_instance.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::core {
namespace {

using testing::BruteForce;
using testing::GammaObjective;
using testing::RandomInstanceOptions;
using testing::RandomProblem;
using testing::SmallOptions;

// Generous enough that small instances always finish: these tests check answers, not speed.
constexpr absl::Duration kNoLimit = absl::Seconds(30);

Instance RandomInstance(const RandomInstanceOptions& o) {
  return BuildInstance(RandomProblem(o), ValueSource::kQuality);
}

// Serves every query at its cheapest allowed model that still has a slot (limited models first
// when they tie at zero cost). Feasible or not; the caller checks.
std::vector<int> CheapestAssignment(const Instance& inst) {
  std::vector<int64_t> used(inst.num_models, 0);
  std::vector<int> assignment(inst.num_queries, kUnserved);
  for (int i = 0; i < inst.num_queries; ++i) {
    int best = kUnserved;
    for (int j = 0; j < inst.num_models; ++j) {
      if (!inst.is_allowed(i, j)) continue;
      if (inst.is_limited(j) && used[j] >= inst.slots[j]) continue;
      if (best == kUnserved || inst.cost[inst.index(i, j)] < inst.cost[inst.index(i, best)]) {
        best = j;
      }
    }
    assignment[i] = best;
    if (best != kUnserved) ++used[best];
  }
  return assignment;
}

bool ServesAll(const std::vector<int>& assignment) {
  return std::find(assignment.begin(), assignment.end(), kUnserved) == assignment.end();
}

// The structural promises of every answer.
void ExpectWellFormed(const Instance& inst, const CbcResult& result, double gamma) {
  switch (result.outcome) {
    case CbcOutcome::kOptimal:
    case CbcOutcome::kFeasible:
      ASSERT_EQ(static_cast<int>(result.model_of_query.size()), inst.num_queries);
      EXPECT_TRUE(ServesAll(result.model_of_query));
      EXPECT_THAT(CheckFeasible(inst, result.model_of_query), IsOk());
      EXPECT_DOUBLE_EQ(result.objective, RobustObjective(inst, result.model_of_query, gamma));
      EXPECT_GE(result.best_bound, result.objective);
      break;
    case CbcOutcome::kNoSolution:
    case CbcOutcome::kInfeasible:
      EXPECT_TRUE(result.model_of_query.empty());
      break;
  }
  EXPECT_GE(result.nodes, 0);
}

TEST(RobustObjectiveTest, MatchesReferenceAndPlainValue) {
  for (uint64_t seed = 1; seed <= 50; ++seed) {
    RandomInstanceOptions o = SmallOptions(seed);
    o.num_queries = 12;
    o.budget_fraction = -1;
    const Instance inst = RandomInstance(o);
    const std::vector<int> assignment = CheapestAssignment(inst);
    EXPECT_DOUBLE_EQ(RobustObjective(inst, assignment, 0.0), AssignmentValue(inst, assignment));
    for (double gamma : {0.5, 1.0, 2.5, 7.0, 40.0}) {
      EXPECT_NEAR(RobustObjective(inst, assignment, gamma),
                  GammaObjective(inst, assignment, gamma), 1e-12)
          << "seed " << seed << " gamma " << gamma;
    }
  }
}

// Solves `inst` exactly and checks the answer against enumeration: the optimum, or a proof that
// nothing serves every query (CBC must not invent an answer). Returns the enumerated optimum.
std::optional<testing::BruteForceResult> ExpectMatchesBruteForce(const Instance& inst, double gamma,
                                                                 uint64_t seed) {
  auto best = BruteForce(inst, gamma);
  const absl::StatusOr<CbcResult> result =
      SolveWithCbc(inst, {.time_limit = kNoLimit, .relative_gap = 0.0, .gamma = gamma});
  EXPECT_THAT(result, IsOk());
  if (!result.ok()) return best;
  ExpectWellFormed(inst, *result, gamma);
  if (!best.has_value()) {
    EXPECT_EQ(result->outcome, CbcOutcome::kInfeasible) << "seed " << seed;
    return best;
  }
  EXPECT_EQ(result->outcome, CbcOutcome::kOptimal) << "seed " << seed << " gamma " << gamma;
  EXPECT_NEAR(result->objective, best->objective, 1e-6) << "seed " << seed << " gamma " << gamma;
  EXPECT_GE(result->best_bound, best->objective - 1e-6) << "seed " << seed;
  return best;
}

TEST(CbcSolverTest, OptimalMatchesBruteForce) {
  int checked = 0, infeasible = 0;
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    const Instance inst = RandomInstance(SmallOptions(seed));
    for (double gamma : {0.0, 1.0, 2.5}) {
      if (gamma > 0 && seed % 2 == 0) continue;  // robust runs on half the seeds keep it fast
      ++(ExpectMatchesBruteForce(inst, gamma, seed).has_value() ? checked : infeasible);
    }
  }
  EXPECT_GT(checked, 300) << infeasible << " infeasible";
  EXPECT_GT(infeasible, 0);  // the generator does produce some; make sure the path is covered
}

TEST(CbcSolverTest, BoundIsValidAtDefaultGap) {
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    const Instance inst = RandomInstance(SmallOptions(seed));
    const auto best = BruteForce(inst);
    if (!best.has_value()) continue;
    const absl::StatusOr<CbcResult> result =
        SolveWithCbc(inst, {.time_limit = kNoLimit, .relative_gap = 0.05});
    ASSERT_THAT(result, IsOk());
    ExpectWellFormed(inst, *result, 0.0);
    ASSERT_EQ(result->outcome, CbcOutcome::kOptimal);
    EXPECT_GE(result->objective, best->objective - 0.05 * std::abs(best->objective) - 1e-9);
    EXPECT_GE(result->best_bound, best->objective - 1e-6) << "seed " << seed;
  }
}

TEST(CbcSolverTest, IncumbentIsAcceptedAndNeverBeaten) {
  int used = 0;
  for (uint64_t seed = 1; seed <= 25; ++seed) {
    const RandomInstanceOptions o = {.num_queries = 8,
                                     .num_models = 3,
                                     .num_limited = 2,
                                     .slot_fraction = 0.3,
                                     .budget_fraction = 0.5,
                                     .adversarial = seed % 2 == 0,
                                     .seed = seed};
    const Instance inst = RandomInstance(o);
    const std::vector<int> start = CheapestAssignment(inst);
    if (!ServesAll(start) || !CheckFeasible(inst, start).ok()) continue;
    ++used;
    for (double gamma : {0.0, 3.0}) {
      const auto best = BruteForce(inst, gamma);
      ASSERT_TRUE(best.has_value());  // `start` is feasible
      const absl::StatusOr<CbcResult> seeded = SolveWithCbc(
          inst,
          {.time_limit = kNoLimit, .relative_gap = 0.0, .gamma = gamma, .incumbent = &start});
      ASSERT_THAT(seeded, IsOk());
      ExpectWellFormed(inst, *seeded, gamma);
      ASSERT_EQ(seeded->outcome, CbcOutcome::kOptimal) << "seed " << seed;
      EXPECT_GE(seeded->objective, RobustObjective(inst, start, gamma));
      EXPECT_NEAR(seeded->objective, best->objective, 1e-6) << "seed " << seed;

      // The optimum itself as the start: CBC only has to prove it, and must hand back as good.
      const absl::StatusOr<CbcResult> warm = SolveWithCbc(
          inst, {.time_limit = kNoLimit,
                 .relative_gap = 0.0,
                 .gamma = gamma,
                 .incumbent = &best->model_of_query});
      ASSERT_THAT(warm, IsOk());
      ExpectWellFormed(inst, *warm, gamma);
      EXPECT_EQ(warm->outcome, CbcOutcome::kOptimal);
      EXPECT_GE(warm->objective, best->objective);
    }
  }
  EXPECT_GT(used, 12);
}

// A batch of UniRoute predictions repeats rows: every query of a cluster has the same qualities and
// costs, and the solver counts such queries per model instead of deciding each. Its answers must
// be those of the per-query problem, with or without an incumbent, and with the robust objective
// (which keeps every query apart).
TEST(CbcSolverTest, RepeatedQueriesMatchBruteForce) {
  int checked = 0;
  for (uint64_t seed = 1; seed <= 120; ++seed) {
    RandomInstanceOptions o = SmallOptions(seed);
    o.num_queries = 7;  // budget and slots sized for 7 queries; the first three rows are repeated
    const Instance inst = SelectQueries(RandomInstance(o), {0, 1, 0, 2, 1, 0, 2});
    for (double gamma : {0.0, 1.5}) {
      const auto best = ExpectMatchesBruteForce(inst, gamma, seed);
      if (!best.has_value()) continue;
      ++checked;
      const std::vector<int> start = CheapestAssignment(inst);
      if (!ServesAll(start) || !CheckFeasible(inst, start).ok()) continue;
      const absl::StatusOr<CbcResult> seeded = SolveWithCbc(
          inst, {.time_limit = kNoLimit, .relative_gap = 0.0, .gamma = gamma, .incumbent = &start});
      ASSERT_THAT(seeded, IsOk());
      ExpectWellFormed(inst, *seeded, gamma);
      EXPECT_NEAR(seeded->objective, best->objective, 1e-6) << "seed " << seed;
    }
  }
  EXPECT_GT(checked, 100);
}

// 100 queries of two kinds (60 of the first, 40 of the second, interleaved) and two models, with
// exact binary fractions so that each optimum is known in closed form. Model 0 is the better and
// dearer one. The kinds differ in one thing at a time (value, cost, or whether model 0 is
// allowed), so merging queries that differ in anything gives a wrong or infeasible answer.
struct Kind {
  double value0, value1, cost0;
  bool allows_model_0 = true;
};

Instance TwoKinds(const Kind& first, const Kind& second, double budget, int64_t slots_of_model_0) {
  Instance inst;
  inst.num_queries = 100;
  inst.num_models = 2;
  inst.slots = {slots_of_model_0, kUnlimited};
  inst.budget = budget;
  for (int i = 0; i < inst.num_queries; ++i) {
    const Kind& k = i % 5 < 3 ? first : second;
    inst.value.insert(inst.value.end(), {k.value0, k.value1});
    inst.cost.insert(inst.cost.end(), {k.cost0, 0.125});
    inst.deviation.insert(inst.deviation.end(), {0.0, 0.0});
    inst.allowed.insert(inst.allowed.end(), {uint8_t{k.allows_model_0}, uint8_t{1}});
  }
  return inst;
}

int OnModel0(const std::vector<int>& assignment, bool first_kind) {
  int n = 0;
  for (int i = 0; i < static_cast<int>(assignment.size()); ++i) {
    n += static_cast<int>((i % 5 < 3) == first_kind && assignment[i] == 0);
  }
  return n;
}

TEST(CbcSolverTest, LargeBatchOfRepeatedQueriesIsSolvedExactly) {
  const Kind gains_more{0.875, 0.5, 1.0};   // moving to model 0 gains 0.375 for 0.875 more
  const Kind gains_less{0.75, 0.625, 1.0};  // gains 0.125 for 0.875 more
  const Kind costs_more{0.875, 0.5, 1.5};   // gains 0.375 for 1.375 more
  const Kind not_on_0{0.875, 0.5, 1.0, /*allows_model_0=*/false};
  const double all_on_1 = 100 * 0.125;
  struct Case {
    const char* name;
    Instance inst;
    int first_on_0, second_on_0;
    double objective;
  };
  const Case cases[] = {
      // The budget buys 45 moves to model 0, not 46; the first kind gains more from each.
      {"budget binds", TwoKinds(gains_more, gains_less, all_on_1 + 45 * 0.875 + 0.25, kUnlimited),
       45, 0, 45 * 0.875 + 15 * 0.5 + 40 * 0.625},
      // 40 slots on model 0, the budget loose.
      {"slots bind", TwoKinds(gains_more, gains_less, 1000.0, 40), 40, 0,
       40 * 0.875 + 20 * 0.5 + 40 * 0.625},
      // Same values, the second kind dearer on model 0: the budget goes to the first kind.
      {"costs differ", TwoKinds(gains_more, costs_more, all_on_1 + 45 * 0.875 + 0.25, kUnlimited),
       45, 0, 45 * 0.875 + 55 * 0.5},
      // Same values and costs, the second kind may not use model 0.
      {"allowed differs", TwoKinds(gains_more, not_on_0, 1000.0, kUnlimited), 60, 0,
       60 * 0.875 + 40 * 0.5},
  };
  for (const Case& c : cases) {
    const absl::StatusOr<CbcResult> result =
        SolveWithCbc(c.inst, {.time_limit = kNoLimit, .relative_gap = 0.0});
    ASSERT_THAT(result, IsOk()) << c.name;
    ExpectWellFormed(c.inst, *result, 0.0);
    EXPECT_EQ(result->outcome, CbcOutcome::kOptimal) << c.name;
    EXPECT_NEAR(result->objective, c.objective, 1e-9) << c.name;
    EXPECT_EQ(OnModel0(result->model_of_query, /*first_kind=*/true), c.first_on_0) << c.name;
    EXPECT_EQ(OnModel0(result->model_of_query, /*first_kind=*/false), c.second_on_0) << c.name;
  }
}

TEST(CbcSolverTest, IncumbentUnderTinyTimeLimitIsNeverLost) {
  const RandomInstanceOptions o = {.num_queries = 300,
                                   .num_models = 10,
                                   .num_limited = 4,
                                   .slot_fraction = 0.05,
                                   .budget_fraction = 0.35,
                                   .seed = 7};
  const Instance inst = RandomInstance(o);
  const std::vector<int> start = CheapestAssignment(inst);
  ASSERT_TRUE(ServesAll(start));
  ASSERT_THAT(CheckFeasible(inst, start), IsOk());
  const absl::StatusOr<CbcResult> result =
      SolveWithCbc(inst, {.time_limit = absl::Microseconds(1), .incumbent = &start});
  ASSERT_THAT(result, IsOk());
  ExpectWellFormed(inst, *result, 0.0);
  ASSERT_NE(result->outcome, CbcOutcome::kNoSolution);
  ASSERT_NE(result->outcome, CbcOutcome::kInfeasible);
  EXPECT_GE(result->objective, AssignmentValue(inst, start));
}

TEST(CbcSolverTest, RejectsInfeasibleIncumbent) {
  RandomInstanceOptions o;
  o.num_queries = 8;
  o.num_models = 3;
  o.num_limited = 1;
  o.slot_fraction = 0.25;  // 2 slots on model 0
  o.budget_fraction = -1;
  const Instance inst = RandomInstance(o);
  const std::vector<int> all_on_limited(inst.num_queries, 0);
  EXPECT_THAT(SolveWithCbc(inst, {.incumbent = &all_on_limited}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("incumbent")));
  const std::vector<int> too_short(inst.num_queries - 1, 1);
  EXPECT_THAT(SolveWithCbc(inst, {.incumbent = &too_short}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("incumbent")));
  std::vector<int> unserved(inst.num_queries, 1);
  unserved[3] = kUnserved;
  EXPECT_THAT(SolveWithCbc(inst, {.incumbent = &unserved}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unserved")));
}

TEST(CbcSolverTest, RejectsBadOptions) {
  const Instance inst = RandomInstance(SmallOptions(3));
  EXPECT_THAT(SolveWithCbc(inst, {.time_limit = absl::ZeroDuration()}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("time_limit")));
  EXPECT_THAT(SolveWithCbc(inst, {.time_limit = -absl::Seconds(1)}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("time_limit")));
  EXPECT_THAT(SolveWithCbc(inst, {.relative_gap = 1.0}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("relative_gap")));
  EXPECT_THAT(SolveWithCbc(inst, {.relative_gap = -1e-3}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("relative_gap")));
  EXPECT_THAT(SolveWithCbc(inst, {.gamma = -0.5}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("gamma")));
  EXPECT_THAT(SolveWithCbc(inst, {.gamma = std::numeric_limits<double>::quiet_NaN()}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("gamma")));
}

TEST(CbcSolverTest, EmptyInstanceIsTriviallyOptimal) {
  Instance inst;
  inst.num_models = 2;
  inst.slots = {kUnlimited, 3};
  inst.budget = 1.0;
  for (double gamma : {0.0, 2.0}) {
    const absl::StatusOr<CbcResult> result = SolveWithCbc(inst, {.gamma = gamma});
    ASSERT_THAT(result, IsOk());
    EXPECT_EQ(result->outcome, CbcOutcome::kOptimal);
    EXPECT_TRUE(result->model_of_query.empty());
    EXPECT_EQ(result->objective, 0.0);
    EXPECT_EQ(result->best_bound, 0.0);
    EXPECT_EQ(result->nodes, 0);
  }
}

TEST(CbcSolverTest, ProvesInfeasibility) {
  // Two queries, one model with one slot.
  Instance inst;
  inst.num_queries = 2;
  inst.num_models = 1;
  inst.value = {0.5, 0.7};
  inst.deviation = {0.1, 0.1};
  inst.cost = {0.0, 0.0};
  inst.allowed = {1, 1};
  inst.slots = {1};
  const absl::StatusOr<CbcResult> result = SolveWithCbc(inst, {.time_limit = kNoLimit});
  ASSERT_THAT(result, IsOk());
  EXPECT_EQ(result->outcome, CbcOutcome::kInfeasible);
  EXPECT_TRUE(result->model_of_query.empty());
}

// CBC accepts solutions within its feasibility tolerance (about 1e-7); CheckFeasible does not.
// Here the LP optimum puts both queries on the dear model with x = 1 - 5e-10, which CBC takes as
// integral although the rounded assignment is over the budget by 1e-9.
TEST(CbcSolverTest, AnswerOverBudgetWithinCbcToleranceIsNotReturned) {
  Instance inst;
  inst.num_queries = 2;
  inst.num_models = 2;
  inst.value = {0.1, 0.9, 0.1, 0.9};
  inst.deviation = {0.0, 0.0, 0.0, 0.0};
  inst.cost = {0.0, 1.0, 0.0, 1.0};
  inst.allowed = {1, 1, 1, 1};
  inst.slots = {kUnlimited, kUnlimited};
  inst.budget = 2.0 - 1e-9;
  const absl::StatusOr<CbcResult> alone =
      SolveWithCbc(inst, {.time_limit = kNoLimit, .relative_gap = 0.0});
  ASSERT_THAT(alone, IsOk());
  ExpectWellFormed(inst, *alone, 0.0);
  EXPECT_NE(alone->outcome, CbcOutcome::kInfeasible);

  // With a start, the answer is the true optimum (one query on each model) whatever CBC did.
  const std::vector<int> start = {1, 0};
  const absl::StatusOr<CbcResult> seeded =
      SolveWithCbc(inst, {.time_limit = kNoLimit, .relative_gap = 0.0, .incumbent = &start});
  ASSERT_THAT(seeded, IsOk());
  ExpectWellFormed(inst, *seeded, 0.0);
  ASSERT_FALSE(seeded->model_of_query.empty());
  EXPECT_DOUBLE_EQ(seeded->objective, 1.0);
}

TEST(CbcSolverTest, TinyTimeLimitNeverReturnsAnInfeasibleAssignment) {
  for (uint64_t seed = 1; seed <= 3; ++seed) {
    const RandomInstanceOptions o = {.num_queries = 300,
                                     .num_models = 10,
                                     .num_limited = 4,
                                     .slot_fraction = 0.05,
                                     .budget_fraction = 0.35,
                                     .disallow_probability = 0.2,
                                     .seed = seed};
    const Instance inst = RandomInstance(o);
    for (absl::Duration limit : {absl::Microseconds(1), absl::Milliseconds(5)}) {
      const absl::StatusOr<CbcResult> result = SolveWithCbc(inst, {.time_limit = limit});
      ASSERT_THAT(result, IsOk());
      ExpectWellFormed(inst, *result, 0.0);
      // The instance is feasible (the cheapest assignment serves everyone within budget), so
      // running out of time is the only excuse for having no answer.
      EXPECT_NE(result->outcome, CbcOutcome::kInfeasible) << "seed " << seed;
    }
  }
}

// A CBC re-entrancy regression: the same instances solved on several
// threads at once must give exactly the single-threaded answers.
TEST(CbcSolverTest, ConcurrentSolvesMatchSingleThreaded) {
  constexpr int kInstances = 8;
  constexpr int kThreads = 4;
  std::vector<Instance> instances;
  for (uint64_t seed = 1000; static_cast<int>(instances.size()) < kInstances; ++seed) {
    const RandomInstanceOptions o = {.num_queries = 30,
                                     .num_models = 4,
                                     .num_limited = 2,
                                     .slot_fraction = 0.2,
                                     .budget_fraction = 0.3,
                                     .adversarial = seed % 2 == 0,
                                     .seed = seed};
    Instance inst = RandomInstance(o);
    // Only instances with a serving assignment: an infeasible one would test nothing.
    const std::vector<int> cheapest = CheapestAssignment(inst);
    if (ServesAll(cheapest) && CheckFeasible(inst, cheapest).ok()) {
      instances.push_back(std::move(inst));
    }
  }
  auto options_for = [](int k) {
    // Some robust, so both model shapes run concurrently. No limit can hit: the answers must not
    // depend on timing. The gap keeps the test near a second; it stops CBC deterministically.
    return CbcOptions{.time_limit = kNoLimit, .relative_gap = 1e-2, .gamma = k % 4 ? 0.0 : 2.0};
  };
  std::vector<double> reference(kInstances);
  for (int k = 0; k < kInstances; ++k) {
    const absl::StatusOr<CbcResult> result = SolveWithCbc(instances[k], options_for(k));
    ASSERT_THAT(result, IsOk());
    ASSERT_EQ(result->outcome, CbcOutcome::kOptimal);
    reference[k] = result->objective;
  }

  std::vector<std::vector<double>> got(kThreads, std::vector<double>(kInstances, -1.0));
  std::vector<std::vector<bool>> ok(kThreads, std::vector<bool>(kInstances, false));
  {
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int n = 0; n < kInstances; ++n) {
          const int k = (n + 3 * t) % kInstances;  // threads work on different instances at once
          const absl::StatusOr<CbcResult> result = SolveWithCbc(instances[k], options_for(k));
          if (!result.ok() || result->outcome != CbcOutcome::kOptimal) continue;
          ok[t][k] = CheckFeasible(instances[k], result->model_of_query).ok();
          got[t][k] = result->objective;
        }
      });
    }
    for (std::thread& thread : threads) thread.join();
  }
  for (int t = 0; t < kThreads; ++t) {
    for (int k = 0; k < kInstances; ++k) {
      EXPECT_TRUE(ok[t][k]) << "thread " << t << " instance " << k;
      EXPECT_EQ(got[t][k], reference[k]) << "thread " << t << " instance " << k;
    }
  }
}

}  // namespace
}  // namespace router::core
