// File: plan_json.h
//
// JSON codec of a planning scenario and of its answer: the format read by router_plan, documented
// field by field with an example in docs/planner.md.
//
// Input (keys not marked required are optional; unknown keys are errors, so typos surface):
//   {"gpu_budget":88,                                   // required, integer >= 0
//    "avg_cost_cap":0.002,                              // USD per query; absent or null = no cap
//    "time_limit_ms":10000, "relative_gap":0.0001,      // defaults 10000 and 1e-4
//    "baselines":true,                                  // default true: evaluate the baselines too
//    "models":[{"name":"llama-70b","gpus_per_instance":4,"slots_per_instance":4,   // required
//               "min_instances":0,"max_instances":20,"pin":"on"},                   // pin: on|off
//              {"name":"gpt-4o"}],                      // no gpus_per_instance = API model
//    "batches":[[{"id":"q0","quality":[0.7,0.9],"cost":[0.0,0.004],   // required; id, quality,
//                 "allowed":["llama-70b","gpt-4o"]}]]}                 // cost required per query
//
// Output: one line, keys in this order:
//   {"instances":{"llama-70b":3},"gpus_used":12,"objective":..,"upper_bound":..,"gap":..,
//    "status":"OPTIMAL","solve_ms":..,"method":"cbc","lp_bound":.. or null,"evaluations":..,
//    "nodes":..,"num_queries":..,"mean_quality":..,
//    "evaluation":{"objective":..,"mean_quality":..,"unserved":0,"total_cost":..},
//    "baselines":{"uniform":{"instances":{..},"gpus_used":..,"objective":..,"mean_quality":..,
//                            "unserved":..,"total_cost":..},"proportional":{..}}}
// "instances" lists every self-hosted model (API models have none). "evaluation" and "baselines"
// route every sampled batch with SolveBatch under each allocation (allocation.h), so the three
// are comparable; "baselines" is absent when the scenario sets "baselines":false.
//
// Thread-safety: pure functions.
//
// Errors: ParseScenarioJson returns INVALID_ARGUMENT naming the field path
// (`models[1].gpus_per_instance: expected an integer, got string`, `batches[0][2].cost[1]: ...`),
// `invalid JSON: <parser message>` for malformed text, or the error of ValidatePlanProblem.

#ifndef ROUTER_CORE_PLANNER_PLAN_JSON_H_
#define ROUTER_CORE_PLANNER_PLAN_JSON_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "router_core/planner/allocation.h"
#include "router_core/planner/capacity_planner.h"
#include "router_core/planner/plan_problem.h"

namespace router::core {

struct Scenario {
  PlanProblem problem;
  // Whether the answer should carry the uniform and proportional baselines.
  bool baselines = true;
};

// Parses and validates a scenario.
absl::StatusOr<Scenario> ParseScenarioJson(absl::string_view text);

// The evaluated baselines of the output; nullopt = leave "baselines" out.
struct BaselineReport {
  std::vector<int64_t> uniform;
  AllocationEvaluation uniform_evaluation;
  std::vector<int64_t> proportional;
  AllocationEvaluation proportional_evaluation;
};

// Renders the answer as one line of JSON (no trailing newline); non-finite numbers become null.
std::string PlanToJson(const PlanProblem& problem, const CapacityPlan& plan,
                       const AllocationEvaluation& evaluation,
                       const std::optional<BaselineReport>& baselines);

// The whole router_plan job, shared by the CLI and RouterAdmin.PlanInstances: parses the scenario,
// plans, evaluates the plan (and the baselines when the scenario asks for them) and renders the
// answer. Errors: those of ParseScenarioJson, CapacityPlanner::Plan and EvaluateAllocation.
absl::StatusOr<std::string> PlanScenarioJson(absl::string_view scenario_text);

}  // namespace router::core

#endif  // ROUTER_CORE_PLANNER_PLAN_JSON_H_
