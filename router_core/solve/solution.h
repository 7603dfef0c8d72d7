// File: solution.h
//
// What a solver or a policy returns for one batch, and the checks every answer must pass.
//
// Thread-safety: plain values and pure functions.

#ifndef ROUTER_CORE_SOLVE_SOLUTION_H_
#define ROUTER_CORE_SOLVE_SOLUTION_H_

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "router_core/solve/instance.h"

namespace router::core {

inline constexpr int kUnserved = -1;

// Relative slack CheckFeasible grants a budget, only to absorb the rounding of summing costs in a
// different order (1e-12 of max(1, budget)). Solvers aim at the budget itself.
inline constexpr double kBudgetTolerance = 1e-12;

enum class SolveStatus {
  kOptimal,    // objective within the requested relative gap of a proven upper bound
  kFeasible,   // feasible, with a proven upper bound, gap above the requested one (time ran out)
  kHeuristic,  // feasible answer of a heuristic policy; no optimality claim
};
const char* SolveStatusName(SolveStatus status);

// Why a query was left without a model. Only happens when no assignment serves every query.
enum class UnservedReason {
  kNoSlot,    // every allowed model is out of slots for this batch
  kNoBudget,  // the budget cannot pay the cheapest completion of the batch with this query in it
};
const char* UnservedReasonName(UnservedReason reason);

struct Solution {
  // Per query (instance order): model index, or kUnserved.
  std::vector<int> model_of_query;
  // Per query: meaningful only where model_of_query is kUnserved.
  std::vector<UnservedReason> unserved_reason;
  // Objective of this assignment (for robust policies, the robust objective).
  double objective = 0.0;
  // Proven upper bound on the objective of any feasible assignment of the served queries;
  // +infinity when the policy proves none.
  double upper_bound = std::numeric_limits<double>::infinity();
  SolveStatus status = SolveStatus::kHeuristic;
  double total_cost = 0.0;
  absl::Duration solve_time;
  // Branch-and-bound nodes explored: the small-batch search's plus CBC's (0 when neither ran).
  int64_t nodes = 0;
  // Which component produced the final assignment, e.g. "lagrangian", "cbc", "per_query".
  std::string method;
};

// (upper_bound - objective) / max(|upper_bound|, 1e-12), or +infinity without a bound.
double RelativeGap(const Solution& solution);

// Sum of the costs of the assigned models.
double AssignmentCost(const Instance& instance, const std::vector<int>& model_of_query);
// Sum of the values of the assigned models.
double AssignmentValue(const Instance& instance, const std::vector<int>& model_of_query);

// Robust objective of an assignment under budgeted uncertainty: the sum of the values minus the
// `gamma` largest deviations among the served queries, the fractional part of gamma weighing the
// next largest one (Bertsimas-Sim). gamma <= 0 gives the plain value. Queries at kUnserved count
// for nothing.
double RobustObjective(const Instance& instance, const std::vector<int>& model_of_query,
                       double gamma);

// OK if the assignment uses only allowed models, respects every slot limit, and its cost is within
// the budget (up to kBudgetTolerance). INTERNAL otherwise, naming
// the broken constraint. Every code path runs this before it answers.
absl::Status CheckFeasible(const Instance& instance, const std::vector<int>& model_of_query);

}  // namespace router::core

#endif  // ROUTER_CORE_SOLVE_SOLUTION_H_
