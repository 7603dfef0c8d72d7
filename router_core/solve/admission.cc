#include "router_core/solve/admission.h"

#include <algorithm>

#include "router_core/solve/transport.h"

namespace router::core {

Admission AdmitQueries(const Instance& instance) {
  const int n = instance.num_queries;
  std::vector<double> negative_cost(instance.cost.size());
  for (size_t k = 0; k < negative_cost.size(); ++k) negative_cost[k] = -instance.cost[k];
  // No deadline: the fallback is what every later stage starts from.
  TransportResult cheapest = *SolveTransport(instance, negative_cost);

  Admission admission;
  admission.fallback = std::move(cheapest.model_of_query);
  admission.reason.assign(n, UnservedReason::kNoSlot);
  admission.fallback_cost = AssignmentCost(instance, admission.fallback);
  if (instance.has_budget() && admission.fallback_cost > instance.budget) {
    std::vector<int> by_cost;
    for (int i = 0; i < n; ++i) {
      if (admission.fallback[i] != kUnserved) by_cost.push_back(i);
    }
    auto fallback_cost = [&](int i) { return instance.cost[instance.index(i, admission.fallback[i])]; };
    std::stable_sort(by_cost.begin(), by_cost.end(), [&](int a, int b) {
      const double ca = fallback_cost(a), cb = fallback_cost(b);
      return ca != cb ? ca > cb : a > b;
    });
    for (int i : by_cost) {
      if (admission.fallback_cost <= instance.budget) break;
      admission.fallback[i] = kUnserved;
      admission.reason[i] = UnservedReason::kNoBudget;
      // Recomputed rather than decremented so that the final comparison sees the same sum that
      // CheckFeasible computes.
      admission.fallback_cost = AssignmentCost(instance, admission.fallback);
    }
  }
  for (int i = 0; i < n; ++i) {
    if (admission.fallback[i] != kUnserved) admission.served.push_back(i);
  }
  return admission;
}

}  // namespace router::core
