#include "router_core/planner/allocation.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "router_core/solve/solve_batch.h"
#include "router_core/solve/solution.h"

namespace router::core {

absl::Status CheckMinimumsFit(const PlanProblem& problem) {
  const InstanceBounds bounds = ComputeInstanceBounds(problem);
  int64_t needed = 0;
  std::vector<std::string> parts;
  for (size_t j = 0; j < problem.models.size(); ++j) {
    if (bounds.lo[j] == 0) continue;
    const PlanModel& m = problem.models[j];
    const int64_t gpus = bounds.lo[j] * *m.gpus_per_instance;
    needed += gpus;
    const std::string why = m.min_instances >= bounds.lo[j]
                                ? absl::StrCat("min_instances ", bounds.lo[j])
                                : std::string("pinned on: 1 instance");
    parts.push_back(absl::StrCat("models[", j, "] (", m.name, "): ", why, " x ",
                                 *m.gpus_per_instance, " GPUs = ", gpus, " GPUs"));
  }
  if (needed <= problem.gpu_budget) return absl::OkStatus();
  const std::string total = parts.size() > 1 ? absl::StrCat("; together ", needed, " GPUs") : "";
  return absl::InvalidArgumentError(absl::StrCat(absl::StrJoin(parts, "; "), total,
                                                 " exceed gpu_budget ", problem.gpu_budget));
}

std::vector<int64_t> ShareAllocation(const PlanProblem& problem,
                                     const std::vector<double>& weight) {
  const InstanceBounds bounds = ComputeInstanceBounds(problem);
  std::vector<int64_t> instances = bounds.lo;
  int64_t left = problem.gpu_budget - GpusUsed(problem, instances);
  while (true) {
    int best = -1;
    double best_key = 0.0;
    for (size_t j = 0; j < problem.models.size(); ++j) {
      const PlanModel& m = problem.models[j];
      if (!m.self_hosted() || weight[j] <= 0.0 || instances[j] >= bounds.hi[j] ||
          *m.gpus_per_instance > left) {
        continue;
      }
      const double key =
          static_cast<double>(*m.gpus_per_instance * (instances[j] + 1)) / weight[j];
      if (best < 0 || key < best_key) {
        best = static_cast<int>(j);
        best_key = key;
      }
    }
    if (best < 0) return instances;
    ++instances[best];
    left -= *problem.models[best].gpus_per_instance;
  }
}

absl::StatusOr<std::vector<int64_t>> UniformAllocation(const PlanProblem& problem) {
  if (absl::Status s = ValidatePlanProblem(problem); !s.ok()) return s;
  if (absl::Status s = CheckMinimumsFit(problem); !s.ok()) return s;
  return ShareAllocation(problem, std::vector<double>(problem.models.size(), 1.0));
}

absl::StatusOr<std::vector<int64_t>> ProportionalAllocation(const PlanProblem& problem) {
  if (absl::Status s = ValidatePlanProblem(problem); !s.ok()) return s;
  if (absl::Status s = CheckMinimumsFit(problem); !s.ok()) return s;
  std::vector<double> weight(problem.models.size(), 0.0);
  int64_t count = 0;
  for (const std::vector<Query>& batch : problem.batches) {
    for (const Query& q : batch) {
      for (size_t j = 0; j < weight.size(); ++j) weight[j] += q.quality[j];
      ++count;
    }
  }
  for (double& w : weight) w /= static_cast<double>(count);
  return ShareAllocation(problem, weight);
}

absl::StatusOr<AllocationEvaluation> EvaluateAllocation(const PlanProblem& problem,
                                                        const std::vector<int64_t>& instances,
                                                        const EvaluationOptions& options) {
  if (absl::Status s = ValidatePlanProblem(problem); !s.ok()) return s;
  if (instances.size() != problem.models.size()) {
    return absl::InvalidArgumentError(absl::StrCat("instances: has ", instances.size(),
                                                   " entries, expected one per model (",
                                                   problem.models.size(), ")"));
  }
  const InstanceBounds bounds = ComputeInstanceBounds(problem);
  for (size_t j = 0; j < instances.size(); ++j) {
    const PlanModel& m = problem.models[j];
    // Above hi_j is allowed (instances no sampled batch can use); below lo_j, on an API model or
    // on a model pinned off is not.
    const bool must_be_zero = !m.self_hosted() || m.pin == ModelPin::kOff;
    if (instances[j] < bounds.lo[j] || (must_be_zero && instances[j] != 0) ||
        (m.max_instances.has_value() && instances[j] > *m.max_instances)) {
      return absl::InvalidArgumentError(absl::StrCat("instances[", j, "]: ", instances[j],
                                                     " is outside the bounds of model '", m.name,
                                                     "'"));
    }
  }
  if (const int64_t used = GpusUsed(problem, instances); used > problem.gpu_budget) {
    return absl::InvalidArgumentError(
        absl::StrCat("instances: use ", used, " GPUs, gpu_budget is ", problem.gpu_budget));
  }
  AllocationEvaluation out;
  for (size_t b = 0; b < problem.batches.size(); ++b) {
    const BatchProblem batch = BatchAt(problem, static_cast<int>(b), instances, options.solve);
    absl::StatusOr<Solution> solution = SolveBatch(batch);
    if (!solution.ok()) return solution.status();
    const Instance instance = BuildInstance(batch, ValueSource::kQuality);
    out.objective += AssignmentValue(instance, solution->model_of_query);
    out.total_cost += solution->total_cost;
    out.num_queries += instance.num_queries;
    for (int j : solution->model_of_query) out.unserved += j == kUnserved ? 1 : 0;
  }
  out.mean_quality = out.objective / static_cast<double>(out.num_queries);
  return out;
}

}  // namespace router::core
