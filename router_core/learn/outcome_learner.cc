#include "router_core/learn/outcome_learner.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/random/beta_distribution.h"
#include "absl/random/distributions.h"
#include "absl/strings/str_cat.h"
#include "router_core/json/json_reader.h"

namespace router::core {
namespace {

using Json = nlohmann::json;

absl::Status Invalid(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

absl::Status CheckPositive(absl::string_view field, double v) {
  if (std::isfinite(v) && v > 0.0) return absl::OkStatus();
  return Invalid(field, absl::StrCat("must be finite and > 0, got ", v));
}

absl::Status CheckUnit(absl::string_view field, double v) {
  if (v >= 0.0 && v <= 1.0) return absl::OkStatus();
  return Invalid(field, absl::StrCat("must be in [0, 1], got ", v));
}

// A draw of Beta(q n, (1 - q) n), or q itself at the edges (where the Beta is degenerate).
double SampleBeta(double q, double n, absl::BitGenRef rng) {
  if (q <= 0.0 || q >= 1.0) return q;
  absl::beta_distribution<double> beta(q * n, (1.0 - q) * n);
  return std::clamp(beta(rng), 0.0, 1.0);
}

// Relative slack for sums read back from a snapshot (rounding of decayed sums).
constexpr double kSumSlack = 1e-9;

}  // namespace

absl::Status ValidateOutcomeLearnerOptions(const OutcomeLearnerOptions& options) {
  if (absl::Status s = CheckPositive("half_life_outcomes", options.half_life_outcomes); !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckPositive("prior_strength", options.prior_strength); !s.ok()) return s;
  if (absl::Status s = CheckUnit("cold_start_quality", options.cold_start_quality); !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckPositive("cold_start_strength", options.cold_start_strength);
      !s.ok()) {
    return s;
  }
  if (!(options.lower_quantile > 0.0 && options.lower_quantile <= 0.5)) {
    return Invalid("lower_quantile",
                   absl::StrCat("must be in (0, 0.5], got ", options.lower_quantile));
  }
  if (absl::Status s = CheckUnit("exploration", options.exploration); !s.ok()) return s;
  if (options.max_cells < 1) {
    return Invalid("max_cells", absl::StrCat("must be >= 1, got ", options.max_cells));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<OutcomeLearner>> OutcomeLearner::Create(
    OutcomeLearnerOptions options) {
  if (absl::Status s = ValidateOutcomeLearnerOptions(options); !s.ok()) return s;
  absl::StatusOr<const BetaLowerTable*> table = BetaLowerTable::ForLevel(options.lower_quantile);
  if (!table.ok()) return table.status();
  return std::unique_ptr<OutcomeLearner>(new OutcomeLearner(options, *table));
}

OutcomeLearner::OutcomeLearner(OutcomeLearnerOptions options, const BetaLowerTable* table)
    : options_(options), decay_(std::exp2(-1.0 / options.half_life_outcomes)), table_(table) {}

void OutcomeLearner::MarkColdStart(absl::string_view model, bool cold) {
  absl::MutexLock lock(&mu_);
  const bool was = cold_.contains(model);
  if (was == cold) return;
  if (cold) {
    cold_.insert(std::string(model));
  } else {
    cold_.erase(model);
  }
  auto it = models_.find(model);
  if (it != models_.end()) {
    num_cells_ -= static_cast<int64_t>(it->second.cells.size());
    models_.erase(it);
  }
}

double OutcomeLearner::ColdStartBaseline(absl::Span<const std::string> models,
                                         absl::Span<const double> quality) const {
  absl::ReaderMutexLock lock(&mu_);
  double sum = 0.0;
  int count = 0;
  for (size_t j = 0; j < models.size() && j < quality.size(); ++j) {
    if (cold_.contains(models[j])) continue;
    sum += std::clamp(quality[j], 0.0, 1.0);
    ++count;
  }
  return count == 0 ? options_.cold_start_quality : sum / count;
}

bool OutcomeLearner::IsColdStart(absl::string_view model) const {
  absl::ReaderMutexLock lock(&mu_);
  return cold_.contains(model);
}

absl::Status OutcomeLearner::Record(absl::string_view model, int cluster, double prior_quality,
                                    double score) {
  if (model.empty()) return Invalid("model", "empty");
  if (cluster < 0) return Invalid("cluster", absl::StrCat("must be >= 0, got ", cluster));
  if (absl::Status s = CheckUnit("score", score); !s.ok()) return s;
  if (absl::Status s = CheckUnit("prior_quality", prior_quality); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  auto model_it = models_.find(model);
  Cell* cell = nullptr;
  if (model_it != models_.end()) {
    auto cell_it = model_it->second.cells.find(cluster);
    if (cell_it != model_it->second.cells.end()) cell = &cell_it->second;
  }
  if (cell == nullptr) {
    if (num_cells_ >= options_.max_cells) {
      ++dropped_;
      return absl::OkStatus();
    }
    if (model_it == models_.end()) model_it = models_.try_emplace(std::string(model)).first;
    cell = &model_it->second.cells[cluster];
    ++num_cells_;
  }
  const double old_weight = cell->weight, old_score = cell->score_sum, old_prior = cell->prior_sum;
  cell->weight = decay_ * cell->weight + 1.0;
  cell->score_sum = decay_ * cell->score_sum + score;
  cell->prior_sum = decay_ * cell->prior_sum + prior_quality;
  ++cell->outcomes;
  model_it->second.weight_total += cell->weight - old_weight;
  model_it->second.score_total += cell->score_sum - old_score;
  model_it->second.prior_total += cell->prior_sum - old_prior;
  return absl::OkStatus();
}

void OutcomeLearner::ModelCells::Resum() {
  weight_total = 0.0;
  score_total = 0.0;
  prior_total = 0.0;
  for (const auto& [cluster, cell] : cells) {
    weight_total += cell.weight;
    score_total += cell.score_sum;
    prior_total += cell.prior_sum;
  }
}

bool OutcomeLearner::Posterior(const ModelCells* model, const Cell* cell, bool cold,
                               double prior, double* q, double* n) const {
  if (cold) {
    // `prior` is the query's baseline b. Evidence E = S + W b - P (the outcomes, each moved by how
    // much easier or harder this query is than theirs) against the cold-start level c, first
    // pooled over the model's cells, g = (m c + E_model) / (m + W_model), then in the cell,
    // q = (m g + E_cell) / (m + W_cell).
    const double m = options_.cold_start_strength;
    const double c = options_.cold_start_quality;
    const double pooled =
        model == nullptr ? c
                         : (m * c + model->score_total + model->weight_total * prior -
                            model->prior_total) /
                               (m + model->weight_total);
    if (cell == nullptr) {
      *n = m;
      *q = std::clamp(pooled, 0.0, 1.0);
    } else {
      *n = m + cell->weight;
      *q = std::clamp(
          (m * pooled + cell->score_sum + cell->weight * prior - cell->prior_sum) / *n, 0.0, 1.0);
    }
    return true;
  }
  if (cell == nullptr) return false;
  *n = options_.prior_strength + cell->weight;
  *q = std::clamp(prior + (cell->score_sum - cell->prior_sum) / *n, 0.0, 1.0);
  return true;
}

bool OutcomeLearner::Adjust(absl::Span<const std::string> models, int cluster,
                            absl::Span<double> quality, absl::Span<double> quality_lower,
                            absl::BitGenRef rng) const {
  if (quality.size() != models.size() || quality_lower.size() != models.size()) return false;
  const bool explore = options_.exploration > 0.0 && absl::Bernoulli(rng, options_.exploration);
  absl::ReaderMutexLock lock(&mu_);
  const bool any_cold = !cold_.empty();
  for (size_t j = 0; j < models.size(); ++j) {
    const ModelCells* model = nullptr;
    const Cell* cell = nullptr;
    if (auto it = models_.find(models[j]); it != models_.end()) {
      model = &it->second;
      if (auto c = model->cells.find(cluster); c != model->cells.end()) cell = &c->second;
    }
    const bool cold = any_cold && cold_.contains(models[j]);
    const double prior = std::clamp(quality[j], 0.0, 1.0);
    double q = 0.0, n = 0.0;
    if (!Posterior(model, cell, cold, prior, &q, &n)) {
      if (explore) {
        q = prior;
        n = options_.prior_strength;
        quality[j] = SampleBeta(q, n, rng);
        quality_lower[j] = std::min(quality_lower[j], quality[j]);
      }
      continue;
    }
    const double lower = table_->Lower(q, n);
    quality[j] = explore ? SampleBeta(q, n, rng) : q;
    quality_lower[j] = std::min(lower, quality[j]);
  }
  return explore;
}

std::vector<OutcomeCell> OutcomeLearner::Cells() const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<OutcomeCell> out;
  out.reserve(static_cast<size_t>(num_cells_));
  for (const auto& [name, model] : models_) {
    const bool cold = cold_.contains(name);
    for (const auto& [cluster, cell] : model.cells) {
      OutcomeCell c;
      c.model = name;
      c.cluster = cluster;
      c.weight = cell.weight;
      c.observed_mean = cell.weight > 0 ? cell.score_sum / cell.weight : 0.0;
      c.prior_mean = cell.weight > 0 ? cell.prior_sum / cell.weight : 0.0;
      if (cold) {
        // At the cell's mean baseline.
        double q = 0.0, n = 0.0;
        Posterior(&model, &cell, true, c.prior_mean, &q, &n);
        c.learned_shift = q - c.prior_mean;
      } else {
        c.learned_shift = (cell.score_sum - cell.prior_sum) / (options_.prior_strength + cell.weight);
      }
      c.outcomes = cell.outcomes;
      out.push_back(std::move(c));
    }
  }
  std::sort(out.begin(), out.end(), [](const OutcomeCell& a, const OutcomeCell& b) {
    return a.model != b.model ? a.model < b.model : a.cluster < b.cluster;
  });
  return out;
}

int64_t OutcomeLearner::Reset(std::optional<std::string> model, std::optional<int> cluster) {
  absl::MutexLock lock(&mu_);
  int64_t removed = 0;
  for (auto it = models_.begin(); it != models_.end();) {
    if (model.has_value() && it->first != *model) {
      ++it;
      continue;
    }
    auto& cells = it->second.cells;
    if (cluster.has_value()) {
      removed += static_cast<int64_t>(cells.erase(*cluster));
    } else {
      removed += static_cast<int64_t>(cells.size());
      cells.clear();
    }
    if (cells.empty()) {
      models_.erase(it++);
    } else {
      it->second.Resum();
      ++it;
    }
  }
  num_cells_ -= removed;
  return removed;
}

Json OutcomeLearner::Snapshot() const {
  absl::ReaderMutexLock lock(&mu_);
  // Ordered by (model, cluster), so equal states give equal snapshots.
  std::map<std::pair<std::string, int>, const Cell*> ordered;
  for (const auto& [name, model] : models_) {
    for (const auto& [cluster, cell] : model.cells) ordered[{name, cluster}] = &cell;
  }
  Json cells = Json::array();
  for (const auto& [key, cell] : ordered) {
    cells.push_back({{"model", key.first},
                     {"cluster", key.second},
                     {"weight", cell->weight},
                     {"score_sum", cell->score_sum},
                     {"prior_sum", cell->prior_sum},
                     {"outcomes", cell->outcomes}});
  }
  std::map<std::string, const ModelCells*> by_name;
  for (const auto& [name, model] : models_) by_name[name] = &model;
  Json totals = Json::array();
  for (const auto& [name, model] : by_name) {
    totals.push_back({{"model", name},
                      {"weight_total", model->weight_total},
                      {"score_total", model->score_total},
                      {"prior_total", model->prior_total}});
  }
  std::vector<std::string> cold(cold_.begin(), cold_.end());
  std::sort(cold.begin(), cold.end());
  return Json{{"format", kSnapshotFormat},
              {"version", kSnapshotVersion},
              {"options",
               {{"half_life_outcomes", options_.half_life_outcomes},
                {"prior_strength", options_.prior_strength},
                {"cold_start_quality", options_.cold_start_quality},
                {"cold_start_strength", options_.cold_start_strength},
                {"lower_quantile", options_.lower_quantile},
                {"exploration", options_.exploration},
                {"max_cells", options_.max_cells}}},
              {"cold_start_models", cold},
              {"dropped_outcomes", dropped_},
              {"cells", std::move(cells)},
              {"models", std::move(totals)}};
}

namespace {

// One cell of a snapshot, checked.
struct RestoredCell {
  std::string model;
  int cluster = 0;
  double weight = 0.0, score_sum = 0.0, prior_sum = 0.0;
  int64_t outcomes = 0;
};

absl::StatusOr<double> ReadSum(const JsonReader& cell, absl::string_view key, double max) {
  absl::StatusOr<double> v = cell.Get(&JsonReader::FiniteNumber, key);
  if (!v.ok()) return v.status();
  if (*v < 0.0 || *v > max * (1.0 + kSumSlack) + kSumSlack) {
    return Invalid(cell.ChildPath(key), absl::StrCat("must be in [0, ", max, "], got ", *v));
  }
  return std::min(*v, max);
}

absl::StatusOr<RestoredCell> ReadCell(const JsonReader& cell) {
  if (absl::Status s = cell.CheckKeys(
          {"model", "cluster", "weight", "score_sum", "prior_sum", "outcomes"});
      !s.ok()) {
    return s;
  }
  RestoredCell c;
  absl::StatusOr<std::string> model = cell.Get(&JsonReader::String, "model");
  if (!model.ok()) return model.status();
  if (model->empty()) return Invalid(cell.ChildPath("model"), "empty");
  c.model = *std::move(model);
  absl::StatusOr<int64_t> cluster = cell.Get(
      &JsonReader::Integer, "cluster",
      IntegerSpec{.min = 0, .max = std::numeric_limits<int>::max(), .integral_floats = false});
  if (!cluster.ok()) return cluster.status();
  c.cluster = static_cast<int>(*cluster);
  absl::StatusOr<double> weight = cell.Get(&JsonReader::FiniteNumber, "weight");
  if (!weight.ok()) return weight.status();
  if (*weight < 0.0) {
    return Invalid(cell.ChildPath("weight"), absl::StrCat("must be >= 0, got ", *weight));
  }
  c.weight = *weight;
  absl::StatusOr<double> score_sum = ReadSum(cell, "score_sum", c.weight);
  if (!score_sum.ok()) return score_sum.status();
  c.score_sum = *score_sum;
  absl::StatusOr<double> prior_sum = ReadSum(cell, "prior_sum", c.weight);
  if (!prior_sum.ok()) return prior_sum.status();
  c.prior_sum = *prior_sum;
  absl::StatusOr<int64_t> outcomes =
      cell.Get(&JsonReader::Integer, "outcomes", IntegerSpec{.min = 0, .integral_floats = false});
  if (!outcomes.ok()) return outcomes.status();
  c.outcomes = *outcomes;
  return c;
}

// A model's running totals in a snapshot, checked against the sums of its cells (`summed`):
// equal but for the rounding of summing in another order.
absl::Status ReadTotal(const JsonReader& entry, absl::string_view key, double summed,
                       double& total) {
  absl::StatusOr<double> v = entry.Get(&JsonReader::FiniteNumber, key);
  if (!v.ok()) return v.status();
  if (std::abs(*v - summed) > kSumSlack * (1.0 + std::abs(summed))) {
    return Invalid(entry.ChildPath(key),
                   absl::StrCat("must be the sum of the model's cells, ", summed, ", got ", *v));
  }
  total = *v;
  return absl::OkStatus();
}

}  // namespace

absl::Status OutcomeLearner::ReadModelTotals(const JsonReader& root, CellMap& models) {
  absl::StatusOr<JsonReader> list = root.Member("models");
  if (!list.ok()) return list.status();
  if (absl::Status s = list->CheckArray(); !s.ok()) return s;
  absl::flat_hash_set<std::string> seen;
  for (size_t i = 0; i < list->size(); ++i) {
    const JsonReader entry = list->Element(i);
    if (absl::Status s =
            entry.CheckKeys({"model", "weight_total", "score_total", "prior_total"});
        !s.ok()) {
      return s;
    }
    absl::StatusOr<std::string> name = entry.Get(&JsonReader::String, "model");
    if (!name.ok()) return name.status();
    auto it = models.find(*name);
    if (it == models.end()) {
      return Invalid(entry.ChildPath("model"), absl::StrCat("'", *name, "' has no cells"));
    }
    if (!seen.insert(*name).second) {
      return Invalid(entry.ChildPath("model"), absl::StrCat("duplicate '", *name, "'"));
    }
    ModelCells& m = it->second;
    m.Resum();
    for (const auto& [key, total] : {std::pair{"weight_total", &ModelCells::weight_total},
                                     std::pair{"score_total", &ModelCells::score_total},
                                     std::pair{"prior_total", &ModelCells::prior_total}}) {
      if (absl::Status s = ReadTotal(entry, key, m.*total, m.*total); !s.ok()) return s;
    }
  }
  if (seen.size() != models.size()) {
    for (const auto& [name, model] : models) {
      if (!seen.contains(name)) {
        return Invalid("models", absl::StrCat("no totals for '", name, "', which has cells"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status OutcomeLearner::Restore(const Json& snapshot) {
  const JsonReader root(snapshot);
  if (absl::Status s = root.CheckKeys({"format", "version", "options", "cold_start_models",
                                       "dropped_outcomes", "cells", "models"});
      !s.ok()) {
    return s;
  }
  absl::StatusOr<std::string> format = root.Get(&JsonReader::String, "format");
  if (!format.ok()) return format.status();
  if (*format != kSnapshotFormat) {
    return Invalid("format",
                   absl::StrCat("expected \"", kSnapshotFormat, "\", got \"", *format, "\""));
  }
  absl::StatusOr<int64_t> version =
      root.Get(&JsonReader::Integer, "version", IntegerSpec{.integral_floats = false});
  if (!version.ok()) return version.status();
  if (*version != kSnapshotVersion && *version != 1) {
    return Invalid("version", absl::StrCat("unsupported version ", *version,
                                           " (this build reads 1 and ", kSnapshotVersion, ")"));
  }
  if (*version == 1 && root.OptionalMember("models").has_value()) {
    return Invalid("models", "not in a version 1 snapshot");
  }
  // The writer's options are informational (the learner keeps its own), but must be an object.
  if (std::optional<JsonReader> options = root.OptionalMember("options"); options.has_value()) {
    if (absl::Status s = options->CheckObject(); !s.ok()) return s;
  }
  absl::StatusOr<std::vector<std::string>> cold_list =
      root.Get(&JsonReader::StringArray, "cold_start_models");
  if (!cold_list.ok()) return cold_list.status();
  absl::flat_hash_set<std::string> cold;
  for (size_t i = 0; i < cold_list->size(); ++i) {
    const std::string& name = (*cold_list)[i];
    const std::string path = absl::StrCat("cold_start_models[", i, "]");
    if (name.empty()) return Invalid(path, "empty");
    if (!cold.insert(name).second) return Invalid(path, absl::StrCat("duplicate '", name, "'"));
  }
  absl::StatusOr<int64_t> dropped = root.Get(&JsonReader::Integer, "dropped_outcomes",
                                             IntegerSpec{.min = 0, .integral_floats = false});
  if (!dropped.ok()) return dropped.status();
  absl::StatusOr<std::vector<RestoredCell>> cells = root.ArrayOf("cells", ReadCell);
  if (!cells.ok()) return cells.status();
  if (static_cast<int64_t>(cells->size()) > options_.max_cells) {
    return Invalid("cells", absl::StrCat(cells->size(), " cells exceed max_cells (",
                                         options_.max_cells, ")"));
  }
  CellMap models;
  for (size_t i = 0; i < cells->size(); ++i) {
    const RestoredCell& c = (*cells)[i];
    auto& model_cells = models[c.model].cells;
    if (model_cells.contains(c.cluster)) {
      return Invalid(absl::StrCat("cells[", i, "]"),
                     absl::StrCat("duplicate cell (model '", c.model, "', cluster ", c.cluster,
                                  ")"));
    }
    model_cells[c.cluster] = Cell{c.weight, c.score_sum, c.prior_sum, c.outcomes};
  }
  if (*version == 1) {
    // Written before snapshots kept the totals: summed afresh (equal but for rounding).
    for (auto& [name, model] : models) model.Resum();
  } else if (absl::Status s = ReadModelTotals(root, models); !s.ok()) {
    return s;
  }
  absl::MutexLock lock(&mu_);
  models_ = std::move(models);
  cold_ = std::move(cold);
  num_cells_ = static_cast<int64_t>(cells->size());
  dropped_ = *dropped;
  return absl::OkStatus();
}

int64_t OutcomeLearner::dropped_outcomes() const {
  absl::ReaderMutexLock lock(&mu_);
  return dropped_;
}

int64_t OutcomeLearner::num_cells() const {
  absl::ReaderMutexLock lock(&mu_);
  return num_cells_;
}

}  // namespace router::core
