#include "router_core/planner/plan_json.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "router_core/json/json_reader.h"
#include "router_core/solve/query_json.h"

namespace router::core {
namespace {

using Json = nlohmann::json;

absl::StatusOr<PlanModel> ParseModel(const JsonReader& value) {
  if (absl::Status s = value.CheckKeys({"name", "gpus_per_instance", "slots_per_instance",
                                        "min_instances", "max_instances", "pin"});
      !s.ok()) {
    return s;
  }
  PlanModel model;
  absl::StatusOr<std::string> name = value.Get(&JsonReader::String, "name");
  if (!name.ok()) return name.status();
  model.name = *std::move(name);
  // Integers may be negative here: the range is ValidatePlanProblem's to judge.
  for (auto [key, target] : {std::pair{"gpus_per_instance", &model.gpus_per_instance},
                             std::pair{"slots_per_instance", &model.slots_per_instance},
                             std::pair{"max_instances", &model.max_instances}}) {
    if (absl::Status s = value.ReadOptional(key, target, &JsonReader::Integer, IntegerSpec{});
        !s.ok()) {
      return s;
    }
  }
  if (absl::Status s = value.ReadOptional("min_instances", &model.min_instances,
                                          &JsonReader::Integer, IntegerSpec{});
      !s.ok()) {
    return s;
  }
  if (std::optional<JsonReader> pin = value.OptionalMember("pin")) {
    absl::StatusOr<std::string> v = pin->Enum({"on", "off"});
    if (!v.ok()) return v.status();
    model.pin = *v == "on" ? ModelPin::kOn : ModelPin::kOff;
  }
  return model;
}

// Members that are null count as absent throughout a scenario.
absl::StatusOr<Scenario> FromJson(const JsonReader& root) {
  if (absl::Status s = root.CheckKeys({"gpu_budget", "avg_cost_cap", "time_limit_ms",
                                       "relative_gap", "baselines", "models", "batches"});
      !s.ok()) {
    return s;
  }
  Scenario scenario;
  PlanProblem& problem = scenario.problem;

  absl::StatusOr<int64_t> budget = root.Get(&JsonReader::Integer, "gpu_budget", IntegerSpec{});
  if (!budget.ok()) return budget.status();
  problem.gpu_budget = *budget;
  if (absl::Status s =
          root.ReadOptional("avg_cost_cap", &problem.avg_cost_cap, &JsonReader::Number);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = ReadSolveLimits(root, &problem.time_limit, &problem.relative_gap); !s.ok()) {
    return s;
  }
  if (absl::Status s = root.ReadOptional("baselines", &scenario.baselines, &JsonReader::Bool);
      !s.ok()) {
    return s;
  }

  absl::StatusOr<std::vector<PlanModel>> models = root.ArrayOf("models", ParseModel);
  if (!models.ok()) return models.status();
  problem.models = *std::move(models);

  absl::StatusOr<std::vector<std::vector<Query>>> batches = root.ArrayOf(
      "batches",
      [](const JsonReader& batch) {
        return batch.Elements(
            [](const JsonReader& q) { return ReadQueryJson(q, QualityLower::kRefused); },
            "an array of queries");
      },
      "an array of batches");
  if (!batches.ok()) return batches.status();
  problem.batches = *std::move(batches);
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
  absl::StatusOr<Json> root = ParseJsonText(text);
  if (!root.ok()) return root.status();
  absl::StatusOr<Scenario> scenario =
      FromJson(JsonReader(*root, "", JsonReader::Nulls::kNullIsAbsent));
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
