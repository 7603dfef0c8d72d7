// File: query_json.h
//
// What the batch format (batch_json.h) and the planner's scenario format (planner/plan_json.h)
// share: the solve limits "time_limit_ms" (a number > 0) and "relative_gap" (a number; its range
// is the validators'), both optional, and the JSON form of one query:
//   {"id": string, "quality": [numbers], "cost": [numbers], "quality_lower": [numbers],
//    "allowed": [model names]}
// id, quality and cost are required; quality_lower only where the format has it; allowed is
// optional. Sizes and ranges are the validators' (ValidateBatchProblem, ValidatePlanProblem).
//
// Thread-safety: pure. Errors: INVALID_ARGUMENT naming the field path (`queries[2].cost[1]:
// expected a number, got string`, `batches[0][1].qualty: unknown field (...)`).
// Cost: O(size of the query).

#ifndef ROUTER_CORE_SOLVE_QUERY_JSON_H_
#define ROUTER_CORE_SOLVE_QUERY_JSON_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "router_core/json/json_reader.h"
#include "router_core/solve/problem.h"

namespace router::core {

enum class QualityLower { kAccepted, kRefused };

absl::StatusOr<Query> ReadQueryJson(const JsonReader& value, QualityLower lower);

// The optional members "time_limit_ms" and "relative_gap" of `object` into `*time_limit` and
// `*relative_gap` (left as they were when absent). time_limit_ms must be finite and > 0, also
// after conversion to absl::Duration (below a quarter nanosecond it rounds to zero).
absl::Status ReadSolveLimits(const JsonReader& object, absl::Duration* time_limit,
                             double* relative_gap);

}  // namespace router::core

#endif  // ROUTER_CORE_SOLVE_QUERY_JSON_H_
