// File: predictor.h
//
// What the service calls per query: text (or the caller's own embedding) in, per pool model
// {quality, quality_lower, cost_usd} out, in the estimator's pool order, with the query's cluster
// (the outcome learner's cell). It holds the featurizer, one quality estimator and the cost model.
//
// Ownership: the estimator is shared (shared_ptr<const>) so the service can swap a new pool in
// between batches while old predictors finish; featurizer and cost model are owned copies.
// Cost of Predict: featurizing the text (featurizer.h) unless an embedding is given, plus the
// estimator's Predict, plus M cost look-ups (M pool models); the returned vectors are its only heap
// allocations for dim <= 256 and M <= 16 (a `task` hint adds a string copy). Figures in
// bench/README.md, "Prediction cost".
//
// Thread-safety: immutable; Predict is safe to call concurrently.
//
// Errors: Create returns INVALID_ARGUMENT when the featurizer's dimension differs from the
// estimator's or a pool model has no cost entry. Predict returns INVALID_ARGUMENT naming the field:
// `embedding: expected 512 values, got 3`, `embedding[4]: not finite`, a bad token hint; and
// FAILED_PRECONDITION for text when the predictor has no featurizer (an embedding-space estimator).

#ifndef ROUTER_CORE_ESTIMATE_PREDICTOR_H_
#define ROUTER_CORE_ESTIMATE_PREDICTOR_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "router_core/estimate/cost_model.h"
#include "router_core/estimate/featurizer.h"
#include "router_core/estimate/quality_estimator.h"

namespace router::core {

struct PredictRequest {
  // The prompt. Featurized unless `embedding` is set; its byte size also feeds the cost model.
  absl::string_view text;
  // The caller's embedding, used instead of featurizing `text`; must have feature_dim() values.
  std::optional<absl::Span<const float>> embedding;
  // Optional hints for the cost model (cost_model.h).
  std::optional<std::string> task;
  std::optional<double> input_tokens;
  std::optional<double> output_tokens;
};

// One query's predictions, one entry per Predictor::models()[j]: the form they keep from the
// estimator to the decision (serving/pool_view.h reads them in place).
struct Predictions {
  std::vector<double> quality;        // in [0, 1]
  std::vector<double> quality_lower;  // in [0, quality]
  std::vector<double> cost_usd;       // >= 0
  // The query's cluster (QualityEstimator::PredictWithCluster): UniRoute's nearest centroid; 0 for
  // the kNN and the classifier, which have no clusters (the outcome learner then keeps one cell
  // per model). The outcome learner's cell for this query (learn/outcome_learner.h).
  int cluster = 0;
};

class Predictor {
 public:
  // `featurizer` may be nullopt for an estimator trained on caller embeddings.
  static absl::StatusOr<Predictor> Create(std::optional<Featurizer> featurizer,
                                          std::shared_ptr<const QualityEstimator> estimator,
                                          CostModel cost_model);

  const std::vector<std::string>& models() const { return estimator_->models(); }
  int feature_dim() const { return estimator_->feature_dim(); }
  const std::optional<Featurizer>& featurizer() const { return featurizer_; }
  const QualityEstimator& estimator() const { return *estimator_; }
  const CostModel& cost_model() const { return cost_model_; }

  absl::StatusOr<Predictions> Predict(const PredictRequest& request) const;

 private:
  Predictor(std::optional<Featurizer> featurizer, std::shared_ptr<const QualityEstimator> estimator,
            CostModel cost_model, std::vector<int> cost_index)
      : featurizer_(std::move(featurizer)),
        estimator_(std::move(estimator)),
        cost_model_(std::move(cost_model)),
        cost_index_(std::move(cost_index)) {}

  std::optional<Featurizer> featurizer_;
  std::shared_ptr<const QualityEstimator> estimator_;
  CostModel cost_model_;
  std::vector<int> cost_index_;  // cost model index of each pool model
};

}  // namespace router::core

#endif  // ROUTER_CORE_ESTIMATE_PREDICTOR_H_
