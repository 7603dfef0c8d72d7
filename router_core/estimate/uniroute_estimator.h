// File: uniroute_estimator.h
//
// UniRoute with K-means clusters (Jitkrittum et al., ICLR 2026): prompts are clustered once, and
// each model is nothing but its per-cluster record on a validation set, so a model never seen in
// training joins the pool from its validation results alone (AddModel), without refitting the
// clusters or touching any other model.
//
//   Clusters. K-means on the L2-normalised training features: seeded k-means++ initialisation,
//   then Lloyd iterations until no assignment changes (or max_iterations). kCosine is spherical
//   K-means (centroids renormalised, nearest = largest dot product); kEuclidean keeps plain means
//   (nearest = smallest squared distance). Both are deterministic for a fixed seed.
//
//   Model statistics. Each validation prompt goes to its nearest centroid; per (model, cluster) we
//   keep n_k (prompts) and s_k (summed scores; fractional scores count fractionally). The posterior
//   of the success rate is Beta(s_k + m*g, n_k - s_k + m*(1-g)), where g = (sum s + 0.5) /
//   (sum n + 1) is the model's smoothed global rate and m = prior_strength: sparse clusters shrink
//   toward how the model does overall instead of toward 1/2. Per cluster the estimate is the
//   posterior mean, and the lower bound its lower_quantile (Beta quantile, beta_distribution.h;
//   clamped to the mean for extremely skewed posteriors). The error vector of the paper is one
//   minus these means.
//
//   Prediction. Soft assignment: weights w_k ~ exp(sim_k / temperature) over the clusters, with
//   sim_k = x.c_k (cosine) or -|x - c_k|^2 / 2 (Euclidean, the same scale on unit vectors);
//   quality = sum_k w_k mean_k and lower = sum_k w_k lower_k. A query near a cluster boundary then
//   blends its neighbours instead of jumping between them. On routerbench_subset (K = 20, hashed
//   bag-of-words features) that cut the held-out ECE to a third of the hard nearest cluster's
//   (0.008 vs 0.025) and routed better (0.884 vs 0.868 accuracy); temperature = 0 selects the hard
//   assignment (the paper's K-means router).
//   The blended lower bound is a weighted average of per-cluster quantiles, not the quantile of the
//   mixture; it stays <= quality and is exact for the hard assignment.
//
// Cost: Fit is O(iterations * n * K * D); Predict is O(K * D + M * K); AddModel O(rows * K * D).
//
// Thread-safety and ownership: as QualityEstimator. The estimator owns copies of its centroids and
// statistics; it keeps no reference to the training or validation data.
//
// Errors: FitUniRoute returns INVALID_ARGUMENT for bad options (naming the option), K larger than
// the number of training prompts or than the number of distinct ones, non-finite features or a
// dimension mismatch between the training and validation features, and labels outside [0, 1].
// Predict / AddModel / RemoveModel as QualityEstimator. LoadUniRouteEstimator returns
// INVALID_ARGUMENT naming the offending field of the state.

#ifndef ROUTER_CORE_ESTIMATE_UNIROUTE_ESTIMATOR_H_
#define ROUTER_CORE_ESTIMATE_UNIROUTE_ESTIMATOR_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "nlohmann/json.hpp"
#include "router_core/estimate/estimator_base.h"
#include "router_core/estimate/quality_estimator.h"

namespace router::core {

enum class ClusterMetric {
  kCosine,     // spherical K-means: unit centroids, similarity = dot product
  kEuclidean,  // plain K-means on the unit-normalised features
};

struct UniRouteOptions {
  // Number of clusters K, >= 1. 20 keeps about 30 validation prompts per cluster on a 600-prompt
  // validation split (routerbench_subset), enough for the posteriors to move off the prior.
  int num_clusters = 20;
  ClusterMetric metric = ClusterMetric::kCosine;
  // Seed of the k-means++ initialisation.
  uint64_t seed = 0;
  // Lloyd iterations at most, >= 1.
  int max_iterations = 100;
  // Soft-assignment temperature, >= 0 (0 = nearest cluster only). On unit vectors similarities lie
  // in [-1, 1], so 0.05 lets clusters within about 0.1 of the best contribute.
  double temperature = 0.05;
  // Prior pseudo-count m of each (model, cluster) Beta posterior, > 0.
  double prior_strength = 4.0;
  // Level of the lower bound, in (0, 0.5]: 0.1 = the 10th posterior percentile, like the
  // bootstrap 10th percentile of the robust-routing paper.
  double lower_quantile = 0.1;
};

// OK or INVALID_ARGUMENT naming the first out-of-range option.
absl::Status ValidateUniRouteOptions(const UniRouteOptions& options);

class UniRouteEstimator : public EstimatorBase<UniRouteEstimator> {
 public:
  static constexpr absl::string_view kKind = "uniroute";

  absl::Status Predict(absl::Span<const float> features,
                       absl::Span<QualityEstimate> out) const override;
  // *cluster = the nearest centroid (the hard assignment), whatever the temperature.
  absl::Status PredictWithCluster(absl::Span<const float> features,
                                  absl::Span<QualityEstimate> out, int* cluster) const override;
  // `validation` rows are the prompts the model was evaluated on (no missing scores).
  absl::Status AddModel(absl::string_view name, const ModelValidation& validation) override;
  absl::Status RemoveModel(absl::string_view name) override;
  nlohmann::json Save() const override;

  int num_clusters() const override { return static_cast<int>(centroids_.size()); }
  const UniRouteOptions& options() const { return options_; }
  // Index of the nearest centroid of `features` (same checks as Predict).
  absl::StatusOr<int> NearestCluster(absl::Span<const float> features) const;

 private:
  // Per model: validation counts and summed scores per cluster, and the posterior they imply.
  struct ModelStats {
    std::vector<double> count;
    std::vector<double> success;
    std::vector<double> mean;
    std::vector<double> lower;
  };

  friend absl::StatusOr<std::unique_ptr<UniRouteEstimator>> FitUniRoute(const FeatureMatrix&,
                                                                        const TrainingSet&,
                                                                        const UniRouteOptions&);
  friend absl::StatusOr<std::unique_ptr<QualityEstimator>> LoadUniRouteEstimator(
      const nlohmann::json&);

  // The body of LoadUniRouteEstimator, with access to the private state.
  static absl::StatusOr<std::unique_ptr<UniRouteEstimator>> FromState(const nlohmann::json& state);

  UniRouteEstimator(int dim, UniRouteOptions options, std::vector<std::vector<double>> centroids)
      : EstimatorBase(dim), options_(options), centroids_(std::move(centroids)) {}

  // Similarity of a unit-normalised vector to every centroid (larger = nearer).
  std::vector<double> Similarities(const std::vector<double>& unit) const;
  // The same into sims[0, clusters), from unit[0, dim).
  void SimilaritiesInto(const double* unit, double* sims) const;
  // Fills mean and lower from count and success.
  absl::Status ComputePosterior(ModelStats& stats) const;
  // Appends a model whose count and success are set; computes its posterior.
  absl::Status AppendModel(std::string name, ModelStats stats);

  UniRouteOptions options_;
  std::vector<std::vector<double>> centroids_;  // K x dim
  std::vector<ModelStats> stats_;  // parallel to models_
};

// Clusters `cluster_train` and fits every model of `validation` from its rows (NaN labels are
// skipped, so each model may have been evaluated on a different subset).
absl::StatusOr<std::unique_ptr<UniRouteEstimator>> FitUniRoute(const FeatureMatrix& cluster_train,
                                                               const TrainingSet& validation,
                                                               const UniRouteOptions& options);

// Rebuilds an estimator from UniRouteEstimator::Save() output (the whole JSON object, kind
// "uniroute"). The artifact loader calls this.
absl::StatusOr<std::unique_ptr<QualityEstimator>> LoadUniRouteEstimator(
    const nlohmann::json& state);

}  // namespace router::core

#endif  // ROUTER_CORE_ESTIMATE_UNIROUTE_ESTIMATOR_H_
