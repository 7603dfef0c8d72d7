#include "router_core/serving/inline_router.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
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
  std::unique_ptr<InlineRouter> router(new InlineRouter(options, ledger, clock));
  if (ledger->remote()) router->thread_ = std::thread([r = router.get()] { r->Run(); });
  return router;
}

InlineRouter::~InlineRouter() {
  {
    absl::MutexLock lock(&queue_mu_);
    stop_ = true;
    work_.Signal();
  }
  if (thread_.joinable()) thread_.join();
}

int64_t InlineRouter::queued() const {
  absl::MutexLock lock(&queue_mu_);
  return static_cast<int64_t>(arriving_.size());
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

struct InlineRouter::Pending {
  Pending(const PendingQuery& query, absl::Span<const DeployedModel> pool,
          const BatchPolicy& policy, Done done)
      : query(query), pool(pool), policy(policy), view(pool), done(std::move(done)) {}

  const PendingQuery& query;
  const absl::Span<const DeployedModel> pool;
  const BatchPolicy& policy;
  PoolView view;
  std::optional<PoolQuery> q;  // the query read through `view`
  std::vector<uint8_t> allowed;
  std::vector<double> quality, cost;  // the query's row, in pool order
  Recent current;                     // the query as its own LP row
  absl::Time start;
  Done done;
  // Set by the router's thread.
  InlineArrival arrival;  // where the ledger counted it (no snapshot)
  int attempts = 0;       // decisions made
  int chosen = -1;        // pool index, when a decision chose a model
  double cap = kInf;      // its window's cap
  Prices prices;
  absl::StatusOr<InlineCommit> commit = absl::UnknownError("not committed");
  InlineDecision d;
};

void InlineRouter::Decide(const PendingQuery& query, absl::Span<const DeployedModel> pool,
                          const BatchPolicy& policy, Done done) {
  auto p = std::make_unique<Pending>(query, pool, policy, std::move(done));
  p->start = clock_->Now();
  const size_t m = pool.size();
  p->allowed.resize(m);
  absl::StatusOr<PoolQuery> q = p->view.Resolve(query, absl::MakeSpan(p->allowed));
  if (!q.ok()) {
    p->d.outcome.status = q.status();
    std::move(p->done)(std::move(p->d));
    return;
  }
  p->q = *q;
  // The query's row: what the prices and the choice read.
  p->quality.assign(m, 0.0);
  p->cost.assign(m, 0.0);
  for (size_t j = 0; j < m; ++j) {
    if (!p->allowed[j]) continue;
    p->quality[j] = q->quality(static_cast<int>(j));
    p->cost[j] = q->cost(static_cast<int>(j));
  }
  p->current.priced = MakePricedQuery(p->quality, p->cost, p->allowed);
  if (!thread_.joinable()) {
    DecideNow(p.release());
    return;
  }
  absl::MutexLock lock(&queue_mu_);
  arriving_.push_back(p.release());
  work_.Signal();
}

void InlineRouter::Unreachable(Pending& p, const absl::Status& status) {
  p.d.outcome.status = absl::UnavailableError(
      absl::StrCat("the ledger could not be reached (", status.message(), "); retry"));
}

bool InlineRouter::Committed(Pending& p, absl::StatusOr<InlineCommit> commit) {
  p.commit = std::move(commit);
  // What the decision's snapshot showed free was taken meanwhile (a batch's hold, a completion
  // charged above its prediction, another replica): decide again.
  if (absl::IsFailedPrecondition(p.commit.status()) && p.attempts < kDecisionAttempts) return true;
  if (!p.commit.ok()) {
    p.d.outcome.status = absl::UnavailableError(absl::StrCat(
        "the ledger refused the inline decision (", p.commit.status().message(), "); retry"));
  }
  return false;
}

void InlineRouter::DecideNow(Pending* p) {
  {
    absl::MutexLock lock(&mu_);
    const InlineWindowSpec spec{options_.window_arrivals, options_.window_duration};
    absl::StatusOr<InlineStep> step = ledger_->StepInline({}, spec, 1);
    if (step.ok()) p->arrival = std::move(step->arrivals.at(0));
    while (step.ok()) {
      StepState state{std::move(step->snapshot), std::move(step->window_spent)};
      if (!DecideLocked(*p, state)) break;
      const InlineCommitRequest request{p->arrival.window, p->cap,
                                        {p->pool[p->chosen].name, p->cost[p->chosen]}};
      step = ledger_->StepInline(absl::MakeConstSpan(&request, 1), spec, 0);
      if (step.ok() && !Committed(*p, std::move(step->commits.at(0)))) break;
    }
    if (!step.ok()) Unreachable(*p, step.status());
  }
  Answer(p);
}

InlineDecision InlineRouter::Route(const PendingQuery& query, absl::Span<const DeployedModel> pool,
                                   const BatchPolicy& policy) {
  InlineDecision out;
  absl::Notification decided;
  Decide(query, pool, policy, [&](InlineDecision d) {
    out = std::move(d);
    decided.Notify();
  });
  decided.WaitForNotification();
  return out;
}

void InlineRouter::Answer(Pending* p) {
  std::unique_ptr<Pending> owned(p);
  InlineDecision& d = p->d;
  if (d.outcome.status.ok()) {
    const int chosen = p->chosen;
    d.window_spent_usd = p->commit->window_spent_usd;
    d.slot_price = p->prices.mu[chosen];
    QueryOutcome& o = d.outcome;
    o.model = p->pool[chosen].name;
    o.quality = p->q->quality(chosen);
    o.quality_lower = p->q->quality_lower(chosen);
    o.prior_quality = p->q->prior_quality(chosen);
    o.cluster = p->q->cluster();
    o.explored = p->q->explored();
    o.cost_usd = p->cost[chosen];
    o.assignment_id = std::move(p->commit->lease.assignment_id);
    o.lease_timeout = p->commit->lease.lease_timeout;
    o.fallbacks = FallbackModels(*p->q, p->allowed, chosen, p->policy.max_fallbacks, p->pool);
  }
  d.decision_time = clock_->Now() - p->start;
  std::move(p->done)(std::move(d));
}

void InlineRouter::Run() {
  for (;;) {
    std::vector<Pending*> committing, arriving;
    {
      absl::MutexLock lock(&queue_mu_);
      while (arriving_.empty() && decided_.empty() && !stop_) work_.Wait(&queue_mu_);
      if (arriving_.empty() && decided_.empty()) return;  // stopped, and nothing waits
    }
    // The options as of this step (SetOptions may have changed them while the thread waited).
    InlineWindowSpec spec;
    {
      absl::MutexLock lock(&mu_);
      spec = {options_.window_arrivals, options_.window_duration};
    }
    const size_t most = static_cast<size_t>(
        std::min<int64_t>(kMaxInlineStep, 2 * std::max<int64_t>(1, spec.arrivals)));
    {
      absl::MutexLock lock(&queue_mu_);
      committing.swap(decided_);
      while (!arriving_.empty() && arriving.size() < most) {
        arriving.push_back(arriving_.front());
        arriving_.pop_front();
      }
    }
    std::vector<InlineCommitRequest> requests;
    requests.reserve(committing.size());
    for (const Pending* p : committing) {
      requests.push_back({p->arrival.window, p->cap,
                          {p->pool[p->chosen].name, p->cost[p->chosen]}});
    }
    absl::StatusOr<InlineStep> step =
        ledger_->StepInline(requests, spec, static_cast<int64_t>(arriving.size()));

    std::vector<Pending*> answered, deciding, decided;
    if (!step.ok()) {
      for (std::vector<Pending*>* group : {&committing, &arriving}) {
        for (Pending* p : *group) {
          Unreachable(*p, step.status());
          answered.push_back(p);
        }
      }
    } else {
      for (size_t k = 0; k < committing.size(); ++k) {
        Pending* p = committing[k];
        (Committed(*p, std::move(step->commits[k])) ? deciding : answered).push_back(p);
      }
      for (size_t k = 0; k < arriving.size(); ++k) {
        arriving[k]->arrival = std::move(step->arrivals[k]);
        deciding.push_back(arriving[k]);
      }
      StepState state{std::move(step->snapshot), std::move(step->window_spent)};
      absl::MutexLock lock(&mu_);
      for (Pending* p : deciding) (DecideLocked(*p, state) ? decided : answered).push_back(p);
    }
    {
      absl::MutexLock lock(&queue_mu_);
      decided_ = std::move(decided);
    }
    for (Pending* p : answered) Answer(p);
  }
}

bool InlineRouter::DecideLocked(Pending& p, StepState& step) {
  const absl::Span<const DeployedModel> pool = p.pool;
  const size_t m = pool.size();
  const absl::Time now = clock_->Now();
  InlineDecision& d = p.d;
  ++p.attempts;
  if (p.attempts == 1) p.current.arrival = now;
  if (pool_names_.size() != m ||
      !std::equal(pool_names_.begin(), pool_names_.end(), pool.begin(),
                  [](const std::string& a, const DeployedModel& b) { return a == b.name; })) {
    pool_names_.clear();
    for (const DeployedModel& model : pool) pool_names_.push_back(model.name);
    recent_.clear();  // forecasts in another pool order are meaningless
  }
  const InlineArrival& arrival = p.arrival;
  d.window_id = absl::StrCat(id_prefix_, arrival.window);
  d.position_in_window = arrival.position;
  p.cap = p.policy.avg_cost_cap_usd.has_value()
              ? *p.policy.avg_cost_cap_usd * static_cast<double>(arrival.window_arrivals)
              : kInf;
  const double cap = p.cap;
  d.window_cap_usd = std::isfinite(cap) ? cap : -1.0;
  // The window's spend as of this step (its arrival's when the step does not name it).
  auto spent_it = std::find_if(step.window_spent.begin(), step.window_spent.end(),
                               [&](const auto& e) { return e.first == arrival.window; });
  if (spent_it == step.window_spent.end()) {
    spent_it = step.window_spent.emplace(step.window_spent.end(), arrival.window,
                                         arrival.spent_usd);
  }
  const double spent = spent_it->second;
  d.window_spent_usd = spent;

  // Arrivals the window still expects after this one.
  int64_t expected = arrival.window_arrivals - arrival.position - 1;
  if (arrival.time_left != absl::InfiniteDuration() && !recent_.empty()) {
    const double span = absl::ToDoubleSeconds(now - recent_.front().arrival);
    if (span > 0) {
      const double rate = static_cast<double>(recent_.size()) / span;
      const double time_left = absl::ToDoubleSeconds(arrival.time_left);
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
  const LedgerSnapshot& snapshot = step.snapshot;
  std::vector<double> free_slots(m, kInf);
  const std::vector<int64_t> free = FreeSlots(pool, snapshot);
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
  const double left = std::max(0.0, std::min(cap - spent, snapshot.spend_allowance_usd)) +
                      (std::isfinite(cap) ? kBudgetTolerance * std::max(1.0, cap) : 0.0);

  // The forecast LP and its prices.
  std::vector<WeightedQuery> lp;
  lp.push_back(
      {available(p.current), recent_.empty() ? 1.0 + static_cast<double>(expected) : 1.0});
  double forecast_cheapest = recent_.empty() ? p.current.priced.cheapest_cost : 0.0;
  const double weight =
      recent_.empty() ? 0.0 : static_cast<double>(expected) / static_cast<double>(recent_.size());
  for (Recent& r : recent_) {
    forecast_cheapest = std::max(forecast_cheapest, r.priced.cheapest_cost);
    if (weight > 0) lp.push_back({available(r), weight});
  }
  const double reserve = expected > 0 && std::isfinite(forecast_cheapest)
                             ? static_cast<double>(expected) * forecast_cheapest
                             : 0.0;
  p.prices = SolvePrices(lp, free_slots, left, {options_.slot_price_rounds});
  d.lambda = p.prices.lambda;

  // The decision: priced choice, then the guard's fallbacks (file comment).
  const std::vector<double>& quality = p.quality;
  const std::vector<double>& cost = p.cost;
  int guarded = -1, cheapest = -1, priced = -1;
  double priced_score = -kInf, guarded_score = -kInf;
  for (size_t j = 0; j < m; ++j) {
    if (!p.allowed[j] || free_slots[j] < 1.0) continue;
    const double score = quality[j] - d.lambda * cost[j] - p.prices.mu[j];
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
  const int chosen = guarded >= 0 ? guarded : cheapest;
  p.chosen = chosen;
  d.guarded = chosen != priced;
  if (p.attempts == 1) {
    // The query joins the forecast of the decisions after it.
    Recent r;
    r.priced = p.current.priced;
    r.arrival = p.current.arrival;
    recent_.push_back(std::move(r));
    while (static_cast<int64_t>(recent_.size()) > options_.forecast_horizon) recent_.pop_front();
  }
  if (chosen < 0) {
    d.outcome.status = absl::ResourceExhaustedError(
        priced < 0 ? "every allowed model is out of free slots"
                   : absl::StrCat("the inline window ", d.window_id, " has ", left,
                                  " USD left, less than this query's cheapest allowed model (",
                                  cost[priced], " USD and up)"));
    return false;
  }
  // What the decision takes, for the decisions after it in this step.
  for (size_t k = 0; k < snapshot.models.size(); ++k) {
    std::optional<int64_t>& f = step.snapshot.free_slots[k];
    if (snapshot.models[k] == pool[chosen].name && f.has_value() && *f > 0) --*f;
  }
  if (std::isfinite(step.snapshot.spend_allowance_usd)) {
    step.snapshot.spend_allowance_usd =
        std::max(0.0, step.snapshot.spend_allowance_usd - cost[chosen]);
  }
  spent_it->second += cost[chosen];
  return true;
}

}  // namespace router::core
