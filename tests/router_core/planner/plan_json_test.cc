#include "router_core/planner/plan_json.h"

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::core {
namespace {


constexpr char kScenario[] = R"({
  "gpu_budget": 12, "avg_cost_cap": 0.002, "time_limit_ms": 2000, "relative_gap": 0.001,
  "models": [{"name": "llama", "gpus_per_instance": 4, "slots_per_instance": 2,
              "min_instances": 1, "max_instances": 3, "pin": "on"},
             {"name": "gpt"}],
  "batches": [[{"id": "q0", "quality": [0.7, 0.9], "cost": [0.0, 0.004]},
               {"id": "q1", "quality": [0.6, 0.8], "cost": [0.0, 0.001],
                "allowed": ["llama"]}]]})";

TEST(PlanJsonTest, ParsesEveryField) {
  absl::StatusOr<Scenario> s = ParseScenarioJson(kScenario);
  ASSERT_THAT(s, IsOk());
  const PlanProblem& p = s->problem;
  EXPECT_EQ(p.gpu_budget, 12);
  EXPECT_DOUBLE_EQ(*p.avg_cost_cap, 0.002);
  EXPECT_EQ(p.time_limit, absl::Seconds(2));
  EXPECT_DOUBLE_EQ(p.relative_gap, 0.001);
  ASSERT_EQ(p.models.size(), 2u);
  EXPECT_EQ(*p.models[0].gpus_per_instance, 4);
  EXPECT_EQ(*p.models[0].slots_per_instance, 2);
  EXPECT_EQ(p.models[0].min_instances, 1);
  EXPECT_EQ(*p.models[0].max_instances, 3);
  EXPECT_EQ(p.models[0].pin, ModelPin::kOn);
  EXPECT_FALSE(p.models[1].self_hosted());
  ASSERT_EQ(p.batches.size(), 1u);
  EXPECT_EQ(p.batches[0][1].allowed, (std::vector<std::string>{"llama"}));
  EXPECT_TRUE(s->baselines);
}

TEST(PlanJsonTest, ErrorsNameTheField) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"gpu_budget": 4, "models": [{"name": "m", "gpus_per_instance": "four",
           "slots_per_instance": 1}], "batches": [[{"id": "q", "quality": [1], "cost": [0]}]]})",
       "models[0].gpus_per_instance: expected an integer, got string"},
      {R"({"gpu_budget": 4, "models": [{"name": "m"}],
           "batches": [[{"id": "q", "quality": [1], "cost": [0]},
                        {"id": "r", "quality": [1], "cost": ["x"]}]]})",
       "batches[0][1].cost[0]: expected a number, got string"},
      {R"({"gpu_budget": -4, "models": [{"name": "m"}],
           "batches": [[{"id": "q", "quality": [1], "cost": [0]}]]})",
       "gpu_budget: -4 is negative"},
      {R"({"models": [{"name": "m"}], "batches": [[{"id": "q", "quality": [1], "cost": [0]}]]})",
       "gpu_budget: required field missing"},
      {R"({"gpu_budget": 4, "models": [{"name": "m", "pin": "maybe"}],
           "batches": [[{"id": "q", "quality": [1], "cost": [0]}]]})",
       "models[0].pin: expected \"on\" or \"off\""},
      {R"({"gpu_budget": 4, "gpu": 1, "models": [{"name": "m"}],
           "batches": [[{"id": "q", "quality": [1], "cost": [0]}]]})",
       "gpu: unknown field"},
      {R"({"gpu_budget": 4, "models": [{"name": "m"}], "batches": [{"id": "q"}]})",
       "batches[0]: expected an array of queries, got object"},
      {R"({"gpu_budget": 4, "models": [{"name": "m"}],
           "batches": [[{"id": "q", "quality": [2], "cost": [0]}]]})",
       "batches[0][0].quality[0]: 2 is outside [0, 1]"},
      {R"({"gpu_budget": 4.5, "models": [{"name": "m"}], "batches": []})",
       "gpu_budget: expected an integer, got 4.5"},
      {R"({"gpu_budget": 4, )", "invalid JSON: "},
      // The parser's overflow is an error naming the literal and its byte, never an exception.
      {R"({"gpu_budget": 1e999, "models": [], "batches": []})",
       "invalid JSON: number overflow parsing '1e999' (byte 20)"},
      {R"({"gpu_budget": 4, "models": [{"name": "m", "pin": "maybe"}], "batches": []})",
       R"(models[0].pin: expected "on" or "off", got "maybe")"},
  };
  for (const auto& [text, message] : cases) {
    SCOPED_TRACE(message);
    EXPECT_THAT(ParseScenarioJson(text),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(message)));
  }
}

TEST(PlanJsonTest, AnswerHasTheDocumentedKeys) {
  absl::StatusOr<Scenario> s = ParseScenarioJson(kScenario);
  ASSERT_THAT(s, IsOk());
  CapacityPlan plan;
  plan.instances = {2, 0};
  plan.gpus_used = 8;
  plan.objective = 1.4;
  plan.upper_bound = 1.5;
  plan.status = SolveStatus::kFeasible;
  plan.method = "cbc";
  AllocationEvaluation e{.objective = 1.4, .num_queries = 2, .mean_quality = 0.7};
  const std::string text =
      PlanToJson(s->problem, plan, e, BaselineReport{{1, 0}, e, {3, 0}, e});
  const nlohmann::ordered_json d = nlohmann::ordered_json::parse(text);
  std::vector<std::string> keys;
  for (const auto& [key, value] : d.items()) keys.push_back(key);
  EXPECT_EQ(keys, (std::vector<std::string>{"instances", "gpus_used", "objective", "upper_bound",
                                            "gap", "status", "solve_ms", "method", "lp_bound",
                                            "evaluations", "nodes", "num_queries", "mean_quality",
                                            "evaluation", "baselines"}));
  EXPECT_EQ(d["instances"], nlohmann::ordered_json({{"llama", 2}}));  // API models have none
  EXPECT_EQ(d["status"], "FEASIBLE");
  EXPECT_TRUE(d["lp_bound"].is_null());  // +infinity
  EXPECT_EQ(d["baselines"]["proportional"]["instances"]["llama"], 3);
  EXPECT_EQ(d["baselines"]["uniform"]["gpus_used"], 4);
  EXPECT_FALSE(nlohmann::ordered_json::parse(PlanToJson(s->problem, plan, e, std::nullopt))
                   .contains("baselines"));
}

}  // namespace
}  // namespace router::core
