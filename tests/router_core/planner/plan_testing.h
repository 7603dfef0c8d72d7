// File: plan_testing.h
//
// Test-only helpers for the capacity planner: random scenarios shaped like routing data (built on
// testing/random_instance.h, split into batches), an exhaustive reference optimum, and an
// independent check of every constraint a plan must meet.

#ifndef ROUTER_TESTS_ROUTER_CORE_PLANNER_PLAN_TESTING_H_
#define ROUTER_TESTS_ROUTER_CORE_PLANNER_PLAN_TESTING_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "router_core/planner/capacity_planner.h"
#include "router_core/planner/plan_problem.h"

namespace router::core::testing {

// Short constructors (designated initializers would trip -Wmissing-field-initializers).
PlanModel SelfHosted(const std::string& name, int64_t gpus_per_instance,
                     int64_t slots_per_instance);
PlanModel Api(const std::string& name);
Query MakeQuery(const std::string& id, std::vector<double> quality, std::vector<double> cost);

struct RandomScenarioOptions {
  int num_batches = 2;
  int queries_per_batch = 4;
  int num_models = 3;
  // The first num_self_hosted models are self-hosted (free per query, GPUs per instance in
  // {1, 2, 3}, slots per instance in {1, 2}); the rest are priced API models.
  int num_self_hosted = 2;
  int64_t gpu_budget = 4;
  // Average cost cap as a fraction of the mean cost of the dearest API model; < 0 = no cap.
  double cap_fraction = 0.3;
  double disallow_probability = 0.0;
  // Random min_instances, max_instances and pins on some self-hosted models.
  bool operator_bounds = false;
  uint64_t seed = 1;
};

PlanProblem RandomScenario(const RandomScenarioOptions& options);

// Exhaustive optimum: every instance vector within the pins, operator bounds and GPU budget
// (derived here from the scenario, not from ComputeInstanceBounds), every batch by BruteForce.
// nullopt when no vector lets every batch be served.
struct EnumeratedOptimum {
  std::vector<int64_t> instances;
  double objective = 0.0;
};
std::optional<EnumeratedOptimum> EnumerateOptimum(const PlanProblem& problem);

// OK when `plan` meets every constraint of plan_problem.h (GPU budget, operator bounds and pins,
// every query served by an allowed model that is not pinned off, per-batch slots l_j I_j and cost
// cap avg_cost_cap |b| up to 1e-9 relative) and its objective is the predicted quality of its
// assignment; otherwise an error describing the first violation.
absl::Status CheckPlan(const PlanProblem& problem, const CapacityPlan& plan);

}  // namespace router::core::testing

#endif  // ROUTER_TESTS_ROUTER_CORE_PLANNER_PLAN_TESTING_H_
