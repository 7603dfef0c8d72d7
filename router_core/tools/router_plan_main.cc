// File: router_plan_main.cc
//
// router_plan --scenario FILE
//
// Reads a planning scenario in the JSON format of docs/planner.md (FILE "-" = stdin), plans it with
// CapacityPlanner, routes every sampled batch under the plan and under the uniform and proportional
// allocations (allocation.h) for a fair comparison, and prints the answer as one line of JSON on
// stdout. Nothing else goes to stdout.
//
// Exit status: 0 planned; 1 unreadable file, invalid or infeasible scenario, or planning failure;
// 2 usage error. Every error is one line `router_plan: <message>` on stderr.

#include <string>

#include "absl/status/statusor.h"
#include "router_core/planner/plan_json.h"
#include "router_core/tools/cli_input.h"

namespace {

constexpr char kUsage[] =
    "usage: router_plan --scenario FILE\n"
    "\n"
    "Plans the instances of every self-hosted model on a GPU budget from a sample of historical\n"
    "batches (FILE '-' reads stdin) and prints the plan, with the uniform and proportional\n"
    "baselines, as one line of JSON on stdout. Format: docs/planner.md.\n"
    "\n"
    "  --scenario FILE, --scenario=FILE   the scenario to plan (required)\n"
    "  --help                             this text\n"
    "\n"
    "Exit status: 0 planned, 1 bad or infeasible scenario or planning failure, 2 usage error.\n";

}  // namespace

int main(int argc, char** argv) {
  return router::core::RunJsonTool(
      "router_plan", kUsage, "--scenario", argc, argv,
      [](const std::string& text) { return router::core::PlanScenarioJson(text); });
}
