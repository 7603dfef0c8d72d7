// File: batch_json.h
//
// JSON codec of one batch and of its answer: the format read by router_solve and by the
// captured-batch replay, documented field by field in bench/instances/README.md.
//
// Input (every key not marked required is optional; unknown keys are errors, so typos surface):
//   {"models":[{"name":"m0","slots":8},{"name":"m1"}],      // required; slots absent = unlimited
//    "budget":1.25,                                         // absent or null = unlimited
//    "policy":"batch",                                      // batch (default), batch_robust, ...
//    "params":{"lambda":0.0,"tau":0.7,"gamma":0,"seed":0},  // each optional
//    "time_limit_ms":20,                                    // default: SolveOptions' (20)
//    "relative_gap":0.005,                                  // default: SolveOptions' (0.005)
//    "queries":[{"id":"q0","quality":[0.8,0.6],             // required; id, quality, cost required
//                "quality_lower":[0.7,0.5],"cost":[0.01,0.001],"allowed":["m0","m1"]}]}
//
// Output: {"assignment":{"q0":"m0"},"unserved":[],"unserved_reasons":{},"objective":..,
//          "upper_bound":.. or null,"gap":.. or null,"status":"OPTIMAL","total_cost":..,
//          "solve_ms":..,"nodes":..,"method":"..","policy":"batch"}
//
// Thread-safety: pure functions.
//
// Errors: ParseBatchProblemJson returns INVALID_ARGUMENT naming the field path
// (`queries[2].cost[1]: expected a number, got string`), `invalid JSON: <parser message>` for
// malformed text, or the error of ValidateBatchProblem (problem.h). It never throws.

#ifndef ROUTER_CORE_SOLVE_BATCH_JSON_H_
#define ROUTER_CORE_SOLVE_BATCH_JSON_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "router_core/solve/problem.h"
#include "router_core/solve/solution.h"

namespace router::core {

// Parses and validates one batch.
absl::StatusOr<BatchProblem> ParseBatchProblemJson(absl::string_view text);

// Renders the answer to `problem` as one line of JSON (no trailing newline). Keys of "assignment"
// and "unserved_reasons" follow the order of problem.queries. Doubles keep full precision; a
// non-finite upper bound or gap is written as null.
std::string SolutionToJson(const BatchProblem& problem, const Solution& solution);

}  // namespace router::core

#endif  // ROUTER_CORE_SOLVE_BATCH_JSON_H_
