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

#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "router_core/planner/plan_json.h"
#include "router_core/tools/cli_input.h"

namespace {

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

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

int Fail(int code, absl::string_view message) {
  std::cerr << "router_plan: " << message << std::endl;
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  namespace core = router::core;
  std::optional<std::string> scenario_path;
  for (int k = 1; k < argc; ++k) {
    const absl::string_view arg = argv[k];
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    }
    std::optional<std::string> value;
    if (arg == "--scenario") {
      if (k + 1 >= argc) return Fail(kExitUsage, "--scenario needs a FILE (see --help)");
      value = argv[++k];
    } else if (absl::StartsWith(arg, "--scenario=")) {
      value = std::string(absl::StripPrefix(arg, "--scenario="));
    } else {
      return Fail(kExitUsage, absl::StrCat("unknown argument '", arg, "' (see --help)"));
    }
    if (value->empty()) return Fail(kExitUsage, "--scenario needs a non-empty FILE");
    if (scenario_path.has_value()) return Fail(kExitUsage, "--scenario given more than once");
    scenario_path = std::move(value);
  }
  if (!scenario_path.has_value()) return Fail(kExitUsage, "missing --scenario FILE (see --help)");

  absl::StatusOr<std::string> text = router::core::ReadInputFile(*scenario_path);
  if (!text.ok()) return Fail(kExitFailure, text.status().message());

  absl::StatusOr<std::string> answer = core::PlanScenarioJson(*text);
  if (!answer.ok()) return Fail(kExitFailure, router::core::DescribeStatus(answer.status()));
  std::cout << *answer << '\n';
  std::cout.flush();
  if (!std::cout) return Fail(kExitFailure, "cannot write the answer to stdout");
  return 0;
}
