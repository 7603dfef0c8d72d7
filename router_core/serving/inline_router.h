// File: inline_router.h
//
// Inline routing: each query is decided the moment it arrives, with no batch wait, by
//     argmax_j  a_ij - lambda * c_ij - mu_j    over its allowed models with a free slot,
// where the prices lambda (spend) and mu_j (slots of model j) are re-solved at every arrival as
// the duals of the batch LP over the current query plus a forecast of the rest of its window.
//
// Windows. Arrivals are grouped into windows of `window_arrivals` decisions, also closed
// `window_duration` after they opened (whichever comes first). The ledger keeps the windows
// (ledger.h, StepInline), so with a shared ledger a window counts the arrivals
// of every replica and its cap holds for the fleet. A window's cap is
//     cap = avg_cost_cap_usd x window_arrivals            (BatchPolicy; none = no window cap)
// exactly as a batch of that many queries would get; every decision may also spend at most the
// ledger's paced allowance (ledger.h), like a batch.
//
// Forecast. The last `forecast_horizon` arrivals (across windows; cleared when the pool changes)
// stand for the R arrivals the window still expects after the current one:
//     R = window_arrivals - seen - 1, and with a finite window_duration at most
//         rate x time left in the window, the rate measured over the forecast's arrival times.
// The LP: the current query with weight 1 and each forecast query with weight R / |forecast|
// (the current query alone stands for the rest while the forecast is empty), spend <= the budget
// the window has left, uses of model j <= its free slots in the ledger; its duals come from
// inline_pricing.h (lambda exactly, slot prices in closed form, `slot_price_rounds` rounds).
//
// Guard (why no window ever exceeds its cap, whatever the arrival order). With `left` the budget
// the window has left (and at most the ledger's allowance) and `reserve` = R x the largest
// cheapest-allowed cost among the forecast queries, the priced choice is taken only if
//     cost <= left - reserve;
// otherwise the best-priced model that passes that test; if none does, the query's cheapest
// allowed model with a free slot when it fits `left` (a query that is here is served before
// arrivals that are only expected); otherwise RESOURCE_EXHAUSTED. Each decision is committed to
// the ledger, which charges the window and re-checks its cap and the free slots in the same atomic
// step (ledger.h, StepInline), so
//     spend of a window <= cap  and  in_use(model) <= slots(model)   always,
// also when several replicas share the ledger (a decision that lost the race is decided again on a
// fresh snapshot, up to three times, then refused, retryable).
//
// Steps (a group commit), with a remote ledger (Ledger::remote(): a shared one). Decisions are made
// one at a time, in arrival order, by the router's own thread, which calls the ledger once per
// step, never while a decision is being made: queries wait in its queue (Decide returns at once;
// Route waits for the answer). A step sends the ledger, in
// one StepInline, the commits of the decisions made in the previous step and the arrivals queued
// since (at most kMaxInlineStep and 2 x window_arrivals, so that a step's arrivals span at most 3
// windows and their windows are still remembered at their commit); then decides those arrivals (and
// the decisions the ledger refused, again) in order, on the step's snapshot less what the step's
// earlier decisions take, so one step never plans to use a slot or budget twice. With an in-process
// ledger a step costs microseconds; with a shared one, one round trip is paid per step, not per
// decision, and a query waits for at most the current step and its own two.
//   With an in-process ledger, a query is decided on the calling thread, under the router's mutex,
// its arrival and its commit each a step of their own (microseconds; Decide calls `done` before
// it returns).
//
// Cost of a decision: inline_pricing.h's bound with H = forecast_horizon + 1, plus O(M) for the
// choice, plus its share of two steps (one ledger call each). A model without a free slot is taken
// out of each forecast query once per change of the set of full models (WithoutModels), not at
// every decision, so self-hosted models that stay full do not make every decision rebuild all H
// hulls. Figures in bench/README.md, "Inline decisions" and "Shared ledger".
//
// Thread-safety: Decide, Route and SetOptions may be called from any thread. Decisions are
// serialized (made under the router's mutex); the router's thread calls a remote ledger, and
// `done`, with no lock held. Every query is answered exactly once. The destructor answers what is
// queued, then joins the thread; no Decide may start once it has begun. The ledger and the clock
// are not owned and must outlive the router.
//
// Errors (per decision, in InlineDecision::outcome.status): INVALID_ARGUMENT for the query's
// allowed list (pool_view.h); RESOURCE_EXHAUSTED when no allowed model has a free slot, or the
// window's budget (or the paced allowance) cannot pay the cheapest one (the message says which);
// UNAVAILABLE (retryable) when the ledger cannot be reached, or refused the commit three times
// because what the step's snapshot showed free, or the window's budget, was taken before the
// commit (by a batch's hold, a completion charged above its prediction, or another replica of a
// fleet). Create: INVALID_ARGUMENT naming the option.

#ifndef ROUTER_CORE_SERVING_INLINE_ROUTER_H_
#define ROUTER_CORE_SERVING_INLINE_ROUTER_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "router_core/clock.h"
#include "router_core/serving/batch_engine.h"
#include "router_core/serving/inline_pricing.h"
#include "router_core/serving/ledger.h"
#include "router_core/serving/pool_view.h"

namespace router::core {

struct InlineOptions {
  // Arrivals per window (every query decided, served or refused), >= 1. Default: the
  // robust-routing paper's batch size.
  int64_t window_arrivals = 100;
  // A window also closes this long after it opened, > 0. Default: count only.
  absl::Duration window_duration = absl::InfiniteDuration();
  // Recent arrivals kept as the forecast of the rest of a window, in [1, 10000].
  int forecast_horizon = 100;
  // Rounds of slot-price updates alternating with lambda, in [0, 20]. 0 ignores slots in the
  // prices (the guard still only takes models with a free slot).
  int slot_price_rounds = 3;
};
absl::Status ValidateInlineOptions(const InlineOptions& options);

// One inline decision and the prices it was made at.
struct InlineDecision {
  QueryOutcome outcome;
  std::string window_id;
  int64_t position_in_window = 0;  // 0-based
  int64_t expected_after = 0;      // R: arrivals the window still expected after this one
  double lambda = 0.0;             // USD^-1
  double slot_price = 0.0;         // mu of the chosen model (0 when none was chosen)
  double window_cap_usd = -1.0;    // < 0 = no window cap
  double window_spent_usd = 0.0;   // after this decision
  // True when the guard replaced the priced choice (by a cheaper one, or by a refusal).
  bool guarded = false;
  absl::Duration decision_time;  // by the injected clock, from Route's call to its answer
};

class InlineRouter {
 public:
  static absl::StatusOr<std::unique_ptr<InlineRouter>> Create(const InlineOptions& options,
                                                              Ledger* ledger, const Clock* clock);

  // Called once with a decision. Runs on the router's thread (with a remote ledger), which makes no
  // decision meanwhile: it should only hand the decision on (answer a call, record metrics).
  using Done = absl::AnyInvocable<void(InlineDecision) &&>;

  // Decides `query` against `pool` in its turn and commits it to the ledger: with a remote ledger
  // without waiting (`done` is called with the decision on the router's thread), else at once
  // (`done` is called before Decide returns; so too when the query's allowed list is refused). `policy` gives the window cap
  // (avg_cost_cap_usd) and max_fallbacks; its solver fields are not used. `query`, `pool` and
  // `policy` must stay valid until `done` is called.
  void Decide(const PendingQuery& query, absl::Span<const DeployedModel> pool,
              const BatchPolicy& policy, Done done);
  // Decide, waiting for the decision.
  InlineDecision Route(const PendingQuery& query, absl::Span<const DeployedModel> pool,
                       const BatchPolicy& policy);

  // Applies from the next window on (the current window keeps its size and cap).
  absl::Status SetOptions(const InlineOptions& options);

  // Decisions waiting for their arrival to be counted (for tests and metrics).
  int64_t queued() const;

  ~InlineRouter();

 private:
  // A recent arrival in pool order: what the forecast is built from.
  struct Recent {
    PricedQuery priced;  // every allowed model (its cheapest cost sizes the guard's reserve)
    // What the LP prices: `priced` itself when none of its models is full, else `without_full`,
    // `priced` without the models full at exclusion version `checked_for`; redone only when the
    // set of full models changed (WithoutModels, inline_pricing.h).
    bool has_full_model = false;
    std::unique_ptr<PricedQuery> without_full;  // allocated the first time it is needed
    uint64_t checked_for = 0;                   // 0 = never
    absl::Time arrival;
  };
  // One query, and its decision as the steps make it. Owned by the router from Decide until its
  // `done` is called; only the router's thread writes it meanwhile.
  struct Pending;
  // What one step's decisions may still use: the ledger's snapshot less what the step's earlier
  // decisions take, and the spend of the windows the step knows.
  struct StepState {
    LedgerSnapshot snapshot;
    std::vector<std::pair<uint64_t, double>> window_spent;
  };

  InlineRouter(const InlineOptions& options, Ledger* ledger, const Clock* clock)
      : ledger_(ledger), clock_(clock), options_(options) {}

  // The router's thread (remote ledger): runs steps while queries wait, until stopped and nothing
  // waits.
  void Run() ABSL_LOCKS_EXCLUDED(mu_, queue_mu_);
  // Decides `p` on the calling thread (in-process ledger), then answers it.
  void DecideNow(Pending* p) ABSL_LOCKS_EXCLUDED(mu_, queue_mu_);
  // Sets `p`'s answer to UNAVAILABLE: the ledger could not be reached.
  static void Unreachable(Pending& p, const absl::Status& status);
  // Takes the ledger's answer to `p`'s commit; true when `p` is to be decided again (the ledger
  // refused it as no longer fitting, and attempts are left).
  static bool Committed(Pending& p, absl::StatusOr<InlineCommit> commit);
  // Fills `p`'s decision from its commit and calls its `done`; deletes `p`.
  void Answer(Pending* p) ABSL_LOCKS_EXCLUDED(mu_, queue_mu_);
  // Decides `p` on `step` (updated with what it takes); true when a model was chosen (to commit).
  bool DecideLocked(Pending& p, StepState& step) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Ledger* const ledger_;
  const Clock* const clock_;
  // Queries waiting: not yet counted by the ledger, and decided but not yet committed.
  mutable absl::Mutex queue_mu_;
  absl::CondVar work_;  // signalled when a call queues, and to stop
  std::deque<Pending*> arriving_ ABSL_GUARDED_BY(queue_mu_);
  std::vector<Pending*> decided_ ABSL_GUARDED_BY(queue_mu_);
  bool stop_ ABSL_GUARDED_BY(queue_mu_) = false;
  std::thread thread_;  // only with a remote ledger
  absl::Mutex mu_;
  InlineOptions options_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> pool_names_ ABSL_GUARDED_BY(mu_);
  std::deque<Recent> recent_ ABSL_GUARDED_BY(mu_);
  // Pool models without a free slot at the last decision (1 = full), and a version bumped each
  // time that set changes (from 1 on).
  std::vector<char> full_ ABSL_GUARDED_BY(mu_);
  uint64_t full_version_ ABSL_GUARDED_BY(mu_) = 0;
  const std::string id_prefix_ = "w";
};

}  // namespace router::core

#endif  // ROUTER_CORE_SERVING_INLINE_ROUTER_H_
