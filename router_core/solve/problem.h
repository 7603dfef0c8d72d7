// File: problem.h
//
// The routing problem for one batch, as a file or a tool describes it: the model pool by name, the
// queries with their ids and per-model predictions, the batch budget, the policy and its
// parameters, and the solve options. SolveBatch (solve_batch.h) validates it and solves its dense
// form (instance.h); the service builds that dense form directly from its pending queries
// (serving/pool_view.h) and never goes through this type.
//
// Thread-safety: plain values; safe to share read-only across threads.
//
// ValidateBatchProblem() is the one gate: it returns INVALID_ARGUMENT with a message that names the
// offending field (for example `queries[3].quality[1]: NaN`), and every solver assumes it passed.

#ifndef ROUTER_CORE_SOLVE_PROBLEM_H_
#define ROUTER_CORE_SOLVE_PROBLEM_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "router_core/solve/solve_options.h"

namespace router::core {

// One model of the pool, as seen by one batch.
struct ModelSpec {
  std::string name;
  // Concurrency slots this batch may use on the model (self-hosted models). nullopt = unlimited
  // (API models). Zero is allowed and means the model can take nothing in this batch.
  std::optional<int64_t> slots;
};

// One query with its per-model predictions. Vectors are indexed like BatchProblem::models.
struct Query {
  std::string id;
  // Predicted probability that each model answers well, in [0, 1].
  std::vector<double> quality;
  // Lower confidence bound of `quality`, in [0, quality]. Empty = no uncertainty (lower = quality).
  std::vector<double> quality_lower;
  // Predicted cost in USD of sending the query to each model, >= 0.
  std::vector<double> cost;
  // Names of the models this query may go to. Empty = every model.
  std::vector<std::string> allowed;
};

enum class PolicyKind {
  kBatch,        // batch ILP on `quality` (budget row + slot rows)
  kBatchRobust,  // batch ILP on `quality_lower` (box uncertainty; the paper's robust routing)
  kBatchGamma,   // batch ILP, budgeted uncertainty: at most `gamma` queries at their lower bound
  kPerQuery,     // per query argmax quality - lambda * cost, then a feasibility guard
  kThreshold,    // per query the cheapest model with quality >= tau, then the guard
  kNdch,         // non-decreasing convex hull mixture, random split
  kNdchP,        // hull mixture, dearer model to the queries with the largest predicted gain
};

// Parses the names used on the wire: batch, batch_robust, batch_gamma, per_query, threshold,
// ndch, ndch_p. INVALID_ARGUMENT for anything else.
absl::StatusOr<PolicyKind> ParsePolicyKind(absl::string_view name);
absl::string_view PolicyKindName(PolicyKind kind);

struct PolicyParams {
  // per_query: price of one USD in quality units. >= 0.
  double lambda = 0.0;
  // threshold: minimum acceptable predicted quality, in [0, 1].
  double tau = 0.7;
  // batch_gamma: how many queries may sit at their lower bound at once, in [0, #queries].
  // Fractional values are allowed (Bertsimas-Sim).
  double gamma = 0.0;
  // ndch: seed of the random split between the two hull models.
  uint64_t seed = 0;
};

struct BatchProblem {
  std::vector<ModelSpec> models;
  std::vector<Query> queries;
  // Hard cap on the summed predicted cost of the batch, USD. nullopt = unlimited.
  std::optional<double> budget;
  PolicyKind policy = PolicyKind::kBatch;
  PolicyParams params;
  // Time limit, gap and search budgets of the solve (solve_options.h).
  SolveOptions solve;
};

// OK, or INVALID_ARGUMENT naming the first offending field. Checks: at least one model; model names
// non-empty and unique; slots >= 0; query ids non-empty and unique; quality/quality_lower/cost
// lengths equal to the number of models; every number finite; quality and quality_lower in [0, 1];
// quality_lower <= quality; cost >= 0; allowed names known, not repeated, and not empty after
// resolution; budget finite and >= 0; policy parameters in range; the solve options in range
// (ValidateSolveOptions, solve_options.h).
absl::Status ValidateBatchProblem(const BatchProblem& problem);

}  // namespace router::core

#endif  // ROUTER_CORE_SOLVE_PROBLEM_H_
