// File: training_data.h
//
// The steps every consumer of a dataset split repeats before and after fitting an estimator
// (router_train, router_eval): featurize a set of prompts, pair features with the `correct`
// labels as a TrainingSet, and turn per-prompt quality predictions into HeldOutPredictions with
// predicted and realized costs (estimator_eval.h).
//
// Realized cost: the dataset's per-call cost where it has any (routerbench_subset); for datasets
// with prices but no per-call cost (llmrouter_nim9) the cost model's price x estimated-token figure
// without the task hint; NaN otherwise (routerdc_7model). Predicted cost: the cost model with the
// prompt's task as a hint.
//
// Thread-safety: pure functions; the quality callback is called sequentially.
//
// Errors: whatever the quality callback or the cost model returns, unchanged.

#ifndef ROUTER_CORE_ESTIMATE_TRAINING_DATA_H_
#define ROUTER_CORE_ESTIMATE_TRAINING_DATA_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "router_core/estimate/cost_model.h"
#include "router_core/estimate/dataset.h"
#include "router_core/estimate/estimator_eval.h"
#include "router_core/estimate/featurizer.h"
#include "router_core/estimate/quality_estimator.h"

namespace router::core {

// Feature rows of the prompts `rows`, in that order.
FeatureMatrix FeaturizeRows(const Dataset& data, absl::Span<const int64_t> rows,
                            const Featurizer& featurizer);

// The `correct` labels of `rows` for every model of the dataset, with `features` (one row each).
TrainingSet TrainingRows(const Dataset& data, absl::Span<const int64_t> rows,
                         FeatureMatrix features);

// Fills the per-model predictions of one prompt: (position in `rows`, prompt index, output).
using PromptQualityFn =
    absl::FunctionRef<absl::Status(size_t, int64_t, absl::Span<QualityEstimate>)>;

// Held-out predictions on `rows` for every model of the dataset (see the file comment for costs).
absl::StatusOr<HeldOutPredictions> PredictHeldOut(const Dataset& data,
                                                  absl::Span<const int64_t> rows,
                                                  const CostModel& cost, PromptQualityFn quality);

}  // namespace router::core

#endif  // ROUTER_CORE_ESTIMATE_TRAINING_DATA_H_
