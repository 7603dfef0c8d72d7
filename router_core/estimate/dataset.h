// File: dataset.h
//
// Reader for the common routing-data layout of ../shared/data/*/derived/ (see its README):
//   prompts.jsonl  one JSON object per line: prompt_id, task, text, split (+ extras, ignored)
//   labels.csv     prompt_id,model,score,correct,cost_usd (empty cell = missing)
//   models.csv     model + optional price/size columns
// and a seeded split of its prompts into train / calibration / test.
//
// The pool is every model of models.csv that has at least one label, in models.csv order (the
// llmrouter_nim9 file lists priced models that were never evaluated). Scores, correctness and
// per-call costs are dense prompts x models matrices with NaN for "no label".
//
// Thread-safety: plain values and pure functions.
//
// Errors: NOT_FOUND for a missing or unreadable file; INVALID_ARGUMENT naming `file:line` and the
// problem for malformed content (bad JSON, missing column or key, unparsable number, unknown or
// duplicate prompt/model, duplicate label). Nothing throws.

#ifndef ROUTER_CORE_ESTIMATE_DATASET_H_
#define ROUTER_CORE_ESTIMATE_DATASET_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace router::core {

struct DatasetPrompt {
  std::string id;
  std::string task;
  std::string text;
  std::string upstream_split;  // the dataset's own split ("train", "test", "ood_test"); may be ""
};

struct DatasetModel {
  std::string name;
  // USD per 1M tokens (llmrouter_nim9); nullopt when the dataset gives no price.
  std::optional<double> input_usd_per_mtok;
  std::optional<double> output_usd_per_mtok;
  // Parameter count in billions (`size` "7B" or `params_b_from_name`); nullopt when unknown.
  std::optional<double> params_b;
};

struct Dataset {
  // The dataset's directory name: the parent of `derived/` (e.g. "routerbench_subset").
  std::string name;
  std::vector<DatasetPrompt> prompts;
  std::vector<DatasetModel> models;
  // prompts.size() x models.size(), row-major; NaN = missing.
  std::vector<double> score;
  std::vector<double> correct;   // in [0, 1]
  std::vector<double> cost_usd;  // >= 0; NaN where the dataset has no per-call cost

  size_t at(int64_t prompt, int model) const {
    return static_cast<size_t>(prompt) * models.size() + static_cast<size_t>(model);
  }
};

// Reads `dir` (a `derived/` folder).
absl::StatusOr<Dataset> ReadDataset(const std::string& dir);

// Fractions of the prompts in each part. Defaults 0.6 / 0.2 / 0.2: enough training prompts for
// kNN neighbourhoods, and calibration and test parts large enough for per-model rates on the
// smallest dataset (routerbench_subset: about 636 prompts each).
struct SplitOptions {
  double train = 0.6;
  double calibration = 0.2;
  double test = 0.2;
  uint64_t seed = 1;
};

// Prompt indices of each part, each sorted ascending.
struct DatasetSplit {
  std::vector<int64_t> train;
  std::vector<int64_t> calibration;
  std::vector<int64_t> test;
};

// Splits the prompts, ignoring the upstream split (llmrouter_nim9's upstream split leaks test
// texts into train). Prompts with byte-identical text form one group that goes to a single part,
// so no text occurs in two parts. Groups are shuffled with a portable seeded generator (the same
// split on every platform) and dealt in order until each part holds its fraction of the prompts.
// INVALID_ARGUMENT unless every fraction is finite and >= 0, train > 0, and they sum to 1 (1e-9).
absl::StatusOr<DatasetSplit> SplitDataset(const Dataset& dataset, const SplitOptions& options);

}  // namespace router::core

#endif  // ROUTER_CORE_ESTIMATE_DATASET_H_
