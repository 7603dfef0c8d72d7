#include "router_core/solve/lagrangian_solver.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include "router_core/solve/solution.h"
#include "router_core/solve/transport.h"

namespace router::core {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr int kMaxSearchSteps = 60;
constexpr int kMaxDoublings = 200;

// One evaluation of h at lambda.
struct Probe {
  double lambda = 0.0;
  double bound = kInf;  // h(lambda)
  double cost = 0.0;    // cost of the transportation optimum
  std::vector<int> model_of_query;
  std::vector<double> slot_price;
};

// nullopt when the deadline passed before the transportation solve finished.
std::optional<Probe> Evaluate(const Instance& inst, double lambda, std::vector<double>& weight,
                              const Deadline& deadline) {
  for (size_t k = 0; k < weight.size(); ++k) weight[k] = inst.value[k] - lambda * inst.cost[k];
  std::optional<TransportResult> t = SolveTransport(inst, weight, deadline);
  if (!t.has_value()) return std::nullopt;
  Probe p;
  p.lambda = lambda;
  p.cost = AssignmentCost(inst, t->model_of_query);
  p.bound = (inst.has_budget() ? lambda * inst.budget : 0.0) + t->value;
  p.model_of_query = std::move(t->model_of_query);
  p.slot_price = std::move(t->slot_price);
  return p;
}

bool Fits(const Instance& inst, const Probe& p) {
  return !inst.has_budget() || p.cost <= inst.budget;
}

// Spends leftover budget on upgrades: moves (i -> j) that raise the value, fit a free slot and the
// remaining budget, best value per extra cost first (free upgrades before paid ones). Repeats while
// a pass changes something, at most three passes. The first pass always runs, whatever the time
// (O(N*M log(N*M)): it turns the cheap assignment a high budget price leaves into a good one); the
// later ones only before `deadline`.
void GreedyUpgrade(const Instance& inst, std::vector<int>& x, const Deadline& deadline) {
  const int n = inst.num_queries, m = inst.num_models;
  std::vector<int64_t> used(m, 0);
  for (int i = 0; i < n; ++i) ++used[x[i]];
  double spent = AssignmentCost(inst, x);
  struct Move {
    double key;
    int query, model;
  };
  for (int pass = 0; pass < 3 && (pass == 0 || !deadline.Passed()); ++pass) {
    const double left = inst.has_budget() ? inst.budget - spent : kInf;
    std::vector<Move> moves;
    for (int i = 0; i < n; ++i) {
      const int cur = x[i];
      const double v0 = inst.value[inst.index(i, cur)], c0 = inst.cost[inst.index(i, cur)];
      for (int j = 0; j < m; ++j) {
        if (j == cur || !inst.is_allowed(i, j)) continue;
        const double dv = inst.value[inst.index(i, j)] - v0;
        const double dc = inst.cost[inst.index(i, j)] - c0;
        if (dv <= 0 || dc > left) continue;
        moves.push_back({dc <= 0 ? kInf : dv / dc, i, j});
      }
    }
    if (moves.empty()) return;
    std::sort(moves.begin(), moves.end(), [](const Move& a, const Move& b) {
      return a.key != b.key ? a.key > b.key : a.query < b.query;
    });
    bool changed = false;
    for (const Move& mv : moves) {
      const int i = mv.query, j = mv.model, cur = x[i];
      if (cur == j) continue;
      const double dv = inst.value[inst.index(i, j)] - inst.value[inst.index(i, cur)];
      const double dc = inst.cost[inst.index(i, j)] - inst.cost[inst.index(i, cur)];
      if (dv <= 0) continue;
      if (inst.is_limited(j) && used[j] >= inst.slots[j]) continue;
      if (inst.has_budget() && spent + dc > inst.budget) continue;
      --used[cur];
      ++used[j];
      x[i] = j;
      spent += dc;
      changed = true;
    }
    // Re-sum so that drift from incremental updates can never hide an overspend.
    spent = AssignmentCost(inst, x);
    if (!changed) return;
  }
}

}  // namespace

double BoundToleranceFor(double relative_gap) {
  return std::clamp(relative_gap / 50.0, 1e-9, 1e-4);
}

double LagrangianBound(const Instance& inst, double budget_price,
                       const std::vector<double>& slot_price) {
  const double lambda = inst.has_budget() ? budget_price : 0.0;
  double bound = inst.has_budget() ? lambda * inst.budget : 0.0;
  for (int j = 0; j < inst.num_models; ++j) {
    if (inst.is_limited(j)) bound += slot_price[j] * static_cast<double>(inst.slots[j]);
  }
  for (int i = 0; i < inst.num_queries; ++i) {
    double best = -kInf;
    for (int j = 0; j < inst.num_models; ++j) {
      if (!inst.is_allowed(i, j)) continue;
      const int k = inst.index(i, j);
      best = std::max(best, inst.value[k] - lambda * inst.cost[k] - slot_price[j]);
    }
    bound += best;
  }
  return bound;
}

LagrangianResult SolveLagrangian(const Instance& inst, const std::vector<int>& feasible_start,
                                 double bound_tolerance, const Deadline& deadline) {
  LagrangianResult result;
  std::vector<double> weight(inst.value.size());
  std::vector<int> best_x = feasible_start;
  double best_value = AssignmentValue(inst, feasible_start);
  auto consider_primal = [&](const Probe& p) {
    if (!Fits(inst, p)) return;
    const double v = AssignmentValue(inst, p.model_of_query);
    if (v > best_value) {
      best_value = v;
      best_x = p.model_of_query;
    }
  };
  // Prices (0, 0) give a valid bound too: the answer's bound when not even lambda = 0 finished.
  Probe best_bound;
  best_bound.slot_price.assign(inst.num_models, 0.0);

  std::optional<Probe> first = Evaluate(inst, 0.0, weight, deadline);
  if (first.has_value()) {
    ++result.iterations;
    Probe lo = *std::move(first);
    best_bound = lo;
    consider_primal(lo);
    if (!Fits(inst, lo)) {
      // Find a lambda whose transportation optimum fits the budget.
      double mean_cost = 0.0;
      int positive = 0;
      for (size_t k = 0; k < inst.cost.size(); ++k) {
        if (inst.allowed[k] && inst.cost[k] > 0) {
          mean_cost += inst.cost[k];
          ++positive;
        }
      }
      double lambda = positive > 0 ? positive / mean_cost : 1.0;
      std::optional<Probe> hi = Evaluate(inst, lambda, weight, deadline);
      for (int d = 0; d < kMaxDoublings && hi.has_value() && !Fits(inst, *hi); ++d) {
        ++result.iterations;
        if (hi->bound < best_bound.bound) best_bound = *hi;
        lo = *std::move(hi);
        lambda *= 2.0;
        hi = Evaluate(inst, lambda, weight, deadline);
      }
      if (hi.has_value()) {
        ++result.iterations;
        if (hi->bound < best_bound.bound) best_bound = *hi;
        consider_primal(*hi);
      }
      for (int step = 0; step < kMaxSearchSteps && hi.has_value() && Fits(inst, *hi); ++step) {
        // h is convex with slope B - cost; the two supporting lines meet at lambda_x.
        const double slope_lo = inst.budget - lo.cost;   // < 0
        const double slope_hi = inst.budget - hi->cost;  // >= 0
        double lambda_x = 0.5 * (lo.lambda + hi->lambda);
        double line_min = -kInf;
        if (slope_hi - slope_lo > 0) {
          const double candidate =
              (hi->bound - lo.bound + slope_lo * lo.lambda - slope_hi * hi->lambda) /
              (slope_lo - slope_hi);
          if (candidate > lo.lambda && candidate < hi->lambda) {
            lambda_x = candidate;
            line_min = lo.bound + slope_lo * (candidate - lo.lambda);
          }
        }
        if (best_bound.bound - line_min <=
                bound_tolerance * std::max(1.0, std::abs(best_bound.bound)) ||
            hi->lambda - lo.lambda <= 1e-12 * hi->lambda) {
          break;
        }
        std::optional<Probe> mid = Evaluate(inst, lambda_x, weight, deadline);
        if (!mid.has_value()) break;
        ++result.iterations;
        if (mid->bound < best_bound.bound) best_bound = *mid;
        if (Fits(inst, *mid)) {
          consider_primal(*mid);
          hi = std::move(mid);
        } else {
          lo = *std::move(mid);
        }
      }
    }
  }
  GreedyUpgrade(inst, best_x, deadline);
  result.objective = AssignmentValue(inst, best_x);
  result.model_of_query = std::move(best_x);
  result.budget_price = best_bound.lambda;
  result.slot_price = best_bound.slot_price;
  result.upper_bound = LagrangianBound(inst, best_bound.lambda, best_bound.slot_price);
  return result;
}

}  // namespace router::core
