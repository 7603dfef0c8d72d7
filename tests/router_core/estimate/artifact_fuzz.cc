// libFuzzer target of ParseArtifact, the estimator file routerd loads at start, on SIGHUP and
// through RouterAdmin (CBOR, then each estimator kind's state loader, the featurizer and the cost
// model): any bytes give an Artifact or INVALID_ARGUMENT, never a crash, a hang or unbounded
// memory. An accepted artifact must make a predictor whose estimates for a short query are finite
// with 0 <= lower <= quality <= 1, or refuse it with an error. Each input is parsed as it is (a
// mutated artifact mostly fails its checksum) and again with its checksum recomputed
// (StampArtifactChecksum), so the decoder and the loaders see the mutations too.
// Seeds: artifact_fuzz_corpus/ (small artifacts of every kind).
// Run: build-fuzz/bin/artifact_fuzz DIR.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "router_core/estimate/artifact.h"
#include "router_core/estimate/predictor.h"
#include "tests/router_core/testing/fuzz_check.h"

namespace router::core {
namespace {

// Larger caller embeddings are not tried: their size is the caller's, not the artifact's.
constexpr int kMaxTriedDim = 4096;

void PredictOnce(const Predictor& predictor) {
  PredictRequest request;
  request.text = "What is the capital of France?";
  std::vector<float> embedding;
  if (!predictor.featurizer().has_value()) {
    if (predictor.feature_dim() > kMaxTriedDim) return;
    embedding.assign(static_cast<size_t>(predictor.feature_dim()), 0.5f);
    request.embedding = absl::MakeConstSpan(embedding);
  }
  const absl::StatusOr<Predictions> out = predictor.Predict(request);
  if (!out.ok()) return;  // a refusal is the caller's answer; the server maps it
  const size_t n = predictor.models().size();
  testing::CheckInvariant(out->quality.size() == n && out->quality_lower.size() == n &&
                              out->cost_usd.size() == n,
                          "one prediction per model");
  for (size_t j = 0; j < n; ++j) {
    const double q = out->quality[j];
    const double lower = out->quality_lower[j];
    testing::CheckInvariant(std::isfinite(q) && q >= 0 && q <= 1, "quality in [0, 1]");
    testing::CheckInvariant(std::isfinite(lower) && lower >= 0 && lower <= q,
                            "lower bound in [0, quality]");
    testing::CheckInvariant(std::isfinite(out->cost_usd[j]) && out->cost_usd[j] >= 0,
                            "cost finite and >= 0");
  }
}

}  // namespace
}  // namespace router::core

namespace router::core {
namespace {

void ParseAndPredict(const std::string& bytes) {
  absl::StatusOr<Artifact> artifact = ParseArtifact(bytes);
  if (!artifact.ok()) {
    testing::CheckRefusal("ParseArtifact", artifact.status());
    return;
  }
  absl::StatusOr<Predictor> predictor = MakePredictor(*std::move(artifact));
  if (predictor.ok()) PredictOnce(*predictor);
}

}  // namespace
}  // namespace router::core

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace router::core;
  std::string bytes(testing::FuzzText(data, size));
  ParseAndPredict(bytes);
  if (StampArtifactChecksum(&bytes).ok()) ParseAndPredict(bytes);
  return 0;
}
