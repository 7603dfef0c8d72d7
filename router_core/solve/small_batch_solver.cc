#include "router_core/solve/small_batch_solver.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "router_core/solve/solution.h"

namespace router::core {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// The start's slot prices where they may be used: a price on an unlimited model would lower the
// bound without the matching mu * slots term, so those (and all, if none were given) are 0.
std::vector<double> SlotPrices(const Instance& instance, const std::vector<double>& given) {
  std::vector<double> mu(instance.num_models, 0.0);
  if (given.size() != mu.size()) return mu;
  for (int j = 0; j < instance.num_models; ++j) {
    if (instance.is_limited(j)) mu[j] = std::max(0.0, given[j]);
  }
  return mu;
}

class Search {
 public:
  Search(const Instance& instance, const SmallBatchStart& start, const SmallBatchOptions& options)
      : inst_(instance),
        options_(options),
        lambda_(instance.has_budget() ? start.budget_price : 0.0),
        mu_(SlotPrices(instance, start.slot_price)),
        slots_left_(instance.slots),
        assignment_(instance.num_queries, kUnserved),
        best_(start.model_of_query),
        best_value_(AssignmentValue(instance, start.model_of_query)) {
    for (std::vector<int>& members : GroupIdenticalQueries(instance)) {
      Group g;
      g.queries = std::move(members);
      const int q = g.queries.front();
      for (int j = 0; j < inst_.num_models; ++j) {
        if (inst_.is_allowed(q, j)) g.models.push_back(j);
      }
      std::stable_sort(g.models.begin(), g.models.end(),
                       [&](int a, int b) { return Reduced(q, a) > Reduced(q, b); });
      g.regret = g.models.size() < 2 ? kInf : Reduced(q, g.models[0]) - Reduced(q, g.models[1]);
      groups_.push_back(std::move(g));
    }
    // The most decisive groups first: their best model is the clearest, so good incumbents come
    // early and the bounds below them are tight.
    std::stable_sort(groups_.begin(), groups_.end(),
                     [](const Group& a, const Group& b) { return a.regret > b.regret; });
  }

  SmallBatchResult Run() {
    Visit(0, 0, 0);
    SmallBatchResult r;
    r.model_of_query = std::move(best_);
    r.objective = best_value_;
    r.finished = !stopped_;
    r.upper_bound = r.finished ? std::max(best_value_, max_pruned_bound_) : kInf;
    r.nodes = nodes_;
    return r;
  }

 private:
  struct Group {
    std::vector<int> queries;
    std::vector<int> models;  // allowed, by decreasing reduced value at the root's prices
    double regret = 0.0;
  };

  double Reduced(int q, int j) const {
    const int cell = inst_.index(q, j);
    return inst_.value[cell] - lambda_ * inst_.cost[cell] - mu_[j];
  }
  bool HasSlot(int j) const { return slots_left_[j] != 0; }  // kUnlimited is -1

  // Bound on the value the unassigned queries (group gi from its p-th query on, and the groups
  // after it) can add, or -infinity when they cannot all be served within the slots and budget.
  double RemainingBound(size_t gi, size_t p) const {
    double plain = 0.0, reduced = 0.0, cheapest = 0.0;
    for (size_t g = gi; g < groups_.size(); ++g) {
      const Group& group = groups_[g];
      const double count = static_cast<double>(group.queries.size() - (g == gi ? p : 0));
      if (count == 0) continue;
      const int q = group.queries.front();
      double best_plain = -kInf, best_reduced = -kInf, min_cost = kInf;
      for (const int j : group.models) {
        if (!HasSlot(j)) continue;
        const int cell = inst_.index(q, j);
        best_plain = std::max(best_plain, inst_.value[cell]);
        best_reduced = std::max(best_reduced, Reduced(q, j));
        min_cost = std::min(min_cost, inst_.cost[cell]);
      }
      if (min_cost == kInf) return -kInf;
      plain += count * best_plain;
      reduced += count * best_reduced;
      cheapest += count * min_cost;
    }
    double budget_left = 0.0;
    if (inst_.has_budget()) {
      budget_left = inst_.budget - cost_;
      if (cheapest > budget_left) return -kInf;
    }
    double priced = reduced + lambda_ * budget_left;
    for (int j = 0; j < inst_.num_models; ++j) {
      if (inst_.is_limited(j)) priced += mu_[j] * static_cast<double>(slots_left_[j]);
    }
    return std::min(plain, priced);
  }

  // Assigns the p-th query of group gi and everything after it; its model's rank in the group's
  // list is at least min_rank (the rank its predecessor in the group took).
  void Visit(size_t gi, size_t p, size_t min_rank) {
    if (stopped_) return;
    ++nodes_;
    if (nodes_ > options_.max_nodes ||
        (nodes_ % 256 == 0 && options_.clock->Now() >= options_.deadline)) {
      stopped_ = true;
      return;
    }
    if (gi == groups_.size()) {
      if (value_ > best_value_) {
        best_value_ = value_;
        best_ = assignment_;
      }
      return;
    }
    const double rest = RemainingBound(gi, p);
    if (rest == -kInf) return;  // infeasible below: no bound to record
    const double bound = value_ + rest;
    if (bound <= options_.known_value ||
        bound - best_value_ <= options_.relative_gap * std::abs(bound)) {
      max_pruned_bound_ = std::max(max_pruned_bound_, bound);
      return;
    }
    const Group& group = groups_[gi];
    const int q = group.queries[p];
    const bool last_of_group = p + 1 == group.queries.size();
    for (size_t rank = min_rank; rank < group.models.size(); ++rank) {
      const int j = group.models[rank];
      const int cell = inst_.index(q, j);
      if (!HasSlot(j)) continue;
      if (inst_.has_budget() && cost_ + inst_.cost[cell] > inst_.budget) continue;
      // Restored from copies, not by subtraction, so no rounding accumulates along the search.
      const double saved_value = value_, saved_cost = cost_;
      value_ += inst_.value[cell];
      cost_ += inst_.cost[cell];
      if (inst_.is_limited(j)) --slots_left_[j];
      assignment_[q] = j;
      if (last_of_group) {
        Visit(gi + 1, 0, 0);
      } else {
        Visit(gi, p + 1, rank);
      }
      assignment_[q] = kUnserved;
      if (inst_.is_limited(j)) ++slots_left_[j];
      cost_ = saved_cost;
      value_ = saved_value;
      if (stopped_) return;
    }
  }

  const Instance& inst_;
  const SmallBatchOptions& options_;
  const double lambda_;
  const std::vector<double> mu_;
  std::vector<Group> groups_;
  // The current partial assignment.
  std::vector<int64_t> slots_left_;
  std::vector<int> assignment_;
  double value_ = 0.0;
  double cost_ = 0.0;
  // The incumbent and what the search has proven.
  std::vector<int> best_;
  double best_value_;
  double max_pruned_bound_ = -kInf;
  int64_t nodes_ = 0;
  bool stopped_ = false;
};

}  // namespace

SmallBatchResult SolveSmallBatch(const Instance& instance, const SmallBatchStart& start,
                                 const SmallBatchOptions& options) {
  return Search(instance, start, options).Run();
}

}  // namespace router::core
