// File: router_solve_main.cc
//
// router_solve --instance FILE
//
// Reads one batch in the JSON format of bench/instances/README.md (FILE "-" = stdin), answers it
// with SolveBatch and prints the answer as one line of JSON on stdout. Nothing else goes to stdout.
//
// Exit status: 0 answered; 1 unreadable file, invalid batch or solve failure; 2 usage error.
// Every error is one line `router_solve: <message>` on stderr.

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
#include "router_core/solve/batch_json.h"
#include "router_core/solve/solve_batch.h"
#include "router_core/tools/cli_input.h"

namespace {

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

constexpr char kUsage[] =
    "usage: router_solve --instance FILE\n"
    "\n"
    "Solves one routing batch described in JSON (FILE '-' reads stdin) and prints the\n"
    "answer as one line of JSON on stdout. Format: bench/instances/README.md.\n"
    "\n"
    "  --instance FILE, --instance=FILE   the batch to solve (required)\n"
    "  --help                             this text\n"
    "\n"
    "Exit status: 0 solved, 1 bad input or solve failure, 2 usage error.\n";

int Fail(int code, absl::string_view message) {
  std::cerr << "router_solve: " << message << std::endl;
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<std::string> instance;
  for (int k = 1; k < argc; ++k) {
    const absl::string_view arg = argv[k];
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    }
    std::optional<std::string> value;
    if (arg == "--instance") {
      if (k + 1 >= argc) return Fail(kExitUsage, "--instance needs a FILE (see --help)");
      value = argv[++k];
    } else if (absl::StartsWith(arg, "--instance=")) {
      value = std::string(absl::StripPrefix(arg, "--instance="));
    } else {
      return Fail(kExitUsage, absl::StrCat("unknown argument '", arg, "' (see --help)"));
    }
    if (value->empty()) return Fail(kExitUsage, "--instance needs a non-empty FILE");
    if (instance.has_value()) return Fail(kExitUsage, "--instance given more than once");
    instance = std::move(value);
  }
  if (!instance.has_value()) return Fail(kExitUsage, "missing --instance FILE (see --help)");

  absl::StatusOr<std::string> text = router::core::ReadInputFile(*instance);
  if (!text.ok()) return Fail(kExitFailure, text.status().message());

  absl::StatusOr<router::core::BatchProblem> problem = router::core::ParseBatchProblemJson(*text);
  if (!problem.ok()) return Fail(kExitFailure, router::core::DescribeStatus(problem.status()));

  absl::StatusOr<router::core::Solution> solution = router::core::SolveBatch(*problem);
  if (!solution.ok()) return Fail(kExitFailure, router::core::DescribeStatus(solution.status()));

  std::cout << router::core::SolutionToJson(*problem, *solution) << '\n';
  std::cout.flush();
  if (!std::cout) return Fail(kExitFailure, "cannot write the answer to stdout");
  return 0;
}
