// File: estimator_support.h
//
// Helpers shared by the estimators (kNN uses the pool helpers): checks of feature matrices
// and training sets, L2 normalisation, a seeded portable random source, and the field-path
// helpers of their messages. (Their saved state is read through estimator_state.h.)
//
// Thread-safety: pure functions, except SeededRandom, which is a plain value (one per thread).
//
// Errors: INVALID_ARGUMENT, with the field or row named (for example
// `uniroute.centroids[3]: expected 256 numbers, got 255` or `validation.features row 7: NaN`).

#ifndef ROUTER_CORE_ESTIMATE_ESTIMATOR_SUPPORT_H_
#define ROUTER_CORE_ESTIMATE_ESTIMATOR_SUPPORT_H_

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "router_core/estimate/quality_estimator.h"

namespace router::core::estimate_internal {

// `matrix` has dim > 0 (or `expected_dim` when that is > 0), a whole number of rows, and only
// finite values. `what` names the matrix in the message.
absl::Status CheckFeatureMatrix(const FeatureMatrix& matrix, absl::string_view what,
                                int expected_dim = 0);

// One query's features: the right dimension and finite.
absl::Status CheckFeatureVector(absl::Span<const float> features, int dim);
// Predict's arguments: CheckFeatureVector, then one output entry per model
// (`out: expected 3 entries (one per model), got 2`).
absl::Status CheckPredictArguments(absl::Span<const float> features, int dim, size_t out_size,
                                   size_t num_models);

// The options of a Beta posterior with a prior pseudo-count and a lower quantile (UniRoute's and
// the classifier's): prior_strength finite and > 0, lower_quantile in (0, 0.5]. The message names
// the option as the options validators do (`prior_strength: must be finite and > 0, got 0`).
absl::Status ValidatePosteriorOptions(double prior_strength, double lower_quantile);

// A well-formed training set: CheckFeatureMatrix, at least one model, names non-empty and unique,
// labels.size() == rows * models, every label NaN (missing) or in [0, 1].
absl::Status CheckTrainingSet(const TrainingSet& set, absl::string_view what, int expected_dim = 0);

// A well-formed model name and validation set: non-empty name, CheckFeatureMatrix with `dim`, one
// score per row, each in [0, 1] (no NaN: a validation set lists only evaluated prompts).
absl::Status CheckModelValidation(absl::string_view name, const ModelValidation& validation,
                                  int dim);

// `features` as doubles scaled to unit L2 norm; an all-zero vector stays zero.
std::vector<double> NormalizedRow(absl::Span<const float> features);
// The same into `out` (out.size() == features.size()), for callers that keep the buffer.
void NormalizeRowInto(absl::Span<const float> features, absl::Span<double> out);

// Seeded, platform-independent randomness: std::mt19937_64 is fully specified by the standard, but
// the std distributions are not, so draws are derived from its raw output here.
class SeededRandom {
 public:
  explicit SeededRandom(uint64_t seed) : engine_(seed) {}
  // Uniform in [0, 1), 53 random bits.
  double Uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }
  // Uniform integer in [0, n), n > 0 (modulo bias below 2^-40 for the sizes used here).
  uint64_t Below(uint64_t n) { return engine_() % n; }
  // Standard normal (Box-Muller, one of the pair).
  double Normal();

 private:
  std::mt19937_64 engine_;
};

absl::Status ModelNotInPool(absl::string_view name);
// OK when `name` is not in `models`, else ALREADY_EXISTS "model 'x' is already in the pool".
absl::Status CheckNotInPool(absl::string_view name, const std::vector<std::string>& models);

// Removes model `name` from `models` and its entry from the parallel `per_model`; NOT_FOUND
// "model 'x' is not in the pool" when absent. O(models).
template <typename T>
absl::Status RemoveFromPool(absl::string_view name, std::vector<std::string>& models,
                            std::vector<T>& per_model) {
  const auto it = std::find(models.begin(), models.end(), name);
  if (it == models.end()) return ModelNotInPool(name);
  const auto index = it - models.begin();
  models.erase(it);
  per_model.erase(per_model.begin() + index);
  return absl::OkStatus();
}

// --- messages: `field` is the full path ---

// INVALID_ARGUMENT "<field>: <what>".
absl::Status Invalid(absl::string_view field, absl::string_view what);
// "path.key" ("key" when path is empty) and "path[index]".
std::string Child(absl::string_view path, absl::string_view key);
std::string Element(absl::string_view path, size_t index);

}  // namespace router::core::estimate_internal

#endif  // ROUTER_CORE_ESTIMATE_ESTIMATOR_SUPPORT_H_
