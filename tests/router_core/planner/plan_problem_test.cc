#include "router_core/planner/plan_problem.h"

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/router_core/planner/plan_testing.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::core {
namespace {

using testing::Api;
using testing::MakeQuery;
using testing::SelfHosted;

PlanProblem Valid() {
  PlanProblem p;
  p.models = {SelfHosted("big", 8, 2),
              SelfHosted("small", 1, 16),
              Api("api")};
  p.gpu_budget = 24;
  p.avg_cost_cap = 0.002;
  p.batches = {{MakeQuery("q0", {0.9, 0.5, 0.95}, {0, 0, 0.004}),
                MakeQuery("q1", {0.8, 0.6, 0.9}, {0, 0, 0.003})},
               {MakeQuery("q0", {0.7, 0.4, 0.8}, {0, 0, 0.002})}};
  return p;
}

TEST(PlanProblemTest, ValidScenarioPasses) { EXPECT_THAT(ValidatePlanProblem(Valid()), IsOk()); }

// Each case breaks one field; the error must name it.
TEST(PlanProblemTest, InvalidFieldsAreNamed) {
  struct Case {
    std::function<void(PlanProblem&)> mutate;
    std::string message;
  };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const std::vector<Case> cases = {
      {[](PlanProblem& p) { p.models.clear(); }, "models: at least one model"},
      {[](PlanProblem& p) { p.models[1].name = "big"; }, "models[1].name: duplicate model 'big'"},
      {[](PlanProblem& p) { p.models[0].name = ""; }, "models[0].name: empty"},
      {[](PlanProblem& p) { p.gpu_budget = -8; }, "gpu_budget: -8 is negative"},
      {[](PlanProblem& p) { p.models[0].gpus_per_instance = 0; },
       "models[0].gpus_per_instance: 0 must be > 0"},
      {[](PlanProblem& p) { p.models[1].slots_per_instance = -2; },
       "models[1].slots_per_instance: -2 must be > 0"},
      {[](PlanProblem& p) { p.models[1].slots_per_instance.reset(); },
       "models[1].slots_per_instance: required for a self-hosted model"},
      {[](PlanProblem& p) { p.models[2].slots_per_instance = 4; },
       "models[2].gpus_per_instance: required with slots_per_instance"},
      {[](PlanProblem& p) { p.models[0].min_instances = -1; },
       "models[0].min_instances: -1 is negative"},
      {[](PlanProblem& p) {
         p.models[0].min_instances = 3;
         p.models[0].max_instances = 2;
       },
       "models[0].max_instances: 2 is below min_instances 3"},
      {[](PlanProblem& p) { p.models[2].max_instances = 1; },
       "models[2].max_instances: only self-hosted models"},
      {[](PlanProblem& p) {
         p.models[0].pin = ModelPin::kOff;
         p.models[0].min_instances = 1;
       },
       "models[0].pin: pinned off but min_instances is 1"},
      {[](PlanProblem& p) {
         p.models[0].pin = ModelPin::kOn;
         p.models[0].max_instances = 0;
       },
       "models[0].pin: pinned on but max_instances is 0"},
      {[](PlanProblem& p) { p.avg_cost_cap = -0.1; }, "avg_cost_cap: -0.1 is negative"},
      {[nan](PlanProblem& p) { p.avg_cost_cap = nan; }, "avg_cost_cap: not a finite number"},
      {[](PlanProblem& p) { p.batches.clear(); }, "batches: at least one batch"},
      {[](PlanProblem& p) { p.batches[1].clear(); }, "batches[1]: empty batch"},
      {[](PlanProblem& p) { p.batches[0][1].quality[2] = 1.5; },
       "batches[0][1].quality[2]: 1.5 is outside [0, 1]"},
      {[nan](PlanProblem& p) { p.batches[1][0].quality[0] = nan; },
       "batches[1][0].quality[0]: NaN"},
      {[](PlanProblem& p) { p.batches[0][0].cost.pop_back(); },
       "batches[0][0].cost: has 2 entries, expected one per model (3)"},
      {[](PlanProblem& p) { p.batches[0][0].cost[2] = -1; }, "batches[0][0].cost[2]"},
      {[](PlanProblem& p) { p.batches[0][1].allowed = {"api", "gpt-5"}; },
       "batches[0][1].allowed[1]: unknown model 'gpt-5'"},
      {[](PlanProblem& p) { p.batches[0][1].id = "q0"; },
       "batches[0][1].id: duplicate query id 'q0'"},
      {[](PlanProblem& p) { p.time_limit = absl::ZeroDuration(); }, "time_limit: must be > 0"},
      {[](PlanProblem& p) { p.relative_gap = 1.0; }, "relative_gap: must be in [0, 1)"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.message);
    PlanProblem p = Valid();
    c.mutate(p);
    EXPECT_THAT(ValidatePlanProblem(p),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)));
  }
}

TEST(PlanProblemTest, BoundsApplyPinsBudgetAndLargestBatch) {
  PlanProblem p = Valid();
  // big: 24 GPUs / 8 = 3, but 2 queries need only 1 instance of 2 slots.
  // small: 24 GPUs / 1 = 24, but 2 queries need only 1 instance of 16 slots.
  InstanceBounds b = ComputeInstanceBounds(p);
  EXPECT_EQ(b.lo, (std::vector<int64_t>{0, 0, 0}));
  EXPECT_EQ(b.hi, (std::vector<int64_t>{1, 1, 0}));

  p.models[1].min_instances = 20;  // leaves 4 GPUs: no instance of big fits
  p.models[0].pin = ModelPin::kOn;
  b = ComputeInstanceBounds(p);
  EXPECT_EQ(b.lo, (std::vector<int64_t>{1, 20, 0}));
  EXPECT_EQ(b.hi, (std::vector<int64_t>{1, 20, 0}));

  p = Valid();
  p.models[0].pin = ModelPin::kOff;
  p.models[1].max_instances = 0;
  b = ComputeInstanceBounds(p);
  EXPECT_EQ(b.hi, (std::vector<int64_t>{0, 0, 0}));
}

TEST(PlanProblemTest, BatchInstancesCarryPlanSlotsAndCap) {
  PlanProblem p = Valid();
  p.models[2].pin = ModelPin::kOff;
  std::vector<Instance> batches = BuildBatchInstances(p, {2, 1, 0});
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_EQ(batches[0].slots, (std::vector<int64_t>{4, 16, 0}));  // API pinned off: 0 slots
  EXPECT_DOUBLE_EQ(batches[0].budget, 0.004);                     // 0.002 x 2 queries
  EXPECT_DOUBLE_EQ(batches[1].budget, 0.002);
  SetSlots(p, {0, 3, 0}, batches);
  EXPECT_EQ(batches[1].slots, (std::vector<int64_t>{0, 48, 0}));
  EXPECT_EQ(GpusUsed(p, {2, 3, 0}), 19);
}

}  // namespace
}  // namespace router::core
