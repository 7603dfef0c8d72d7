// File: local_ledger.h
//
// The Ledger (ledger.h) of one routerd, in process memory: the default, and every test's. Spend
// and slots are exactly the ledger contract, under one mutex; time comes from the injected clock.
// Its state is lost when the process ends, and each process paces its own budget: a fleet of
// replicas needs a shared ledger.
//
// Ids: an assignment id is the ledger's prefix (the hex microseconds of its creation, so that ids
// of an earlier process, whose gateways may still call Complete, never collide), a sequence number
// and a random 64-bit tag (secure_random.h) that Complete checks.
//
// Thread-safety: all methods may be called concurrently (one mutex). The clock is not owned and
// must outlive the ledger.
//
// Cost: open leases are keyed by their sequence number, so a Commit costs O(reservations)
// hash-map operations on integers (one string hash per reservation, for its model) plus the ids'
// formatting; a Hold or a Commit on a hold O(models held). Leases wait for their expiry in a queue
// ordered by expiry time: a commit appends at the back in O(1) (a shorter lease_timeout after
// SetOptions, or a clock that steps back, inserts in O(open)), expiry pops from the front.
// Completed leases leave the queue lazily; it is rebuilt once it holds more than twice the open
// leases (plus 64), which keeps it O(open) in size and O(1) amortized per Complete. Holds are few
// (one per batch being decided) and are expired by a scan of O(holds).
//
// Errors: as ledger.h; never UNAVAILABLE.

#ifndef ROUTER_CORE_SERVING_LOCAL_LEDGER_H_
#define ROUTER_CORE_SERVING_LOCAL_LEDGER_H_

#include <cstdint>
#include <deque>
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
#include "router_core/serving/ledger.h"

namespace router::core {

class LocalLedger final : public Ledger {
 public:
  static absl::StatusOr<std::unique_ptr<LocalLedger>> Create(
      const LedgerOptions& options, std::vector<LedgerModel> models,
      const Clock* clock = &Clock::Real());

  absl::Status SetModels(std::vector<LedgerModel> models) override;
  absl::Status SetOptions(const LedgerOptions& options) override;
  absl::StatusOr<LedgerSnapshot> Snapshot() override;
  absl::StatusOr<LedgerHold> Hold(const HoldRequest& request) override;
  absl::StatusOr<std::vector<Lease>> Commit(const LedgerHold* hold,
                                            absl::Span<const Reservation> reservations) override;
  void Release(const LedgerHold& hold) override;
  absl::StatusOr<CompletionRecord> Complete(absl::string_view assignment_id,
                                            std::optional<double> actual_cost_usd) override;
  absl::StatusOr<InlineStep> StepInline(absl::Span<const InlineCommitRequest> commits,
                                        const InlineWindowSpec& spec, int64_t arrivals) override;
  absl::StatusOr<int64_t> InUse(absl::string_view model) override;
  absl::StatusOr<LedgerTotals> Totals() override;

 private:
  struct Open {
    int model;  // index into names_
    double predicted_cost_usd = 0.0;
    absl::Time expires;
    uint64_t tag;  // the random part of its id
  };
  struct Expired {
    double predicted_cost_usd = 0.0;
    uint64_t tag;
  };
  struct Held {
    std::vector<std::pair<int, int64_t>> slots;  // (index into names_, slots held)
    double spend_usd = 0.0;                      // held from the paced bucket; 0 without pacing
    absl::Time expires;
  };

  // The current inline window (ledger.h).
  struct Window {
    uint64_t number = 0;  // 0 = none opened yet
    absl::Time opened;
    int64_t arrivals = 0;
    absl::Duration duration;
    int64_t seen = 0;
  };

  LocalLedger(const LedgerOptions& options, const Clock* clock, std::string id_prefix)
      : clock_(clock), id_prefix_(std::move(id_prefix)), options_(options) {}

  // Commit's checks and leases once the hold (if any) is given back: `held` is what it held.
  absl::StatusOr<std::vector<Lease>> CommitLocked(absl::Time now, const std::optional<Held>& held,
                                                  absl::Span<const Reservation> reservations)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // One commit of StepInline.
  absl::StatusOr<InlineCommit> CommitInlineLocked(absl::Time now,
                                                  const InlineCommitRequest& request)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The snapshot of what may be used now (after AdvanceLocked).
  LedgerSnapshot SnapshotLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Refills the bucket and expires overdue leases and holds.
  void AdvanceLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RefillLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ExpireLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool Paced() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return options_.spend_rate_usd_per_second > 0;
  }
  // What the bucket allows beyond what holds hold; +inf without pacing.
  double AllowanceLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The index of `name` in names_, added if new.
  int InternLocked(absl::string_view name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The current list's entry for `name`, or null.
  const LedgerModel* FindModelLocked(absl::string_view name) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Slots of `model` neither in use nor held (0 for a model not in the current list); nullopt for
  // an unlimited model.
  std::optional<int64_t> FreeLocked(const LedgerModel& model) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Gives back what a hold holds and forgets it.
  void DropHoldLocked(absl::flat_hash_map<uint64_t, Held>::iterator it)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The sequence number and tag of an id this ledger issued; nullopt for any other string.
  std::optional<std::pair<uint64_t, uint64_t>> ParseAssignmentId(absl::string_view id) const;
  std::optional<uint64_t> ParseHoldId(absl::string_view id) const;

  const Clock* const clock_;
  const std::string id_prefix_;
  absl::Mutex mu_;
  LedgerOptions options_ ABSL_GUARDED_BY(mu_);
  std::vector<LedgerModel> models_ ABSL_GUARDED_BY(mu_);
  // Every model name ever committed to or held (a removed model's leases stay open), and its
  // slots in use and held.
  std::vector<std::string> names_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int> name_index_ ABSL_GUARDED_BY(mu_);
  std::vector<int64_t> in_use_ ABSL_GUARDED_BY(mu_);  // by index into names_
  std::vector<int64_t> held_ ABSL_GUARDED_BY(mu_);    // by index into names_
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
  // Expired, not yet completed, for late reconciliation.
  absl::flat_hash_map<uint64_t, Expired, SequenceHash> expired_ ABSL_GUARDED_BY(mu_);
  std::deque<uint64_t> expired_order_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, Held> holds_ ABSL_GUARDED_BY(mu_);  // by hold number
  double held_spend_usd_ ABSL_GUARDED_BY(mu_) = 0.0;
  double bucket_level_ ABSL_GUARDED_BY(mu_) = 0.0;
  absl::Time last_refill_ ABSL_GUARDED_BY(mu_);
  double reserved_usd_ ABSL_GUARDED_BY(mu_) = 0.0;
  double recorded_usd_ ABSL_GUARDED_BY(mu_) = 0.0;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_hold_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t expired_count_ ABSL_GUARDED_BY(mu_) = 0;
  Window window_ ABSL_GUARDED_BY(mu_);
  // (window number, spend) of the last kInlineWindowsKept windows, oldest first.
  std::deque<std::pair<uint64_t, double>> window_spend_ ABSL_GUARDED_BY(mu_);
};

}  // namespace router::core

#endif  // ROUTER_CORE_SERVING_LOCAL_LEDGER_H_
