#include "router_core/solve/heuristic_policies.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace router::core {
namespace {

// The feasibility guard (see the header). `preferences(i, &order)` appends query i's preference list
// to `order` (cleared before each call); entries it may not use are skipped. Returns the assignment.
template <typename PreferenceFn>
std::vector<int> GuardedAssign(const Instance& instance, const Admission& admission,
                               PreferenceFn&& preferences) {
  const int n = instance.num_queries;
  const int m = instance.num_models;
  std::vector<int> assignment(n, kUnserved);
  auto fallback_of = [&](int i) {
    return i < static_cast<int>(admission.fallback.size()) ? admission.fallback[i] : kUnserved;
  };
  // rest_cost[i] = sum over served k >= i of c_{k, fallback(k)}, summed from the back.
  std::vector<double> rest_cost(static_cast<size_t>(n) + 1, 0.0);
  // rest_count[j] = #{served k > i : fallback(k) = j} while query i is decided.
  std::vector<int64_t> rest_count(m, 0);
  for (int i = n - 1; i >= 0; --i) {
    const int f = fallback_of(i);
    rest_cost[i] = rest_cost[i + 1];
    if (f == kUnserved) continue;
    rest_cost[i] += instance.cost[instance.index(i, f)];
    ++rest_count[f];
  }
  std::vector<int64_t> used(m, 0);
  double spent = 0.0;
  std::vector<int> order;
  order.reserve(m);
  for (int i = 0; i < n; ++i) {
    const int fallback = fallback_of(i);
    if (fallback == kUnserved) continue;
    --rest_count[fallback];
    order.clear();
    preferences(i, &order);
    int chosen = fallback;
    for (int p : order) {
      // The fallback always passes (induction); taking it here keeps the preference order.
      if (p == fallback) break;
      if (p < 0 || p >= m || !instance.is_allowed(i, p)) continue;
      if (instance.has_budget() &&
          spent + instance.cost[instance.index(i, p)] + rest_cost[i + 1] > instance.budget) {
        continue;
      }
      if (instance.is_limited(p) && used[p] + 1 + rest_count[p] > instance.slots[p]) continue;
      chosen = p;
      break;
    }
    assignment[i] = chosen;
    spent += instance.cost[instance.index(i, chosen)];
    ++used[chosen];
  }
  return assignment;
}

Solution Finish(const Instance& instance, const Admission& admission, std::vector<int> assignment,
                const char* method, absl::Time start) {
  Solution solution;
  solution.objective = AssignmentValue(instance, assignment);
  solution.total_cost = AssignmentCost(instance, assignment);
  solution.model_of_query = std::move(assignment);
  solution.unserved_reason = admission.reason;
  solution.unserved_reason.resize(instance.num_queries, UnservedReason::kNoSlot);
  solution.upper_bound = std::numeric_limits<double>::infinity();
  solution.status = SolveStatus::kHeuristic;
  solution.method = method;
  solution.solve_time = absl::Now() - start;
  return solution;
}

// Appends query i's allowed models to `order`.
void AllowedModels(const Instance& instance, int i, std::vector<int>* order) {
  for (int j = 0; j < instance.num_models; ++j) {
    if (instance.is_allowed(i, j)) order->push_back(j);
  }
}

// Sorts models of query i by descending value (ties: lower cost, then lower index).
void SortByValueDesc(const Instance& instance, int i, std::vector<int>::iterator begin,
                     std::vector<int>::iterator end) {
  std::sort(begin, end, [&](int a, int b) {
    const double va = instance.value[instance.index(i, a)];
    const double vb = instance.value[instance.index(i, b)];
    if (va != vb) return va > vb;
    const double ca = instance.cost[instance.index(i, a)];
    const double cb = instance.cost[instance.index(i, b)];
    if (ca != cb) return ca < cb;
    return a < b;
  });
}

// Sorts models of query i by ascending cost (ties: higher value, then lower index).
void SortByCostAsc(const Instance& instance, int i, std::vector<int>::iterator begin,
                   std::vector<int>::iterator end) {
  std::sort(begin, end, [&](int a, int b) {
    const double ca = instance.cost[instance.index(i, a)];
    const double cb = instance.cost[instance.index(i, b)];
    if (ca != cb) return ca < cb;
    const double va = instance.value[instance.index(i, a)];
    const double vb = instance.value[instance.index(i, b)];
    if (va != vb) return va > vb;
    return a < b;
  });
}

// The ndch / ndch_p mixture: hull vertices L and H and how many served queries go to H. When the
// answer is a single vertex, low == high and num_high == 0.
struct HullMixture {
  int low = -1;
  int high = -1;
  int num_high = 0;
};

HullMixture ComputeHullMixture(const Instance& instance, const Admission& admission) {
  HullMixture mix;
  const int m = instance.num_models;
  const int num_served = static_cast<int>(admission.served.size());
  if (num_served == 0) return mix;
  std::vector<double> sum_value(m, 0.0), sum_cost(m, 0.0);
  std::vector<int64_t> count(m, 0);
  for (int i : admission.served) {
    for (int j = 0; j < m; ++j) {
      if (!instance.is_allowed(i, j)) continue;
      sum_value[j] += instance.value[instance.index(i, j)];
      sum_cost[j] += instance.cost[instance.index(i, j)];
      ++count[j];
    }
  }
  struct Point {
    double cost, value;
    int model;
  };
  std::vector<Point> points;
  for (int j = 0; j < m; ++j) {
    if (count[j] == 0) continue;
    const auto c = static_cast<double>(count[j]);
    points.push_back({sum_cost[j] / c, sum_value[j] / c, j});
  }
  if (points.empty()) return mix;
  std::sort(points.begin(), points.end(), [](const Point& a, const Point& b) {
    if (a.cost != b.cost) return a.cost < b.cost;
    if (a.value != b.value) return a.value > b.value;
    return a.model < b.model;
  });
  // Upper-left frontier: strictly increasing value with cost, on the concave upper hull.
  std::vector<Point> hull;
  for (const Point& p : points) {
    if (!hull.empty() && p.value <= hull.back().value) continue;
    while (hull.size() >= 2) {
      const Point& a = hull[hull.size() - 2];
      const Point& b = hull.back();
      // b on or below the chord a -> p: not a vertex.
      if ((b.value - a.value) * (p.cost - a.cost) <= (p.value - a.value) * (b.cost - a.cost)) {
        hull.pop_back();
      } else {
        break;
      }
    }
    hull.push_back(p);
  }
  const Point& cheapest = hull.front();
  const Point& dearest = hull.back();
  if (!instance.has_budget()) {
    mix.low = mix.high = dearest.model;
    return mix;
  }
  const double b = instance.budget / num_served;
  if (b >= dearest.cost) {
    mix.low = mix.high = dearest.model;
    return mix;
  }
  if (b <= cheapest.cost) {
    mix.low = mix.high = cheapest.model;
    return mix;
  }
  // cheapest.cost < b < dearest.cost: the segment with cost_L <= b < cost_H.
  size_t k = 0;
  while (k + 2 < hull.size() && hull[k + 1].cost <= b) ++k;
  const Point& low = hull[k];
  const Point& high = hull[k + 1];
  const double f = (b - low.cost) / (high.cost - low.cost);
  // Round down; the 1e-9 only absorbs the rounding of f (e.g. 0.3 * 10 = 3.0000000000000004 or
  // 2.9999999999999996).
  const double scaled = std::floor(f * num_served + 1e-9);
  mix.low = low.model;
  mix.high = high.model;
  mix.num_high = static_cast<int>(std::clamp(scaled, 0.0, static_cast<double>(num_served)));
  return mix;
}

// Runs the guard for a hull policy: `target[i]` is query i's hull model.
std::vector<int> AssignHullTargets(const Instance& instance, const Admission& admission,
                                   const std::vector<int>& target) {
  return GuardedAssign(instance, admission, [&](int i, std::vector<int>* order) {
    const int t = target[i];
    if (t >= 0 && instance.is_allowed(i, t)) {
      order->push_back(t);
      for (int j = 0; j < instance.num_models; ++j) {
        if (j != t && instance.is_allowed(i, j)) order->push_back(j);
      }
      SortByCostAsc(instance, i, order->begin() + 1, order->end());
    } else {
      AllowedModels(instance, i, order);
      SortByValueDesc(instance, i, order->begin(), order->end());
    }
  });
}

}  // namespace

Solution SolvePerQuery(const Instance& instance, const Admission& admission, double lambda) {
  const absl::Time start = absl::Now();
  std::vector<int> assignment =
      GuardedAssign(instance, admission, [&](int i, std::vector<int>* order) {
        AllowedModels(instance, i, order);
        std::sort(order->begin(), order->end(), [&](int a, int b) {
          const double ca = instance.cost[instance.index(i, a)];
          const double cb = instance.cost[instance.index(i, b)];
          const double sa = instance.value[instance.index(i, a)] - lambda * ca;
          const double sb = instance.value[instance.index(i, b)] - lambda * cb;
          if (sa != sb) return sa > sb;
          if (ca != cb) return ca < cb;
          return a < b;
        });
      });
  return Finish(instance, admission, std::move(assignment), "per_query", start);
}

Solution SolveThreshold(const Instance& instance, const Admission& admission, double tau) {
  const absl::Time start = absl::Now();
  std::vector<int> assignment =
      GuardedAssign(instance, admission, [&](int i, std::vector<int>* order) {
        AllowedModels(instance, i, order);
        const auto split = std::stable_partition(order->begin(), order->end(), [&](int j) {
          return instance.value[instance.index(i, j)] >= tau;
        });
        SortByCostAsc(instance, i, order->begin(), split);
        SortByValueDesc(instance, i, split, order->end());
      });
  return Finish(instance, admission, std::move(assignment), "threshold", start);
}

Solution SolveNdch(const Instance& instance, const Admission& admission, uint64_t seed) {
  const absl::Time start = absl::Now();
  const HullMixture mix = ComputeHullMixture(instance, admission);
  std::vector<int> target(instance.num_queries, mix.low);
  if (mix.num_high > 0) {
    std::vector<int> shuffled = admission.served;
    std::mt19937_64 rng(seed);
    std::shuffle(shuffled.begin(), shuffled.end(), rng);
    for (int r = 0; r < mix.num_high; ++r) target[shuffled[r]] = mix.high;
  }
  return Finish(instance, admission, AssignHullTargets(instance, admission, target), "ndch",
                start);
}

Solution SolveNdchP(const Instance& instance, const Admission& admission) {
  const absl::Time start = absl::Now();
  const HullMixture mix = ComputeHullMixture(instance, admission);
  std::vector<int> target(instance.num_queries, mix.low);
  if (mix.num_high > 0) {
    std::vector<int> candidates;
    for (int i : admission.served) {
      if (instance.is_allowed(i, mix.low) && instance.is_allowed(i, mix.high)) {
        candidates.push_back(i);
      }
    }
    auto gain = [&](int i) {
      return instance.value[instance.index(i, mix.high)] - instance.value[instance.index(i, mix.low)];
    };
    const size_t take = std::min(candidates.size(), static_cast<size_t>(mix.num_high));
    std::partial_sort(candidates.begin(), candidates.begin() + static_cast<std::ptrdiff_t>(take),
                      candidates.end(), [&](int a, int b) {
                        const double ga = gain(a), gb = gain(b);
                        if (ga != gb) return ga > gb;
                        return a < b;
                      });
    for (size_t r = 0; r < take; ++r) target[candidates[r]] = mix.high;
  }
  return Finish(instance, admission, AssignHullTargets(instance, admission, target), "ndch_p",
                start);
}

}  // namespace router::core
