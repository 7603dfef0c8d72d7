#include "router_core/serving/inline_router.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "router_core/serving/inline_pricing.h"
#include "router_core/solve/solution.h"

namespace router::core {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
// How many times a decision is made again when the ledger refused its commit because what its
// snapshot showed free was taken meanwhile.
constexpr int kDecisionAttempts = 3;

}  // namespace

absl::Status ValidateInlineOptions(const InlineOptions& options) {
  if (absl::Status s = ValidateInlineWindowSpec({options.window_arrivals, options.window_duration});
      !s.ok()) {
    return s;
  }
  if (options.forecast_horizon < 1 || options.forecast_horizon > 10000) {
    return absl::InvalidArgumentError(absl::StrCat(
        "inline.forecast_horizon: must be in [1, 10000], got ", options.forecast_horizon));
  }
  if (options.slot_price_rounds < 0 || options.slot_price_rounds > 20) {
    return absl::InvalidArgumentError(absl::StrCat(
        "inline.slot_price_rounds: must be in [0, 20], got ", options.slot_price_rounds));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<InlineRouter>> InlineRouter::Create(const InlineOptions& options,
                                                                   Ledger* ledger,
                                                                   const Clock* clock) {
  if (absl::Status s = ValidateInlineOptions(options); !s.ok()) return s;
  if (ledger == nullptr) return absl::InvalidArgumentError("ledger: must not be null");
  if (clock == nullptr) return absl::InvalidArgumentError("clock: must not be null");
  return std::unique_ptr<InlineRouter>(new InlineRouter(options, ledger, clock));
}

absl::Status InlineRouter::SetOptions(const InlineOptions& options) {
  if (absl::Status s = ValidateInlineOptions(options); !s.ok()) return s;
  absl::MutexLock lock(&mu_);
  options_ = options;
  if (static_cast<int64_t>(recent_.size()) > options.forecast_horizon) {
    recent_.erase(recent_.begin(), recent_.end() - options.forecast_horizon);
  }
  return absl::OkStatus();
}

InlineDecision InlineRouter::Route(const PendingQuery& query, absl::Span<const DeployedModel> pool,
                                   const BatchPolicy& policy) {
  const absl::Time start = clock_->Now();
  InlineDecision d;
  const size_t m = pool.size();
  PoolView view(pool);
  std::vector<uint8_t> allowed(m);
  absl::StatusOr<PoolQuery> q = view.Resolve(query, absl::MakeSpan(allowed));
  if (!q.ok()) {
    d.outcome.status = q.status();
    return d;
  }
  // The query's row: what the prices and the choice read.
  std::vector<double> quality(m, 0.0), cost(m, 0.0);
  for (size_t j = 0; j < m; ++j) {
    if (!allowed[j]) continue;
    quality[j] = q->quality(static_cast<int>(j));
    cost[j] = q->cost(static_cast<int>(j));
  }
  Recent current;
  current.priced = MakePricedQuery(quality, cost, allowed);

  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  current.arrival = now;
  if (pool_names_.size() != m ||
      !std::equal(pool_names_.begin(), pool_names_.end(), pool.begin(),
                  [](const std::string& a, const DeployedModel& b) { return a == b.name; })) {
    pool_names_.clear();
    for (const DeployedModel& model : pool) pool_names_.push_back(model.name);
    recent_.clear();  // forecasts in another pool order are meaningless
  }
  // The ledger counts the arrival in its window (fleet-wide with a shared ledger) and says what
  // may be used.
  const absl::StatusOr<InlineArrival> arrival =
      ledger_->ArriveInline({options_.window_arrivals, options_.window_duration});
  if (!arrival.ok()) {
    d.outcome.status = absl::UnavailableError(
        absl::StrCat("the ledger could not be reached (", arrival.status().message(), "); retry"));
    d.decision_time = clock_->Now() - start;
    return d;
  }
  d.window_id = absl::StrCat(id_prefix_, arrival->window);
  d.position_in_window = arrival->position;
  const double cap = policy.avg_cost_cap_usd.has_value()
                         ? *policy.avg_cost_cap_usd * static_cast<double>(arrival->window_arrivals)
                         : kInf;
  d.window_cap_usd = std::isfinite(cap) ? cap : -1.0;
  d.window_spent_usd = arrival->spent_usd;

  // Arrivals the window still expects after this one.
  int64_t expected = arrival->window_arrivals - arrival->position - 1;
  if (arrival->time_left != absl::InfiniteDuration() && !recent_.empty()) {
    const double span = absl::ToDoubleSeconds(now - recent_.front().arrival);
    if (span > 0) {
      const double rate = static_cast<double>(recent_.size()) / span;
      const double time_left = absl::ToDoubleSeconds(arrival->time_left);
      expected = std::min<int64_t>(
          expected, static_cast<int64_t>(std::ceil(rate * std::max(0.0, time_left))));
    }
  }
  d.expected_after = expected;

  const auto available = [this](Recent& r) -> const PricedQuery* {
    mu_.AssertHeld();
    if (r.checked_for != full_version_) {
      r.checked_for = full_version_;
      r.has_full_model = std::any_of(r.priced.models.begin(), r.priced.models.end(), [this](int j) {
        mu_.AssertHeld();
        return full_[j] != 0;
      });
      if (r.has_full_model) {
        if (r.without_full == nullptr) r.without_full = std::make_unique<PricedQuery>();
        WithoutModels(r.priced, full_, *r.without_full);
      }
    }
    return r.has_full_model ? r.without_full.get() : &r.priced;
  };
  // Decide on a snapshot of the ledger (the arrival's, then a fresh one), then commit. What the
  // snapshot showed free can be taken before the commit (a batch's hold, a Complete charging more
  // than predicted, another replica of a fleet): the commit then fails, and the query is decided
  // again on a fresh snapshot (the arrival is counted once).
  int chosen = -1, priced = -1;
  double left = 0.0;
  Prices prices;
  absl::StatusOr<InlineCommit> commit = absl::UnknownError("not committed");
  for (int attempt = 1;; ++attempt) {
    const absl::StatusOr<LedgerSnapshot> snapshot =
        attempt == 1 ? absl::StatusOr<LedgerSnapshot>(arrival->snapshot) : ledger_->Snapshot();
    if (!snapshot.ok()) {
      d.outcome.status = absl::UnavailableError(absl::StrCat(
          "the ledger could not be reached (", snapshot.status().message(), "); retry"));
      d.decision_time = clock_->Now() - start;
      return d;
    }
    std::vector<double> free_slots(m, kInf);
    const std::vector<int64_t> free = FreeSlots(pool, *snapshot);
    for (size_t j = 0; j < m; ++j) {
      if (free[j] != kUnlimited) free_slots[j] = static_cast<double>(free[j]);
    }
    bool full_changed = full_.size() != m;
    full_.resize(m);
    for (size_t j = 0; j < m; ++j) {
      const char full = free_slots[j] < 1.0;
      full_changed |= full_[j] != full;
      full_[j] = full;
    }
    full_version_ += full_changed;
    // What the window may still spend, with CheckFeasible's slack for the rounding of the running
    // sum (a window whose cap is exactly its cheapest total must not lose its last query to it).
    left = std::max(0.0, std::min(cap - arrival->spent_usd, snapshot->spend_allowance_usd)) +
           (std::isfinite(cap) ? kBudgetTolerance * std::max(1.0, cap) : 0.0);

    // The forecast LP and its prices.
    std::vector<WeightedQuery> lp;
    lp.push_back(
        {available(current), recent_.empty() ? 1.0 + static_cast<double>(expected) : 1.0});
    double forecast_cheapest = recent_.empty() ? current.priced.cheapest_cost : 0.0;
    const double weight =
        recent_.empty() ? 0.0 : static_cast<double>(expected) / static_cast<double>(recent_.size());
    for (Recent& r : recent_) {
      forecast_cheapest = std::max(forecast_cheapest, r.priced.cheapest_cost);
      if (weight > 0) lp.push_back({available(r), weight});
    }
    const double reserve = expected > 0 && std::isfinite(forecast_cheapest)
                               ? static_cast<double>(expected) * forecast_cheapest
                               : 0.0;
    prices = SolvePrices(lp, free_slots, left, {options_.slot_price_rounds});
    d.lambda = prices.lambda;

    // The decision: priced choice, then the guard's fallbacks (file comment).
    int guarded = -1, cheapest = -1;
    priced = -1;
    double priced_score = -kInf, guarded_score = -kInf;
    for (size_t j = 0; j < m; ++j) {
      if (!allowed[j] || free_slots[j] < 1.0) continue;
      const double score = quality[j] - d.lambda * cost[j] - prices.mu[j];
      const auto better = [&](int incumbent, double incumbent_score) {
        return incumbent < 0 || score > incumbent_score ||
               (score == incumbent_score && cost[j] < cost[incumbent]);
      };
      if (better(priced, priced_score)) {
        priced = static_cast<int>(j);
        priced_score = score;
      }
      if (cost[j] <= left - reserve && better(guarded, guarded_score)) {
        guarded = static_cast<int>(j);
        guarded_score = score;
      }
      if (cost[j] <= left &&
          (cheapest < 0 || cost[j] < cost[cheapest] ||
           (cost[j] == cost[cheapest] && quality[j] > quality[cheapest]))) {
        cheapest = static_cast<int>(j);
      }
    }
    chosen = guarded >= 0 ? guarded : cheapest;
    d.guarded = chosen != priced;
    if (chosen < 0) break;
    commit = ledger_->CommitInline(arrival->window, cap, {pool[chosen].name, cost[chosen]});
    if (commit.ok() || !absl::IsFailedPrecondition(commit.status()) ||
        attempt == kDecisionAttempts) {
      break;
    }
  }
  recent_.push_back(std::move(current));
  while (static_cast<int64_t>(recent_.size()) > options_.forecast_horizon) recent_.pop_front();

  if (chosen < 0) {
    d.outcome.status = absl::ResourceExhaustedError(
        priced < 0 ? "every allowed model is out of free slots"
                   : absl::StrCat("the inline window ", d.window_id, " has ", left,
                                  " USD left, less than this query's cheapest allowed model (",
                                  cost[priced], " USD and up)"));
    d.decision_time = clock_->Now() - start;
    return d;
  }
  if (!commit.ok()) {
    d.outcome.status = absl::UnavailableError(absl::StrCat(
        "the ledger refused the inline decision (", commit.status().message(), "); retry"));
    d.decision_time = clock_->Now() - start;
    return d;
  }
  d.window_spent_usd = commit->window_spent_usd;
  d.slot_price = prices.mu[chosen];
  QueryOutcome& o = d.outcome;
  o.model = pool[chosen].name;
  o.quality = q->quality(chosen);
  o.quality_lower = q->quality_lower(chosen);
  o.prior_quality = q->prior_quality(chosen);
  o.cluster = q->cluster();
  o.explored = q->explored();
  o.cost_usd = cost[chosen];
  o.assignment_id = std::move(commit->lease.assignment_id);
  o.lease_timeout = commit->lease.lease_timeout;
  o.fallbacks = FallbackModels(*q, allowed, chosen, policy.max_fallbacks, pool);
  d.decision_time = clock_->Now() - start;
  return d;
}

}  // namespace router::core
