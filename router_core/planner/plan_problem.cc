#include "router_core/planner/plan_problem.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace router::core {
namespace {

absl::Status Invalid(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

absl::Status ValidateModel(const PlanModel& m, absl::string_view where) {
  if (m.gpus_per_instance.has_value() != m.slots_per_instance.has_value()) {
    return m.gpus_per_instance.has_value()
               ? Invalid(absl::StrCat(where, ".slots_per_instance"),
                         "required for a self-hosted model (one with gpus_per_instance)")
               : Invalid(absl::StrCat(where, ".gpus_per_instance"),
                         "required with slots_per_instance (API models set neither)");
  }
  if (m.self_hosted()) {
    if (*m.gpus_per_instance <= 0) {
      return Invalid(absl::StrCat(where, ".gpus_per_instance"),
                     absl::StrCat(*m.gpus_per_instance, " must be > 0"));
    }
    if (*m.slots_per_instance <= 0) {
      return Invalid(absl::StrCat(where, ".slots_per_instance"),
                     absl::StrCat(*m.slots_per_instance, " must be > 0"));
    }
    if (m.min_instances < 0) {
      return Invalid(absl::StrCat(where, ".min_instances"),
                     absl::StrCat(m.min_instances, " is negative"));
    }
    if (m.max_instances.has_value() && *m.max_instances < m.min_instances) {
      return Invalid(absl::StrCat(where, ".max_instances"),
                     absl::StrCat(*m.max_instances, " is below min_instances ", m.min_instances));
    }
    if (m.pin == ModelPin::kOn && m.max_instances.has_value() && *m.max_instances == 0) {
      return Invalid(absl::StrCat(where, ".pin"), "pinned on but max_instances is 0");
    }
    if (m.pin == ModelPin::kOff && m.min_instances > 0) {
      return Invalid(absl::StrCat(where, ".pin"),
                     absl::StrCat("pinned off but min_instances is ", m.min_instances));
    }
  } else if (m.min_instances != 0 || m.max_instances.has_value()) {
    return Invalid(absl::StrCat(where, m.min_instances != 0 ? ".min_instances" : ".max_instances"),
                   "only self-hosted models (with gpus_per_instance) have instances");
  }
  return absl::OkStatus();
}

// ValidateBatchProblem names query fields `queries[i]...`; in a plan they are `batches[b][i]...`.
absl::Status InBatch(const absl::Status& status, int batch) {
  const absl::string_view message = status.message();
  if (absl::StartsWith(message, "queries[")) {
    return absl::Status(status.code(), absl::StrCat("batches[", batch, "][",
                                                    message.substr(sizeof("queries[") - 1)));
  }
  return absl::Status(status.code(), absl::StrCat("batches[", batch, "]: ", message));
}

}  // namespace

absl::Status ValidatePlanProblem(const PlanProblem& problem) {
  if (problem.models.empty()) return Invalid("models", "at least one model is required");
  absl::flat_hash_set<std::string> names;
  for (size_t j = 0; j < problem.models.size(); ++j) {
    const PlanModel& m = problem.models[j];
    const std::string where = absl::StrCat("models[", j, "]");
    if (m.name.empty()) return Invalid(absl::StrCat(where, ".name"), "empty");
    if (!names.insert(m.name).second) {
      return Invalid(absl::StrCat(where, ".name"), absl::StrCat("duplicate model '", m.name, "'"));
    }
    if (absl::Status s = ValidateModel(m, where); !s.ok()) return s;
  }
  if (problem.gpu_budget < 0) {
    return Invalid("gpu_budget", absl::StrCat(problem.gpu_budget, " is negative"));
  }
  if (problem.avg_cost_cap.has_value()) {
    const double cap = *problem.avg_cost_cap;
    if (!std::isfinite(cap)) return Invalid("avg_cost_cap", "not a finite number");
    if (cap < 0) return Invalid("avg_cost_cap", absl::StrCat(cap, " is negative"));
  }
  if (problem.time_limit <= absl::ZeroDuration()) return Invalid("time_limit", "must be > 0");
  if (!std::isfinite(problem.relative_gap) || problem.relative_gap < 0 ||
      problem.relative_gap >= 1) {
    return Invalid("relative_gap", "must be in [0, 1)");
  }
  if (problem.batches.empty()) return Invalid("batches", "at least one batch is required");
  const std::vector<int64_t> no_instances(problem.models.size(), 0);
  for (size_t b = 0; b < problem.batches.size(); ++b) {
    if (problem.batches[b].empty()) {
      return Invalid(absl::StrCat("batches[", b, "]"), "empty batch");
    }
    // The per-query checks are exactly those of a routed batch; slots and budget are the plan's
    // and were checked above.
    const BatchProblem batch = BatchAt(problem, static_cast<int>(b), no_instances);
    if (absl::Status s = ValidateBatchProblem(batch); !s.ok()) {
      return InBatch(s, static_cast<int>(b));
    }
  }
  return absl::OkStatus();
}

InstanceBounds ComputeInstanceBounds(const PlanProblem& problem) {
  const size_t m = problem.models.size();
  InstanceBounds bounds{std::vector<int64_t>(m, 0), std::vector<int64_t>(m, 0)};
  int64_t largest_batch = 0;
  for (const std::vector<Query>& batch : problem.batches) {
    largest_batch = std::max<int64_t>(largest_batch, static_cast<int64_t>(batch.size()));
  }
  int64_t min_gpus = 0;
  for (size_t j = 0; j < m; ++j) {
    const PlanModel& model = problem.models[j];
    if (!model.self_hosted() || model.pin == ModelPin::kOff) continue;
    bounds.lo[j] = std::max<int64_t>(model.min_instances, model.pin == ModelPin::kOn ? 1 : 0);
    min_gpus += bounds.lo[j] * *model.gpus_per_instance;
  }
  for (size_t j = 0; j < m; ++j) {
    const PlanModel& model = problem.models[j];
    if (!model.self_hosted() || model.pin == ModelPin::kOff) continue;
    const int64_t g = *model.gpus_per_instance;
    const int64_t l = *model.slots_per_instance;
    const int64_t free_gpus = problem.gpu_budget - (min_gpus - bounds.lo[j] * g);
    int64_t hi = std::max<int64_t>(0, free_gpus) / g;
    hi = std::min(hi, (largest_batch + l - 1) / l);
    if (model.max_instances.has_value()) hi = std::min(hi, *model.max_instances);
    bounds.hi[j] = std::max(bounds.lo[j], hi);
  }
  return bounds;
}

int64_t GpusUsed(const PlanProblem& problem, const std::vector<int64_t>& instances) {
  int64_t gpus = 0;
  for (size_t j = 0; j < problem.models.size(); ++j) {
    if (problem.models[j].self_hosted()) gpus += *problem.models[j].gpus_per_instance * instances[j];
  }
  return gpus;
}

namespace {

// Slots of model j in any sampled batch under `instances`; nullopt = unlimited.
std::optional<int64_t> SlotsOf(const PlanModel& model, int64_t instances) {
  if (model.pin == ModelPin::kOff) return 0;
  if (!model.self_hosted()) return std::nullopt;
  return *model.slots_per_instance * instances;
}

std::optional<double> BudgetOf(const PlanProblem& problem, int batch) {
  if (!problem.avg_cost_cap.has_value()) return std::nullopt;
  return *problem.avg_cost_cap * static_cast<double>(problem.batches[batch].size());
}

}  // namespace

BatchProblem BatchAt(const PlanProblem& problem, int batch, const std::vector<int64_t>& instances,
                     const SolveOptions& solve) {
  BatchProblem out;
  for (size_t j = 0; j < problem.models.size(); ++j) {
    out.models.push_back({problem.models[j].name, SlotsOf(problem.models[j], instances[j])});
  }
  out.queries = problem.batches[batch];
  out.budget = BudgetOf(problem, batch);
  out.policy = PolicyKind::kBatch;
  out.solve = solve;
  return out;
}

std::vector<Instance> BuildBatchInstances(const PlanProblem& problem,
                                          const std::vector<int64_t>& instances) {
  std::vector<Instance> out;
  out.reserve(problem.batches.size());
  for (size_t b = 0; b < problem.batches.size(); ++b) {
    out.push_back(BuildInstance(BatchAt(problem, static_cast<int>(b), instances),
                                ValueSource::kQuality));
  }
  return out;
}

void SetSlots(const PlanProblem& problem, const std::vector<int64_t>& instances,
              std::vector<Instance>& batch_instances) {
  for (Instance& instance : batch_instances) {
    for (size_t j = 0; j < problem.models.size(); ++j) {
      instance.slots[j] = SlotsOf(problem.models[j], instances[j]).value_or(kUnlimited);
    }
  }
}

}  // namespace router::core
