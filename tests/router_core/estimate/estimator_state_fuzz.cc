// libFuzzer target of the estimator state loaders an artifact's CBOR reaches (artifact.h), fed
// JSON text so that mutations reach the loaders' own checks rather than the CBOR framing: the
// first byte picks LoadKnnEstimator, LoadUniRouteEstimator, LoadCalibratedClassifier,
// Featurizer::FromJson or CostModel::FromJson, the rest is the state. Text that nlohmann cannot
// parse is skipped (the artifact target covers malformed encodings). Any state gives a loaded
// object or INVALID_ARGUMENT, never a crash, a hang or unbounded memory; a loaded estimator's
// estimates for one row are finite with 0 <= lower <= quality <= 1, or an error.
// Seeds: estimator_state_fuzz_corpus/. Run: build-fuzz/bin/estimator_state_fuzz DIR.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "nlohmann/json.hpp"
#include "router_core/estimate/calibrated_classifier.h"
#include "router_core/estimate/cost_model.h"
#include "router_core/estimate/featurizer.h"
#include "router_core/estimate/knn_estimator.h"
#include "router_core/estimate/uniroute_estimator.h"
#include "tests/router_core/testing/fuzz_check.h"

namespace router::core {
namespace {

constexpr int kMaxTriedDim = 4096;

void CheckEstimator(const QualityEstimator& estimator) {
  if (estimator.feature_dim() > kMaxTriedDim) return;
  const std::vector<float> row(static_cast<size_t>(estimator.feature_dim()), 0.5f);
  std::vector<QualityEstimate> out(estimator.models().size());
  if (!estimator.Predict(row, absl::MakeSpan(out)).ok()) return;
  for (const QualityEstimate& e : out) {
    testing::CheckInvariant(std::isfinite(e.quality) && e.quality >= 0 && e.quality <= 1,
                            "quality in [0, 1]");
    testing::CheckInvariant(
        std::isfinite(e.quality_lower) && e.quality_lower >= 0 && e.quality_lower <= e.quality,
        "lower bound in [0, quality]");
  }
}

}  // namespace
}  // namespace router::core

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace router::core;
  if (size < 1) return 0;
  const nlohmann::json state = nlohmann::json::parse(data + 1, data + size, /*cb=*/nullptr,
                                                     /*allow_exceptions=*/false);
  if (state.is_discarded()) return 0;
  absl::StatusOr<std::unique_ptr<QualityEstimator>> estimator;
  switch (data[0] % 5) {
    case 0:
      estimator = LoadKnnEstimator(state);
      break;
    case 1:
      estimator = LoadUniRouteEstimator(state);
      break;
    case 2:
      estimator = LoadCalibratedClassifier(state);
      break;
    case 3: {
      const absl::StatusOr<Featurizer> featurizer = Featurizer::FromJson(state);
      if (!featurizer.ok()) {
        testing::CheckRefusal("Featurizer::FromJson", featurizer.status());
      } else {
        (void)featurizer->Featurize("What is the capital of France?");
      }
      return 0;
    }
    default: {
      const absl::StatusOr<CostModel> cost = CostModel::FromJson(state);
      if (!cost.ok()) testing::CheckRefusal("CostModel::FromJson", cost.status());
      return 0;
    }
  }
  if (!estimator.ok()) {
    testing::CheckRefusal("estimator loader", estimator.status());
    return 0;
  }
  CheckEstimator(**estimator);
  return 0;
}
