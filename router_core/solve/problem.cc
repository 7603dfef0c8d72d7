#include "router_core/solve/problem.h"

#include <cmath>
#include <limits>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace router::core {
namespace {

struct PolicyName {
  PolicyKind kind;
  absl::string_view name;
};
constexpr PolicyName kPolicyNames[] = {
    {PolicyKind::kBatch, "batch"},         {PolicyKind::kBatchRobust, "batch_robust"},
    {PolicyKind::kBatchGamma, "batch_gamma"}, {PolicyKind::kPerQuery, "per_query"},
    {PolicyKind::kThreshold, "threshold"}, {PolicyKind::kNdch, "ndch"},
    {PolicyKind::kNdchP, "ndch_p"},
};

absl::Status Invalid(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

// Checks one per-model vector of query `query`: length, finiteness and range. Field names are built
// only on error: validation runs on every batch, and formatting N*M names would cost more than
// the solve.
absl::Status CheckVector(const std::vector<double>& values, size_t num_models, size_t query,
                         absl::string_view field, double lo, double hi) {
  if (values.size() != num_models) {
    return Invalid(absl::StrCat("queries[", query, "].", field),
                   absl::StrCat("has ", values.size(), " entries, expected one per model (",
                                num_models, ")"));
  }
  for (size_t j = 0; j < values.size(); ++j) {
    const double v = values[j];
    if (std::isfinite(v) && v >= lo && v <= hi) continue;
    const std::string where = absl::StrCat("queries[", query, "].", field, "[", j, "]");
    if (std::isnan(v)) return Invalid(where, "NaN");
    if (std::isinf(v)) return Invalid(where, "infinite");
    return Invalid(where, absl::StrCat(v, " is outside [", lo, ", ", hi, "]"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<PolicyKind> ParsePolicyKind(absl::string_view name) {
  for (const PolicyName& p : kPolicyNames) {
    if (p.name == name) return p.kind;
  }
  return Invalid("policy", absl::StrCat("unknown policy '", name,
                                        "' (expected batch, batch_robust, batch_gamma, per_query, "
                                        "threshold, ndch or ndch_p)"));
}

absl::string_view PolicyKindName(PolicyKind kind) {
  for (const PolicyName& p : kPolicyNames) {
    if (p.kind == kind) return p.name;
  }
  return "unknown";
}

absl::Status ValidateBatchProblem(const BatchProblem& problem) {
  if (problem.models.empty()) return Invalid("models", "at least one model is required");
  absl::flat_hash_map<std::string, int> model_index;
  for (size_t j = 0; j < problem.models.size(); ++j) {
    const ModelSpec& m = problem.models[j];
    const std::string where = absl::StrCat("models[", j, "]");
    if (m.name.empty()) return Invalid(absl::StrCat(where, ".name"), "empty");
    if (!model_index.emplace(m.name, static_cast<int>(j)).second) {
      return Invalid(absl::StrCat(where, ".name"), absl::StrCat("duplicate model '", m.name, "'"));
    }
    if (m.slots.has_value() && *m.slots < 0) {
      return Invalid(absl::StrCat(where, ".slots"), absl::StrCat(*m.slots, " is negative"));
    }
  }
  if (problem.budget.has_value()) {
    const double b = *problem.budget;
    if (!std::isfinite(b)) return Invalid("budget", "not a finite number");
    if (b < 0) return Invalid("budget", absl::StrCat(b, " is negative"));
  }
  const size_t m = problem.models.size();
  absl::flat_hash_set<absl::string_view> ids;
  ids.reserve(problem.queries.size());
  for (size_t i = 0; i < problem.queries.size(); ++i) {
    const Query& q = problem.queries[i];
    if (q.id.empty()) return Invalid(absl::StrCat("queries[", i, "].id"), "empty");
    if (!ids.insert(q.id).second) {
      return Invalid(absl::StrCat("queries[", i, "].id"),
                     absl::StrCat("duplicate query id '", q.id, "'"));
    }
    if (absl::Status s = CheckVector(q.quality, m, i, "quality", 0.0, 1.0); !s.ok()) return s;
    if (!q.quality_lower.empty()) {
      if (absl::Status s = CheckVector(q.quality_lower, m, i, "quality_lower", 0.0, 1.0);
          !s.ok()) {
        return s;
      }
      for (size_t j = 0; j < m; ++j) {
        if (q.quality_lower[j] > q.quality[j]) {
          return Invalid(absl::StrCat("queries[", i, "].quality_lower[", j, "]"),
                         absl::StrCat(q.quality_lower[j], " is above quality ", q.quality[j]));
        }
      }
    }
    if (absl::Status s =
            CheckVector(q.cost, m, i, "cost", 0.0, std::numeric_limits<double>::max());
        !s.ok()) {
      return s;
    }
    for (size_t k = 0; k < q.allowed.size(); ++k) {
      const auto field = [&] { return absl::StrCat("queries[", i, "].allowed[", k, "]"); };
      if (!model_index.contains(q.allowed[k])) {
        return Invalid(field(), absl::StrCat("unknown model '", q.allowed[k], "'"));
      }
      // Allowed lists are short (at most M): a quadratic scan beats a hash set per query.
      for (size_t e = 0; e < k; ++e) {
        if (q.allowed[e] == q.allowed[k]) {
          return Invalid(field(), absl::StrCat("model '", q.allowed[k], "' listed twice"));
        }
      }
    }
  }
  const PolicyParams& p = problem.params;
  if (!std::isfinite(p.lambda) || p.lambda < 0) {
    return Invalid("params.lambda", "must be a finite number >= 0");
  }
  if (!std::isfinite(p.tau) || p.tau < 0 || p.tau > 1) {
    return Invalid("params.tau", "must be in [0, 1]");
  }
  if (!std::isfinite(p.gamma) || p.gamma < 0) {
    return Invalid("params.gamma", "must be a finite number >= 0");
  }
  if (p.gamma > static_cast<double>(problem.queries.size())) {
    return Invalid("params.gamma", absl::StrCat(p.gamma, " exceeds the number of queries (",
                                                problem.queries.size(), ")"));
  }
  return ValidateSolveOptions(problem.solve);
}

}  // namespace router::core
