// File: pool_view.h
//
// The queries a running router holds between arrival and decision, and the deployed pool as one
// decision sees it.
//
// A PendingQuery keeps its predictions as the estimator made them on arrival (in the estimator's
// model order, estimate/predictor.h). A PoolView, built once per batch or inline decision on the
// deployed pool, reads those predictions in place, in pool order: which prediction column each
// pool model is, and which pool models a query may use; FreeSlots says how many slots each model
// has free in a ledger snapshot. The batch engine appends each query's row to the dense instance it solves
// (AppendRow); the inline router prices the same row. So a query's numbers take three forms on
// the decision path: its Predictions, its row (of the Instance, or of the inline pricing), and the
// chosen model's numbers in the QueryOutcome.
//
// Thread-safety: PendingQuery and DeployedModel are values. A PoolView is one decision's: not
// thread-safe (it caches column maps), and it must not outlive the pool span it was built on.
//
// Errors: INVALID_ARGUMENT naming the field when a query's allowed list names a model outside the
// pool (`query.allowed_models[k]`) or leaves it none (`query.allowed_models`).
//
// Cost, M pool models: per query O(M), plus O(M) name hashing for the first query of each distinct
// predicted-model list, plus O(A x M) for an allowed list of A names. FreeSlots: O(M x L) for L
// ledger models.

#ifndef ROUTER_CORE_SERVING_POOL_VIEW_H_
#define ROUTER_CORE_SERVING_POOL_VIEW_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "router_core/estimate/predictor.h"
#include "router_core/serving/ledger.h"
#include "router_core/solve/instance.h"

namespace router::core {

// A query waiting for its decision. Query ids are the caller's: the core never sees them.
struct PendingQuery {
  // Model names the query may use; empty = the whole pool.
  std::vector<std::string> allowed;
  // The models the predictions are for (the estimator's pool at arrival); shared by many queries.
  std::shared_ptr<const std::vector<std::string>> predicted_models;
  // Aligned with *predicted_models. With learning from outcomes (learn/outcome_learner.h), the
  // quality and its lower bound include what was learned (or a posterior sample, `explored`).
  Predictions predictions;
  // The estimator's quality before learning adjusted `predictions`, aligned with
  // *predicted_models; empty when nothing adjusted them (then it is predictions.quality). An
  // outcome is recorded against this prior (the assignment carries the chosen model's).
  std::vector<double> prior_quality;
  // True when learning sampled these predictions from its posterior (exploration).
  bool explored = false;
  absl::Time arrival;
  // The caller's deadline; InfiniteFuture = none. A batch is solved by its earliest.
  absl::Time deadline = absl::InfiniteFuture();
};

struct DeployedModel {
  std::string name;
  std::optional<int64_t> slots;  // instances x slots per instance; nullopt = API model
};

// A pending query read in pool order, without a copy. Valid while the query and the view live.
class PoolQuery {
 public:
  // False for a pool model without a prediction (it joined after the query arrived).
  bool predicted(int j) const { return (*columns_)[j] >= 0; }
  // Model j's predictions; j must be predicted.
  double quality(int j) const { return query_->predictions.quality[(*columns_)[j]]; }
  double quality_lower(int j) const { return query_->predictions.quality_lower[(*columns_)[j]]; }
  double cost(int j) const { return query_->predictions.cost_usd[(*columns_)[j]]; }
  // Model j's quality before learning adjusted it (quality(j) when nothing did).
  double prior_quality(int j) const {
    return query_->prior_quality.empty() ? quality(j) : query_->prior_quality[(*columns_)[j]];
  }
  bool explored() const { return query_->explored; }
  // The query's cluster in the estimator (Predictions::cluster).
  int cluster() const { return query_->predictions.cluster; }
  // The objective coefficient of model j under `source` (instance.h).
  double value(int j, ValueSource source) const {
    return source == ValueSource::kQuality ? quality(j) : quality_lower(j);
  }

 private:
  friend class PoolView;
  PoolQuery(const PendingQuery* query, const std::vector<int>* columns)
      : query_(query), columns_(columns) {}
  const PendingQuery* query_;
  const std::vector<int>* columns_;  // pool model -> prediction column, -1 = none
};

// Slots a decision may use on each pool model: min(deployed slots, the snapshot's free slots);
// kUnlimited (instance.h) for an API model. A self-hosted model the ledger does not know gets 0
// (the ledger is the authority on what is free).
std::vector<int64_t> FreeSlots(absl::Span<const DeployedModel> pool,
                               const LedgerSnapshot& snapshot);

class PoolView {
 public:
  // `pool` (not owned) must outlive the view.
  explicit PoolView(absl::Span<const DeployedModel> pool) : pool_(pool) {}

  int num_models() const { return static_cast<int>(pool_.size()); }
  const DeployedModel& model(int j) const { return pool_[j]; }

  // Reads `query` in pool order and writes its allowed mask into `allowed` (num_models() entries;
  // 1 = the query may use the model and has a prediction for it). Errors: see the file comment.
  absl::StatusOr<PoolQuery> Resolve(const PendingQuery& query, absl::Span<uint8_t> allowed);

  // Appends `query` as the next row of `instance` (num_models() models; values by `source`,
  // deviation = quality - lower for kQuality), or appends nothing and returns Resolve's error.
  absl::StatusOr<PoolQuery> AppendRow(const PendingQuery& query, ValueSource source,
                                      Instance& instance);

  // An instance with this view's models, `slots` per model (FreeSlots), `budget` (+infinity =
  // none), no queries yet, and room reserved for `num_queries`.
  Instance EmptyInstance(std::vector<int64_t> slots, double budget, int num_queries) const;

 private:
  absl::Span<const DeployedModel> pool_;
  // Column maps by predicted-model list (one per estimator generation, so almost always one).
  std::deque<std::pair<const std::vector<std::string>*, std::vector<int>>> columns_;
};

// Up to `max_fallbacks` models other than `chosen` (a pool index) allowed by `allowed` (the mask
// from Resolve), by predicted quality, best first (ties: pool order).
std::vector<std::string> FallbackModels(const PoolQuery& query, absl::Span<const uint8_t> allowed,
                                        int chosen, int max_fallbacks,
                                        absl::Span<const DeployedModel> pool);

}  // namespace router::core

#endif  // ROUTER_CORE_SERVING_POOL_VIEW_H_
