// File: ledger.h
//
// The one authority over spend and concurrency slots. Every decision path (batches and inline
// decisions) reads what it may use from here and commits what it used here, so nothing is counted
// twice and nothing is over-committed.
//
// Slots: a self-hosted model has `slots` concurrent slots (instances x slots per instance). Each
// committed assignment to it holds one slot until Complete() or until its lease expires
// (`lease_timeout` after the commit), whichever comes first. API models have no slot limit.
//
// Spend pacing: a token bucket in USD. It refills at `spend_rate_usd_per_second` up to
// `spend_burst_usd`, and each commit draws the predicted cost. Complete() reconciles: the bucket
// is credited the predicted cost and charged the actual cost, so over-predictions come back and
// under-predictions are paid (the level may go negative; later batches then get no paid budget
// until it refills). With a zero rate there is no pacing (unlimited).
//
// Guarantee: for a Snapshot s taken at time t and a Commit at t of assignments that fit s
// (per model count <= s.free_slots, summed cost <= s.spend_allowance_usd),
//     in_use(model) <= slots(model)  and  bucket level >= 0 - (actual - predicted of completions).
// Commit re-checks against the current state and refuses (FAILED_PRECONDITION) rather than
// over-commit, so a caller that raced another committer can never break a limit.
//
// Thread-safety: all methods may be called concurrently (one mutex). Time comes from the injected
// clock (not owned; must outlive the ledger).
//
// Cost: an assignment id is the ledger's prefix and a sequence number, and open leases are keyed
// by that number, so a Commit costs O(reservations) hash-map operations on integers (one string
// hash per reservation, for its model) plus the ids' formatting. Leases wait for their expiry in a
// queue ordered by expiry time: a commit appends at the back in O(1) (a shorter lease_timeout
// after SetOptions, or a clock that steps back, inserts in O(open)), expiry pops from the front.
// Completed leases leave the queue lazily; it is rebuilt once it holds more than twice the open
// leases (plus 64), which keeps it O(open) in size and O(1) amortized per Complete.
//
// Errors: INVALID_ARGUMENT for bad options or model lists (naming the field); NOT_FOUND for an
// unknown model or assignment id; FAILED_PRECONDITION for a commit that no longer fits.

#ifndef ROUTER_CORE_SERVING_LEDGER_H_
#define ROUTER_CORE_SERVING_LEDGER_H_

#include <cstdint>
#include <deque>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "router_core/clock.h"

namespace router::core {

struct LedgerOptions {
  // Refill rate of the spend bucket, USD per second. 0 = no pacing. >= 0, finite.
  double spend_rate_usd_per_second = 0.0;
  // Bucket capacity, USD; also its level at start. > 0 when pacing, finite.
  double spend_burst_usd = 1.0;
  // How long an assignment holds its slot without a Complete(). > 0.
  absl::Duration lease_timeout = absl::Minutes(5);
  // Expired-but-not-completed assignments remembered for late reconciliation (oldest forgotten
  // first). >= 0.
  int64_t max_expired_remembered = 100'000;
};

struct LedgerModel {
  std::string name;
  std::optional<int64_t> slots;  // nullopt = unlimited (API model); >= 0 otherwise
};

// What a batch may use right now.
struct LedgerSnapshot {
  std::vector<std::string> models;
  std::vector<std::optional<int64_t>> free_slots;  // per model; nullopt = unlimited
  // USD the paced bucket allows; +inf without pacing. Never negative.
  double spend_allowance_usd = std::numeric_limits<double>::infinity();
};

struct Reservation {
  absl::string_view model;          // read only during Commit
  double predicted_cost_usd = 0.0;  // >= 0, finite
};

struct CompletionRecord {
  double predicted_cost_usd = 0.0;
  double recorded_cost_usd = 0.0;  // actual if given, else predicted
  bool lease_was_active = false;
};

struct LedgerTotals {
  double reserved_usd = 0.0;   // predicted cost of assignments still open
  double recorded_usd = 0.0;   // spend of completed and expired assignments (actual where known)
  double bucket_level_usd = std::numeric_limits<double>::infinity();
  int64_t open_assignments = 0;
};

class Ledger {
 public:
  static absl::StatusOr<std::unique_ptr<Ledger>> Create(const LedgerOptions& options,
                                                        std::vector<LedgerModel> models,
                                                        const Clock* clock = &Clock::Real());

  // Replaces the model list (names unique, non-empty; slots >= 0). Open assignments keep their
  // slots; a model whose capacity shrank below its use has no free slot until enough complete.
  // Assignments of a removed model stay open until completed or expired.
  absl::Status SetModels(std::vector<LedgerModel> models);
  // Changes pacing and lease options; the bucket level is clamped to the new burst.
  absl::Status SetOptions(const LedgerOptions& options);

  // Expires overdue leases, then reports what may be used.
  LedgerSnapshot Snapshot();

  // Records the assignments, all or nothing; returns one assignment id per reservation, in order.
  // `lease_timeout`, when given, receives the lease timeout the assignments got (the options' at
  // the commit: SetOptions may change it for later commits).
  absl::StatusOr<std::vector<std::string>> Commit(absl::Span<const Reservation> reservations,
                                                  absl::Duration* lease_timeout = nullptr);

  // Releases the slot of `assignment_id` (if still held) and reconciles its spend with
  // `actual_cost_usd` (nullopt = the prediction was right). NOT_FOUND for an unknown or already
  // completed id.
  absl::StatusOr<CompletionRecord> Complete(absl::string_view assignment_id,
                                            std::optional<double> actual_cost_usd);

  // Slots in use per model name (models of the current list only).
  int64_t InUse(absl::string_view model);
  LedgerTotals Totals();

 private:
  struct Open {
    int model;  // index into names_
    double predicted_cost_usd = 0.0;
    absl::Time expires;
  };

  Ledger(const LedgerOptions& options, const Clock* clock, std::string id_prefix)
      : clock_(clock), id_prefix_(std::move(id_prefix)), options_(options) {}

  void RefillLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ExpireLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool Paced() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return options_.spend_rate_usd_per_second > 0;
  }
  // The index of `name` in names_, added if new.
  int InternLocked(absl::string_view name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The slots held by assignments to `name` (0 for a name never committed to).
  int64_t InUseLocked(absl::string_view name) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The sequence number of an id this ledger issued; nullopt for any other string.
  std::optional<uint64_t> SequenceOf(absl::string_view assignment_id) const;

  const Clock* const clock_;
  const std::string id_prefix_;
  absl::Mutex mu_;
  LedgerOptions options_ ABSL_GUARDED_BY(mu_);
  std::vector<LedgerModel> models_ ABSL_GUARDED_BY(mu_);
  // Every model name ever committed to (a removed model's leases stay open), and its slots in use.
  std::vector<std::string> names_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int> name_index_ ABSL_GUARDED_BY(mu_);
  std::vector<int64_t> in_use_ ABSL_GUARDED_BY(mu_);               // by index into names_
  // Hashes a sequence number so that consecutive numbers get consecutive slots (the table's
  // probe start is the hash without its low 7 bits, which pick the control byte): leases are
  // committed, expire and are mostly completed in sequence order, so each batch touches a few
  // runs of adjacent slots instead of one random cache line per lease.
  struct SequenceHash {
    size_t operator()(uint64_t sequence) const {
      return static_cast<size_t>((sequence << 7) | (sequence & 0x7f));
    }
  };
  absl::flat_hash_map<uint64_t, Open, SequenceHash> open_ ABSL_GUARDED_BY(mu_);  // by sequence
  // (expires, sequence number) of open leases, and of completed ones not yet popped, in ascending
  // order. A commit's leases expire at now + lease_timeout, so they almost always go at the back
  // (O(1)); only a shorter lease_timeout after SetOptions, or a clock that steps back, inserts
  // further in (O(size)).
  std::deque<std::pair<absl::Time, uint64_t>> expiry_queue_ ABSL_GUARDED_BY(mu_);
  // Expired, not yet completed: sequence number -> predicted cost, for late reconciliation.
  absl::flat_hash_map<uint64_t, double, SequenceHash> expired_ ABSL_GUARDED_BY(mu_);
  std::deque<uint64_t> expired_order_ ABSL_GUARDED_BY(mu_);
  double bucket_level_ ABSL_GUARDED_BY(mu_) = 0.0;
  absl::Time last_refill_ ABSL_GUARDED_BY(mu_);
  double reserved_usd_ ABSL_GUARDED_BY(mu_) = 0.0;
  double recorded_usd_ ABSL_GUARDED_BY(mu_) = 0.0;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace router::core

#endif  // ROUTER_CORE_SERVING_LEDGER_H_
