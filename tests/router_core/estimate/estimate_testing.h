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
// Thread-safety: Routerbench() loads once behind a function-local static.

#ifndef ROUTER_TESTS_ROUTER_CORE_ESTIMATE_ESTIMATE_TESTING_H_
#define ROUTER_TESTS_ROUTER_CORE_ESTIMATE_ESTIMATE_TESTING_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
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
