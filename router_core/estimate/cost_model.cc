#include "router_core/estimate/cost_model.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "router_core/json/json_reader.h"

namespace router::core {
namespace {

absl::Status ValidateOptions(const CostModelOptions& o) {
  if (o.min_task_samples < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("min_task_samples: expected >= 1, got ", o.min_task_samples));
  }
  if (!std::isfinite(o.bytes_per_token) || o.bytes_per_token <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("bytes_per_token: expected a finite value > 0, got ", o.bytes_per_token));
  }
  if (!std::isfinite(o.default_output_tokens) || o.default_output_tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "default_output_tokens: expected a finite value >= 0, got ", o.default_output_tokens));
  }
  return absl::OkStatus();
}

absl::Status CheckMoney(const std::optional<double>& value, absl::string_view field) {
  if (value.has_value() && (!std::isfinite(*value) || *value < 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": expected a finite value >= 0, got ", *value));
  }
  return absl::OkStatus();
}

absl::Status ValidateModel(const ModelCost& m, absl::string_view path) {
  if (m.name.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ".name: empty"));
  for (auto [value, field] : {std::pair{&m.input_usd_per_mtok, "input_usd_per_mtok"},
                              std::pair{&m.output_usd_per_mtok, "output_usd_per_mtok"},
                              std::pair{&m.mean_usd, "mean_usd"}}) {
    if (absl::Status s = CheckMoney(*value, absl::StrCat(path, ".", field)); !s.ok()) return s;
  }
  if (m.input_usd_per_mtok.has_value() != m.output_usd_per_mtok.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": give both input and output prices, or neither"));
  }
  for (const auto& [task, mean] : m.task_mean_usd) {
    if (absl::Status s = CheckMoney(mean, absl::StrCat(path, ".task_mean_usd.", task)); !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CostModel> CostModel::Create(std::vector<ModelCost> models,
                                            const CostModelOptions& options) {
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  if (models.empty()) return absl::InvalidArgumentError("models: empty");
  CostModel cost({}, options);
  for (size_t j = 0; j < models.size(); ++j) {
    if (absl::Status s = ValidateModel(models[j], absl::StrCat("models[", j, "]")); !s.ok()) {
      return s;
    }
    if (cost.IndexOf(models[j].name).ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("models[", j, "].name: duplicate '", models[j].name, "'"));
    }
    cost.models_.push_back(std::move(models[j]));
  }
  return cost;
}

absl::StatusOr<CostModel> CostModel::Fit(const Dataset& dataset, absl::Span<const int64_t> rows,
                                         const CostModelOptions& options) {
  std::vector<ModelCost> models;
  for (size_t j = 0; j < dataset.models.size(); ++j) {
    ModelCost m;
    m.name = dataset.models[j].name;
    m.input_usd_per_mtok = dataset.models[j].input_usd_per_mtok;
    m.output_usd_per_mtok = dataset.models[j].output_usd_per_mtok;
    double sum = 0.0;
    int64_t n = 0;
    std::map<std::string, std::pair<double, int64_t>> per_task;
    for (const int64_t p : rows) {
      if (p < 0 || static_cast<size_t>(p) >= dataset.prompts.size()) {
        return absl::InvalidArgumentError(absl::StrCat("rows: prompt index ", p, " out of range"));
      }
      const double c = dataset.cost_usd[dataset.at(p, static_cast<int>(j))];
      if (std::isnan(c)) continue;
      sum += c;
      ++n;
      auto& [task_sum, task_n] = per_task[dataset.prompts[static_cast<size_t>(p)].task];
      task_sum += c;
      ++task_n;
    }
    if (n > 0) m.mean_usd = sum / static_cast<double>(n);
    for (const auto& [task, acc] : per_task) {
      if (acc.second >= options.min_task_samples) {
        m.task_mean_usd[task] = acc.first / static_cast<double>(acc.second);
      }
    }
    models.push_back(std::move(m));
  }
  return Create(std::move(models), options);
}

absl::StatusOr<int> CostModel::IndexOf(absl::string_view name) const {
  for (size_t j = 0; j < models_.size(); ++j) {
    if (models_[j].name == name) return static_cast<int>(j);
  }
  return absl::NotFoundError(absl::StrCat("cost model: no model '", name, "'"));
}

absl::StatusOr<double> CostModel::Expected(int model, const CostQuery& query) const {
  if (model < 0 || static_cast<size_t>(model) >= models_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("model: index ", model, " out of range"));
  }
  if (query.text_bytes < 0) return absl::InvalidArgumentError("text_bytes: negative");
  for (auto [value, field] : {std::pair{&query.input_tokens, "input_tokens"},
                              std::pair{&query.output_tokens, "output_tokens"}}) {
    if (value->has_value() && (!std::isfinite(**value) || **value < 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": expected a finite value >= 0, got ", **value));
    }
  }
  const ModelCost& m = models_[static_cast<size_t>(model)];
  const bool priced = m.input_usd_per_mtok.has_value();
  const double output = query.output_tokens.value_or(options_.default_output_tokens);
  if (priced && query.input_tokens.has_value()) {
    return (*m.input_usd_per_mtok * *query.input_tokens + *m.output_usd_per_mtok * output) / 1e6;
  }
  if (query.task.has_value()) {
    const auto it = m.task_mean_usd.find(*query.task);
    if (it != m.task_mean_usd.end()) return it->second;
  }
  if (m.mean_usd.has_value()) return *m.mean_usd;
  if (priced) {
    const double input = static_cast<double>(query.text_bytes) / options_.bytes_per_token;
    return (*m.input_usd_per_mtok * input + *m.output_usd_per_mtok * output) / 1e6;
  }
  return 0.0;
}

absl::Status CostModel::AddModel(ModelCost model) {
  if (absl::Status s = ValidateModel(model, "model"); !s.ok()) return s;
  if (IndexOf(model.name).ok()) {
    return absl::AlreadyExistsError(
        absl::StrCat("cost model: model '", model.name, "' already exists"));
  }
  models_.push_back(std::move(model));
  return absl::OkStatus();
}

nlohmann::json CostModel::ToJson() const {
  nlohmann::json models = nlohmann::json::array();
  for (const ModelCost& m : models_) {
    nlohmann::json j = {{"name", m.name}};
    if (m.input_usd_per_mtok.has_value()) j["input_usd_per_mtok"] = *m.input_usd_per_mtok;
    if (m.output_usd_per_mtok.has_value()) j["output_usd_per_mtok"] = *m.output_usd_per_mtok;
    if (m.mean_usd.has_value()) j["mean_usd"] = *m.mean_usd;
    if (!m.task_mean_usd.empty()) j["task_mean_usd"] = m.task_mean_usd;
    models.push_back(std::move(j));
  }
  return {{"options",
           {{"min_task_samples", options_.min_task_samples},
            {"bytes_per_token", options_.bytes_per_token},
            {"default_output_tokens", options_.default_output_tokens}}},
          {"models", std::move(models)}};
}

absl::StatusOr<CostModel> CostModel::FromJson(const nlohmann::json& json) {
  const JsonReader root(json, "cost_model");
  absl::StatusOr<JsonReader> opts = root.Member("options");
  if (!opts.ok()) return opts.status();
  CostModelOptions o;
  absl::StatusOr<int64_t> min_task =
      opts->Get(&JsonReader::Integer, "min_task_samples", IntegerSpec{.integral_floats = false});
  if (!min_task.ok()) return min_task.status();
  // The range is Create's to judge; this only keeps the value an int.
  o.min_task_samples = static_cast<int>(std::clamp<int64_t>(*min_task, -1, 1 << 30));
  for (auto [key, target] : {std::pair{"bytes_per_token", &o.bytes_per_token},
                             std::pair{"default_output_tokens", &o.default_output_tokens}}) {
    absl::StatusOr<double> v = opts->Get(&JsonReader::Number, key);
    if (!v.ok()) return v.status();
    *target = *v;
  }
  absl::StatusOr<std::vector<ModelCost>> parsed =
      root.ArrayOf("models", [](const JsonReader& m) -> absl::StatusOr<ModelCost> {
        ModelCost mc;
        absl::StatusOr<std::string> name = m.Get(&JsonReader::String, "name");
        if (!name.ok()) return name.status();
        mc.name = *std::move(name);
        // Absent or null: not priced that way. Ranges are Create's to judge.
        for (auto [key, target] : {std::pair{"input_usd_per_mtok", &mc.input_usd_per_mtok},
                                   std::pair{"output_usd_per_mtok", &mc.output_usd_per_mtok},
                                   std::pair{"mean_usd", &mc.mean_usd}}) {
          if (std::optional<JsonReader> v = m.OptionalMember(key, /*null_is_absent=*/true)) {
            absl::StatusOr<double> number = v->Number();
            if (!number.ok()) return number.status();
            *target = *number;
          }
        }
        if (std::optional<JsonReader> tasks = m.OptionalMember("task_mean_usd")) {
          if (absl::Status s = tasks->CheckObject(); !s.ok()) return s;
          for (const auto& [task, value] : tasks->json().items()) {
            absl::StatusOr<double> number = JsonReader(value, tasks->ChildPath(task)).Number();
            if (!number.ok()) return number.status();
            mc.task_mean_usd[task] = *number;
          }
        }
        return mc;
      });
  if (!parsed.ok()) return parsed.status();
  absl::StatusOr<CostModel> cost = Create(*std::move(parsed), o);
  if (!cost.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("cost_model.", cost.status().message()));
  }
  return cost;
}

}  // namespace router::core
