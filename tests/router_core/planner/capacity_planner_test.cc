#include "router_core/planner/capacity_planner.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "router_core/planner/plan_problem.h"
#include "tests/router_core/planner/plan_testing.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::core {
namespace {

using testing::Api;
using testing::CheckPlan;
using testing::EnumerateOptimum;
using testing::MakeQuery;
using testing::RandomScenario;
using testing::RandomScenarioOptions;
using testing::SelfHosted;

CapacityPlanner MakePlanner(const PlannerOptions& options = {}) {
  absl::StatusOr<CapacityPlanner> planner = CapacityPlanner::Create(options);
  EXPECT_THAT(planner, IsOk());
  return *planner;
}

// What a scenario without a plan says: minimums that do not fit, or no plan (proven or found).
bool SaysNoPlan(absl::string_view message) {
  return absl::StrContains(message, "no plan") || absl::StrContains(message, "exceed gpu_budget");
}

// Proven impossible (INVALID_ARGUMENT), or, without CBC, none found in time (DEADLINE_EXCEEDED).
MATCHER(IsNoPlanError, "is INVALID_ARGUMENT or DEADLINE_EXCEEDED about a missing plan") {
  const absl::Status& s = arg.status();
  *result_listener << "status is " << s.ToString();
  return (s.code() == absl::StatusCode::kInvalidArgument ||
          s.code() == absl::StatusCode::kDeadlineExceeded) &&
         SaysNoPlan(s.message());
}

// Small scenarios across shapes: 1-3 batches of 2-4 queries, 3 models (1-2 self-hosted), budgets of
// 0-6 GPUs, caps from none to tight, some with allowed lists and operator bounds.
RandomScenarioOptions SmallOptions(uint64_t seed) {
  RandomScenarioOptions o;
  o.seed = seed;
  o.num_batches = 1 + static_cast<int>(seed % 3);
  o.queries_per_batch = 2 + static_cast<int>((seed / 3) % 3);
  o.num_models = 3;
  o.num_self_hosted = 1 + static_cast<int>(seed % 2);
  o.gpu_budget = static_cast<int64_t>(seed % 7);
  const double caps[] = {-1.0, 0.1, 0.3, 0.6};
  o.cap_fraction = caps[(seed / 2) % 4];
  o.disallow_probability = seed % 5 == 0 ? 0.4 : 0.0;
  o.operator_bounds = seed % 4 == 3;
  return o;
}

// The optimum of enumeration equals the plan's objective (proven, gap 0), and infeasible scenarios
// are refused with INVALID_ARGUMENT.
TEST(CapacityPlannerTest, ExactPlanEqualsEnumeratedOptimum) {
  const CapacityPlanner planner = MakePlanner();
  int feasible = 0, infeasible = 0;
  for (uint64_t seed = 1; seed <= 80; ++seed) {
    SCOPED_TRACE(seed);
    PlanProblem problem = RandomScenario(SmallOptions(seed));
    problem.relative_gap = 0.0;
    const std::optional<testing::EnumeratedOptimum> best = EnumerateOptimum(problem);
    const absl::StatusOr<CapacityPlan> plan = planner.Plan(problem);
    if (!best.has_value()) {
      ASSERT_FALSE(plan.ok());
      EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_TRUE(SaysNoPlan(plan.status().message())) << plan.status();
      ++infeasible;
      continue;
    }
    ++feasible;
    ASSERT_THAT(plan, IsOk());
    EXPECT_THAT(CheckPlan(problem, *plan), IsOk());
    EXPECT_NEAR(plan->objective, best->objective, 1e-7);
    EXPECT_EQ(plan->status, SolveStatus::kOptimal);
    EXPECT_GE(plan->upper_bound, best->objective - 1e-7);
  }
  // The shapes must exercise both outcomes, or the test proves less than it claims.
  EXPECT_GT(feasible, 40);
  EXPECT_GT(infeasible, 3);
}

// Without CBC the local search returns a feasible plan no better than the optimum, and its bound
// (the certified LP bound) is never below the optimum.
TEST(CapacityPlannerTest, LocalSearchPlanIsFeasibleAndBoundIsValid) {
  const CapacityPlanner planner = MakePlanner({.use_exact = false});
  int planned = 0;
  for (uint64_t seed = 1; seed <= 80; ++seed) {
    SCOPED_TRACE(seed);
    const PlanProblem problem = RandomScenario(SmallOptions(seed));
    const std::optional<testing::EnumeratedOptimum> best = EnumerateOptimum(problem);
    const absl::StatusOr<CapacityPlan> plan = planner.Plan(problem);
    if (!best.has_value()) {
      EXPECT_THAT(plan, IsNoPlanError());
      continue;
    }
    if (!plan.ok()) {
      // Feasibility is NP-hard in general; without CBC the search may miss it, but must say so.
      EXPECT_THAT(plan, StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("no plan")));
      continue;
    }
    ++planned;
    EXPECT_THAT(CheckPlan(problem, *plan), IsOk());
    EXPECT_EQ(plan->method, "local_search");
    EXPECT_LE(plan->objective, best->objective + 1e-7);
    EXPECT_GE(plan->upper_bound, best->objective - 1e-7);
    EXPECT_GE(plan->lp_bound, best->objective - 1e-7);
  }
  EXPECT_GT(planned, 40);
}

// Larger random scenarios: every returned plan meets the GPU budget and every per-batch slot and
// cost limit, and its bound is at least its objective.
TEST(CapacityPlannerTest, PlansRespectEveryLimit) {
  for (const bool exact : {true, false}) {
    const CapacityPlanner planner = MakePlanner({.use_exact = exact});
    int planned = 0;
    for (uint64_t seed = 100; seed < 130; ++seed) {
      SCOPED_TRACE(seed);
      RandomScenarioOptions o;
      o.seed = seed;
      o.num_batches = 2 + static_cast<int>(seed % 4);
      o.queries_per_batch = 10 + static_cast<int>(seed % 11);
      o.num_models = 5;
      o.num_self_hosted = 3;
      o.gpu_budget = 4 + static_cast<int64_t>(seed % 9);
      o.cap_fraction = 0.3 + 0.1 * static_cast<double>(seed % 4);
      o.disallow_probability = seed % 3 == 0 ? 0.3 : 0.0;
      o.operator_bounds = seed % 2 == 0;
      PlanProblem problem = RandomScenario(o);
      problem.time_limit = absl::Seconds(5);
      problem.relative_gap = 1e-3;  // feasibility is the point here, not the last 0.1%
      const absl::StatusOr<CapacityPlan> plan = planner.Plan(problem);
      if (!plan.ok()) {
        EXPECT_THAT(plan, IsNoPlanError());
        continue;
      }
      ++planned;
      EXPECT_THAT(CheckPlan(problem, *plan), IsOk());
      EXPECT_GE(plan->upper_bound, plan->objective);
      EXPECT_LE(plan->upper_bound, plan->lp_bound + 1e-9);
    }
    EXPECT_GT(planned, 20);
  }
}

// The hand-made scenario of docs/planner.md in miniature: one strong self-hosted model with few
// slots, one weak one with many, an expensive API model. Checked by hand: with 4 GPUs the best plan
// is two instances of `strong` (4 slots) rather than four of `weak`.
PlanProblem HandScenario() {
  PlanProblem p;
  p.models = {SelfHosted("strong", 2, 2),
              SelfHosted("weak", 1, 4),
              Api("api")};
  p.gpu_budget = 4;
  p.avg_cost_cap = 0.0;  // the API model is unaffordable: every query is self-hosted
  p.batches.resize(2);
  for (int b = 0; b < 2; ++b) {
    for (int i = 0; i < 4; ++i) {
      p.batches[b].push_back(
          MakeQuery(absl::StrCat("q", b, "_", i), {0.9, 0.5, 1.0}, {0, 0, 0.01}));
    }
  }
  return p;
}

TEST(CapacityPlannerTest, HandScenarioHasTheExpectedPlan) {
  const absl::StatusOr<CapacityPlan> plan = MakePlanner().Plan(HandScenario());
  ASSERT_THAT(plan, IsOk());
  EXPECT_EQ(plan->instances, (std::vector<int64_t>{2, 0, 0}));
  EXPECT_EQ(plan->gpus_used, 4);
  EXPECT_NEAR(plan->objective, 8 * 0.9, 1e-9);
  EXPECT_EQ(plan->status, SolveStatus::kOptimal);
}

TEST(CapacityPlannerTest, PinsAndBoundsAreHonoured) {
  PlanProblem p = HandScenario();
  p.models[0].pin = ModelPin::kOff;  // strong off: only weak can serve
  absl::StatusOr<CapacityPlan> plan = MakePlanner().Plan(p);
  ASSERT_THAT(plan, IsOk());
  EXPECT_EQ(plan->instances, (std::vector<int64_t>{0, 1, 0}));
  EXPECT_NEAR(plan->objective, 8 * 0.5, 1e-9);

  p = HandScenario();
  p.models[1].min_instances = 2;  // 2 GPUs forced onto weak: one strong instance is left
  plan = MakePlanner().Plan(p);
  ASSERT_THAT(plan, IsOk());
  EXPECT_EQ(plan->instances, (std::vector<int64_t>{1, 2, 0}));
  EXPECT_NEAR(plan->objective, 2 * (2 * 0.9 + 2 * 0.5), 1e-9);

  p = HandScenario();
  p.models[1].pin = ModelPin::kOn;  // at least one weak instance
  plan = MakePlanner().Plan(p);
  ASSERT_THAT(plan, IsOk());
  EXPECT_GE(plan->instances[1], 1);
  EXPECT_THAT(CheckPlan(p, *plan), IsOk());
}

TEST(CapacityPlannerTest, InfeasibleScenariosGiveClearErrors) {
  const CapacityPlanner planner = MakePlanner();
  PlanProblem p = HandScenario();
  p.models[0].min_instances = 3;  // 6 GPUs of 4
  EXPECT_THAT(planner.Plan(p),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("models[0] (strong): min_instances 3 x 2 GPUs = 6 GPUs exceed "
                                 "gpu_budget 4")));

  p = HandScenario();
  p.models[0].gpus_per_instance = 8;  // needs more GPUs than exist
  p.models[0].pin = ModelPin::kOn;
  EXPECT_THAT(planner.Plan(p), StatusIs(absl::StatusCode::kInvalidArgument,
                                        HasSubstr("pinned on: 1 instance x 8 GPUs")));

  p = HandScenario();
  p.gpu_budget = -1;
  EXPECT_THAT(planner.Plan(p),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("gpu_budget: -1 is negative")));

  p = HandScenario();
  p.gpu_budget = 0;  // no self-hosted capacity and the API model is unaffordable
  EXPECT_THAT(planner.Plan(p), StatusIs(absl::StatusCode::kInvalidArgument,
                                        HasSubstr("batches[0][0] ('q0_0'): no plan can serve it")));

  // Each batch can be served on its own (batch 0 by `strong`, batch 1 by `weak`, one instance
  // each), but not both within 2 GPUs: only the LP relaxation or CBC can tell.
  p = HandScenario();
  p.gpu_budget = 2;
  p.models[0].slots_per_instance = 4;
  p.models[1].gpus_per_instance = 2;
  for (Query& q : p.batches[0]) q.allowed = {"strong", "api"};
  for (Query& q : p.batches[1]) q.allowed = {"weak", "api"};
  EXPECT_THAT(planner.Plan(p), StatusIs(absl::StatusCode::kInvalidArgument,
                                        HasSubstr("no plan exists")));
}

TEST(CapacityPlannerTest, CreateRejectsBadOptions) {
  EXPECT_THAT(CapacityPlanner::Create({.max_exact_columns = 0}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_exact_columns")));
  EXPECT_THAT(CapacityPlanner::Create({.min_exact_time = absl::Milliseconds(-1)}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("min_exact_time")));
  EXPECT_THAT(CapacityPlanner::Create({.max_evaluations = 0}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_evaluations")));
}

}  // namespace
}  // namespace router::core
