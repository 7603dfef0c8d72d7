#include "router_core/solve/batch_json.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"

namespace router::core {
namespace {

using Json = nlohmann::json;

// Largest integer a double holds exactly; integral floats above it are refused as integers.
constexpr double kMaxExactInteger = 9007199254740992.0;  // 2^53

absl::Status Invalid(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

// "expected <what>, got <JSON type>".
absl::Status WrongType(absl::string_view field, absl::string_view what, const Json& value) {
  return Invalid(field, absl::StrCat("expected ", what, ", got ", value.type_name()));
}

std::string Child(absl::string_view path, absl::string_view key) {
  return path.empty() ? std::string(key) : absl::StrCat(path, ".", key);
}

std::string Element(absl::string_view path, size_t index) {
  return absl::StrCat(path, "[", index, "]");
}

// Records the parser's message (with its byte position) when the text is not JSON. Only run once
// the non-throwing DOM parse has already failed.
class ParseErrorRecorder : public nlohmann::json_sax<Json> {
 public:
  bool null() override { return true; }
  bool boolean(bool /*val*/) override { return true; }
  bool number_integer(number_integer_t /*val*/) override { return true; }
  bool number_unsigned(number_unsigned_t /*val*/) override { return true; }
  bool number_float(number_float_t /*val*/, const string_t& /*s*/) override { return true; }
  bool string(string_t& /*val*/) override { return true; }
  bool binary(binary_t& /*val*/) override { return true; }
  bool start_object(std::size_t /*elements*/) override { return true; }
  bool key(string_t& /*val*/) override { return true; }
  bool end_object() override { return true; }
  bool start_array(std::size_t /*elements*/) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t position, const std::string& /*last_token*/,
                   const nlohmann::detail::exception& ex) override {
    std::string what = ex.what();
    // Drop the "[json.exception.parse_error.101] " tag; keep the human part.
    if (absl::StartsWith(what, "[json.exception.")) {
      const size_t end = what.find("] ");
      if (end != std::string::npos) what.erase(0, end + 2);
    }
    message_ = absl::StrCat(what, " (byte ", position, ")");
    return false;
  }

  const std::string& message() const { return message_; }

 private:
  std::string message_;
};

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

// The member `key` of `object`, or nullptr when absent.
const Json* Find(const Json& object, absl::string_view key) {
  const auto it = object.find(std::string(key));
  return it == object.end() ? nullptr : &*it;
}

absl::StatusOr<double> GetNumber(const Json& value, absl::string_view field) {
  if (!value.is_number()) return WrongType(field, "a number", value);
  return value.get<double>();
}

absl::StatusOr<std::string> GetString(const Json& value, absl::string_view field) {
  if (!value.is_string()) return WrongType(field, "a string", value);
  return value.get<std::string>();
}

// A non-negative integer, written as an integer or as an integral float up to 2^53.
absl::StatusOr<uint64_t> GetNonNegativeInteger(const Json& value, absl::string_view field) {
  if (value.is_number_unsigned()) return value.get<uint64_t>();
  if (value.is_number_integer()) {  // signed and not unsigned: negative
    return Invalid(field,
                   absl::StrCat("expected a non-negative integer, got ", value.get<int64_t>()));
  }
  if (value.is_number_float()) {
    const double v = value.get<double>();
    if (std::isfinite(v) && v >= 0 && v <= kMaxExactInteger && v == std::floor(v)) {
      return static_cast<uint64_t>(v);
    }
    return Invalid(field, absl::StrCat("expected a non-negative integer, got ", v));
  }
  return WrongType(field, "a non-negative integer", value);
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

absl::StatusOr<ModelSpec> ParseModel(const Json& value, absl::string_view path) {
  if (!value.is_object()) return WrongType(path, "an object", value);
  if (absl::Status s = CheckKeys(value, path, {"name", "slots"}); !s.ok()) return s;
  ModelSpec model;
  const Json* name = Find(value, "name");
  if (name == nullptr) return Invalid(Child(path, "name"), "required field missing");
  absl::StatusOr<std::string> n = GetString(*name, Child(path, "name"));
  if (!n.ok()) return n.status();
  model.name = *std::move(n);
  if (const Json* slots = Find(value, "slots"); slots != nullptr && !slots->is_null()) {
    const std::string field = Child(path, "slots");
    absl::StatusOr<uint64_t> v = GetNonNegativeInteger(*slots, field);
    if (!v.ok()) return v.status();
    if (*v > static_cast<uint64_t>(INT64_MAX)) return Invalid(field, "too large");
    model.slots = static_cast<int64_t>(*v);
  }
  return model;
}

absl::StatusOr<Query> ParseQuery(const Json& value, absl::string_view path) {
  if (!value.is_object()) return WrongType(path, "an object", value);
  if (absl::Status s =
          CheckKeys(value, path, {"id", "quality", "quality_lower", "cost", "allowed"});
      !s.ok()) {
    return s;
  }
  Query query;
  const Json* id = Find(value, "id");
  if (id == nullptr) return Invalid(Child(path, "id"), "required field missing");
  absl::StatusOr<std::string> id_value = GetString(*id, Child(path, "id"));
  if (!id_value.ok()) return id_value.status();
  query.id = *std::move(id_value);

  // Required per-model vectors.
  for (auto [key, target] :
       {std::pair{"quality", &query.quality}, std::pair{"cost", &query.cost}}) {
    const std::string field = Child(path, key);
    const Json* member = Find(value, key);
    if (member == nullptr) return Invalid(field, "required field missing");
    absl::StatusOr<std::vector<double>> v = GetNumberArray(*member, field);
    if (!v.ok()) return v.status();
    *target = *std::move(v);
  }
  if (const Json* lower = Find(value, "quality_lower"); lower != nullptr) {
    absl::StatusOr<std::vector<double>> v = GetNumberArray(*lower, Child(path, "quality_lower"));
    if (!v.ok()) return v.status();
    query.quality_lower = *std::move(v);
  }
  if (const Json* allowed = Find(value, "allowed"); allowed != nullptr) {
    absl::StatusOr<std::vector<std::string>> v = GetStringArray(*allowed, Child(path, "allowed"));
    if (!v.ok()) return v.status();
    query.allowed = *std::move(v);
  }
  return query;
}

absl::Status ParseParams(const Json& value, PolicyParams& params) {
  if (!value.is_object()) return WrongType("params", "an object", value);
  if (absl::Status s = CheckKeys(value, "params", {"lambda", "tau", "gamma", "seed"}); !s.ok()) {
    return s;
  }
  for (auto [key, target] : {std::pair{"lambda", &params.lambda}, std::pair{"tau", &params.tau},
                             std::pair{"gamma", &params.gamma}}) {
    if (const Json* member = Find(value, key); member != nullptr) {
      absl::StatusOr<double> v = GetNumber(*member, Child("params", key));
      if (!v.ok()) return v.status();
      *target = *v;
    }
  }
  if (const Json* seed = Find(value, "seed"); seed != nullptr) {
    absl::StatusOr<uint64_t> v = GetNonNegativeInteger(*seed, "params.seed");
    if (!v.ok()) return v.status();
    params.seed = *v;
  }
  return absl::OkStatus();
}

absl::StatusOr<BatchProblem> FromJson(const Json& root) {
  if (!root.is_object()) return WrongType("top level", "an object", root);
  if (absl::Status s = CheckKeys(
          root, "",
          {"models", "budget", "policy", "params", "time_limit_ms", "relative_gap", "queries"});
      !s.ok()) {
    return s;
  }
  BatchProblem problem;

  const Json* models = Find(root, "models");
  if (models == nullptr) return Invalid("models", "required field missing");
  if (!models->is_array()) return WrongType("models", "an array", *models);
  for (size_t j = 0; j < models->size(); ++j) {
    absl::StatusOr<ModelSpec> m = ParseModel((*models)[j], Element("models", j));
    if (!m.ok()) return m.status();
    problem.models.push_back(*std::move(m));
  }

  if (const Json* budget = Find(root, "budget"); budget != nullptr && !budget->is_null()) {
    absl::StatusOr<double> v = GetNumber(*budget, "budget");
    if (!v.ok()) return v.status();
    problem.budget = *v;
  }

  if (const Json* policy = Find(root, "policy"); policy != nullptr) {
    absl::StatusOr<std::string> name = GetString(*policy, "policy");
    if (!name.ok()) return name.status();
    absl::StatusOr<PolicyKind> kind = ParsePolicyKind(*name);
    if (!kind.ok()) return kind.status();
    problem.policy = *kind;
  }

  if (const Json* params = Find(root, "params"); params != nullptr) {
    if (absl::Status s = ParseParams(*params, problem.params); !s.ok()) return s;
  }

  if (const Json* limit = Find(root, "time_limit_ms"); limit != nullptr) {
    absl::StatusOr<double> ms = GetNumber(*limit, "time_limit_ms");
    if (!ms.ok()) return ms.status();
    if (!std::isfinite(*ms)) return Invalid("time_limit_ms", "must be a finite number");
    if (*ms <= 0) return Invalid("time_limit_ms", "must be > 0");
    problem.solve.time_limit = absl::Milliseconds(*ms);
    // Below absl's resolution (a quarter nanosecond) the limit rounds to zero.
    if (problem.solve.time_limit <= absl::ZeroDuration()) return Invalid("time_limit_ms", "must be > 0");
  }

  if (const Json* gap = Find(root, "relative_gap"); gap != nullptr) {
    absl::StatusOr<double> v = GetNumber(*gap, "relative_gap");
    if (!v.ok()) return v.status();
    problem.solve.relative_gap = *v;
  }

  const Json* queries = Find(root, "queries");
  if (queries == nullptr) return Invalid("queries", "required field missing");
  if (!queries->is_array()) return WrongType("queries", "an array", *queries);
  problem.queries.reserve(queries->size());
  for (size_t i = 0; i < queries->size(); ++i) {
    absl::StatusOr<Query> q = ParseQuery((*queries)[i], Element("queries", i));
    if (!q.ok()) return q.status();
    problem.queries.push_back(*std::move(q));
  }
  return problem;
}

}  // namespace

absl::StatusOr<BatchProblem> ParseBatchProblemJson(absl::string_view text) {
  const Json root = Json::parse(text.begin(), text.end(), /*cb=*/nullptr,
                                /*allow_exceptions=*/false);
  if (root.is_discarded()) {
    ParseErrorRecorder recorder;
    Json::sax_parse(text.begin(), text.end(), &recorder);
    return absl::InvalidArgumentError(
        absl::StrCat("invalid JSON: ",
                     recorder.message().empty() ? std::string("parse error") : recorder.message()));
  }
  absl::StatusOr<BatchProblem> problem = FromJson(root);
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
