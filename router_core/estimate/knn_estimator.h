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
// Similarities are float dot products of the stored unit rows with the unit query (16 lanes, so
// gcc vectorizes them with baseline SSE2, or AVX where the CPU has it, with identical results; the
// lane sums are combined in a fixed order, so results are deterministic); everything after them
// is double.
//
// Cost of Predict (P stored points, M models, B = bootstrap_samples): P * dim float multiply-adds
// for the similarities (the stored matrix is P * dim * 4 bytes, read once per call: 2 MB for
// routerbench_subset, so memory bandwidth bounds it); one O(P) selection of the best D candidates
// plus an O(D log D) sort, D = max over "shared" models of min(P, k + P - P_j), walked by each
// shared model (one lacking at most as many points as it has; the rest select among their own
// P_j points in O(P_j + k log k)); then per model O(k * B) for the bootstrap and O(B) for the
// quantile. No allocation once the calling thread has predicted with an estimator of this size:
// each thread keeps O(P + k) scratch (about 30 KB for routerbench_subset).
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
#include "router_core/estimate/estimator_base.h"
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

class KnnEstimator final : public EstimatorBase<KnnEstimator> {
 public:
  static constexpr absl::string_view kKind = "knn";

  // Fits on `training` (its rows are normalized; rows of zeros are kept and never match). Every
  // model needs at least one non-NaN label; labels must be in [0, 1].
  static absl::StatusOr<std::unique_ptr<KnnEstimator>> Fit(const TrainingSet& training,
                                                           const KnnOptions& options);

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

 private:
  struct ModelPoints {
    std::vector<uint32_t> points;  // ascending point indices
    std::vector<float> scores;     // score on each point, in [0, 1]
    double mean = 0.0;
  };

  KnnEstimator(int dim, const KnnOptions& options);
  friend absl::StatusOr<std::unique_ptr<QualityEstimator>> LoadKnnEstimator(
      const nlohmann::json& state);

  // (n * weighted mean + prior) / (n + prior) of the neighbours, each counted once.
  double Estimate(absl::Span<const double> weights, absl::Span<const float> scores,
                  double prior_mean) const;
  // The resampled weights of a neighbour list, which only depend on the neighbours (not on the
  // model): weight_counts[i * B + b] = patterns[i * B + b] * weights[i] and weight_sums[b] their
  // sum over i. patterns[i * B + b] is the multiplicity of neighbour i in resample b
  // (B = bootstrap_samples; the layout makes the loops over b vectorize).
  void ResampleWeights(absl::Span<const double> weights, const double* patterns,
                       double* weight_counts, double* weight_sums) const;
  // Estimate's formula for every resample b, into out[b]; `plain` is scratch. B values each.
  void BootstrapEstimates(absl::Span<const float> scores, const double* patterns,
                          const double* weight_counts, const double* weight_sums,
                          double prior_mean, double* plain, double* out) const;
  // Resampling patterns for a neighbour set of size n: n x bootstrap_samples multiplicities.
  std::vector<double> Patterns(int n) const;
  // Recomputes score_at_, shared_ and shared_depth_ from points_ and model_points_; called after
  // every change to them.
  void Reindex();

  KnnOptions options_;
  std::vector<float> points_;  // row-major, normalized
  std::vector<ModelPoints> model_points_;  // parallel to models_
  std::vector<double> full_patterns_;      // Patterns(k), the usual case, precomputed
  // Derived lookup state (Reindex), not saved:
  std::vector<float> score_at_;  // M x P: score of model j on point p, NaN where j lacks p
  std::vector<bool> shared_;     // per model: picks its neighbours from the shared candidates
  int64_t shared_depth_ = 0;     // D: shared candidates needed, 0 if no model is shared
};

// Rebuilds an estimator from KnnEstimator::Save() output.
absl::StatusOr<std::unique_ptr<QualityEstimator>> LoadKnnEstimator(const nlohmann::json& state);

}  // namespace router::core

#endif  // ROUTER_CORE_ESTIMATE_KNN_ESTIMATOR_H_
