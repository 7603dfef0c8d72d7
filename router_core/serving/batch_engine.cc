#include "router_core/serving/batch_engine.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"

namespace router::core {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// The constraints that kept some query from its highest-quality allowed model (`allowed`: the
// queries' masks from ToPoolQuery): the budget when the upgrade would not fit the leftover budget,
// a model's slots when it is full.
std::vector<std::string> BindingConstraints(const BatchProblem& problem,
                                            const std::vector<std::vector<char>>& allowed,
                                            const std::vector<int>& model_of_query,
                                            double total_cost) {
  const size_t m = problem.models.size();
  std::vector<int64_t> used(m, 0);
  for (int j : model_of_query) {
    if (j >= 0) ++used[j];
  }
  bool budget = false;
  std::vector<char> slots(m, 0);
  const double left = problem.budget.has_value() ? *problem.budget - total_cost : kInf;
  for (size_t i = 0; i < problem.queries.size(); ++i) {
    const Query& q = problem.queries[i];
    const int cur = model_of_query[i];
    for (size_t j = 0; j < m; ++j) {
      if (static_cast<int>(j) == cur || !allowed[i][j]) continue;
      if (cur >= 0 && q.quality[j] <= q.quality[cur]) continue;
      const double extra = q.cost[j] - (cur >= 0 ? q.cost[cur] : 0.0);
      if (problem.models[j].slots.has_value() && used[j] >= *problem.models[j].slots) {
        slots[j] = 1;
      } else if (extra > left) {
        budget = true;
      }
    }
  }
  std::vector<std::string> out;
  if (budget) out.push_back("budget");
  for (size_t j = 0; j < m; ++j) {
    if (slots[j]) out.push_back(absl::StrCat("slots:", problem.models[j].name));
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

  const LedgerSnapshot snapshot = ledger.Snapshot();
  BatchProblem problem;
  problem.policy = policy.policy;
  problem.params = policy.params;
  problem.time_limit = policy.time_limit;
  problem.relative_gap = policy.relative_gap;
  for (const DeployedModel& d : pool) {
    ModelSpec spec{d.name, d.slots};
    if (d.slots.has_value()) {
      // The ledger is the authority on what is free; a model it does not know gets nothing.
      auto it = std::find(snapshot.models.begin(), snapshot.models.end(), d.name);
      const std::optional<int64_t> free =
          it == snapshot.models.end() ? std::optional<int64_t>(0)
                                      : snapshot.free_slots[it - snapshot.models.begin()];
      spec.slots = std::min(*d.slots, free.value_or(*d.slots));
    }
    problem.models.push_back(std::move(spec));
  }

  // Queries that can enter the problem, and where their answers go.
  std::vector<size_t> slot_of;             // problem query -> input index
  std::vector<std::vector<char>> allowed;  // problem query -> its allowed mask in pool order
  absl::flat_hash_map<const std::vector<std::string>*, ColumnMap> columns;
  for (size_t i = 0; i < queries.size(); ++i) {
    const PendingQuery& pq = queries[i];
    const std::vector<std::string>* key = pq.predicted_models.get();
    auto it = columns.find(key);
    if (it == columns.end()) it = columns.emplace(key, MapPredictionColumns(*key, pool)).first;
    Query q;
    std::vector<char> mask;
    if (absl::Status s = ToPoolQuery(pq, it->second, pool, q, mask); !s.ok()) {
      out.queries[i].status = std::move(s);
      continue;
    }
    problem.queries.push_back(std::move(q));
    allowed.push_back(std::move(mask));
    slot_of.push_back(i);
  }
  double budget = snapshot.spend_allowance_usd;
  if (policy.avg_cost_cap_usd.has_value()) {
    budget = std::min(budget, *policy.avg_cost_cap_usd * static_cast<double>(slot_of.size()));
  }
  if (std::isfinite(budget)) problem.budget = budget;
  out.budget_usd = problem.budget.value_or(-1.0);
  // Problem-level parameters are checked against the number of queries that entered.
  problem.params.gamma =
      std::min(problem.params.gamma, static_cast<double>(problem.queries.size()));

  BatchRouterOptions options;
  options.clock = &clock;
  options.small_batch_max_queries = policy.small_batch_max_queries;
  absl::StatusOr<Solution> solution = SolveBatch(problem, options);
  if (!solution.ok()) {
    for (size_t i : slot_of) out.queries[i].status = solution.status();
    return out;
  }
  out.status = solution->status;
  out.relative_gap = solution->status == SolveStatus::kHeuristic ? 0.0 : RelativeGap(*solution);
  out.method = solution->method;
  out.solve_time = solution->solve_time;
  out.total_cost_usd = solution->total_cost;
  out.binding_constraints =
      BindingConstraints(problem, allowed, solution->model_of_query, solution->total_cost);

  std::vector<Reservation> reservations;
  std::vector<size_t> reserved_for;  // problem query of each reservation
  for (size_t k = 0; k < slot_of.size(); ++k) {
    const int j = solution->model_of_query[k];
    if (j == kUnserved) continue;
    reservations.push_back({problem.models[j].name, problem.queries[k].cost[j]});
    reserved_for.push_back(k);
  }
  absl::Duration lease_timeout;
  absl::StatusOr<std::vector<std::string>> ids = ledger.Commit(reservations, &lease_timeout);
  if (!ids.ok()) {
    for (size_t i : slot_of) {
      out.queries[i].status = absl::UnavailableError(absl::StrCat(
          "the model pool changed while the batch was solved (", ids.status().message(),
          "); retry"));
    }
    return out;
  }
  for (size_t r = 0; r < reserved_for.size(); ++r) {
    const size_t k = reserved_for[r];
    const int j = solution->model_of_query[k];
    const Query& q = problem.queries[k];
    QueryOutcome& o = out.queries[slot_of[k]];
    o.model = problem.models[j].name;
    o.quality = q.quality[j];
    o.quality_lower = q.quality_lower[j];
    o.cost_usd = q.cost[j];
    o.assignment_id = (*ids)[r];
    o.lease_timeout = lease_timeout;
    o.fallbacks = FallbackModels(q, allowed[k], j, policy.max_fallbacks, pool);
  }
  for (size_t k = 0; k < slot_of.size(); ++k) {
    if (solution->model_of_query[k] != kUnserved) continue;
    const bool no_slot = solution->unserved_reason[k] == UnservedReason::kNoSlot;
    out.queries[slot_of[k]].status = absl::ResourceExhaustedError(
        no_slot ? "every allowed model is out of free slots in this batch"
                : absl::StrCat("the batch budget (", problem.budget.value_or(0.0),
                               " USD) cannot pay for this query with the rest of its batch"));
  }
  return out;
}

}  // namespace router::core
