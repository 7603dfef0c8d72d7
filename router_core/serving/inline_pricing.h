// File: inline_pricing.h
//
// The prices of inline routing (inline_router.h): the duals of the LP relaxation of the batch ILP
// over a set of weighted queries,
//     max  sum_i w_i sum_j a_ij x_ij
//     s.t. sum_i w_i sum_j c_ij x_ij <= budget          (dual lambda >= 0)
//          sum_i w_i x_ij <= free_j   for each model j   (dual mu_j >= 0)
//          sum_j x_ij = 1, x_ij >= 0 over i's allowed models,
// found by coordinate descent on the dual: lambda exactly, given the slot prices (the spend of the
// priced choices argmax_j a_ij - lambda c_ij - mu_j is a non-increasing step function of lambda
// whose steps are the slopes of each query's upper concave hull in (cost, a - mu); a weighted
// quickselect over those slopes finds the smallest lambda whose spend fits, exactly, where a
// bisection would only approach it),
// then each slot price in closed form (the smallest mu_j at which the weighted demand for j fits
// free_j: where the weights of the advantages of j over each query's next best model, taken in
// decreasing order, pass free_j; found by the same weighted quickselect), for a few rounds.
//
// Cost: with R rounds, H queries, M models, hull size h (typically 3-5 of M) and B models whose
// slots bind:
//     no slot binding:  O(H x h) expected
//     otherwise:        O(R x H x M x B) expected
// A model with no free slot is priced out (mu = +inf) and never chosen.
//
// Thread-safety: values and pure functions.

#ifndef ROUTER_CORE_SERVING_INLINE_PRICING_H_
#define ROUTER_CORE_SERVING_INLINE_PRICING_H_

#include <cstdint>
#include <vector>

#include "absl/types/span.h"

namespace router::core {

// One query's allowed models with its predictions, ready for pricing.
struct PricedQuery {
  std::vector<int> models;  // pool indices, ascending
  std::vector<double> quality;
  std::vector<double> cost;
  // Indices into `models` of the upper concave hull in (cost, quality), cost ascending: the only
  // models the query can prefer at some lambda when no slot is priced.
  std::vector<int> hull;
  std::vector<int> by_cost;  // indices into `models` by ascending cost (stable)
  double cheapest_cost = 0.0;  // over `models`; +inf when it has none
};

// `quality` and `cost` in pool order; `allowed[j]` != 0 for the models the query may use.
PricedQuery MakePricedQuery(absl::Span<const double> quality, absl::Span<const double> cost,
                            absl::Span<const uint8_t> allowed);

// Sets `out` to `query` without the pool models j with `excluded[j]` != 0 (hull and cheapest cost
// recomputed), reusing out's storage. SolvePrices prices a model without a free slot out (mu =
// +inf) and then rebuilds the hull of every query that has it, at every call; a caller that
// prices the same queries repeatedly while the same models are full (inline_router.h: every
// decision's forecast) passes them through this once per change instead, to the same prices.
void WithoutModels(const PricedQuery& query, absl::Span<const char> excluded, PricedQuery& out);

struct WeightedQuery {
  const PricedQuery* query = nullptr;  // not owned
  double weight = 1.0;                 // > 0
};

struct Prices {
  double lambda = 0.0;     // USD^-1
  std::vector<double> mu;  // per pool model; +inf = no free slot
};

struct PricingOptions {
  int slot_price_rounds = 3;  // >= 0
};

// `free_slots` per pool model (+inf = unlimited); `budget` in USD (+inf = none). Every query's
// models must be pool indices below free_slots.size().
Prices SolvePrices(absl::Span<const WeightedQuery> queries, absl::Span<const double> free_slots,
                   double budget, const PricingOptions& options);

}  // namespace router::core

#endif  // ROUTER_CORE_SERVING_INLINE_PRICING_H_
