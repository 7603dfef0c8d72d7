#include "router_core/planner/plan_json.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace router::core {
namespace {

using Json = nlohmann::json;

// Largest integer a double holds exactly; integral floats beyond it are refused as integers.
constexpr double kMaxExactInteger = 9007199254740992.0;  // 2^53

absl::Status Invalid(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

absl::Status WrongType(absl::string_view field, absl::string_view what, const Json& value) {
  return Invalid(field, absl::StrCat("expected ", what, ", got ", value.type_name()));
}

std::string Child(absl::string_view path, absl::string_view key) {
  return path.empty() ? std::string(key) : absl::StrCat(path, ".", key);
}

std::string Element(absl::string_view path, size_t index) {
  return absl::StrCat(path, "[", index, "]");
}

absl::Status CheckKeys(const Json& object, absl::string_view path,
                       std::initializer_list<absl::string_view> known) {
  for (const auto& [key, value] : object.items()) {
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      return Invalid(
          Child(path, key),
          absl::StrCat("unknown field (expected one of: ", absl::StrJoin(known, ", "), ")"));
    }
  }
  return absl::OkStatus();
}

// The member `key` of `object`, or nullptr when absent or null.
const Json* Find(const Json& object, absl::string_view key) {
  const auto it = object.find(std::string(key));
  return it == object.end() || it->is_null() ? nullptr : &*it;
}

absl::StatusOr<double> GetNumber(const Json& value, absl::string_view field) {
  if (!value.is_number()) return WrongType(field, "a number", value);
  return value.get<double>();
}

absl::StatusOr<std::string> GetString(const Json& value, absl::string_view field) {
  if (!value.is_string()) return WrongType(field, "a string", value);
  return value.get<std::string>();
}

// An integer (possibly negative: the range is ValidatePlanProblem's to judge), written as an
// integer or an integral float up to 2^53 in magnitude.
absl::StatusOr<int64_t> GetInteger(const Json& value, absl::string_view field) {
  if (value.is_number_unsigned()) {
    const uint64_t v = value.get<uint64_t>();
    if (v > static_cast<uint64_t>(INT64_MAX)) return Invalid(field, "too large");
    return static_cast<int64_t>(v);
  }
  if (value.is_number_integer()) return value.get<int64_t>();
  if (value.is_number_float()) {
    const double v = value.get<double>();
    if (std::isfinite(v) && std::abs(v) <= kMaxExactInteger && v == std::floor(v)) {
      return static_cast<int64_t>(v);
    }
    return Invalid(field, absl::StrCat("expected an integer, got ", v));
  }
  return WrongType(field, "an integer", value);
}

absl::StatusOr<std::vector<double>> GetNumberArray(const Json& value, absl::string_view field) {
  if (!value.is_array()) return WrongType(field, "an array of numbers", value);
  std::vector<double> out;
  out.reserve(value.size());
  for (size_t k = 0; k < value.size(); ++k) {
    absl::StatusOr<double> v = GetNumber(value[k], Element(field, k));
    if (!v.ok()) return v.status();
    out.push_back(*v);
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> GetStringArray(const Json& value,
                                                        absl::string_view field) {
  if (!value.is_array()) return WrongType(field, "an array of strings", value);
  std::vector<std::string> out;
  out.reserve(value.size());
  for (size_t k = 0; k < value.size(); ++k) {
    absl::StatusOr<std::string> v = GetString(value[k], Element(field, k));
    if (!v.ok()) return v.status();
    out.push_back(*std::move(v));
  }
  return out;
}

absl::StatusOr<PlanModel> ParseModel(const Json& value, absl::string_view path) {
  if (!value.is_object()) return WrongType(path, "an object", value);
  if (absl::Status s = CheckKeys(value, path,
                                 {"name", "gpus_per_instance", "slots_per_instance",
                                  "min_instances", "max_instances", "pin"});
      !s.ok()) {
    return s;
  }
  PlanModel model;
  const Json* name = Find(value, "name");
  if (name == nullptr) return Invalid(Child(path, "name"), "required field missing");
  absl::StatusOr<std::string> n = GetString(*name, Child(path, "name"));
  if (!n.ok()) return n.status();
  model.name = *std::move(n);
  for (auto [key, target] : {std::pair{"gpus_per_instance", &model.gpus_per_instance},
                             std::pair{"slots_per_instance", &model.slots_per_instance},
                             std::pair{"max_instances", &model.max_instances}}) {
    if (const Json* member = Find(value, key); member != nullptr) {
      absl::StatusOr<int64_t> v = GetInteger(*member, Child(path, key));
      if (!v.ok()) return v.status();
      *target = *v;
    }
  }
  if (const Json* member = Find(value, "min_instances"); member != nullptr) {
    absl::StatusOr<int64_t> v = GetInteger(*member, Child(path, "min_instances"));
    if (!v.ok()) return v.status();
    model.min_instances = *v;
  }
  if (const Json* member = Find(value, "pin"); member != nullptr) {
    absl::StatusOr<std::string> pin = GetString(*member, Child(path, "pin"));
    if (!pin.ok()) return pin.status();
    if (*pin == "on") {
      model.pin = ModelPin::kOn;
    } else if (*pin == "off") {
      model.pin = ModelPin::kOff;
    } else {
      return Invalid(Child(path, "pin"), absl::StrCat("expected \"on\" or \"off\", got \"", *pin,
                                                      "\""));
    }
  }
  return model;
}

absl::StatusOr<Query> ParseQuery(const Json& value, absl::string_view path) {
  if (!value.is_object()) return WrongType(path, "an object", value);
  if (absl::Status s = CheckKeys(value, path, {"id", "quality", "cost", "allowed"}); !s.ok()) {
    return s;
  }
  Query query;
  const Json* id = Find(value, "id");
  if (id == nullptr) return Invalid(Child(path, "id"), "required field missing");
  absl::StatusOr<std::string> id_value = GetString(*id, Child(path, "id"));
  if (!id_value.ok()) return id_value.status();
  query.id = *std::move(id_value);
  for (auto [key, target] :
       {std::pair{"quality", &query.quality}, std::pair{"cost", &query.cost}}) {
    const std::string field = Child(path, key);
    const Json* member = Find(value, key);
    if (member == nullptr) return Invalid(field, "required field missing");
    absl::StatusOr<std::vector<double>> v = GetNumberArray(*member, field);
    if (!v.ok()) return v.status();
    *target = *std::move(v);
  }
  if (const Json* allowed = Find(value, "allowed"); allowed != nullptr) {
    absl::StatusOr<std::vector<std::string>> v = GetStringArray(*allowed, Child(path, "allowed"));
    if (!v.ok()) return v.status();
    query.allowed = *std::move(v);
  }
  return query;
}

absl::StatusOr<Scenario> FromJson(const Json& root) {
  if (!root.is_object()) return WrongType("top level", "an object", root);
  if (absl::Status s = CheckKeys(root, "",
                                 {"gpu_budget", "avg_cost_cap", "time_limit_ms", "relative_gap",
                                  "baselines", "models", "batches"});
      !s.ok()) {
    return s;
  }
  Scenario scenario;
  PlanProblem& problem = scenario.problem;

  const Json* budget = Find(root, "gpu_budget");
  if (budget == nullptr) return Invalid("gpu_budget", "required field missing");
  absl::StatusOr<int64_t> g = GetInteger(*budget, "gpu_budget");
  if (!g.ok()) return g.status();
  problem.gpu_budget = *g;

  if (const Json* cap = Find(root, "avg_cost_cap"); cap != nullptr) {
    absl::StatusOr<double> v = GetNumber(*cap, "avg_cost_cap");
    if (!v.ok()) return v.status();
    problem.avg_cost_cap = *v;
  }
  if (const Json* limit = Find(root, "time_limit_ms"); limit != nullptr) {
    absl::StatusOr<double> ms = GetNumber(*limit, "time_limit_ms");
    if (!ms.ok()) return ms.status();
    if (!std::isfinite(*ms) || *ms <= 0) return Invalid("time_limit_ms", "must be > 0");
    problem.time_limit = absl::Milliseconds(*ms);
    // Below absl's resolution (a quarter nanosecond) the limit rounds to zero.
    if (problem.time_limit <= absl::ZeroDuration()) return Invalid("time_limit_ms", "must be > 0");
  }
  if (const Json* gap = Find(root, "relative_gap"); gap != nullptr) {
    absl::StatusOr<double> v = GetNumber(*gap, "relative_gap");
    if (!v.ok()) return v.status();
    problem.relative_gap = *v;
  }
  if (const Json* baselines = Find(root, "baselines"); baselines != nullptr) {
    if (!baselines->is_boolean()) return WrongType("baselines", "a boolean", *baselines);
    scenario.baselines = baselines->get<bool>();
  }

  const Json* models = Find(root, "models");
  if (models == nullptr) return Invalid("models", "required field missing");
  if (!models->is_array()) return WrongType("models", "an array", *models);
  for (size_t j = 0; j < models->size(); ++j) {
    absl::StatusOr<PlanModel> m = ParseModel((*models)[j], Element("models", j));
    if (!m.ok()) return m.status();
    problem.models.push_back(*std::move(m));
  }

  const Json* batches = Find(root, "batches");
  if (batches == nullptr) return Invalid("batches", "required field missing");
  if (!batches->is_array()) return WrongType("batches", "an array of batches", *batches);
  problem.batches.resize(batches->size());
  for (size_t b = 0; b < batches->size(); ++b) {
    const Json& batch = (*batches)[b];
    const std::string path = Element("batches", b);
    if (!batch.is_array()) return WrongType(path, "an array of queries", batch);
    problem.batches[b].reserve(batch.size());
    for (size_t i = 0; i < batch.size(); ++i) {
      absl::StatusOr<Query> q = ParseQuery(batch[i], Element(path, i));
      if (!q.ok()) return q.status();
      problem.batches[b].push_back(*std::move(q));
    }
  }
  return scenario;
}

using OJson = nlohmann::ordered_json;

OJson NumberOrNull(double v) { return std::isfinite(v) ? OJson(v) : OJson(); }

OJson InstancesJson(const PlanProblem& problem, const std::vector<int64_t>& instances) {
  OJson out = OJson::object();
  for (size_t j = 0; j < problem.models.size(); ++j) {
    if (problem.models[j].self_hosted()) out[problem.models[j].name] = instances[j];
  }
  return out;
}

// Appends the evaluation's fields to `out`.
void AddEvaluation(const AllocationEvaluation& e, OJson& out) {
  out["objective"] = e.objective;
  out["mean_quality"] = e.mean_quality;
  out["unserved"] = e.unserved;
  out["total_cost"] = e.total_cost;
}

OJson BaselineJson(const PlanProblem& problem, const std::vector<int64_t>& instances,
                   const AllocationEvaluation& e) {
  OJson out = OJson::object();
  out["instances"] = InstancesJson(problem, instances);
  out["gpus_used"] = GpusUsed(problem, instances);
  AddEvaluation(e, out);
  return out;
}

}  // namespace

absl::StatusOr<Scenario> ParseScenarioJson(absl::string_view text) {
  Json root;
  try {
    root = Json::parse(text.begin(), text.end());
  } catch (const Json::parse_error& e) {
    std::string what = e.what();
    // Drop the "[json.exception.parse_error.101] " tag; keep the human part.
    if (absl::StartsWith(what, "[json.exception.")) {
      const size_t end = what.find("] ");
      if (end != std::string::npos) what.erase(0, end + 2);
    }
    return absl::InvalidArgumentError(absl::StrCat("invalid JSON: ", what));
  }
  absl::StatusOr<Scenario> scenario = FromJson(root);
  if (!scenario.ok()) return scenario.status();
  if (absl::Status s = ValidatePlanProblem(scenario->problem); !s.ok()) return s;
  return scenario;
}

std::string PlanToJson(const PlanProblem& problem, const CapacityPlan& plan,
                       const AllocationEvaluation& evaluation,
                       const std::optional<BaselineReport>& baselines) {
  OJson out = OJson::object();
  out["instances"] = InstancesJson(problem, plan.instances);
  out["gpus_used"] = plan.gpus_used;
  out["objective"] = plan.objective;
  out["upper_bound"] = NumberOrNull(plan.upper_bound);
  out["gap"] = NumberOrNull((plan.upper_bound - plan.objective) /
                            std::max(std::abs(plan.upper_bound), 1e-12));
  out["status"] = SolveStatusName(plan.status);
  out["solve_ms"] = absl::ToDoubleMilliseconds(plan.solve_time);
  out["method"] = plan.method;
  out["lp_bound"] = NumberOrNull(plan.lp_bound);
  out["evaluations"] = plan.evaluations;
  out["nodes"] = plan.nodes;
  out["num_queries"] = evaluation.num_queries;
  out["mean_quality"] =
      plan.objective / static_cast<double>(std::max<int64_t>(1, evaluation.num_queries));
  OJson planned = OJson::object();
  AddEvaluation(evaluation, planned);
  out["evaluation"] = std::move(planned);
  if (baselines.has_value()) {
    OJson b = OJson::object();
    b["uniform"] = BaselineJson(problem, baselines->uniform, baselines->uniform_evaluation);
    b["proportional"] =
        BaselineJson(problem, baselines->proportional, baselines->proportional_evaluation);
    out["baselines"] = std::move(b);
  }
  // Replace invalid UTF-8 (possible in names built outside JSON) instead of throwing.
  return out.dump(/*indent=*/-1, /*indent_char=*/' ', /*ensure_ascii=*/false,
                  OJson::error_handler_t::replace);
}

absl::StatusOr<std::string> PlanScenarioJson(absl::string_view scenario_text) {
  absl::StatusOr<Scenario> scenario = ParseScenarioJson(scenario_text);
  if (!scenario.ok()) return scenario.status();
  const PlanProblem& problem = scenario->problem;
  absl::StatusOr<CapacityPlanner> planner = CapacityPlanner::Create();
  if (!planner.ok()) return planner.status();
  absl::StatusOr<CapacityPlan> plan = planner->Plan(problem);
  if (!plan.ok()) return plan.status();
  absl::StatusOr<AllocationEvaluation> evaluation = EvaluateAllocation(problem, plan->instances);
  if (!evaluation.ok()) return evaluation.status();
  std::optional<BaselineReport> baselines;
  if (scenario->baselines) {
    absl::StatusOr<std::vector<int64_t>> uniform = UniformAllocation(problem);
    if (!uniform.ok()) return uniform.status();
    absl::StatusOr<std::vector<int64_t>> proportional = ProportionalAllocation(problem);
    if (!proportional.ok()) return proportional.status();
    absl::StatusOr<AllocationEvaluation> uniform_evaluation = EvaluateAllocation(problem, *uniform);
    if (!uniform_evaluation.ok()) return uniform_evaluation.status();
    absl::StatusOr<AllocationEvaluation> proportional_evaluation =
        EvaluateAllocation(problem, *proportional);
    if (!proportional_evaluation.ok()) return proportional_evaluation.status();
    baselines = BaselineReport{*std::move(uniform), *uniform_evaluation, *std::move(proportional),
                               *proportional_evaluation};
  }
  return PlanToJson(problem, *plan, *evaluation, baselines);
}

}  // namespace router::core
