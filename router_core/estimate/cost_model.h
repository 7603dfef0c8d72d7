// File: cost_model.h
//
// Expected USD cost of sending one query to each model. Per model it knows, where available, its
// token prices (USD per 1M input / output tokens) and the per-call costs observed in training data
// (mean overall and per task). For a query it uses, in this order:
//   1. prices x token hints, when the caller sends an input token count and the model has prices
//      (output tokens: the caller's hint, else `default_output_tokens`);
//   2. the observed mean for the query's task, when the caller names a task and the data hold at
//      least `min_task_samples` costs of this model on it;
//   3. the observed mean over all training prompts of this model;
//   4. prices x estimated tokens: input = text bytes / `bytes_per_token`, output = the hint or
//      `default_output_tokens` (llmrouter_nim9: prices but no per-call cost);
//   5. 0: no price and no data means a self-hosted model, which costs nothing per query (its
//      limit is concurrency slots, not money; BRIEF section 2.1).
//
// Thread-safety: immutable after construction except AddModel; const methods are safe to call
// concurrently, AddModel must not run concurrently with anything.
//
// Errors: INVALID_ARGUMENT naming the bad option, field or value; NOT_FOUND for an unknown model;
// ALREADY_EXISTS for a duplicate. Nothing throws.

#ifndef ROUTER_CORE_ESTIMATE_COST_MODEL_H_
#define ROUTER_CORE_ESTIMATE_COST_MODEL_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "nlohmann/json.hpp"
#include "router_core/estimate/dataset.h"

namespace router::core {

struct CostModelOptions {
  // Observed costs of a model on a task needed before the task mean is trusted, >= 1.
  int min_task_samples = 5;
  // Bytes per token for rule 4, > 0. 4 is the usual figure for English text with BPE tokenizers.
  double bytes_per_token = 4.0;
  // Output tokens assumed when the caller gives none, >= 0. llmrouter_nim9 has no response
  // lengths; 256 is a mid-range completion for its QA and code tasks (an assumption, not data).
  double default_output_tokens = 256.0;
};

// What the caller knows about one query.
struct CostQuery {
  int64_t text_bytes = 0;
  std::optional<std::string> task;
  std::optional<double> input_tokens;   // >= 0 when set
  std::optional<double> output_tokens;  // >= 0 when set
};

// One model's cost knowledge.
struct ModelCost {
  std::string name;
  std::optional<double> input_usd_per_mtok;
  std::optional<double> output_usd_per_mtok;
  std::optional<double> mean_usd;               // observed mean per call
  std::map<std::string, double> task_mean_usd;  // observed mean per call, per task
};

class CostModel {
 public:
  // A model per entry of `models` (names unique and non-empty; prices and means finite, >= 0).
  static absl::StatusOr<CostModel> Create(std::vector<ModelCost> models,
                                          const CostModelOptions& options);
  // From the dataset's prices and the per-call costs of the prompts `rows` (the training part).
  static absl::StatusOr<CostModel> Fit(const Dataset& dataset, absl::Span<const int64_t> rows,
                                       const CostModelOptions& options);
  static absl::StatusOr<CostModel> FromJson(const nlohmann::json& json);
  nlohmann::json ToJson() const;

  const std::vector<ModelCost>& models() const { return models_; }
  const CostModelOptions& options() const { return options_; }
  // Index of `name` in models(), or NOT_FOUND.
  absl::StatusOr<int> IndexOf(absl::string_view name) const;

  // Expected cost of `query` on models()[model], following the rules above. INVALID_ARGUMENT for
  // a negative or non-finite token hint or text size, or a model index out of range.
  absl::StatusOr<double> Expected(int model, const CostQuery& query) const;

  absl::Status AddModel(ModelCost model);

 private:
  CostModel(std::vector<ModelCost> models, const CostModelOptions& options)
      : models_(std::move(models)), options_(options) {}

  std::vector<ModelCost> models_;
  CostModelOptions options_;
};

}  // namespace router::core

#endif  // ROUTER_CORE_ESTIMATE_COST_MODEL_H_
