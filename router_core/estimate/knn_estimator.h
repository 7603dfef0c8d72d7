// File: knn_estimator.h
//
// Robust kNN quality estimator (the robust batch-routing paper's kNN with bootstrap lower bounds).
//
// State: a set of stored points (L2-normalized feature rows) and, per model, the points it was
// evaluated on with its score on each. Models fitted together share the training prompts; a model
// added later brings its own validation prompts as new points. For a query x and model j:
//   neighbours  the k stored points of j with the highest cosine similarity to x (ties: lower point
//               index first; fewer than k if j has fewer points)
//   mean        similarity-weighted mean of their scores, weights max(sim, 0) (plain mean if every
//               weight is 0, or with `similarity_weighted` off)
//   quality     (n * mean + prior_strength * mean_j) / (n + prior_strength), mean_j = j's mean
//   score
//               over all its points: a small pull toward the model's global rate for thin evidence
//   lower       the `lower_quantile` quantile of the same formula over `bootstrap_samples`
//               resamples (with replacement) of the neighbour set, capped at quality.
// The resampling patterns depend only on (seed, k, n), never on the model or the query, so the
// estimate for a model is a function of its own points and scores alone: a model added from its
// validation results gets exactly the predictions it would have had if fitted with the same points
// from the start. A zero query vector carries no information: quality = lower = mean_j.
//
// Cost of Predict: O(P * dim) for the similarities (P stored points) plus, per model,
// O(P_j) selection and O(bootstrap_samples * k) for the bound.
//
// Thread-safety and errors: as QualityEstimator (quality_estimator.h). Fit and LoadKnnEstimator
// return INVALID_ARGUMENT naming the bad option or field.

#ifndef ROUTER_CORE_ESTIMATE_KNN_ESTIMATOR_H_
#define ROUTER_CORE_ESTIMATE_KNN_ESTIMATOR_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "nlohmann/json.hpp"
#include "router_core/estimate/quality_estimator.h"

namespace router::core {

struct KnnOptions {
  // Neighbours per prediction, >= 1. The robust-routing paper uses 40; on routerbench_subset 100
  // routes better (bench/README.md: relative accuracy at 50% of the best model's cost 0.978 vs
  // 0.965, mean of 3 split seeds), because per-prompt signal is weak and larger neighbourhoods
  // average out label noise.
  int k = 100;
  // Pseudo-count of the pull toward the model's global mean, >= 0.
  double prior_strength = 2.0;
  bool similarity_weighted = true;
  // Bootstrap resamples of the neighbour set for the lower bound, >= 1.
  int bootstrap_samples = 50;
  // Quantile of the bootstrap estimates used as the lower bound, in [0, 1].
  double lower_quantile = 0.1;
  uint64_t seed = 1;
};

class KnnEstimator final : public QualityEstimator {
 public:
  // Fits on `training` (its rows are normalized; rows of zeros are kept and never match). Every
  // model needs at least one non-NaN label; labels must be in [0, 1].
  static absl::StatusOr<std::unique_ptr<KnnEstimator>> Fit(const TrainingSet& training,
                                                           const KnnOptions& options);

  absl::string_view kind() const override { return "knn"; }
  int feature_dim() const override { return dim_; }
  const std::vector<std::string>& models() const override { return names_; }
  const KnnOptions& options() const { return options_; }
  int64_t num_points() const { return static_cast<int64_t>(points_.size()) / dim_; }

  absl::Status Predict(absl::Span<const float> features,
                       absl::Span<QualityEstimate> out) const override;
  absl::Status AddModel(absl::string_view name, const ModelValidation& validation) override;
  // Also drops the points no remaining model refers to.
  absl::Status RemoveModel(absl::string_view name) override;

  // {"kind":"knn","dim","options":{...},"points": float blob (P x dim),
  //  "models":[{"name","mean","points": uint32 blob,"scores": float blob}]}
  nlohmann::json Save() const override;
  std::unique_ptr<QualityEstimator> Clone() const override;

 private:
  struct ModelPoints {
    std::vector<uint32_t> points;  // ascending point indices
    std::vector<float> scores;     // score on each point, in [0, 1]
    double mean = 0.0;
  };

  KnnEstimator(int dim, const KnnOptions& options);
  friend absl::StatusOr<std::unique_ptr<QualityEstimator>> LoadKnnEstimator(
      const nlohmann::json& state);

  // (n * weighted mean + prior) / (n + prior) with multiplicities `counts` (nullptr = all 1).
  double Estimate(absl::Span<const double> weights, absl::Span<const float> scores,
                  const uint16_t* counts, double prior_mean) const;
  // Resampling patterns for a neighbour set of size n: bootstrap_samples x n multiplicities.
  std::vector<uint16_t> Patterns(int n) const;

  int dim_;
  KnnOptions options_;
  std::vector<float> points_;  // row-major, normalized
  std::vector<std::string> names_;
  std::vector<ModelPoints> model_points_;  // parallel to names_
  std::vector<uint16_t> full_patterns_;    // Patterns(k), the usual case, precomputed
};

// Rebuilds an estimator from KnnEstimator::Save() output.
absl::StatusOr<std::unique_ptr<QualityEstimator>> LoadKnnEstimator(const nlohmann::json& state);

}  // namespace router::core

#endif  // ROUTER_CORE_ESTIMATE_KNN_ESTIMATOR_H_
