#include "router_core/estimate/training_data.h"

#include <cmath>
#include <limits>
#include <utility>

namespace router::core {

FeatureMatrix FeaturizeRows(const Dataset& data, absl::Span<const int64_t> rows,
                            const Featurizer& featurizer) {
  FeatureMatrix m;
  m.dim = featurizer.dim();
  m.values.resize(rows.size() * static_cast<size_t>(m.dim));
  for (size_t r = 0; r < rows.size(); ++r) {
    featurizer
        .Featurize(data.prompts[static_cast<size_t>(rows[r])].text,
                   absl::MakeSpan(m.values.data() + r * static_cast<size_t>(m.dim),
                                  static_cast<size_t>(m.dim)))
        .IgnoreError();  // the span has dim() values by construction
  }
  return m;
}

TrainingSet TrainingRows(const Dataset& data, absl::Span<const int64_t> rows,
                         FeatureMatrix features) {
  TrainingSet t;
  t.features = std::move(features);
  for (const auto& m : data.models) t.models.push_back(m.name);
  for (const int64_t p : rows) {
    for (size_t j = 0; j < data.models.size(); ++j) {
      t.labels.push_back(data.correct[data.at(p, static_cast<int>(j))]);
    }
  }
  return t;
}

absl::StatusOr<HeldOutPredictions> PredictHeldOut(const Dataset& data,
                                                  absl::Span<const int64_t> rows,
                                                  const CostModel& cost, PromptQualityFn quality) {
  HeldOutPredictions h;
  h.num_prompts = static_cast<int64_t>(rows.size());
  const size_t m = data.models.size();
  for (const auto& model : data.models) h.models.push_back(model.name);
  bool dataset_has_cost = false;
  for (const double c : data.cost_usd) dataset_has_cost = dataset_has_cost || !std::isnan(c);
  std::vector<QualityEstimate> q(m);
  for (size_t r = 0; r < rows.size(); ++r) {
    const DatasetPrompt& prompt = data.prompts[static_cast<size_t>(rows[r])];
    if (absl::Status s = quality(r, rows[r], absl::MakeSpan(q)); !s.ok()) return s;
    CostQuery query;
    query.text_bytes = static_cast<int64_t>(prompt.text.size());
    query.task = prompt.task;
    CostQuery untasked = query;
    untasked.task.reset();
    for (size_t j = 0; j < m; ++j) {
      const size_t at = data.at(rows[r], static_cast<int>(j));
      absl::StatusOr<double> predicted = cost.Expected(static_cast<int>(j), query);
      if (!predicted.ok()) return predicted.status();
      h.quality.push_back(q[j].quality);
      h.quality_lower.push_back(q[j].quality_lower);
      h.predicted_cost.push_back(*predicted);
      h.correct.push_back(data.correct[at]);
      double realized = std::numeric_limits<double>::quiet_NaN();
      if (dataset_has_cost) {
        realized = data.cost_usd[at];
      } else if (data.models[j].input_usd_per_mtok.has_value()) {
        absl::StatusOr<double> estimate = cost.Expected(static_cast<int>(j), untasked);
        if (!estimate.ok()) return estimate.status();
        realized = *estimate;
      }
      h.realized_cost.push_back(realized);
    }
  }
  return h;
}

}  // namespace router::core
