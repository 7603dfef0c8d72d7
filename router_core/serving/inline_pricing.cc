#include "router_core/serving/inline_pricing.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <utility>

namespace router::core {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kAbove = 1.0 + 1e-9;

// Indices k (with price[k] finite) on the upper concave hull of the points (cost[k], quality[k] -
// price[k]), walking `by_cost` (indices by ascending cost): dominated points go, then points on or
// below the chord of their neighbours. Of equal points the first in `by_cost` stays. An empty
// `price` is all zeros.
void UpperHull(absl::Span<const double> cost, absl::Span<const double> quality,
               absl::Span<const double> price, absl::Span<const int> by_cost,
               std::vector<int>& hull) {
  hull.clear();
  const auto value = [&](int k) { return price.empty() ? quality[k] : quality[k] - price[k]; };
  for (const int k : by_cost) {
    if (!price.empty() && !std::isfinite(price[k])) continue;
    if (!hull.empty() && cost[k] == cost[hull.back()]) {
      if (value(k) <= value(hull.back())) continue;
      hull.pop_back();  // the better of equal-cost points replaces it
    }
    if (!hull.empty() && value(k) <= value(hull.back())) continue;
    while (hull.size() >= 2) {
      const int a = hull[hull.size() - 2];
      const int b = hull.back();
      const double cross = (cost[b] - cost[a]) * (value(k) - value(a)) -
                           (value(b) - value(a)) * (cost[k] - cost[a]);
      if (cross < 0) break;
      hull.pop_back();
    }
    hull.push_back(k);
  }
}

// A key with a weight: a hull step (slope, extra spend) or a query's advantage for a model
// (advantage, weight).
struct Weighted {
  double key;
  double weight;
};

// The key at which the running sum of weights, taken in decreasing key order, first exceeds
// `room` (equal keys count together); nullopt when the whole sum fits. What a sort and a scan
// would give, by a weighted quickselect instead: expected O(items). Reorders `items`.
std::optional<double> KeyWherePassing(std::vector<Weighted>& items, double room) {
  auto first = items.begin(), last = items.end();
  double taken = 0.0;  // weight of the items known to come first (keys above the range)
  while (first != last) {
    const double pivot = (first + (last - first) / 2)->key;
    const auto above_end =
        std::partition(first, last, [pivot](const Weighted& x) { return x.key > pivot; });
    const auto equal_end =
        std::partition(above_end, last, [pivot](const Weighted& x) { return x.key == pivot; });
    double above = 0.0, equal = 0.0;
    for (auto it = first; it != above_end; ++it) above += it->weight;
    for (auto it = above_end; it != equal_end; ++it) equal += it->weight;
    if (taken + above > room) {
      last = above_end;
    } else if (taken + above + equal > room) {
      return pivot;
    } else {
      taken += above + equal;
      first = equal_end;
    }
  }
  return std::nullopt;
}

class DualSolver {
 public:
  DualSolver(absl::Span<const WeightedQuery> queries, absl::Span<const double> free_slots,
             double budget, const PricingOptions& options)
      : queries_(queries),
        free_(free_slots),
        budget_(budget),
        options_(options),
        active_(queries.size()),
        hull_storage_(queries.size()) {
    prices_.mu.assign(free_.size(), 0.0);
    for (size_t j = 0; j < free_.size(); ++j) {
      if (free_[j] < 1.0) prices_.mu[j] = kInf;
    }
    RebuildHulls();
  }

  Prices Solve() {
    SolveLambda();
    for (int round = 0; round < options_.slot_price_rounds; ++round) {
      const std::vector<double> demand = Demand();
      bool changed = false;
      for (size_t j = 0; j < free_.size(); ++j) {
        const double mu = prices_.mu[j];
        if (!std::isfinite(free_[j]) || std::isinf(mu)) continue;
        if (demand[j] <= free_[j] && mu == 0.0) continue;
        SolveSlotPrice(static_cast<int>(j));
        changed |= prices_.mu[j] != mu;
      }
      if (!changed) break;
      RebuildHulls();
      SolveLambda();
    }
    return std::move(prices_);
  }

 private:
  double Price(const PricedQuery& q, int k) const { return prices_.mu[q.models[k]]; }

  // The hull of each query under the current slot prices: its precomputed one while none of its
  // models is priced.
  void RebuildHulls() {
    for (size_t i = 0; i < queries_.size(); ++i) {
      const PricedQuery& q = *queries_[i].query;
      bool priced = false;
      for (const int j : q.models) priced |= prices_.mu[j] != 0.0;
      if (!priced) {
        active_[i] = &q.hull;
        continue;
      }
      price_.resize(q.models.size());
      for (size_t k = 0; k < q.models.size(); ++k) price_[k] = Price(q, static_cast<int>(k));
      UpperHull(q.cost, q.quality, price_, q.by_cost, hull_storage_[i]);
      active_[i] = &hull_storage_[i];
    }
  }

  // Index into q.models of query i's choice at `lambda` (ties: the cheaper model), or -1.
  int Choice(size_t i, double lambda) const {
    const PricedQuery& q = *queries_[i].query;
    int best = -1;
    double best_score = -kInf;
    for (const int k : *active_[i]) {
      const double score = q.quality[k] - Price(q, k) - lambda * q.cost[k];
      if (best < 0 || score > best_score) {  // hull order is cost ascending: ties keep the cheaper
        best = k;
        best_score = score;
      }
    }
    return best;
  }

  std::vector<double> Demand() const {
    std::vector<double> demand(free_.size(), 0.0);
    for (size_t i = 0; i < queries_.size(); ++i) {
      const int k = Choice(i, prices_.lambda);
      if (k >= 0) demand[queries_[i].query->models[k]] += queries_[i].weight;
    }
    return demand;
  }

  // The exact smallest lambda whose spend fits the budget. Along a query's hull the slopes
  // (value gain per USD) decrease, and at lambda the query climbs every step whose slope exceeds
  // lambda; so the spend is a step function of lambda, changing only at the slopes. Walk the
  // slopes from the largest down, adding each step's extra spend, and stop at the first that
  // would break the budget: lambda is just above that slope (a relative 1e-9, so that rounding in
  // a - lambda c cannot climb the step). When even the cheapest models overspend, lambda is just
  // above the largest slope (everyone at their cheapest).
  void SolveLambda() {
    prices_.lambda = 0.0;
    if (!std::isfinite(budget_)) return;
    double spend = 0.0;
    steps_.clear();
    for (size_t i = 0; i < queries_.size(); ++i) {
      const PricedQuery& q = *queries_[i].query;
      const std::vector<int>& hull = *active_[i];
      if (hull.empty()) continue;
      const double w = queries_[i].weight;
      spend += w * q.cost[hull[0]];
      for (size_t t = 1; t < hull.size(); ++t) {
        const int a = hull[t - 1], b = hull[t];
        const double gain = (q.quality[b] - Price(q, b)) - (q.quality[a] - Price(q, a));
        steps_.push_back({gain / (q.cost[b] - q.cost[a]), w * (q.cost[b] - q.cost[a])});
      }
    }
    if (spend > budget_) {
      double top = 0.0;
      for (const Weighted& step : steps_) top = std::max(top, step.key);
      prices_.lambda = top * kAbove;
      return;
    }
    prices_.lambda = BreakingSlope(budget_ - spend) * kAbove;
  }

  // The first step (largest slopes first) at which the summed extra spend exceeds `room`; 0 when
  // every step fits.
  double BreakingSlope(double room) { return KeyWherePassing(steps_, room).value_or(0.0); }

  // Closed form: with adv_i = (a_ij - lambda c_ij) - (best other score of query i), query i takes
  // j iff adv_i > mu_j; mu_j is the advantage at which the weights, largest advantages first,
  // pass free_j.
  void SolveSlotPrice(int j) {
    prices_.mu[j] = 0.0;
    advantages_.clear();
    double finite_max = 0.0;
    for (const WeightedQuery& wq : queries_) {
      const PricedQuery& q = *wq.query;
      const auto it = std::lower_bound(q.models.begin(), q.models.end(), j);
      if (it == q.models.end() || *it != j) continue;
      const int kj = static_cast<int>(it - q.models.begin());
      double other = -kInf;
      for (size_t k = 0; k < q.models.size(); ++k) {
        const double mu = Price(q, static_cast<int>(k));
        if (static_cast<int>(k) == kj || std::isinf(mu)) continue;
        other = std::max(other, q.quality[k] - prices_.lambda * q.cost[k] - mu);
      }
      const double adv = q.quality[kj] - prices_.lambda * q.cost[kj] - other;
      if (std::isfinite(adv)) finite_max = std::max(finite_max, adv);
      advantages_.push_back({adv, wq.weight});
    }
    const std::optional<double> adv = KeyWherePassing(advantages_, free_[j]);
    if (!adv.has_value()) return;  // the whole demand fits
    // Queries without another model stay whatever the price; push off everyone else.
    const double at = std::isinf(*adv) ? finite_max : std::max(0.0, *adv);
    prices_.mu[j] = at + 1e-12 * (1.0 + at);
  }

  const absl::Span<const WeightedQuery> queries_;
  const absl::Span<const double> free_;
  const double budget_;
  const PricingOptions options_;
  std::vector<const std::vector<int>*> active_;  // per query: its hull under the current prices
  std::vector<std::vector<int>> hull_storage_;
  // Hull steps: key = value gain per USD of climbing the step, weight = weight x cost increase.
  std::vector<Weighted> steps_;
  std::vector<Weighted> advantages_;  // SolveSlotPrice's scratch
  std::vector<double> price_;  // scratch: slot prices of one query's models
  Prices prices_;
};

// Fills the fields derived from models, quality and cost.
void DeriveHull(PricedQuery& q) {
  q.cheapest_cost = kInf;
  for (const double c : q.cost) q.cheapest_cost = std::min(q.cheapest_cost, c);
  q.by_cost.resize(q.models.size());
  for (size_t k = 0; k < q.models.size(); ++k) q.by_cost[k] = static_cast<int>(k);
  std::stable_sort(q.by_cost.begin(), q.by_cost.end(),
                   [&](int a, int b) { return q.cost[a] < q.cost[b]; });
  UpperHull(q.cost, q.quality, {}, q.by_cost, q.hull);
}

}  // namespace

PricedQuery MakePricedQuery(absl::Span<const double> quality, absl::Span<const double> cost,
                            absl::Span<const uint8_t> allowed) {
  PricedQuery q;
  for (size_t j = 0; j < quality.size(); ++j) {
    if (!allowed[j]) continue;
    q.models.push_back(static_cast<int>(j));
    q.quality.push_back(quality[j]);
    q.cost.push_back(cost[j]);
  }
  DeriveHull(q);
  return q;
}

void WithoutModels(const PricedQuery& query, absl::Span<const char> excluded, PricedQuery& out) {
  out.models.clear();
  out.quality.clear();
  out.cost.clear();
  out.cheapest_cost = kInf;
  std::vector<int> kept(query.models.size(), -1);  // index in `out` of query's k-th model, or -1
  for (size_t k = 0; k < query.models.size(); ++k) {
    if (excluded[query.models[k]]) continue;
    kept[k] = static_cast<int>(out.models.size());
    out.models.push_back(query.models[k]);
    out.quality.push_back(query.quality[k]);
    out.cost.push_back(query.cost[k]);
    out.cheapest_cost = std::min(out.cheapest_cost, query.cost[k]);
  }
  // Filtering keeps query.by_cost's order (cost, then model index), so it needs no sort.
  out.by_cost.clear();
  for (const int k : query.by_cost) {
    if (kept[k] >= 0) out.by_cost.push_back(kept[k]);
  }
  UpperHull(out.cost, out.quality, {}, out.by_cost, out.hull);
}

Prices SolvePrices(absl::Span<const WeightedQuery> queries, absl::Span<const double> free_slots,
                   double budget, const PricingOptions& options) {
  return DualSolver(queries, free_slots, budget, options).Solve();
}

}  // namespace router::core
