#include "tests/router_core/estimate/estimate_testing.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "nlohmann/json.hpp"
#include "router_core/estimate/calibration_metrics.h"

namespace router::core::testing {
namespace {

uint64_t Fnv1a(absl::string_view text, uint64_t seed) {
  uint64_t h = 1469598103934665603ULL ^ (seed * 0x9E3779B97F4A7C15ULL);
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

// Hashes of the lower-cased alphanumeric words and of each adjacent pair, computed in one pass
// without building strings (the tests also run under Debug ASan, where allocations dominate).
std::vector<uint64_t> NgramHashes(absl::string_view text) {
  constexpr uint64_t kPrime = 1099511628211ULL;
  std::vector<uint64_t> out;
  uint64_t word = 1469598103934665603ULL;
  bool in_word = false;
  bool has_previous = false;
  uint64_t previous = 0;
  auto finish_word = [&] {
    out.push_back(word);
    if (has_previous) out.push_back((previous * 0x9E3779B97F4A7C15ULL) ^ (word * kPrime) ^ 1);
    previous = word;
    has_previous = true;
    word = 1469598103934665603ULL;
    in_word = false;
  };
  for (unsigned char c : text) {
    if (std::isalnum(c)) {
      word = (word ^ static_cast<unsigned char>(std::tolower(c))) * kPrime;
      in_word = true;
    } else if (in_word) {
      finish_word();
    }
  }
  if (in_word) finish_word();
  return out;
}

struct Prompt {
  std::string text;
  std::vector<double> labels;  // per model, NaN = missing
  int part = 0;                // 0 train, 1 calibration, 2 test
};

}  // namespace

absl::StatusOr<RouterbenchSplits> LoadSplits(const std::string& derived_dir, uint64_t seed) {
  const std::string prompts_path = derived_dir + "/prompts.jsonl";
  const std::string labels_path = derived_dir + "/labels.csv";
  std::ifstream prompts_file(prompts_path);
  if (!prompts_file) return absl::NotFoundError(absl::StrCat("cannot open ", prompts_path));
  std::vector<Prompt> prompts;
  absl::flat_hash_map<std::string, size_t> index_of_id;
  std::string line;
  while (std::getline(prompts_file, line)) {
    if (line.empty()) continue;
    const nlohmann::json row = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!row.is_object() || !row.contains("prompt_id") || !row["prompt_id"].is_string() ||
        !row.contains("text") || !row["text"].is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(prompts_path, ": line ", prompts.size() + 1, " is malformed"));
    }
    index_of_id[row["prompt_id"].get<std::string>()] = prompts.size();
    prompts.push_back({row["text"].get<std::string>(), {}, 0});
  }

  std::ifstream labels_file(labels_path);
  if (!labels_file) return absl::NotFoundError(absl::StrCat("cannot open ", labels_path));
  std::vector<std::string> models;
  absl::flat_hash_map<std::string, int> model_index;
  struct Cell {
    size_t prompt;
    int model;
    double correct;
  };
  std::vector<Cell> cells;
  std::getline(labels_file, line);
  if (line != "prompt_id,model,score,correct,cost_usd") {
    return absl::InvalidArgumentError(
        absl::StrCat(labels_path, ": unexpected header '", line, "'"));
  }
  int line_number = 1;
  while (std::getline(labels_file, line)) {
    ++line_number;
    if (line.empty()) continue;
    const std::vector<absl::string_view> fields = absl::StrSplit(line, ',');
    double correct = 0.0;
    const auto prompt = fields.size() == 5 ? index_of_id.find(fields[0]) : index_of_id.end();
    if (prompt == index_of_id.end() || !absl::SimpleAtod(fields[3], &correct)) {
      return absl::InvalidArgumentError(
          absl::StrCat(labels_path, ": line ", line_number, " is malformed"));
    }
    const auto [it, inserted] =
        model_index.try_emplace(std::string(fields[1]), static_cast<int>(models.size()));
    if (inserted) models.emplace_back(fields[1]);
    cells.push_back({prompt->second, it->second, correct});
  }
  if (prompts.empty() || models.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(derived_dir, ": no prompts or no labels"));
  }
  for (Prompt& p : prompts) {
    p.labels.assign(models.size(), std::numeric_limits<double>::quiet_NaN());
    const uint64_t bucket = Fnv1a(p.text, seed) % 10;
    p.part = bucket < 6 ? 0 : (bucket < 8 ? 1 : 2);
  }
  for (const Cell& cell : cells) prompts[cell.prompt].labels[cell.model] = cell.correct;

  // Document frequencies of the n-grams over the training part only.
  absl::flat_hash_map<uint64_t, double> document_frequency;
  double train_documents = 0.0;
  std::vector<std::vector<uint64_t>> ngrams(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    ngrams[i] = NgramHashes(prompts[i].text);
    if (prompts[i].part != 0) continue;
    train_documents += 1.0;
    std::vector<uint64_t> distinct = ngrams[i];
    std::sort(distinct.begin(), distinct.end());
    distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
    for (uint64_t h : distinct) document_frequency[h] += 1.0;
  }

  RouterbenchSplits splits;
  TrainingSet* parts[3] = {&splits.train, &splits.calibration, &splits.test};
  for (TrainingSet* part : parts) {
    part->models = models;
    part->features.dim = kTestFeatureDim;
  }
  for (size_t i = 0; i < prompts.size(); ++i) {
    // Sorted, so equal n-grams are adjacent (their run length is the term frequency) and the
    // float sums below run in a fixed order.
    std::vector<uint64_t>& sorted = ngrams[i];
    std::sort(sorted.begin(), sorted.end());
    std::vector<double> row(kTestFeatureDim, 0.0);
    for (size_t start = 0; start < sorted.size();) {
      const uint64_t h = sorted[start];
      size_t end = start;
      while (end < sorted.size() && sorted[end] == h) ++end;
      const auto df = document_frequency.find(h);
      const double idf = std::log((train_documents + 1.0) /
                                  ((df == document_frequency.end() ? 0.0 : df->second) + 1.0)) +
                         1.0;
      const double sign = (h >> 63) != 0 ? -1.0 : 1.0;
      row[(h >> 8) % kTestFeatureDim] +=
          sign * (1.0 + std::log(static_cast<double>(end - start))) * idf;
      start = end;
    }
    double norm2 = 0.0;
    for (double v : row) norm2 += v * v;
    const double inv = norm2 > 0.0 ? 1.0 / std::sqrt(norm2) : 0.0;
    TrainingSet& part = *parts[prompts[i].part];
    for (double v : row) part.features.values.push_back(static_cast<float>(v * inv));
    part.labels.insert(part.labels.end(), prompts[i].labels.begin(), prompts[i].labels.end());
  }
  return splits;
}

const absl::StatusOr<RouterbenchSplits>& Routerbench() {
  static const auto* const splits = new absl::StatusOr<RouterbenchSplits>(
      LoadSplits(ROUTER_DATA_DIR "/routerbench_subset/derived", kTestSplitSeed));
  return *splits;
}

TrainingSet Head(const TrainingSet& set, int64_t max_rows) {
  const int64_t rows = std::min(set.features.rows(), max_rows);
  TrainingSet out;
  out.models = set.models;
  out.features.dim = set.features.dim;
  out.features.values.assign(set.features.values.begin(),
                             set.features.values.begin() + rows * set.features.dim);
  out.labels.assign(set.labels.begin(),
                    set.labels.begin() + rows * static_cast<int64_t>(set.models.size()));
  return out;
}

TrainingSet WithoutModel(const TrainingSet& set, int model) {
  TrainingSet out;
  out.features = set.features;
  for (size_t j = 0; j < set.models.size(); ++j) {
    if (static_cast<int>(j) != model) out.models.push_back(set.models[j]);
  }
  for (int64_t i = 0; i < set.features.rows(); ++i) {
    for (size_t j = 0; j < set.models.size(); ++j) {
      if (static_cast<int>(j) != model) out.labels.push_back(set.label(i, static_cast<int>(j)));
    }
  }
  return out;
}

ModelValidation ValidationOf(const TrainingSet& set, int model) {
  ModelValidation out;
  out.features.dim = set.features.dim;
  for (int64_t i = 0; i < set.features.rows(); ++i) {
    const double y = set.label(i, model);
    if (std::isnan(y)) continue;
    const auto row = set.features.row(i);
    out.features.values.insert(out.features.values.end(), row.begin(), row.end());
    out.scores.push_back(y);
  }
  return out;
}

const RouterbenchSplits& RouterbenchOrDie() {
  const absl::StatusOr<RouterbenchSplits>& data = Routerbench();
  if (!data.ok()) {
    ADD_FAILURE() << "routerbench_subset: " << data.status();
    std::abort();
  }
  return *data;
}

FeatureMatrix Matrix(int dim, std::vector<float> values) {
  FeatureMatrix m;
  m.dim = dim;
  m.values = std::move(values);
  return m;
}

TrainingSet Set(FeatureMatrix features, std::vector<std::string> models,
                std::vector<double> labels) {
  TrainingSet set;
  set.features = std::move(features);
  set.models = std::move(models);
  set.labels = std::move(labels);
  return set;
}

ModelValidation Validation(FeatureMatrix features, std::vector<double> scores) {
  ModelValidation v;
  v.features = std::move(features);
  v.scores = std::move(scores);
  return v;
}

std::vector<QualityEstimate> PredictRow(const QualityEstimator& e, absl::Span<const float> row) {
  std::vector<QualityEstimate> out(e.models().size());
  const absl::Status s = e.Predict(row, absl::MakeSpan(out));
  EXPECT_TRUE(s.ok()) << s;
  return out;
}

std::vector<std::vector<QualityEstimate>> PredictRows(const QualityEstimator& e,
                                                      const FeatureMatrix& features) {
  std::vector<std::vector<QualityEstimate>> out;
  for (int64_t i = 0; i < features.rows(); ++i) out.push_back(PredictRow(e, features.row(i)));
  return out;
}

HeldOutQuality EvaluateHeldOut(const std::vector<std::vector<QualityEstimate>>& predictions,
                               const TrainingSet& test) {
  const int m = static_cast<int>(test.models.size());
  std::vector<double> p;
  std::vector<double> y;
  double routed = 0.0;
  double routed_count = 0.0;
  std::vector<double> model_sum(m, 0.0);
  std::vector<double> model_count(m, 0.0);
  for (int64_t i = 0; i < test.features.rows(); ++i) {
    const std::vector<QualityEstimate>& row = predictions[static_cast<size_t>(i)];
    int best = 0;
    for (int j = 0; j < m; ++j) {
      const QualityEstimate& q = row[static_cast<size_t>(j)];
      if (!(std::isfinite(q.quality) && std::isfinite(q.quality_lower) && q.quality_lower >= 0.0 &&
            q.quality_lower <= q.quality && q.quality <= 1.0)) {
        ADD_FAILURE() << "row " << i << " model " << j << ": quality " << q.quality << ", lower "
                      << q.quality_lower;
        return {};
      }
      if (q.quality > row[static_cast<size_t>(best)].quality) best = j;
      if (std::isnan(test.label(i, j))) continue;
      p.push_back(q.quality);
      y.push_back(test.label(i, j));
      model_sum[j] += test.label(i, j);
      model_count[j] += 1.0;
    }
    if (!std::isnan(test.label(i, best))) {
      routed += test.label(i, best);
      routed_count += 1.0;
    }
  }
  HeldOutQuality out;
  absl::StatusOr<double> ece = ExpectedCalibrationError(p, y, 10);
  EXPECT_TRUE(ece.ok()) << ece.status();
  out.ece = ece.ok() ? *ece : 1.0;
  out.routed_accuracy = routed / routed_count;
  for (int j = 0; j < m; ++j) {
    out.best_single_accuracy = std::max(out.best_single_accuracy, model_sum[j] / model_count[j]);
  }
  return out;
}

void ExpectIdentical(const QualityEstimator& a, const QualityEstimator& b,
                     const FeatureMatrix& features) {
  EXPECT_EQ(a.Save().dump(), b.Save().dump());
  const auto pa = PredictRows(a, features);
  const auto pb = PredictRows(b, features);
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    ASSERT_EQ(pa[i].size(), pb[i].size()) << "row " << i;
    for (size_t j = 0; j < pa[i].size(); ++j) {
      ASSERT_EQ(pa[i][j].quality, pb[i][j].quality) << "row " << i << " model " << j;
      ASSERT_EQ(pa[i][j].quality_lower, pb[i][j].quality_lower) << "row " << i << " model " << j;
    }
  }
}

void ExpectRemovalContract(const QualityEstimator& original, const std::string& removed,
                           const FeatureMatrix& features, EstimatorLoader load) {
  using ::testing::Contains;
  using ::testing::Not;
  std::unique_ptr<QualityEstimator> e = original.Clone();
  const std::vector<std::string> names = e->models();
  const auto removed_at = std::find(names.begin(), names.end(), removed);
  ASSERT_NE(removed_at, names.end()) << removed;
  const size_t removed_index = static_cast<size_t>(removed_at - names.begin());
  const auto before = PredictRows(*e, features);
  ASSERT_TRUE(e->RemoveModel(removed).ok());
  EXPECT_THAT(e->models(), Not(Contains(removed)));
  EXPECT_EQ(e->models().size(), names.size() - 1);
  const absl::Status again = e->RemoveModel(removed);
  EXPECT_EQ(again.code(), absl::StatusCode::kNotFound) << again;
  EXPECT_THAT(std::string(again.message()), ::testing::HasSubstr(removed));
  std::vector<QualityEstimate> full(names.size());
  const absl::Status wrong_size = e->Predict(features.row(0), absl::MakeSpan(full));
  EXPECT_EQ(wrong_size.code(), absl::StatusCode::kInvalidArgument) << wrong_size;
  EXPECT_THAT(std::string(wrong_size.message()), ::testing::HasSubstr("out"));
  const auto after = PredictRows(*e, features);
  for (size_t i = 0; i < after.size(); ++i) {
    ASSERT_EQ(after[i].size(), e->models().size());
    for (size_t j = 0; j < after[i].size(); ++j) {
      const size_t old = j < removed_index ? j : j + 1;
      ASSERT_EQ(after[i][j].quality, before[i][old].quality) << "row " << i << " model " << j;
      ASSERT_EQ(after[i][j].quality_lower, before[i][old].quality_lower)
          << "row " << i << " model " << j;
    }
  }
  const nlohmann::json saved = e->Save();
  EXPECT_THAT(saved.dump(), Not(::testing::HasSubstr(removed)));
  absl::StatusOr<std::unique_ptr<QualityEstimator>> loaded = load(saved);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_THAT((*loaded)->models(), Not(Contains(removed)));
  EXPECT_THAT(original.models(), Contains(removed));
}

}  // namespace router::core::testing
