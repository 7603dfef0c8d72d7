// File: pool_query.h
//
// A query as the service holds it between its arrival and its decision (PendingQuery: predictions
// made on arrival for the estimator's pool), the deployed pool it is decided against, and the
// mapping between the two that every decision path (batch engine, inline router) shares: which
// pool model each prediction column belongs to, the query in pool order with its allowed models,
// and the fallback list of an answer.
//
// Thread-safety: plain values and pure functions.
//
// Errors: INVALID_ARGUMENT naming the field when the query's allowed list names a model outside
// the pool (`query.allowed_models[k]`) or leaves it none (`query.allowed_models`).

#ifndef ROUTER_CORE_SERVING_POOL_QUERY_H_
#define ROUTER_CORE_SERVING_POOL_QUERY_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "router_core/solve/problem.h"

namespace router::core {

// A query waiting for its decision, with the predictions made when it arrived.
struct PendingQuery {
  std::string query_id;
  // Model names the query may use; empty = the whole pool.
  std::vector<std::string> allowed;
  // The models the predictions are for (the estimator's pool at arrival); shared by many queries.
  std::shared_ptr<const std::vector<std::string>> predicted_models;
  // Aligned with *predicted_models: quality in [0, 1], lower in [0, quality], cost >= 0.
  std::vector<double> quality;
  std::vector<double> quality_lower;
  std::vector<double> cost_usd;
  absl::Time arrival;
};

struct DeployedModel {
  std::string name;
  std::optional<int64_t> slots;  // instances x slots per instance; nullopt = API model
};

// Column of each pool model in one prediction vector (-1 = not predicted for it).
using ColumnMap = std::vector<int>;
ColumnMap MapPredictionColumns(const std::vector<std::string>& predicted,
                               absl::Span<const DeployedModel> pool);

// Fills `query` in pool order from `pending` (`columns` from MapPredictionColumns of its
// predicted_models), and `allowed` with its allowed models as a mask in pool order (1 = allowed).
// A pool model without a prediction (it joined after the query arrived) is not allowed.
// query.allowed lists the allowed names only when some pool model is not allowed; it is left empty
// (Query's "every model") in the usual case, which spares a batch a copy and a lookup of every
// model name per query.
// Errors: see the file comment.
absl::Status ToPoolQuery(const PendingQuery& pending, const ColumnMap& columns,
                         absl::Span<const DeployedModel> pool, Query& query,
                         std::vector<char>& allowed);

// Up to `max_fallbacks` models other than `chosen` (a pool index) allowed by `allowed` (the mask
// from ToPoolQuery), by predicted quality, best first (ties: pool order).
std::vector<std::string> FallbackModels(const Query& query, const std::vector<char>& allowed,
                                        int chosen, int max_fallbacks,
                                        absl::Span<const DeployedModel> pool);

}  // namespace router::core

#endif  // ROUTER_CORE_SERVING_POOL_QUERY_H_
