// File: query_json.h
//
// The JSON form of one query, shared by the batch format (batch_json.h) and the planner's
// scenario format (planner/plan_json.h):
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

#include "absl/status/statusor.h"
#include "router_core/json/json_reader.h"
#include "router_core/solve/problem.h"

namespace router::core {

enum class QualityLower { kAccepted, kRefused };

absl::StatusOr<Query> ReadQueryJson(const JsonReader& value, QualityLower lower);

}  // namespace router::core

#endif  // ROUTER_CORE_SOLVE_QUERY_JSON_H_
