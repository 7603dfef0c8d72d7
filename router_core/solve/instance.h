// File: instance.h
//
// The dense form of a validated batch that every solver works on: row-major N x M arrays of the
// objective value, the deviation (for budgeted uncertainty), the cost, and the allowed mask, plus
// per-model slot limits and the budget. Building it once keeps the solvers free of strings and
// optional fields.
//
// Thread-safety: plain values.

#ifndef ROUTER_CORE_SOLVE_INSTANCE_H_
#define ROUTER_CORE_SOLVE_INSTANCE_H_

#include <cstdint>
#include <limits>
#include <vector>

#include "router_core/solve/problem.h"

namespace router::core {

inline constexpr int64_t kUnlimited = -1;

struct Instance {
  int num_queries = 0;
  int num_models = 0;
  // Objective coefficient of sending query i to model j, at [i * num_models + j].
  std::vector<double> value;
  // Uncertainty of `value`: value - lower bound, >= 0 (used by budgeted uncertainty only).
  std::vector<double> deviation;
  std::vector<double> cost;
  std::vector<uint8_t> allowed;
  // Per model: slots for this batch, or kUnlimited.
  std::vector<int64_t> slots;
  // Batch budget in USD; +infinity when there is none.
  double budget = std::numeric_limits<double>::infinity();

  int index(int query, int model) const { return query * num_models + model; }
  bool is_allowed(int query, int model) const { return allowed[index(query, model)] != 0; }
  bool has_budget() const { return budget < std::numeric_limits<double>::infinity(); }
  bool is_limited(int model) const { return slots[model] != kUnlimited; }
};

// Which predictions become the objective.
enum class ValueSource {
  kQuality,       // value = quality, deviation = quality - quality_lower
  kQualityLower,  // value = quality_lower (box robust), deviation = 0
};

// The predictions a policy optimizes: the lower bound for batch_robust, the quality otherwise.
inline ValueSource ValueSourceFor(PolicyKind policy) {
  return policy == PolicyKind::kBatchRobust ? ValueSource::kQualityLower : ValueSource::kQuality;
}

// Builds the dense form of a problem that passed ValidateBatchProblem().
Instance BuildInstance(const BatchProblem& problem, ValueSource source);

// The subset of `instance` made of the queries in `rows` (in that order), same models and budget.
Instance SelectQueries(const Instance& instance, const std::vector<int>& rows);

// The interchangeable queries of `instance`: those with the same allowed models, values and costs,
// bit for bit (deviations are not compared). Per group its queries in increasing order; groups in
// order of their first query. Exact solvers use them to skip the N! equivalent orderings of N
// identical queries (UniRoute gives every query of a cluster the same predictions).
// Cost: O(N * M) to hash the rows.
std::vector<std::vector<int>> GroupIdenticalQueries(const Instance& instance);

}  // namespace router::core

#endif  // ROUTER_CORE_SOLVE_INSTANCE_H_
