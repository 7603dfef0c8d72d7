#include "router_core/solve/batch_json.h"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "router_core/json/json_reader.h"
#include "router_core/solve/query_json.h"

namespace router::core {
namespace {

using Json = nlohmann::json;

absl::StatusOr<ModelSpec> ParseModel(const JsonReader& value) {
  if (absl::Status s = value.CheckKeys({"name", "slots"}); !s.ok()) return s;
  ModelSpec model;
  absl::StatusOr<std::string> name = value.Get(&JsonReader::String, "name");
  if (!name.ok()) return name.status();
  model.name = *std::move(name);
  if (std::optional<JsonReader> slots = value.OptionalMember("slots", /*null_is_absent=*/true)) {
    absl::StatusOr<int64_t> v = slots->Integer({.min = 0});
    if (!v.ok()) return v.status();
    model.slots = *v;
  }
  return model;
}

absl::Status ParseParams(const JsonReader& value, PolicyParams& params) {
  if (absl::Status s = value.CheckKeys({"lambda", "tau", "gamma", "seed"}); !s.ok()) return s;
  for (auto [key, target] : {std::pair{"lambda", &params.lambda}, std::pair{"tau", &params.tau},
                             std::pair{"gamma", &params.gamma}}) {
    if (absl::Status s = value.ReadOptional(key, target, &JsonReader::Number); !s.ok()) return s;
  }
  return value.ReadOptional("seed", &params.seed, &JsonReader::Unsigned, /*integral_floats=*/true);
}

absl::StatusOr<BatchProblem> FromJson(const JsonReader& root) {
  if (absl::Status s = root.CheckKeys(
          {"models", "budget", "policy", "params", "time_limit_ms", "relative_gap", "queries"});
      !s.ok()) {
    return s;
  }
  BatchProblem problem;

  absl::StatusOr<std::vector<ModelSpec>> models = root.ArrayOf("models", ParseModel);
  if (!models.ok()) return models.status();
  problem.models = *std::move(models);

  if (std::optional<JsonReader> budget = root.OptionalMember("budget", /*null_is_absent=*/true)) {
    absl::StatusOr<double> v = budget->Number();
    if (!v.ok()) return v.status();
    problem.budget = *v;
  }

  if (std::optional<JsonReader> policy = root.OptionalMember("policy")) {
    absl::StatusOr<std::string> name = policy->String();
    if (!name.ok()) return name.status();
    absl::StatusOr<PolicyKind> kind = ParsePolicyKind(*name);
    if (!kind.ok()) return kind.status();
    problem.policy = *kind;
  }

  if (std::optional<JsonReader> params = root.OptionalMember("params")) {
    if (absl::Status s = ParseParams(*params, problem.params); !s.ok()) return s;
  }

  if (absl::Status s =
          ReadSolveLimits(root, &problem.solve.time_limit, &problem.solve.relative_gap);
      !s.ok()) {
    return s;
  }

  absl::StatusOr<std::vector<Query>> queries = root.ArrayOf(
      "queries", [](const JsonReader& q) { return ReadQueryJson(q, QualityLower::kAccepted); });
  if (!queries.ok()) return queries.status();
  problem.queries = *std::move(queries);
  return problem;
}

}  // namespace

absl::StatusOr<BatchProblem> ParseBatchProblemJson(absl::string_view text) {
  absl::StatusOr<Json> root = ParseJsonText(text);
  if (!root.ok()) return root.status();
  absl::StatusOr<BatchProblem> problem = FromJson(JsonReader(*root));
  if (!problem.ok()) return problem.status();
  if (absl::Status s = ValidateBatchProblem(*problem); !s.ok()) return s;
  return problem;
}

std::string SolutionToJson(const BatchProblem& problem, const Solution& solution) {
  using OJson = nlohmann::ordered_json;
  OJson assignment = OJson::object();
  OJson unserved = OJson::array();
  OJson reasons = OJson::object();
  const size_t num_models = problem.models.size();
  for (size_t i = 0; i < problem.queries.size(); ++i) {
    const std::string& id = problem.queries[i].id;
    const int j = i < solution.model_of_query.size() ? solution.model_of_query[i] : kUnserved;
    if (j >= 0 && static_cast<size_t>(j) < num_models) {
      assignment[id] = problem.models[static_cast<size_t>(j)].name;
      continue;
    }
    // Unserved (or, defensively, no valid entry for this query).
    unserved.push_back(id);
    reasons[id] = j == kUnserved && i < solution.unserved_reason.size()
                      ? UnservedReasonName(solution.unserved_reason[i])
                      : "unknown";
  }

  OJson out = OJson::object();
  out["assignment"] = std::move(assignment);
  out["unserved"] = std::move(unserved);
  out["unserved_reasons"] = std::move(reasons);
  out["objective"] = solution.objective;
  out["upper_bound"] = std::isfinite(solution.upper_bound) ? OJson(solution.upper_bound) : OJson();
  const double gap = RelativeGap(solution);
  out["gap"] = std::isfinite(gap) ? OJson(gap) : OJson();
  out["status"] = SolveStatusName(solution.status);
  out["total_cost"] = solution.total_cost;
  out["solve_ms"] = absl::ToDoubleMilliseconds(solution.solve_time);
  out["nodes"] = solution.nodes;
  out["method"] = solution.method;
  out["policy"] = std::string(PolicyKindName(problem.policy));
  // Replace invalid UTF-8 (possible in names built outside JSON) instead of throwing.
  return out.dump(/*indent=*/-1, /*indent_char=*/' ', /*ensure_ascii=*/false,
                  OJson::error_handler_t::replace);
}

}  // namespace router::core
