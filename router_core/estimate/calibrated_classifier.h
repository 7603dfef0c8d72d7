// File: calibrated_classifier.h
//
// The calibrated multi-label classifier of Dria ("LLM Routing for Batched Instructions", 2025):
// one success probability per model from shared features, calibrated in two stages on a held-out
// calibration split.
//
//   Network. Features are standardised with the training mean and standard deviation (so any
//   embedding scale trains alike), then one hidden ReLU layer shared by all models and one logistic
//   output per model. Training minimises binary cross-entropy (fractional scores are soft targets;
//   NaN labels are masked out) plus an L2 penalty on the weights, with Adam on shuffled
//   mini-batches: seeded, single-threaded, in a fixed order, hence bit-for-bit deterministic.
//
//   Temperature scaling. Per model, the temperature T > 0 that minimises the calibration split's
//   log loss of sigmoid(logit / T) (golden-section search on 1/T, where the loss is convex).
//
//   Histogram buckets. Per model, the calibration split's temperature-scaled probabilities are cut
//   into num_bins equal-mass buckets (ties never straddle a cut, so buckets can merge). A query's
//   estimate is its bucket's Beta posterior Beta(s_b + m*p_b, n_b - s_b + m*(1 - p_b)): n_b
//   calibration prompts, s_b summed scores, p_b their mean temperature-scaled probability, m =
//   prior_strength. The mean is the quality (close to the bucket's observed rate, which is the
//   Dria estimate; the small prior only keeps sparse buckets off 0 and 1), and the lower_quantile
//   of the posterior the lower bound, so the bound widens where the bucket has few prompts.
//   Temperature scaling does not move the equal-mass cuts (it is monotone); it sets the prior
//   centre p_b, so that a thin bucket shrinks toward a calibrated value rather than a raw one.
//
// Cost: Fit is O(epochs * n * D * H); Predict O(D * H + M * (H + log bins)).
//
// The pool is fixed at training time: AddModel returns UNIMPLEMENTED (a new output needs
// retraining the network); RemoveModel drops that model's output and works.
//
// Thread-safety and ownership: as QualityEstimator. The estimator owns its weights and buckets and
// keeps no reference to the training data.
//
// Errors: FitCalibratedClassifier returns INVALID_ARGUMENT for bad options (naming the option),
// malformed training or calibration sets (non-finite features, labels outside [0, 1], different
// models or dimensions in the two sets) or a model without a labelled calibration prompt.
// LoadCalibratedClassifier returns INVALID_ARGUMENT naming the offending field of the state.

#ifndef ROUTER_CORE_ESTIMATE_CALIBRATED_CLASSIFIER_H_
#define ROUTER_CORE_ESTIMATE_CALIBRATED_CLASSIFIER_H_

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

struct ClassifierOptions {
  // Width of the shared hidden layer, >= 1. 32 already separates the tasks and the models'
  // strengths on a few thousand prompts; wider mainly overfits before calibration.
  int hidden_units = 32;
  // Passes over the training set, >= 1. On routerbench_subset 20 and 30 give the same held-out
  // ECE and routing accuracy (within seed noise); 20 is cheaper.
  int epochs = 20;
  // Prompts per Adam step, >= 1.
  int batch_size = 64;
  // Adam step size, > 0.
  double learning_rate = 3e-3;
  // L2 penalty on the weights (not the biases), >= 0.
  double weight_decay = 1e-4;
  // Seed of the initial weights and of the shuffles.
  uint64_t seed = 0;
  // Equal-mass calibration buckets per model, >= 1. 10 keeps about 60 calibration prompts per
  // bucket on routerbench_subset (600-odd calibration prompts).
  int num_bins = 10;
  // Prior pseudo-count m of each bucket's Beta posterior, > 0.
  double prior_strength = 2.0;
  // Level of the lower bound, in (0, 0.5].
  double lower_quantile = 0.1;
};

// OK or INVALID_ARGUMENT naming the first out-of-range option.
absl::Status ValidateClassifierOptions(const ClassifierOptions& options);

class CalibratedClassifier : public EstimatorBase<CalibratedClassifier> {
 public:
  static constexpr absl::string_view kKind = "classifier";

  absl::Status Predict(absl::Span<const float> features,
                       absl::Span<QualityEstimate> out) const override;
  // Always UNIMPLEMENTED: see the file comment.
  absl::Status AddModel(absl::string_view name, const ModelValidation& validation) override;
  absl::Status RemoveModel(absl::string_view name) override;
  nlohmann::json Save() const override;

 private:
  // One model's output unit and its calibration.
  struct Output {
    std::vector<double> weights;  // hidden_units
    double bias = 0.0;
    double temperature = 1.0;
    // Bucket b holds scaled probabilities in [edges[b-1], edges[b]); edges strictly increase.
    std::vector<double> edges;             // buckets - 1
    std::vector<double> count;             // per bucket: calibration prompts
    std::vector<double> success;           // summed scores
    std::vector<double> mean_probability;  // mean scaled probability
    std::vector<double> quality;           // posterior mean
    std::vector<double> lower;             // posterior lower quantile
  };

  friend absl::StatusOr<std::unique_ptr<CalibratedClassifier>> FitCalibratedClassifier(
      const TrainingSet&, const TrainingSet&, const ClassifierOptions&);
  friend absl::StatusOr<std::unique_ptr<QualityEstimator>> LoadCalibratedClassifier(
      const nlohmann::json&);

  CalibratedClassifier(int dim, ClassifierOptions options)
      : EstimatorBase(dim), options_(options) {}

  // The body of LoadCalibratedClassifier, with access to the private state.
  static absl::StatusOr<std::unique_ptr<CalibratedClassifier>> FromState(
      const nlohmann::json& state);
  // Hidden activations of one (unstandardised) feature vector.
  std::vector<double> Hidden(absl::Span<const float> features) const;
  double Logit(const Output& output, const std::vector<double>& hidden) const;
  // Fills quality and lower from the bucket statistics.
  absl::Status ComputeBuckets(Output& output) const;

  ClassifierOptions options_;
  std::vector<double> input_mean_;      // dim
  std::vector<double> input_scale_;     // dim, > 0
  std::vector<double> hidden_weights_;  // hidden_units x dim, row-major
  std::vector<double> hidden_bias_;     // hidden_units
  std::vector<Output> outputs_;         // parallel to models_
};

// Trains on `train` and calibrates on `calibration` (same models in the same order, same
// dimension, disjoint prompts).
absl::StatusOr<std::unique_ptr<CalibratedClassifier>> FitCalibratedClassifier(
    const TrainingSet& train, const TrainingSet& calibration, const ClassifierOptions& options);

// Rebuilds a classifier from CalibratedClassifier::Save() output (kind "classifier"). The artifact
// loader calls this.
absl::StatusOr<std::unique_ptr<QualityEstimator>> LoadCalibratedClassifier(
    const nlohmann::json& state);

}  // namespace router::core

#endif  // ROUTER_CORE_ESTIMATE_CALIBRATED_CLASSIFIER_H_
