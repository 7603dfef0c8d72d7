// File: ledger.h
//
// The one authority over spend and concurrency slots, as an interface: every decision path (batches
// and inline decisions) reads what it may use here and commits what it used here, so nothing is
// counted twice and nothing is over-committed. local_ledger.h keeps it in process memory (one
// routerd); a shared implementation keeps it for a fleet of replicas.
//
// Slots: a self-hosted model has `slots` concurrent slots (instances x slots per instance). Each
// committed assignment to it holds one slot until Complete() or until its lease expires
// (`lease_timeout` after the commit), whichever comes first. API models have no slot limit.
//
// Spend pacing: a token bucket in USD. It refills at `spend_rate_usd_per_second` up to
// `spend_burst_usd`, and each commit draws the predicted cost. Complete() reconciles: the bucket
// is credited the predicted cost and charged the actual cost, so over-predictions come back and
// under-predictions are paid (the level may go negative; later decisions then get no paid budget
// until it refills). With a zero rate there is no pacing (unlimited). A lease that expires without
// a Complete keeps its predicted cost charged (the call probably happened); a Complete after the
// expiry still corrects it to the actual cost.
//
// Holds (hold, decide, commit). A decision that takes time (a batch's solve) first holds what it
// may use: Hold grants min(wanted, what is free) of the paced spend and of each model's slots, and
// nobody else can use what a hold holds until it is committed, released or expires; a commit on
// the hold may spend what it granted even if completions charged the bucket below it meanwhile. The decision
// then commits its assignments against its hold, and the rest of the hold is returned. A commit
// after the hold expired is refused (fenced): a decision that stalled past its hold cannot spend
// what the ledger may already have given to others. A quick decision (an inline one, or a batch
// decided on RecentSnapshot) commits without a hold: the commit checks and updates in one step
// against what is free.
//
// Guarantee: whatever the interleaving of holds, commits, completions and expiries,
//     in_use(model) + held(model) <= slots(model)  and  committed spend <= the bucket's allowance,
// because every check and update of a hold or a commit is one atomic step.
//
// Inline windows (inline_router.h). Inline decisions are grouped into windows of `arrivals`
// arrivals, also closed `duration` after they opened, and each window has a spend cap. The ledger
// keeps the current window (its number and arrivals so far) and the spend of the last
// kInlineWindowsKept windows, so that with a shared ledger a window counts the arrivals of every
// replica and its cap holds for all of them: an arrival is counted in the current window (the next
// one is opened first when it is full or past its duration), and an inline commit commits like
// Commit without a hold and also charges the window its decision arrived in (closed to arrivals or
// not), refusing what would pass its cap, in the same atomic step. So
//     spend committed in a window <= its cap   always.
// StepInline does both for many decisions in one atomic step (one round trip with a shared
// ledger): it commits the decisions made since the previous step, each on its own, then counts the
// arrivals since, and reports what may be used after both. ArriveInline and CommitInline are its
// one-decision forms.
//
// Assignment ids are unguessable (they carry a random tag checked by Complete), so a client
// cannot complete another caller's lease.
//
// Thread-safety: implementations are thread-safe.
//
// Errors: INVALID_ARGUMENT for bad options, model lists or reservations (naming the field);
// NOT_FOUND for an unknown model or an unknown, already completed or forged assignment id;
// FAILED_PRECONDITION for a commit without a hold that no longer fits, or for a commit on a hold
// that has expired (the message says "fenced"); UNAVAILABLE when the ledger cannot be reached (a
// shared ledger).

#ifndef ROUTER_CORE_SERVING_LEDGER_H_
#define ROUTER_CORE_SERVING_LEDGER_H_

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace router::core {

struct LedgerOptions {
  // Refill rate of the spend bucket, USD per second. 0 = no pacing. >= 0, finite.
  double spend_rate_usd_per_second = 0.0;
  // Bucket capacity, USD; also its level at start. > 0 when pacing, finite, never negative.
  double spend_burst_usd = 1.0;
  // How long an assignment holds its slot without a Complete(). > 0.
  absl::Duration lease_timeout = absl::Minutes(5);
  // Expired-but-not-completed assignments remembered for late reconciliation (oldest forgotten
  // first). >= 0.
  int64_t max_expired_remembered = 100'000;
  // Largest actual cost Complete accepts for one call, USD (> 0, finite): a bigger one is refused
  // (INVALID_ARGUMENT) rather than charged, so that one wrong or hostile report cannot exhaust
  // the paced budget. 10 USD is several times the dearest single call of today's API models.
  double max_actual_cost_usd = 10.0;
};
// OK, or INVALID_ARGUMENT naming the first bad field.
absl::Status ValidateLedgerOptions(const LedgerOptions& options);
// OK when `actual_cost_usd` is nullopt or finite in [0, options.max_actual_cost_usd]; otherwise
// INVALID_ARGUMENT naming actual_cost_usd (and budget.max_actual_cost_usd when above the limit).
// What every Ledger::Complete checks before it changes anything.
absl::Status ValidateActualCost(std::optional<double> actual_cost_usd,
                                const LedgerOptions& options);

struct LedgerModel {
  std::string name;
  std::optional<int64_t> slots;  // nullopt = unlimited (API model); >= 0 otherwise
};
// OK, or INVALID_ARGUMENT naming the model: names non-empty and unique, slots >= 0.
absl::Status ValidateLedgerModels(const std::vector<LedgerModel>& models);

// What a decision may use right now: free slots and spend net of what is in use and held.
struct LedgerSnapshot {
  std::vector<std::string> models;
  std::vector<std::optional<int64_t>> free_slots;  // per model; nullopt = unlimited
  // USD the paced bucket allows; +inf without pacing. Never negative.
  double spend_allowance_usd = std::numeric_limits<double>::infinity();
};

// What a decision asks to hold before it decides.
struct HoldRequest {
  // Most spend the decision may commit, USD; >= 0, +inf = whatever the bucket allows.
  double spend_usd = std::numeric_limits<double>::infinity();
  // Slots wanted per model, at most; models not listed are not held (API models need no hold).
  struct Slots {
    std::string model;
    int64_t count = 0;  // >= 0
  };
  std::vector<Slots> slots;
  // How long the hold lasts unless committed or released first; > 0.
  absl::Duration hold_for = absl::Seconds(1);
};

// What a hold grants. Value type: commit or release it once.
struct LedgerHold {
  std::string id;
  // Granted spend, USD: min(wanted, the bucket's allowance); +inf without pacing and a request of
  // +inf.
  double spend_usd = 0.0;
  // Granted slots, aligned with the request's `slots`.
  std::vector<int64_t> slots;
  absl::Time expires;
};

struct Reservation {
  absl::string_view model;          // read only during Commit
  double predicted_cost_usd = 0.0;  // >= 0, finite
};

// One committed assignment.
struct Lease {
  std::string assignment_id;
  // How long it holds its slot without a Complete (the ledger's lease_timeout at the commit).
  absl::Duration lease_timeout;
};

struct CompletionRecord {
  double predicted_cost_usd = 0.0;
  double recorded_cost_usd = 0.0;  // actual if given, else predicted
  bool lease_was_active = false;
};

// How inline windows are sized; both fixed for a window when it opens.
struct InlineWindowSpec {
  int64_t arrivals = 100;                              // >= 1
  absl::Duration duration = absl::InfiniteDuration();  // > 0
};

// OK, or INVALID_ARGUMENT naming the field (inline.window_arrivals, inline.window_duration).
absl::Status ValidateInlineWindowSpec(const InlineWindowSpec& spec);

// One inline arrival, counted in its window.
struct InlineArrival {
  uint64_t window = 0;         // the window's number, from 1
  int64_t position = 0;        // arrivals before this one in the window (0-based)
  int64_t window_arrivals = 0; // the window's size, fixed when it opened
  // What is left of the window's duration by the ledger's clock; InfiniteDuration() without one.
  absl::Duration time_left = absl::InfiniteDuration();
  double spent_usd = 0.0;      // committed in the window before this arrival
  LedgerSnapshot snapshot;     // what may be used now
};

// One committed inline decision.
struct InlineCommit {
  Lease lease;
  double window_spent_usd = 0.0;  // the window's spend after this commit
};

// Inline windows whose spend a ledger remembers (the current one and the ones before it): a commit
// to an older window is refused (FAILED_PRECONDITION, "closed").
inline constexpr uint64_t kInlineWindowsKept = 8;
// Most commits, and most arrivals, one StepInline takes (bounded work per call).
inline constexpr int64_t kMaxInlineStep = 1024;

// One inline decision to commit in a StepInline.
struct InlineCommitRequest {
  uint64_t window = 0;  // the window its arrival was counted in
  double cap_usd = std::numeric_limits<double>::infinity();  // that window's cap; +inf = none
  Reservation reservation;
};

// One step of inline decisions (StepInline).
struct InlineStep {
  // Per commit request, in order: its commit, or why it was refused (as CommitInline).
  std::vector<absl::StatusOr<InlineCommit>> commits;
  // Per arrival, in order (their `snapshot` is left empty: see below). `spent_usd` is the spend of
  // the arrival's window after the step's commits.
  std::vector<InlineArrival> arrivals;
  // What may be used after the commits and the arrivals.
  LedgerSnapshot snapshot;
  // (window, spend after the step) of each window that a commit or an arrival of the step names
  // and that is still remembered, in no particular order.
  std::vector<std::pair<uint64_t, double>> window_spent;
};

struct LedgerTotals {
  double reserved_usd = 0.0;   // predicted cost of assignments still open
  double recorded_usd = 0.0;   // spend of completed and expired assignments (actual where known)
  double bucket_level_usd = std::numeric_limits<double>::infinity();
  int64_t open_assignments = 0;
  int64_t open_holds = 0;
  int64_t expired_assignments = 0;  // leases that expired without a Complete, since the start
};

class Ledger {
 public:
  virtual ~Ledger() = default;

  // Replaces the model list. Open assignments and holds keep their slots; a model whose capacity
  // shrank below its use has no free slot until enough complete. Assignments of a removed model
  // stay open until completed or expired.
  virtual absl::Status SetModels(std::vector<LedgerModel> models) = 0;
  // Changes pacing and lease options; the bucket level is clamped to the new burst.
  virtual absl::Status SetOptions(const LedgerOptions& options) = 0;

  // Expires overdue leases and holds, then reports what may be used.
  virtual absl::StatusOr<LedgerSnapshot> Snapshot() = 0;

  // Holds what a decision may use (see the file comment). A model the ledger does not know gets
  // no slot; an unlimited model gets what is asked.
  virtual absl::StatusOr<LedgerHold> Hold(const HoldRequest& request) = 0;
  // Records the assignments, all or nothing, one lease per reservation in order. With a hold, the
  // reservations must fit what it granted (INVALID_ARGUMENT otherwise) and the rest of it is
  // returned; a hold that expired is refused (FAILED_PRECONDITION, "fenced") and returned. Without
  // a hold (nullptr), they must fit what is free (FAILED_PRECONDITION otherwise).
  virtual absl::StatusOr<std::vector<Lease>> Commit(const LedgerHold* hold,
                                                    absl::Span<const Reservation> reservations) = 0;
  // Returns a hold that will not be committed. Releasing an expired or unknown hold does nothing.
  virtual void Release(const LedgerHold& hold) = 0;

  // Releases the slot of `assignment_id` (if still held) and reconciles its spend with
  // `actual_cost_usd` (nullopt = the prediction was right; else finite, in [0,
  // max_actual_cost_usd], or INVALID_ARGUMENT and nothing changes). Idempotent in effect: a second
  // Complete of the same id is NOT_FOUND and changes nothing.
  virtual absl::StatusOr<CompletionRecord> Complete(absl::string_view assignment_id,
                                                    std::optional<double> actual_cost_usd) = 0;

  // One atomic step of inline decisions: first commits each of `commits` in order, each all or
  // nothing on its own (a refused one changes nothing and the next ones are still tried), then
  // counts `arrivals` arrivals in order (each in the current window, opening the next one first
  // when the current one has its arrivals or is its duration old, or none is open; a new window
  // takes its size and duration from `spec`), then reports what may be used.
  //   A commit: as Commit(nullptr, {reservation}) and charged to `window`. Refused with
  // FAILED_PRECONDITION when it does not fit what is free, when the window's spend would pass
  // `cap_usd` (within the solver's rounding tolerance, kBudgetTolerance x max(1, cap)), or when the
  // window is not one of the last kInlineWindowsKept; NOT_FOUND for an unknown model;
  // INVALID_ARGUMENT for a cost that is negative or not finite, or a cap that is negative or NaN.
  // The step fails as a whole (nothing changes) with INVALID_ARGUMENT for a bad spec (when
  // arrivals > 0) or more than kMaxInlineStep commits or arrivals, and with UNAVAILABLE when a
  // shared ledger cannot be reached (then whether the commits were applied is unknown: their
  // leases, if any, expire unused).
  virtual absl::StatusOr<InlineStep> StepInline(absl::Span<const InlineCommitRequest> commits,
                                                const InlineWindowSpec& spec,
                                                int64_t arrivals) = 0;
  // One arrival (StepInline without commits), with the snapshot after it.
  absl::StatusOr<InlineArrival> ArriveInline(const InlineWindowSpec& spec);
  // One commit (StepInline without arrivals): its result, or why it was refused.
  absl::StatusOr<InlineCommit> CommitInline(uint64_t window, double cap_usd,
                                            const Reservation& reservation);

  // What may be used as of the ledger's last answer, known without a call: nullopt when the ledger
  // keeps none (an in-process ledger, whose Hold costs microseconds) or when that answer is older
  // than the staleness a decision accepts (a shared ledger's own limit). It may be stale either
  // way (others committed, completed or refilled since): a decision made on it commits without a
  // hold (Commit(nullptr, ...)), which checks it again in one atomic step (batch_engine.h).
  virtual std::optional<LedgerSnapshot> RecentSnapshot() { return std::nullopt; }

  // True when each call is a round trip to a server (a shared ledger): a caller that makes many
  // calls should group them (StepInline) and never wait for one while holding a lock others need.
  // False for an in-process ledger, whose calls take microseconds.
  virtual bool remote() const { return false; }

  // Slots in use per model name (committed leases; holds not included).
  virtual absl::StatusOr<int64_t> InUse(absl::string_view model) = 0;
  virtual absl::StatusOr<LedgerTotals> Totals() = 0;
};

}  // namespace router::core

#endif  // ROUTER_CORE_SERVING_LEDGER_H_
