// File: router_solve_main.cc
//
// router_solve --instance FILE
//
// Reads one batch in the JSON format of bench/instances/README.md (FILE "-" = stdin), answers it
// with SolveBatch and prints the answer as one line of JSON on stdout. Nothing else goes to stdout.
//
// Exit status: 0 answered; 1 unreadable file, invalid batch or solve failure; 2 usage error.
// Every error is one line `router_solve: <message>` on stderr.

#include <string>

#include "absl/status/statusor.h"
#include "router_core/solve/batch_json.h"
#include "router_core/solve/solve_batch.h"
#include "router_core/tools/cli_input.h"

namespace {

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

}  // namespace

int main(int argc, char** argv) {
  return router::core::RunJsonTool("router_solve", kUsage, "--instance", argc, argv,
                                   [](const std::string& text) -> absl::StatusOr<std::string> {
                                     absl::StatusOr<router::core::BatchProblem> problem =
                                         router::core::ParseBatchProblemJson(text);
                                     if (!problem.ok()) return problem.status();
                                     absl::StatusOr<router::core::Solution> solution =
                                         router::core::SolveBatch(*problem);
                                     if (!solution.ok()) return solution.status();
                                     return router::core::SolutionToJson(*problem, *solution);
                                   });
}
