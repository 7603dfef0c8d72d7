// File: quality_estimator.h
//
// The one interface every quality estimator implements (kNN, UniRoute clusters, calibrated
// classifier): for a query's feature vector and the current model pool, the predicted probability
// that each model answers well, and a lower confidence bound for robust routing.
//
// Features are dense float vectors of a fixed dimension: the built-in featurizer's output, or an
// embedding the caller sends instead of text. An estimator works in whichever space it was trained
// in and rejects vectors of any other dimension.
//
// Thread-safety: the const methods (Predict, models, Save, Clone) are safe to call concurrently.
// AddModel and RemoveModel mutate and must not run concurrently with anything else; the service
// applies them copy-on-write (Clone, mutate the copy, swap a shared_ptr between batches).
//
// Errors: INVALID_ARGUMENT for a wrong dimension, a wrong output size, or malformed data (naming
// what is wrong); NOT_FOUND for an unknown model; ALREADY_EXISTS for a duplicate model;
// UNIMPLEMENTED where a method cannot add a model without retraining (the classifier).

#ifndef ROUTER_CORE_ESTIMATE_QUALITY_ESTIMATOR_H_
#define ROUTER_CORE_ESTIMATE_QUALITY_ESTIMATOR_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "nlohmann/json.hpp"

namespace router::core {

// Row-major matrix of feature vectors: row i is values[i * dim, (i + 1) * dim).
struct FeatureMatrix {
  int dim = 0;
  std::vector<float> values;

  int64_t rows() const { return dim == 0 ? 0 : static_cast<int64_t>(values.size()) / dim; }
  absl::Span<const float> row(int64_t i) const {
    return absl::MakeConstSpan(values.data() + i * dim, static_cast<size_t>(dim));
  }
};

// Training data for a pool: features of n prompts and, per prompt and model, the observed score in
// [0, 1] (1 = correct; fractional scores allowed). NaN marks a missing label and is skipped.
struct TrainingSet {
  FeatureMatrix features;
  std::vector<std::string> models;
  std::vector<double> labels;  // n x models.size(), row-major

  double label(int64_t prompt, int model) const {
    return labels[static_cast<size_t>(prompt) * models.size() + static_cast<size_t>(model)];
  }
};

// One model's validation results: the prompts it was evaluated on and its score on each, in [0, 1].
// This is all a new (unseen) model brings with it.
struct ModelValidation {
  FeatureMatrix features;
  std::vector<double> scores;  // one per row of `features`
};

// Per-model prediction for one query.
struct QualityEstimate {
  double quality = 0.0;        // predicted probability of a good answer, in [0, 1]
  double quality_lower = 0.0;  // lower confidence bound, in [0, quality]
};

class QualityEstimator {
 public:
  virtual ~QualityEstimator() = default;

  // "knn", "uniroute" or "classifier": the key of Save()'s output and of the artifact.
  virtual absl::string_view kind() const = 0;
  virtual int feature_dim() const = 0;
  // The pool, in the order Predict fills its output.
  virtual const std::vector<std::string>& models() const = 0;

  // Fills out[j] for models()[j]. INVALID_ARGUMENT if features.size() != feature_dim() or
  // out.size() != models().size(). Every output is finite, with 0 <= lower <= quality <= 1.
  virtual absl::Status Predict(absl::Span<const float> features,
                               absl::Span<QualityEstimate> out) const = 0;

  // Predict, plus the query's cluster in *cluster, in [0, num_clusters()): the cell the outcome
  // learner (learn/outcome_learner.h) keeps per model. UniRoute: the nearest centroid, found by
  // the prediction itself at no extra cost. Estimators without clusters (kNN, the classifier):
  // this default, cluster 0, one cell per model.
  virtual absl::Status PredictWithCluster(absl::Span<const float> features,
                                          absl::Span<QualityEstimate> out, int* cluster) const {
    *cluster = 0;
    return Predict(features, out);
  }
  // How many clusters PredictWithCluster can return; 1 without clusters.
  virtual int num_clusters() const { return 1; }

  // Adds `name` to the pool from its validation results alone, without retraining anything else.
  virtual absl::Status AddModel(absl::string_view name, const ModelValidation& validation) = 0;
  // Removes `name`; it is never returned again. NOT_FOUND if absent.
  virtual absl::Status RemoveModel(absl::string_view name) = 0;

  // The estimator's whole state, enough for the matching loader to rebuild an identical estimator.
  virtual nlohmann::json Save() const = 0;
  virtual std::unique_ptr<QualityEstimator> Clone() const = 0;
};

}  // namespace router::core

#endif  // ROUTER_CORE_ESTIMATE_QUALITY_ESTIMATOR_H_
