// File: estimate_testing.h
//
// Test-only real data for the estimators, independent of the production dataset reader and
// featurizer: routerbench_subset/derived (ROUTER_DATA_DIR, set by CMake) read with nlohmann and a
// plain CSV split, features = hashed word unigrams and bigrams (signed hashing, D = 256) weighted
// by log term frequency times the IDF of the training split, L2-normalised. The split is by prompt
// text (identical texts land in the same part): FNV-1a of (seed, text) sends about 60% to train,
// 20% to calibration, 20% to test. Labels are the `correct` column; cells absent from labels.csv
// are NaN.
//
// A missing or malformed data directory is an error, never a skip: the tests must run on real data.
//
// Also the estimator tests' shared helpers: field-by-field builders, fitting or dying, predicting
// every row, and the held-out quality figures of a set of predictions.
//
// Thread-safety: Routerbench() loads once behind a function-local static.

#ifndef ROUTER_TESTS_ROUTER_CORE_ESTIMATE_ESTIMATE_TESTING_H_
#define ROUTER_TESTS_ROUTER_CORE_ESTIMATE_ESTIMATE_TESTING_H_

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "router_core/estimate/quality_estimator.h"

namespace router::core::testing {

inline constexpr int kTestFeatureDim = 256;
inline constexpr uint64_t kTestSplitSeed = 7;

struct RouterbenchSplits {
  TrainingSet train;
  TrainingSet calibration;
  TrainingSet test;
};

// routerbench_subset with kTestFeatureDim features and kTestSplitSeed, loaded once.
const absl::StatusOr<RouterbenchSplits>& Routerbench();

// Routerbench(), or a test failure and abort: real data is required, a missing dataset is a
// failure, never a skip.
const RouterbenchSplits& RouterbenchOrDie();

// The estimator of a fit that must succeed (else a test failure and abort), released for a
// function-local static.
template <typename Estimator>
const Estimator* ReleaseOrDie(absl::StatusOr<std::unique_ptr<Estimator>> fitted) {
  if (!fitted.ok()) {
    ADD_FAILURE() << fitted.status();
    std::abort();
  }
  return fitted->release();
}

// Built field by field: GCC 12 at -O3 warns (falsely) on braced aggregates holding vectors.
FeatureMatrix Matrix(int dim, std::vector<float> values);
TrainingSet Set(FeatureMatrix features, std::vector<std::string> models,
                std::vector<double> labels);
ModelValidation Validation(FeatureMatrix features, std::vector<double> scores);

// `e`'s estimates for one feature row (a test failure if Predict fails), and for every row.
std::vector<QualityEstimate> PredictRow(const QualityEstimator& e, absl::Span<const float> row);
std::vector<std::vector<QualityEstimate>> PredictRows(const QualityEstimator& e,
                                                      const FeatureMatrix& features);

// Held-out figures of predictions[i][j] (row i of `test`, model j); every estimate must satisfy
// 0 <= lower <= quality <= 1 and be finite (a test failure names the first that does not).
struct HeldOutQuality {
  double ece = 0.0;  // pooled over the labelled cells, 10 equal-width bins
  // Mean label of argmax-quality routing, over the rows whose chosen model has a label.
  double routed_accuracy = 0.0;
  double best_single_accuracy = 0.0;  // the best model's mean label
};
HeldOutQuality EvaluateHeldOut(const std::vector<std::vector<QualityEstimate>>& predictions,
                               const TrainingSet& test);

// `a` and `b` are the same estimator: equal saved state and bit-identical estimates (quality and
// lower bound) on every row of `features`.
void ExpectIdentical(const QualityEstimator& a, const QualityEstimator& b,
                     const FeatureMatrix& features);

// The pool contract of RemoveModel, on a clone of `original` (which must hold `removed`):
// the model leaves models(), a second removal is NOT_FOUND, Predict refuses the old output size,
// every remaining model predicts on `features` exactly as before, and neither Save() nor the
// estimator `load` rebuilds from it knows the model; `original` still has it.
using EstimatorLoader =
    absl::StatusOr<std::unique_ptr<QualityEstimator>> (*)(const nlohmann::json& state);
void ExpectRemovalContract(const QualityEstimator& original, const std::string& removed,
                           const FeatureMatrix& features, EstimatorLoader load);

// Loads `derived_dir` (a `derived/` folder) and splits it with `seed`.
absl::StatusOr<RouterbenchSplits> LoadSplits(const std::string& derived_dir, uint64_t seed);

// The first `max_rows` prompts of `set` (all of them if it has fewer).
TrainingSet Head(const TrainingSet& set, int64_t max_rows);

// `set` without model `model` (its label column dropped).
TrainingSet WithoutModel(const TrainingSet& set, int model);

// The rows of `set` where `model` has a label, as that model's validation results.
ModelValidation ValidationOf(const TrainingSet& set, int model);

}  // namespace router::core::testing

#endif  // ROUTER_TESTS_ROUTER_CORE_ESTIMATE_ESTIMATE_TESTING_H_
