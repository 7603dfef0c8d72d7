// File: real_data.h
//
// Test-only access to ../shared/data through the production reader (ROUTER_DATA_DIR is set by
// CMake): routerbench_subset, split with seed 7 at the default fractions, the featurizer fitted on
// a slice of its train part, and TrainingSets of the first rows of each part (small enough for
// ASan runs). A missing data directory aborts the test binary: these tests never skip.
//
// Thread-safety: RealData() builds once behind a function-local static.

#ifndef ROUTER_TESTS_ROUTER_CORE_ESTIMATE_REAL_DATA_H_
#define ROUTER_TESTS_ROUTER_CORE_ESTIMATE_REAL_DATA_H_

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "router_core/estimate/dataset.h"
#include "router_core/estimate/featurizer.h"
#include "router_core/estimate/quality_estimator.h"

namespace router::core::testing {

inline constexpr int kRealDim = 128;
inline constexpr int64_t kRealRows = 400;  // prompts per part used by the tests

struct RealData {
  Dataset dataset;
  DatasetSplit split;
  Featurizer featurizer;
  TrainingSet train;  // first kRealRows train prompts, labels = correct
  TrainingSet test;   // first kRealRows test prompts
  std::vector<int64_t> train_rows, test_rows;
};

inline std::string RouterbenchDir() {
  return std::string(ROUTER_DATA_DIR) + "/routerbench_subset/derived";
}

inline TrainingSet MakeTrainingSet(const Dataset& d, const std::vector<int64_t>& rows,
                                   const Featurizer& featurizer) {
  TrainingSet t;
  t.features.dim = featurizer.dim();
  for (const auto& m : d.models) t.models.push_back(m.name);
  for (const int64_t p : rows) {
    const std::vector<float> f = featurizer.Featurize(d.prompts[static_cast<size_t>(p)].text);
    t.features.values.insert(t.features.values.end(), f.begin(), f.end());
    for (size_t j = 0; j < d.models.size(); ++j) {
      t.labels.push_back(d.correct[d.at(p, static_cast<int>(j))]);
    }
  }
  return t;
}

inline const RealData& Real() {
  static const RealData* data = [] {
    auto die = [](const absl::Status& s) {
      std::cerr << "real_data.h: cannot load " << RouterbenchDir() << ": " << s << std::endl;
      std::abort();
    };
    absl::StatusOr<Dataset> d = ReadDataset(RouterbenchDir());
    if (!d.ok()) die(d.status());
    SplitOptions options;
    options.seed = 7;
    absl::StatusOr<DatasetSplit> split = SplitDataset(*d, options);
    if (!split.ok()) die(split.status());
    std::vector<int64_t> train_rows(
        split->train.begin(),
        split->train.begin() + std::min<int64_t>(kRealRows, split->train.size()));
    std::vector<int64_t> test_rows(
        split->test.begin(),
        split->test.begin() + std::min<int64_t>(kRealRows, split->test.size()));
    std::vector<std::string> texts;
    for (const int64_t p : train_rows) texts.push_back(d->prompts[static_cast<size_t>(p)].text);
    FeaturizerOptions fo;
    fo.dim = kRealDim;
    fo.idf_bits = 12;
    absl::StatusOr<Featurizer> featurizer = Featurizer::Fit(fo, texts);
    if (!featurizer.ok()) die(featurizer.status());
    TrainingSet train = MakeTrainingSet(*d, train_rows, *featurizer);
    TrainingSet test = MakeTrainingSet(*d, test_rows, *featurizer);
    return new RealData{*std::move(d),       *std::move(split), *std::move(featurizer),
                        std::move(train),    std::move(test),   std::move(train_rows),
                        std::move(test_rows)};
  }();
  return *data;
}

}  // namespace router::core::testing

#endif  // ROUTER_TESTS_ROUTER_CORE_ESTIMATE_REAL_DATA_H_
