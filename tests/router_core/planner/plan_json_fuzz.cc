// libFuzzer target of ParseScenarioJson, the scenario reader of router_plan and of
// RouterAdmin.PlanInstances: any bytes give a valid Scenario or INVALID_ARGUMENT, never a crash,
// a hang or unbounded memory. An accepted scenario must pass ValidatePlanProblem. (Planning itself
// is not fuzzed: its cost is bounded by the scenario's time limit, not by the parser.)
// Seeds: plan_json_fuzz_corpus/. Run: build-fuzz/bin/plan_json_fuzz DIR (docs/fuzzing.md).

#include <cstddef>
#include <cstdint>

#include "router_core/planner/plan_json.h"
#include "router_core/planner/plan_problem.h"
#include "tests/router_core/testing/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace router::core;
  const absl::StatusOr<Scenario> scenario = ParseScenarioJson(testing::FuzzText(data, size));
  if (!scenario.ok()) {
    testing::CheckRefusal("ParseScenarioJson", scenario.status());
    return 0;
  }
  testing::CheckInvariant(ValidatePlanProblem(scenario->problem).ok(),
                          "an accepted scenario validates");
  return 0;
}
