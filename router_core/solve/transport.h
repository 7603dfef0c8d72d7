// File: transport.h
//
// Exact solver for the slot-constrained assignment ("transportation") problem that sits inside every
// batch method once the budget row is priced out:
//
//     maximize    sum_i weight[i, x_i]
//     subject to  x_i in allowed(i)                         for every query i
//                 #{i : x_i = j} <= slots_j                 for every limited model j
//
// Models without a slot limit are merged into one "outside option" per query (its best unlimited
// allowed model). Limited models are bins. The solver starts from every query at its best option,
// which is optimal for capacities equal to the demand, then removes the excess of over-full bins one
// unit at a time along shortest (least-loss) eviction paths in the residual graph over the K + 1
// nodes {outside, bins} (successive shortest paths, Bellman-Ford since losses can be negative).
// Edge costs are the tops of lazily cleaned min-heaps, one per ordered node pair.
//
// Cost: O(N*K*log N) to build, O(E * (K^3 + K*log N)) for E units of excess, with N queries and K
// limited models. Exact up to floating-point rounding.
//
// Slot prices (the LP duals of the slot rows) are the shortest distances from each bin to a bin with
// spare capacity or to the outside option in the final residual graph; they are >= 0 and 0 for
// bins with spare capacity, so sum_j price_j*slots_j + sum_i max_j (weight_ij - price_j) equals the
// optimum (strong duality) and is a valid upper bound whatever the rounding.
//
// A query whose allowed models are all limited and full is left unserved (kUnserved); this only
// happens when no slot-feasible assignment serves every query, and then the number left unserved
// is the minimum possible.
//
// Stopping: the solve checks `deadline` between units of excess (every kTransportDeadlineStride
// units) and gives up once it has passed: an unfinished flow is no optimum and its prices no bound,
// so the caller gets nothing (nullopt) and keeps what it had. With the default Deadline it always
// finishes.
//
// Thread-safety: a pure function.

#ifndef ROUTER_CORE_SOLVE_TRANSPORT_H_
#define ROUTER_CORE_SOLVE_TRANSPORT_H_

#include <optional>
#include <vector>

#include "router_core/solve/deadline.h"
#include "router_core/solve/instance.h"

namespace router::core {

struct TransportResult {
  // Per query: model index or kUnserved.
  std::vector<int> model_of_query;
  // Sum of weight over served queries.
  double value = 0.0;
  // Per model: the slot price (0 for unlimited models and bins with spare capacity).
  std::vector<double> slot_price;
  int num_unserved = 0;
};

// Units of excess moved between two readings of the deadline's clock (a unit costs O(K^3)).
inline constexpr int kTransportDeadlineStride = 16;

// `weight` is N x M row-major like Instance::value; only allowed cells are read. Slots and the
// allowed mask come from `instance`; its budget, value and cost are ignored. nullopt only when
// `deadline` passed before the solve finished.
std::optional<TransportResult> SolveTransport(const Instance& instance,
                                              const std::vector<double>& weight,
                                              const Deadline& deadline = Deadline());

}  // namespace router::core

#endif  // ROUTER_CORE_SOLVE_TRANSPORT_H_
