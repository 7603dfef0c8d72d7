#include "router_core/estimate/predictor.h"

#include <cmath>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace router::core {

absl::StatusOr<Predictor> Predictor::Create(std::optional<Featurizer> featurizer,
                                            std::shared_ptr<const QualityEstimator> estimator,
                                            CostModel cost_model) {
  if (estimator == nullptr) return absl::InvalidArgumentError("estimator: null");
  if (featurizer.has_value() && featurizer->dim() != estimator->feature_dim()) {
    return absl::InvalidArgumentError(absl::StrCat("featurizer.dim: ", featurizer->dim(),
                                                   " differs from the estimator's ",
                                                   estimator->feature_dim()));
  }
  std::vector<int> cost_index;
  for (const std::string& name : estimator->models()) {
    absl::StatusOr<int> index = cost_model.IndexOf(name);
    if (!index.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("cost_model: no entry for pool model '", name, "'"));
    }
    cost_index.push_back(*index);
  }
  return Predictor(std::move(featurizer), std::move(estimator), std::move(cost_model),
                   std::move(cost_index));
}

absl::StatusOr<Predictions> Predictor::Predict(
    const PredictRequest& request) const {
  // Inline capacities cover the default featurizer (256) and pools of up to 16 models without a
  // heap allocation; larger ones spill to the heap.
  absl::InlinedVector<float, 256> features;
  absl::Span<const float> input;
  if (request.embedding.has_value()) {
    const absl::Span<const float> embedding = *request.embedding;
    if (embedding.size() != static_cast<size_t>(feature_dim())) {
      return absl::InvalidArgumentError(
          absl::StrCat("embedding: expected ", feature_dim(), " values, got ", embedding.size()));
    }
    for (size_t k = 0; k < embedding.size(); ++k) {
      if (!std::isfinite(embedding[k])) {
        return absl::InvalidArgumentError(absl::StrCat("embedding[", k, "]: not finite"));
      }
    }
    input = embedding;
  } else {
    if (!featurizer_.has_value()) {
      return absl::FailedPreconditionError(
          "text: this estimator works on caller embeddings only; send `embedding`");
    }
    features.resize(static_cast<size_t>(featurizer_->dim()));
    // The span has the featurizer's size by construction.
    featurizer_->Featurize(request.text, absl::MakeSpan(features)).IgnoreError();
    input = features;
  }

  const size_t m = models().size();
  absl::InlinedVector<QualityEstimate, 16> quality(m);
  int cluster = 0;
  if (absl::Status s = estimator_->PredictWithCluster(input, absl::MakeSpan(quality), &cluster);
      !s.ok()) {
    return s;
  }

  CostQuery query;
  query.text_bytes = static_cast<int64_t>(request.text.size());
  query.task = request.task;
  query.input_tokens = request.input_tokens;
  query.output_tokens = request.output_tokens;
  Predictions out;
  out.quality.resize(m);
  out.quality_lower.resize(m);
  out.cost_usd.resize(m);
  out.cluster = cluster;
  for (size_t j = 0; j < m; ++j) {
    absl::StatusOr<double> cost = cost_model_.Expected(cost_index_[j], query);
    if (!cost.ok()) return cost.status();
    out.quality[j] = quality[j].quality;
    out.quality_lower[j] = quality[j].quality_lower;
    out.cost_usd[j] = *cost;
  }
  return out;
}

}  // namespace router::core
