// File: heuristic_policies.h
//
// The seed papers' per-query and hull baselines, as batch policies that can never break a batch's
// constraints:
//
//   per_query  (Markovic-Voronov et al.'s baseline; UniRoute's deferral rule): each query prefers
//              its allowed models by descending value - lambda * cost (ties: lower cost, then lower
//              model index).
//   threshold  (Dria, strategy 1): each query prefers the allowed models whose value >= tau by
//              ascending cost (ties: higher value, then lower index). Documented extension: when
//              none of them can be taken (or none reaches tau), the remaining allowed models follow
//              by descending value (ties: lower cost, then lower index), so a query that no model
//              serves well gets the best one the constraints leave.
//   ndch       (Dria, strategy 2): over the served queries, each model's mean value and mean cost
//              (over the queries that allow it; a model allowed by none is skipped) give a point.
//              The non-decreasing convex hull of those points is the upper-left frontier: sorted
//              by mean cost, each vertex has a strictly higher mean value than every cheaper point
//              and lies strictly above the chord of its neighbours (collinear points are dropped).
//              The per-query budget b = budget / #served picks the mixture:
//                - no budget: every query gets the highest-value vertex;
//                - b >= the dearest vertex's mean cost: every query gets the dearest vertex;
//                - b <= the cheapest vertex's mean cost: every query gets the cheapest vertex;
//                - otherwise, with L and H the vertices around b (cost_L <= b < cost_H),
//                  floor(f * #served) queries go to H, f = (b - cost_L) / (cost_H - cost_L), and
//                  the rest to L. The H queries are the first ones of the served queries shuffled
//                  with std::mt19937_64(seed) (std::shuffle).
//              A query's preference list is its hull model, then its other allowed models by
//              ascending cost (ties: higher value, then lower index). A query whose hull model it
//              may not use instead prefers all its allowed models by descending value (ties: lower
//              cost, then lower index).
//   ndch_p     (Dria, strategy 3): the same L, H and number of H queries, but the H queries are the
//              served queries that allow both L and H with the largest value_iH - value_iL (ties:
//              lower query index). When fewer than that number allow both, only those go to H.
//              Preference lists as for ndch.
//
// The feasibility guard (one internal function shared by all four policies). Queries are decided
// in index (arrival) order. `admission.fallback` is a slot- and budget-feasible assignment of the
// served queries. Query i walks its preference list and takes the first model p that it may use
// and after which the later served queries can still all be completed by their fallback models:
//     spent_so_far + c_ip + sum_{k > i served} c_{k, fallback(k)} <= budget   (when there is one)
//     used_p + 1 + #{k > i served : fallback(k) = p} <= slots_p                  (p limited)
// If none of its preferences passes, it takes its fallback model, which always passes by induction
// (the invariant spent + remaining fallback cost <= budget, and the same per limited model for
// slots, holds before the first query because the fallback is feasible, and every accepted step
// keeps it). Queries the admission leaves unserved stay unserved, with its reason.
//
// Guarantee: every policy's assignment uses only allowed models, respects every slot limit and the
// budget (CheckFeasible passes; the budget comparison is the one CheckFeasible makes, up to the
// rounding of summing in a different order), and serves exactly the queries the admission serves.
// This relies on the admission contract: `fallback` is allowed, slot-feasible and within budget.
// There is no optimality claim: status kHeuristic, upper_bound = +infinity.
//
// Every returned Solution has objective = AssignmentValue, total_cost = AssignmentCost, method set
// to the policy's wire name (per_query, threshold, ndch, ndch_p), unserved_reason copied from the
// admission, and solve_time measured around the call.
//
// Thread-safety: pure functions of their arguments (the only randomness is the seeded generator of
// SolveNdch); safe to call concurrently.
//
// Complexity, N queries and M models: per_query, threshold: O(N * M log M). ndch: O(N * M +
// M log M) plus the shuffle O(N). ndch_p: O(N * M + M log M + N log N). The guard is O(N * M).

#ifndef ROUTER_CORE_SOLVE_HEURISTIC_POLICIES_H_
#define ROUTER_CORE_SOLVE_HEURISTIC_POLICIES_H_

#include <cstdint>

#include "router_core/solve/admission.h"
#include "router_core/solve/instance.h"
#include "router_core/solve/solution.h"

namespace router::core {

// `lambda`: price of one USD in value units (>= 0 for the documented behaviour).
Solution SolvePerQuery(const Instance& instance, const Admission& admission, double lambda);

// `tau`: minimum acceptable value.
Solution SolveThreshold(const Instance& instance, const Admission& admission, double tau);

// `seed`: seed of the random split between the two hull models. Same inputs, same answer.
Solution SolveNdch(const Instance& instance, const Admission& admission, uint64_t seed);

Solution SolveNdchP(const Instance& instance, const Admission& admission);

}  // namespace router::core

#endif  // ROUTER_CORE_SOLVE_HEURISTIC_POLICIES_H_
