// File: admission.h
//
// Decides which queries of a batch can be served at all, and gives a cheapest feasible assignment
// of them that every policy can fall back on.
//
// A batch is feasible when some assignment respects every slot limit and the budget. When none
// does, queries are left unserved (never silently over budget), by this documented rule:
//   1. Slots: the minimum number of queries that no slot-feasible assignment can place (their
//      allowed models are all limited and full) are unserved with reason kNoSlot.
//   2. Budget: the cheapest slot-feasible assignment of the rest is computed exactly (minimum total
//      cost; ties broken arbitrarily). While it costs more than the budget, the served query with
//      the most expensive assignment in it (ties: the later query) is unserved with reason
//      kNoBudget. Without slot limits, or when slot-limited models are free (the usual self-hosted
//      case), this serves the largest possible number of queries. Known limit: when a slot-limited
//      model has a cost, a slot freed by an unserved query is not reassigned, so fewer queries than
//      possible may be served (still feasible).
//
// Thread-safety: a pure function.

#ifndef ROUTER_CORE_SOLVE_ADMISSION_H_
#define ROUTER_CORE_SOLVE_ADMISSION_H_

#include <vector>

#include "router_core/solve/instance.h"
#include "router_core/solve/solution.h"

namespace router::core {

struct Admission {
  // Per query: the model of the cheapest feasible assignment of the served queries, or kUnserved.
  std::vector<int> fallback;
  // Per query: why it is unserved (meaningful where fallback is kUnserved).
  std::vector<UnservedReason> reason;
  // AssignmentCost of `fallback`; <= budget.
  double fallback_cost = 0.0;
  // Indices of the served queries, ascending.
  std::vector<int> served;
};

Admission AdmitQueries(const Instance& instance);

}  // namespace router::core

#endif  // ROUTER_CORE_SOLVE_ADMISSION_H_
