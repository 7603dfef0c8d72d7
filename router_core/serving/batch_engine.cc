#include "router_core/serving/batch_engine.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "router_core/solve/solve_batch.h"

namespace router::core {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
// How long a batch's ledger hold outlasts its time limit: room for answering, and for a solve that
// overruns its limit; a batch that stalls longer is fenced at its commit.
constexpr absl::Duration kHoldSlack = absl::Seconds(1);

// What a batch of `instance`'s rows could use at most: per self-hosted pool model, the queries
// that allow it; in spend, its cap and the sum of each query's dearest allowed model.
HoldRequest MostTheBatchCanUse(const Instance& instance, absl::Span<const DeployedModel> pool,
                               double cap, absl::Duration hold_for) {
  HoldRequest want;
  want.hold_for = hold_for;
  double dearest_total = 0.0;
  std::vector<int64_t> allowing(pool.size(), 0);
  for (int i = 0; i < instance.num_queries; ++i) {
    double dearest = 0.0;
    for (int j = 0; j < instance.num_models; ++j) {
      if (!instance.is_allowed(i, j)) continue;
      ++allowing[j];
      dearest = std::max(dearest, instance.cost[instance.index(i, j)]);
    }
    dearest_total += dearest;
  }
  want.spend_usd = std::min(cap, dearest_total);
  for (size_t j = 0; j < pool.size(); ++j) {
    if (pool[j].slots.has_value()) {
      want.slots.push_back({pool[j].name, std::min(*pool[j].slots, allowing[j])});
    }
  }
  return want;
}

// The constraints that kept some query from its highest-quality allowed model: the budget when the
// upgrade would not fit the leftover budget, a model's slots when it is full.
std::vector<std::string> BindingConstraints(const Instance& instance,
                                            const std::vector<PoolQuery>& rows,
                                            absl::Span<const DeployedModel> pool,
                                            const std::vector<int>& model_of_query,
                                            double total_cost) {
  const int m = instance.num_models;
  std::vector<int64_t> used(m, 0);
  for (int j : model_of_query) {
    if (j >= 0) ++used[j];
  }
  bool budget = false;
  std::vector<char> slots(m, 0);
  const double left = instance.has_budget() ? instance.budget - total_cost : kInf;
  for (int i = 0; i < instance.num_queries; ++i) {
    const PoolQuery& q = rows[i];
    const int cur = model_of_query[i];
    for (int j = 0; j < m; ++j) {
      if (j == cur || !instance.is_allowed(i, j)) continue;
      if (cur >= 0 && q.quality(j) <= q.quality(cur)) continue;
      const double extra = instance.cost[instance.index(i, j)] -
                           (cur >= 0 ? instance.cost[instance.index(i, cur)] : 0.0);
      if (instance.is_limited(j) && used[j] >= instance.slots[j]) {
        slots[j] = 1;
      } else if (extra > left) {
        budget = true;
      }
    }
  }
  std::vector<std::string> out;
  if (budget) out.push_back("budget");
  for (int j = 0; j < m; ++j) {
    if (slots[j]) out.push_back(absl::StrCat("slots:", pool[j].name));
  }
  return out;
}

}  // namespace

BatchOutcome RouteBatch(absl::Span<const PendingQuery> queries,
                        absl::Span<const DeployedModel> pool, const BatchPolicy& policy,
                        Ledger& ledger, const Clock& clock, std::string batch_id) {
  BatchOutcome out;
  out.batch_id = std::move(batch_id);
  out.started = clock.Now();
  out.size = static_cast<int64_t>(queries.size());
  out.policy = policy.policy;
  out.queries.resize(queries.size());

  PoolView view(pool);
  const ValueSource source = ValueSourceFor(policy.policy);
  // Slots and budget are set once the ledger's hold says what the batch may use.
  Instance instance = view.EmptyInstance({}, kInf, static_cast<int>(queries.size()));
  // The queries that enter the instance, in its row order, and where their answers go.
  std::vector<PoolQuery> rows;
  std::vector<size_t> slot_of;
  rows.reserve(queries.size());
  slot_of.reserve(queries.size());
  SolveOptions options = policy.solve;
  for (size_t i = 0; i < queries.size(); ++i) {
    absl::StatusOr<PoolQuery> row = view.AppendRow(queries[i], source, instance);
    if (!row.ok()) {
      out.queries[i].status = row.status();
      continue;
    }
    rows.push_back(*row);
    slot_of.push_back(i);
    options.deadline = std::min(options.deadline, queries[i].deadline);
  }
  const double cap = policy.avg_cost_cap_usd.has_value()
                        ? *policy.avg_cost_cap_usd * static_cast<double>(rows.size())
                        : kInf;
  const HoldRequest want = MostTheBatchCanUse(instance, pool, cap, options.time_limit + kHoldSlack);
  absl::StatusOr<LedgerHold> hold = ledger.Hold(want);
  if (!hold.ok()) {
    for (size_t i : slot_of) {
      out.queries[i].status = absl::UnavailableError(
          absl::StrCat("the ledger could not be reached (", hold.status().message(), "); retry"));
    }
    return out;
  }
  for (size_t j = 0, k = 0; j < pool.size(); ++j) {
    instance.slots.push_back(pool[j].slots.has_value() ? hold->slots[k++] : kUnlimited);
  }
  // A hold short of what was wanted is the paced allowance binding; otherwise only the cap can.
  const double budget = hold->spend_usd < want.spend_usd ? hold->spend_usd : cap;
  instance.budget = budget;
  out.budget_usd = std::isfinite(budget) ? budget : -1.0;
  // Gamma counts queries, so it is capped by the number that entered.
  PolicyParams params = policy.params;
  params.gamma = std::min(params.gamma, static_cast<double>(rows.size()));

  absl::StatusOr<Solution> solution =
      SolveInstance(instance, policy.policy, params, options, clock);
  if (!solution.ok()) {
    ledger.Release(*hold);
    for (size_t i : slot_of) out.queries[i].status = solution.status();
    return out;
  }
  out.status = solution->status;
  out.relative_gap = solution->status == SolveStatus::kHeuristic ? 0.0 : RelativeGap(*solution);
  out.method = solution->method;
  out.solve_time = solution->solve_time;
  out.total_cost_usd = solution->total_cost;
  out.binding_constraints =
      BindingConstraints(instance, rows, pool, solution->model_of_query, solution->total_cost);

  std::vector<Reservation> reservations;
  std::vector<int> reserved_for;  // instance row of each reservation
  for (int k = 0; k < instance.num_queries; ++k) {
    const int j = solution->model_of_query[k];
    if (j == kUnserved) continue;
    reservations.push_back({pool[j].name, rows[k].cost(j)});
    reserved_for.push_back(k);
  }
  absl::StatusOr<std::vector<Lease>> leases = ledger.Commit(&*hold, reservations);
  // A batch that outlived its hold commits only if its assignment still fits what is free.
  if (absl::IsFailedPrecondition(leases.status())) leases = ledger.Commit(nullptr, reservations);
  if (!leases.ok()) {
    for (size_t i : slot_of) {
      out.queries[i].status = absl::UnavailableError(absl::StrCat(
          "the ledger refused the batch's assignment (", leases.status().message(), "); retry"));
    }
    return out;
  }
  const size_t m = pool.size();
  for (size_t r = 0; r < reserved_for.size(); ++r) {
    const int k = reserved_for[r];
    const int j = solution->model_of_query[k];
    const PoolQuery& q = rows[k];
    QueryOutcome& o = out.queries[slot_of[k]];
    o.model = pool[j].name;
    o.quality = q.quality(j);
    o.quality_lower = q.quality_lower(j);
    o.prior_quality = q.prior_quality(j);
    o.cluster = q.cluster();
    o.explored = q.explored();
    o.cost_usd = q.cost(j);
    o.assignment_id = std::move((*leases)[r].assignment_id);
    o.lease_timeout = (*leases)[r].lease_timeout;
    o.fallbacks = FallbackModels(
        q, absl::MakeConstSpan(instance.allowed).subspan(static_cast<size_t>(k) * m, m), j,
        policy.max_fallbacks, pool);
  }
  for (int k = 0; k < instance.num_queries; ++k) {
    if (solution->model_of_query[k] != kUnserved) continue;
    const bool no_slot = solution->unserved_reason[k] == UnservedReason::kNoSlot;
    out.queries[slot_of[k]].status = absl::ResourceExhaustedError(
        no_slot ? "every allowed model is out of free slots in this batch"
                : absl::StrCat("the batch budget (", budget,
                               " USD) cannot pay for this query with the rest of its batch"));
  }
  return out;
}

}  // namespace router::core
