#include "router_core/planner/allocation.h"

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/router_core/planner/plan_testing.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::core {
namespace {

using testing::Api;
using testing::MakeQuery;
using testing::SelfHosted;

// Three self-hosted models and an API model; batches large enough that no bound caps the shares.
PlanProblem Scenario(int64_t gpu_budget) {
  PlanProblem p;
  p.models = {SelfHosted("a", 4, 1),
              SelfHosted("b", 2, 1),
              SelfHosted("c", 1, 1),
              Api("api")};
  p.gpu_budget = gpu_budget;
  p.batches.resize(1);
  for (int i = 0; i < 40; ++i) {
    // Mean qualities a 0.8, b 0.4, c 0.2 (the proportional weights).
    p.batches[0].push_back(
        MakeQuery(absl::StrCat("q", i), {0.8, 0.4, 0.2, 0.5}, {0, 0, 0, 0.01}));
  }
  return p;
}

TEST(AllocationTest, UniformGivesEqualGpuShares) {
  // 24 GPUs, 8 each: a 2 x 4, b 4 x 2, c 8 x 1.
  absl::StatusOr<std::vector<int64_t>> uniform = UniformAllocation(Scenario(24));
  ASSERT_THAT(uniform, IsOk());
  EXPECT_EQ(*uniform, (std::vector<int64_t>{2, 4, 8, 0}));
}

TEST(AllocationTest, ProportionalFollowsMeanQuality) {
  // 28 GPUs in ratio 0.8 : 0.4 : 0.2 = 16 : 8 : 4 GPUs -> a 4, b 4, c 4 instances.
  absl::StatusOr<std::vector<int64_t>> proportional = ProportionalAllocation(Scenario(28));
  ASSERT_THAT(proportional, IsOk());
  EXPECT_EQ(*proportional, (std::vector<int64_t>{4, 4, 4, 0}));
}

TEST(AllocationTest, LeftoverGpusGoToModelsThatStillFit) {
  // 7 GPUs: shares of 7/3 each; a (4 GPUs) first takes 4 as the lowest key 4/1 ties with nothing
  // smaller, then c and b fill the rest. Every GPU is used.
  absl::StatusOr<std::vector<int64_t>> uniform = UniformAllocation(Scenario(7));
  ASSERT_THAT(uniform, IsOk());
  int64_t gpus = 0;
  const std::vector<int64_t> g = {4, 2, 1, 0};
  for (size_t j = 0; j < g.size(); ++j) gpus += g[j] * (*uniform)[j];
  EXPECT_EQ(gpus, 7);
}

TEST(AllocationTest, BaselinesRespectBoundsAndPins) {
  PlanProblem p = Scenario(24);
  p.models[0].pin = ModelPin::kOff;
  p.models[1].max_instances = 1;
  p.models[2].min_instances = 3;
  absl::StatusOr<std::vector<int64_t>> uniform = UniformAllocation(p);
  ASSERT_THAT(uniform, IsOk());
  EXPECT_EQ((*uniform)[0], 0);
  EXPECT_EQ((*uniform)[1], 1);
  EXPECT_EQ((*uniform)[2], 22);  // everything else fits only on c

  p.models[2].min_instances = 30;
  EXPECT_THAT(UniformAllocation(p),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("models[2] (c): min_instances 30 x 1 GPUs = 30 GPUs exceed "
                                 "gpu_budget 24")));
}

TEST(AllocationTest, EvaluationRoutesEveryBatchUnderTheAllocation) {
  PlanProblem p = Scenario(24);
  p.avg_cost_cap = 0.0;  // the API model is unaffordable
  // 2 slots of a, 4 of b: 6 queries served (0.8 x 2 + 0.4 x 4), 34 left unserved.
  absl::StatusOr<AllocationEvaluation> e = EvaluateAllocation(p, {2, 4, 0, 0});
  ASSERT_THAT(e, IsOk());
  EXPECT_NEAR(e->objective, 2 * 0.8 + 4 * 0.4, 1e-9);
  EXPECT_EQ(e->num_queries, 40);
  EXPECT_EQ(e->unserved, 34);
  EXPECT_DOUBLE_EQ(e->total_cost, 0.0);

  // Uncapped, the API model (0.5) beats b (0.4): only a's 2 slots stay self-hosted.
  p.avg_cost_cap.reset();
  e = EvaluateAllocation(p, {2, 4, 0, 0});
  ASSERT_THAT(e, IsOk());
  EXPECT_NEAR(e->objective, 2 * 0.8 + 38 * 0.5, 1e-9);
  EXPECT_EQ(e->unserved, 0);
  EXPECT_NEAR(e->total_cost, 38 * 0.01, 1e-12);
  EXPECT_NEAR(e->mean_quality, e->objective / 40, 1e-12);
}

TEST(AllocationTest, EvaluationRejectsImpossibleAllocations) {
  const PlanProblem p = Scenario(8);
  EXPECT_THAT(EvaluateAllocation(p, {1, 1, 1}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("one per model (4)")));
  EXPECT_THAT(EvaluateAllocation(p, {2, 1, 0, 0}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("use 10 GPUs")));
  EXPECT_THAT(EvaluateAllocation(p, {0, 0, 0, 1}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("instances[3]")));
}

}  // namespace
}  // namespace router::core
