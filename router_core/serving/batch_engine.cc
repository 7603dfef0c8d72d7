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

// What the batch may use, per pool model and in spend, and whether the ledger (rather than the
// batch's own queries or cap) set any of it lower.
struct BatchLimits {
  std::vector<int64_t> slots;  // per pool model; kUnlimited for API models
  double budget = kInf;
  bool ledger_limited = false;
};

// The limits a hold granted (`want` asked for them).
BatchLimits LimitsOfHold(const LedgerHold& hold, const HoldRequest& want,
                         absl::Span<const DeployedModel> pool, double cap) {
  BatchLimits limits;
  size_t k = 0;  // the self-hosted models', in pool order, as `want` lists them
  for (const DeployedModel& d : pool) {
    if (!d.slots.has_value()) {
      limits.slots.push_back(kUnlimited);
      continue;
    }
    limits.slots.push_back(hold.slots[k]);
    if (hold.slots[k] < want.slots[k].count) limits.ledger_limited = true;
    ++k;
  }
  // A hold short of what was wanted is the paced allowance binding; otherwise only the cap can.
  const bool spend_limited = hold.spend_usd < want.spend_usd;
  if (spend_limited) limits.ledger_limited = true;
  limits.budget = spend_limited ? hold.spend_usd : cap;
  return limits;
}

// The limits the ledger's recent snapshot allows, as a hold of `want` would grant them; nullopt
// when it does not know a self-hosted model of the pool.
std::optional<BatchLimits> LimitsOfSnapshot(const LedgerSnapshot& seen, const HoldRequest& want,
                                            absl::Span<const DeployedModel> pool, double cap) {
  LedgerHold as_held;
  as_held.spend_usd = std::min(want.spend_usd, seen.spend_allowance_usd);
  for (const HoldRequest::Slots& w : want.slots) {
    const auto it = std::find(seen.models.begin(), seen.models.end(), w.model);
    if (it == seen.models.end()) return std::nullopt;
    const std::optional<int64_t>& free = seen.free_slots[it - seen.models.begin()];
    as_held.slots.push_back(free.has_value() ? std::min(*free, w.count) : w.count);
  }
  return LimitsOfHold(as_held, want, pool, cap);
}

// Every query of a batch the ledger failed: `what` it did and why.
absl::Status Unavailable(absl::string_view what, const absl::Status& why) {
  return absl::UnavailableError(absl::StrCat("the ledger ", what, " (", why.message(), "); retry"));
}

// Whether the solution leaves a query unserved while the ledger's limits, not only the batch's own,
// bounded the batch: a stale snapshot may then refuse what a hold would serve.
bool RefusesUnderTheLedgersLimits(const BatchLimits& limits, const Solution& solution) {
  const std::vector<int>& chosen = solution.model_of_query;
  return limits.ledger_limited && std::find(chosen.begin(), chosen.end(), kUnserved) != chosen.end();
}

}  // namespace

const char* LedgerPathName(LedgerPath path) {
  switch (path) {
    case LedgerPath::kHold:
      return "hold";
    case LedgerPath::kRecent:
      return "recent";
    case LedgerPath::kRecentThenHold:
      return "recent_then_hold";
  }
  return "hold";
}

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
  // Slots and budget are set once the ledger says what the batch may use (a snapshot or a hold).
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
  // Gamma counts queries, so it is capped by the number that entered.
  PolicyParams params = policy.params;
  params.gamma = std::min(params.gamma, static_cast<double>(rows.size()));

  // Solves within `limits`; the reservations of the solution's assignments, in row order.
  struct Decision {
    absl::StatusOr<Solution> solution;
    std::vector<Reservation> reservations;
    std::vector<int> reserved_for;  // instance row of each reservation
  };
  auto decide = [&](const BatchLimits& limits) {
    instance.slots = limits.slots;
    instance.budget = limits.budget;
    Decision d{SolveInstance(instance, policy.policy, params, options, clock), {}, {}};
    if (!d.solution.ok()) return d;
    for (int k = 0; k < instance.num_queries; ++k) {
      const int j = d.solution->model_of_query[k];
      if (j == kUnserved) continue;
      d.reservations.push_back({pool[j].name, rows[k].cost(j)});
      d.reserved_for.push_back(k);
    }
    return d;
  };
  // Every query that entered gets `status`.
  auto fail_all = [&](const absl::Status& status) {
    for (size_t i : slot_of) out.queries[i].status = status;
    return out;
  };

  // First on the ledger's recent snapshot, committed without a hold (one round trip); when that
  // view would refuse a query, or the commit no longer fits, on a hold (ledger.h: RecentSnapshot).
  std::optional<BatchLimits> limits;
  std::optional<Decision> decision;
  std::optional<std::vector<Lease>> leases;
  if (std::optional<LedgerSnapshot> seen = ledger.RecentSnapshot(); seen.has_value()) {
    limits = LimitsOfSnapshot(*seen, want, pool, cap);
  }
  if (limits.has_value()) {
    decision = decide(*limits);
    if (!decision->solution.ok()) return fail_all(decision->solution.status());
    out.ledger_path = LedgerPath::kRecentThenHold;
    if (!RefusesUnderTheLedgersLimits(*limits, *decision->solution)) {
      absl::StatusOr<std::vector<Lease>> committed = ledger.Commit(nullptr, decision->reservations);
      if (committed.ok()) {
        leases = *std::move(committed);
        out.ledger_path = LedgerPath::kRecent;
      } else if (!absl::IsFailedPrecondition(committed.status())) {
        return fail_all(Unavailable("refused the batch's assignment", committed.status()));
      }
    }
    // The decision on a hold has what is left of the time limit.
    options.deadline = std::min(options.deadline, out.started + options.time_limit);
  }
  if (!leases.has_value()) {
    absl::StatusOr<LedgerHold> hold = ledger.Hold(want);
    if (!hold.ok()) return fail_all(Unavailable("could not be reached", hold.status()));
    limits = LimitsOfHold(*hold, want, pool, cap);
    decision = decide(*limits);
    if (!decision->solution.ok()) {
      ledger.Release(*hold);
      return fail_all(decision->solution.status());
    }
    absl::StatusOr<std::vector<Lease>> committed = ledger.Commit(&*hold, decision->reservations);
    // A batch that outlived its hold commits only if its assignment still fits what is free.
    if (absl::IsFailedPrecondition(committed.status())) {
      committed = ledger.Commit(nullptr, decision->reservations);
    }
    if (!committed.ok()) {
      return fail_all(Unavailable("refused the batch's assignment", committed.status()));
    }
    leases = *std::move(committed);
  }
  const Solution& solution = *decision->solution;
  out.budget_usd = std::isfinite(limits->budget) ? limits->budget : -1.0;
  out.status = solution.status;
  out.relative_gap = solution.status == SolveStatus::kHeuristic ? 0.0 : RelativeGap(solution);
  out.method = solution.method;
  out.solve_time = solution.solve_time;
  out.total_cost_usd = solution.total_cost;
  // The instance has the limits of the decision kept.
  out.binding_constraints =
      BindingConstraints(instance, rows, pool, solution.model_of_query, solution.total_cost);
  const std::vector<int>& reserved_for = decision->reserved_for;
  const size_t m = pool.size();
  for (size_t r = 0; r < reserved_for.size(); ++r) {
    const int k = reserved_for[r];
    const int j = solution.model_of_query[k];
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
    if (solution.model_of_query[k] != kUnserved) continue;
    const bool no_slot = solution.unserved_reason[k] == UnservedReason::kNoSlot;
    out.queries[slot_of[k]].status = absl::ResourceExhaustedError(
        no_slot ? "every allowed model is out of free slots in this batch"
                : absl::StrCat("the batch budget (", limits->budget,
                               " USD) cannot pay for this query with the rest of its batch"));
  }
  return out;
}

}  // namespace router::core
