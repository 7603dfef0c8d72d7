#include "router_core/solve/solution.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "absl/strings/str_cat.h"

namespace router::core {

const char* SolveStatusName(SolveStatus status) {
  switch (status) {
    case SolveStatus::kOptimal:
      return "OPTIMAL";
    case SolveStatus::kFeasible:
      return "FEASIBLE";
    case SolveStatus::kHeuristic:
      return "HEURISTIC";
  }
  return "UNKNOWN";
}

const char* UnservedReasonName(UnservedReason reason) {
  switch (reason) {
    case UnservedReason::kNoSlot:
      return "no_slot";
    case UnservedReason::kNoBudget:
      return "no_budget";
  }
  return "unknown";
}

double RelativeGap(const Solution& solution) {
  if (!std::isfinite(solution.upper_bound)) return std::numeric_limits<double>::infinity();
  const double gap = solution.upper_bound - solution.objective;
  return std::max(0.0, gap) / std::max(std::abs(solution.upper_bound), 1e-12);
}

double AssignmentCost(const Instance& instance, const std::vector<int>& model_of_query) {
  double total = 0.0;
  for (int i = 0; i < instance.num_queries; ++i) {
    if (model_of_query[i] != kUnserved) total += instance.cost[instance.index(i, model_of_query[i])];
  }
  return total;
}

double AssignmentValue(const Instance& instance, const std::vector<int>& model_of_query) {
  double total = 0.0;
  for (int i = 0; i < instance.num_queries; ++i) {
    if (model_of_query[i] != kUnserved) {
      total += instance.value[instance.index(i, model_of_query[i])];
    }
  }
  return total;
}

double RobustObjective(const Instance& instance, const std::vector<int>& model_of_query,
                       double gamma) {
  const double value = AssignmentValue(instance, model_of_query);
  if (gamma <= 0.0) return value;
  std::vector<double> deviations;
  for (int i = 0; i < instance.num_queries; ++i) {
    const int j = model_of_query[i];
    if (j != kUnserved) deviations.push_back(instance.deviation[instance.index(i, j)]);
  }
  std::sort(deviations.begin(), deviations.end(), std::greater<double>());
  double loss = 0.0;
  double remaining = gamma;
  for (double d : deviations) {
    if (remaining <= 0.0) break;
    loss += d * std::min(1.0, remaining);
    remaining -= 1.0;
  }
  return value - loss;
}

absl::Status CheckFeasible(const Instance& instance, const std::vector<int>& model_of_query) {
  if (static_cast<int>(model_of_query.size()) != instance.num_queries) {
    return absl::InternalError(absl::StrCat("assignment has ", model_of_query.size(),
                                            " entries for ", instance.num_queries, " queries"));
  }
  std::vector<int64_t> used(instance.num_models, 0);
  for (int i = 0; i < instance.num_queries; ++i) {
    const int j = model_of_query[i];
    if (j == kUnserved) continue;
    if (j < 0 || j >= instance.num_models || !instance.is_allowed(i, j)) {
      return absl::InternalError(absl::StrCat("query ", i, " sent to a model it may not use (", j,
                                              ")"));
    }
    ++used[j];
  }
  for (int j = 0; j < instance.num_models; ++j) {
    if (instance.is_limited(j) && used[j] > instance.slots[j]) {
      return absl::InternalError(absl::StrCat("model ", j, " gets ", used[j], " queries for ",
                                              instance.slots[j], " slots"));
    }
  }
  if (instance.has_budget()) {
    const double cost = AssignmentCost(instance, model_of_query);
    if (cost > instance.budget + kBudgetTolerance * std::max(1.0, instance.budget)) {
      return absl::InternalError(
          absl::StrCat("cost ", cost, " exceeds the budget ", instance.budget));
    }
  }
  return absl::OkStatus();
}

}  // namespace router::core
