// File: redis_ledger.h
//
// The Ledger (router_core/serving/ledger.h) of a fleet of routerd replicas, kept in Redis: every
// replica of one budget domain shares one spend bucket, one set of slots per self-hosted model, one
// set of leases and one sequence of inline windows, so the fleet as a whole never exceeds the
// pacing budget, a window's cap or a model's slots, and any replica can complete any lease.
//
// Protocol. Each method is one FCALL of a Redis Function (ledger.lua, embedded at build time and
// loaded with FUNCTION LOAD REPLACE at start and again when Redis answers "Function not found"),
// which checks and updates in one atomic step, with the time of the Redis server's clock only and
// money in integer micro-USD: predicted costs are rounded up to the micro-USD, caps and the burst
// down, and each commit may pass a hold's grant, the bucket or a window's cap by at most one
// micro-USD per reservation (that rounding). Every key of a domain D is under the hash tag {rt:D}
// (one Redis Cluster slot). A commit's leases are one record in Redis (they share one expiry), so
// committing and expiring cost O(1) Redis commands and O(leases) Lua work per commit. Each call
// expires a bounded number of overdue holds and commits (64 holds; 16 commits, and no further
// commit once it expired 256 leases); what it leaves stays counted until a later call
// (conservative). Expired leases are remembered for a late Complete up to max_expired_remembered,
// a commit at a time: the oldest commits are forgotten first, up to 32 per call, until at most
// max_expired_remembered leases are remembered. Slots in use are counted for models with a slot
// limit only: InUse of an API model is 0 (the local ledger counts its open leases). A lease's
// predicted cost is at most 1e9 USD (INVALID_ARGUMENT beyond).
//
// Incarnation and loss. The domain's state carries an incarnation id, set once when the state is
// created, and a sequence number bumped by every call. The client remembers both. A call that finds
// no state (Redis restarted empty, flushed or evicted) or another incarnation fails with LOST; the
// client then re-creates the state (or adopts the one another replica re-created) and marks it
// conservative: for `lease_timeout` no self-hosted model has a free slot and the spend bucket
// starts empty, so leases issued before the loss (unknown now) are never overbooked. A Redis whose
// sequence is below what a replica has seen (an older append-only file, a failover that lost
// writes) is a rollback: the Function puts the state in the same conservative period. Assignment
// ids carry the incarnation's first 12 hex digits; a Complete of an id from a lost incarnation is
// NOT_FOUND.
//
// Versions. The keys' layout has a version: each has its own Function library and names
// (router_ledger_v3, rl3_*), and a state created by one version is refused by the others
// (UNAVAILABLE naming both layouts), so a fleet is upgraded across a layout change as a whole.
// Within a layout a build only adds Functions (rl3_complete_many; rl3_commit_packed, a commit's
// reservations in one argument as its record keeps them, where rl3_commit takes them one by one)
// and keeps those of the builds before, and what it adds to the state the builds before neither
// read nor need (a commit's totals after its record's entries, which let a commit that expires
// whole skip reading them), so replicas of two builds share a domain during a rolling upgrade: the
// newer library is a superset, loaded by whichever replica misses a Function.
//
// Recent snapshot. A commit's reply also carries what may be used after it, as Snapshot's and
// StepInline's do; the newest (by sequence number) is kept, for RecentSnapshot (ledger.h) while it
// is at most redis.recent_snapshot_for old, the ledger is not degraded, and the models, the options
// and the incarnation are those it was read under. For redis.refresh_snapshot_for after a batch
// last asked for it, a thread of the ledger keeps it fresh: when no reply has renewed it for half
// of recent_snapshot_for, it reads one (a Snapshot call), so that the first batch after a pause in
// the traffic also decides on it (one round trip) instead of holding first (two). Busy replicas
// make no such call (their commits' replies renew it), and idle ones stop after
// refresh_snapshot_for: at most 2 / recent_snapshot_for calls per second, for that long.
//
// Ids: "<incarnation prefix>-<lease number>.<16 hex random tag>" (the tag from secure_random.h,
// checked by the Function); holds "<incarnation prefix>-h<number>".
//
// Failure. Every call has a connect and a call timeout. A failed call (timeout, refused connection,
// I/O error, an error reply from Redis other than the ledger's own) answers UNAVAILABLE with a
// retry hint and opens a circuit breaker: for `retry_after` every call fails at once without
// touching Redis (the ledger is degraded), then calls go through again. There is no local fallback:
// a degraded ledger refuses (fail closed), unless it has an escrow.
//
// Escrow (optional, off by default: RedisLedgerOptions::escrow). While the ledger is healthy, the
// replica keeps an escrow in Redis: a hold of up to escrow.spend_usd of the paced spend and
// escrow.slots slots of each self-hosted model (topped up from what is free; nothing while the
// domain is guarded), which the fleet counts as taken, and which lasts escrow.validity by Redis'
// clock unless renewed. One FCALL (rl3_escrow), at the replica's next call every
// escrow.renew_every and at once after it decided on its escrow, renews it: reports what the
// escrow spent so far (cumulative: a call whose outcome was not learned is simply followed by
// another), which moves that much from the hold to the bucket, extends it, and tops it up. When a
// call fails UNAVAILABLE (Redis unreachable or stalled, the circuit open), Hold, Commit and
// Complete decide within the escrow alone: holds ("<prefix>-x<n>") and commits take what is left
// of it (its grants less what it spent), leases ("<prefix>-e<n>.<tag>") last at most until the
// escrow ends, and it ends, by the replica's monotonic clock, escrow.skew_margin before
// escrow.validity after the call that last renewed it was sent (Redis ends it escrow.validity after
// it ran that call: the margin is for the two clocks' rates). An escrow that expires in Redis has
// all it held charged (its replica may have spent it); the replica's next report gives back what
// it did not spend, and it draws a new one. So the fleet's spend and slots never exceed the budget
// and the slots: what a replica decides alone was held for it first. StepInline decides within
// the escrow too: its arrivals are counted in inline windows the replica opens and numbers alone
// (above 2^62, from a random point: Redis' numbers never get there, and two replicas' differ),
// whose caps hold as the fleet's do; a commit to such a window is the escrow's even once Redis
// answers again; a commit to one of the fleet's windows is refused (FAILED_PRECONDITION) while the
// escrow decides. Snapshot, InUse and Totals never use the escrow (UNAVAILABLE); an escrow lease's
// Complete is taken by its own replica only, before the lease ends (otherwise NOT_FOUND: its slot
// stays held with the escrow until the lease ends, its predicted cost stands). A lost or replaced
// state voids the escrow, and so does a rollback once a reply shows the domain guarded (Snapshot,
// StepInline, Totals); the conservative period covers the leases issued before.
//
// Completes are grouped: a Complete that finds another Complete's call in flight waits for it,
// then those waiting go in one call (rl3_complete_many, at most 64, in the order they came; each
// answered as if alone), so Redis runs a Function's preamble (clock, incarnation, expiry, refill)
// once per group instead of once per Complete.
//
// Thread-safety: all methods may be called concurrently; each call takes one connection of a small
// pool (at most `max_connections`, more callers wait). The observer is called outside the locks.
//
// Errors: as ledger.h. INVALID_ARGUMENT from Create naming the field (redis.address,
// redis.domain, ...). UNAVAILABLE when Redis cannot be reached or answers an error of its own (the
// message names the address, never the password).
//
// Cost: one round trip per call (a Complete's is shared by its group); the Function's work is
// O(models + reservations + what it expires, bounded): a commit writes one record and one expiry
// entry per 4,095 leases, a Complete reads its lease's record and rewrites the record's
// one-character-per-lease state.
// Figures in bench/README.md, "Shared ledger".

#ifndef ROUTER_SERVER_LEDGER_REDIS_REDIS_LEDGER_H_
#define ROUTER_SERVER_LEDGER_REDIS_REDIS_LEDGER_H_

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "router_core/serving/ledger.h"
#include "server/ledger_redis/redis_connection.h"

namespace router::server {

struct RedisLedgerOptions {
  // Redis server, "HOST:PORT" (a name, an IPv4 address, or "[IPv6]").
  std::string address = "127.0.0.1:6379";
  // Budget domain: replicas with the same domain share one budget and one set of slots.
  // 1-64 characters of [A-Za-z0-9_.-].
  std::string domain = "default";
  // Sent with AUTH on every new connection; empty = no AUTH. Never logged.
  std::string password;
  // Connection attempt and whole-call timeouts, > 0.
  absl::Duration connect_timeout = absl::Milliseconds(200);
  absl::Duration call_timeout = absl::Milliseconds(100);
  // How long a failed call keeps the ledger degraded (every call refused at once), > 0.
  absl::Duration retry_after = absl::Milliseconds(500);
  // Connections kept to Redis, in [1, 256].
  int max_connections = 8;
  // How long what a reply said was free may be decided on without a hold (RecentSnapshot; a batch
  // then takes one round trip instead of two, decided as if it had closed up to this long
  // earlier), >= 0; 0 = every batch holds first.
  absl::Duration recent_snapshot_for = absl::Milliseconds(10);
  // How long after a batch last asked for the recent snapshot the ledger keeps it fresh (see the
  // file comment), >= 0; 0 = never (the first batch after a pause holds first). Only with
  // recent_snapshot_for > 0.
  absl::Duration refresh_snapshot_for = absl::Seconds(1);
  // The escrow (see the file comment); on when spend_usd > 0 or slots > 0.
  struct Escrow {
    // Paced spend drawn, USD; >= 0, finite; 0 = none. Without pacing (rate 0) spend is not
    // limited, in escrow as in Redis.
    double spend_usd = 0.0;
    // Slots drawn per self-hosted model (at most what is free), in [0, 1000000]; 0 = none.
    int64_t slots = 0;
    // How long a drawn escrow lasts, > skew_margin.
    absl::Duration validity = absl::Seconds(30);
    // A healthy replica draws its next escrow this long after the last one, in (0, validity -
    // skew_margin).
    absl::Duration renew_every = absl::Seconds(10);
    // The replica stops deciding on an escrow this long before its validity ends, > 0.
    absl::Duration skew_margin = absl::Seconds(2);
  } escrow;
};
// OK, or INVALID_ARGUMENT naming the field (redis.<field>).
absl::Status ValidateRedisLedgerOptions(const RedisLedgerOptions& options);

// What the ledger reports about its calls (metrics). Implementations must accept concurrent calls.
class RedisLedgerObserver {
 public:
  virtual ~RedisLedgerObserver() = default;
  // One call: its operation (snapshot, hold, commit, release, complete, inline_step, in_use,
  // totals, init, load) and how long it took; `error` is "" on success, else its kind: timeout,
  // connection, circuit_open, fenced, lost_state, rollback, server.
  virtual void OnLedgerCall(absl::string_view op, absl::Duration elapsed,
                            absl::string_view error) = 0;
  // The ledger became degraded (true) or healthy again (false).
  virtual void OnLedgerDegraded(bool degraded) = 0;
};

class RedisLedger final : public core::Ledger {
 public:
  // Validates the options and connects; Redis being unreachable is not an error here (the ledger
  // starts degraded and retries), so a replica starts without Redis. `observer` (may be null)
  // must outlive the ledger.
  static absl::StatusOr<std::unique_ptr<RedisLedger>> Create(
      const RedisLedgerOptions& redis, const core::LedgerOptions& options,
      std::vector<core::LedgerModel> models, RedisLedgerObserver* observer = nullptr);
  ~RedisLedger() override;

  absl::Status SetModels(std::vector<core::LedgerModel> models) override;
  absl::Status SetOptions(const core::LedgerOptions& options) override;
  absl::StatusOr<core::LedgerSnapshot> Snapshot() override;
  absl::StatusOr<core::LedgerHold> Hold(const core::HoldRequest& request) override;
  absl::StatusOr<std::vector<core::Lease>> Commit(
      const core::LedgerHold* hold, absl::Span<const core::Reservation> reservations) override;
  void Release(const core::LedgerHold& hold) override;
  absl::StatusOr<core::CompletionRecord> Complete(absl::string_view assignment_id,
                                                  std::optional<double> actual_cost_usd) override;
  absl::StatusOr<core::InlineStep> StepInline(absl::Span<const core::InlineCommitRequest> commits,
                                              const core::InlineWindowSpec& spec,
                                              int64_t arrivals) override;
  bool remote() const override { return true; }
  // What the newest reply that carried one said may be used (a commit's, a snapshot's or an inline
  // step's), while it is at most redis.recent_snapshot_for old and the ledger is not degraded.
  std::optional<core::LedgerSnapshot> RecentSnapshot() override;
  absl::StatusOr<int64_t> InUse(absl::string_view model) override;
  absl::StatusOr<core::LedgerTotals> Totals() override;

  // Whether the last call failed (the circuit is open or was until the next success).
  bool degraded() const;
  // Whether the domain is in its conservative period after a detected loss, as of the last call.
  bool guarded() const;
  // What the escrow has left (nullopt when there is none, or it has ended): free slots per self-hosted
  // model in the order of the model list (API models: nullopt), and spend. For tests and metrics.
  std::optional<core::LedgerSnapshot> EscrowLeft() const;

 private:
  using Reply = RedisReply;
  struct Escrow;
  struct EscrowWindows;
  struct PendingComplete;

  RedisLedger(const RedisLedgerOptions& redis, RedisLedgerObserver* observer);

  // FCALL `function` with the domain's keys, the common arguments and `args`; handles reloading
  // the Functions and re-creating lost state (one retry each). The reply is an array whose first
  // element is the sequence number.
  absl::StatusOr<std::unique_ptr<Reply>> Call(absl::string_view op, const char* function,
                                              const std::vector<std::string>& args);
  // One attempt; `retry` is set when the caller may retry after a reload or a re-creation.
  absl::StatusOr<std::unique_ptr<Reply>> Attempt(absl::string_view op, const char* function,
                                                 const std::vector<std::string>& args,
                                                 bool& retry);
  // Sends one command on a pooled connection; UNAVAILABLE on any transport failure.
  absl::StatusOr<std::unique_ptr<Reply>> Send(absl::string_view op,
                                              const std::vector<std::string>& argv);
  absl::Status LoadFunctions();
  // Creates the domain's state, or adopts the current one; `known` is the incarnation this client
  // knew ("" = none), which marks the state conservative when it differs.
  absl::Status Init(const std::string& known);
  void Fail(absl::string_view op, absl::Duration elapsed, absl::string_view kind,
            const std::string& why);
  void Succeed(absl::string_view op, absl::Duration elapsed);
  absl::Status Unavailable(const std::string& why) const;
  // The incarnation prefix of ids, and the lease or hold number of `id`; nullopt if not ours.
  std::string Prefix() const;
  std::vector<std::string> ModelNamesLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The snapshot a Function's reply carries from `at` (guarded, allowance, then free slots of each
  // of `models`, the list the call sent), kept as the recent one unless a newer reply's was.
  core::LedgerSnapshot ReadSnapshot(const Reply& reply, size_t at, std::vector<std::string> models)
      ABSL_LOCKS_EXCLUDED(mu_);

  // The thread that keeps the recent snapshot fresh (see the file comment), until stopping_.
  void KeepSnapshotFresh() ABSL_LOCKS_EXCLUDED(mu_);

  // Completes `c` in Redis, in one call with the other Completes waiting (see the file comment).
  void CompleteInGroup(PendingComplete& c) ABSL_LOCKS_EXCLUDED(complete_mu_);
  // One call for `group`; sets each one's result.
  void SendCompletes(absl::Span<PendingComplete* const> group) ABSL_LOCKS_EXCLUDED(complete_mu_);

  // Settles the escrow and draws the next when one is due (see the file comment); a failure
  // keeps the escrow as it was.
  void MaybeRenewEscrow() ABSL_LOCKS_EXCLUDED(mu_, escrow_mu_);
  // Forgets the escrow (its state was lost, replaced or rolled back).
  void VoidEscrow() ABSL_LOCKS_EXCLUDED(escrow_mu_);
  // Records whether the domain is guarded, as a reply said; voids the escrow when it became so.
  void SetGuarded(bool guarded) ABSL_LOCKS_EXCLUDED(mu_, escrow_mu_);
  // Decisions within the escrow while Redis cannot be reached; `unavailable` (the failed call's
  // status) when there is no escrow or it has ended.
  absl::StatusOr<core::LedgerHold> EscrowHold(const core::HoldRequest& request,
                                              const absl::Status& unavailable)
      ABSL_LOCKS_EXCLUDED(mu_, escrow_mu_);
  absl::StatusOr<std::vector<core::Lease>> EscrowCommit(
      const core::LedgerHold* hold, absl::Span<const core::Reservation> reservations,
      const absl::Status& unavailable) ABSL_LOCKS_EXCLUDED(mu_, escrow_mu_);
  // One inline decision of a window the escrow numbered, committed within the escrow.
  absl::StatusOr<core::InlineCommit> EscrowInlineCommit(const core::InlineCommitRequest& c)
      ABSL_LOCKS_EXCLUDED(mu_, escrow_mu_);
  // The rest of a StepInline whose call failed with `unavailable`: `decided` holds the commits
  // decided before the call; the others (the fleet's windows) are refused; arrivals are counted in
  // the escrow's windows. `unavailable` when there is no escrow or it has ended.
  absl::StatusOr<core::InlineStep> EscrowStepInline(
      absl::Span<const core::InlineCommitRequest> commits, const core::InlineWindowSpec& spec,
      int64_t arrivals, std::vector<std::optional<absl::StatusOr<core::InlineCommit>>> decided,
      const absl::Status& unavailable) ABSL_LOCKS_EXCLUDED(mu_, escrow_mu_);
  // A lease of `micros` on `model` from the escrow (which must exist), charged to it.
  core::Lease IssueEscrowLeaseLocked(absl::string_view model, int64_t micros,
                                     const std::string& prefix, absl::Duration lease_timeout,
                                     std::chrono::steady_clock::time_point now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(escrow_mu_);
  // What the escrow (which must exist) has left, for `models`.
  core::LedgerSnapshot EscrowSnapshotLocked(const std::vector<core::LedgerModel>& models,
                                            std::chrono::steady_clock::time_point now) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(escrow_mu_);

  const RedisLedgerOptions redis_;
  RedisLedgerObserver* const observer_;
  const std::vector<std::string> keys_;  // the fixed keys of the domain
  std::unique_ptr<RedisConnectionPool> pool_;

  mutable absl::Mutex mu_;
  core::LedgerOptions options_ ABSL_GUARDED_BY(mu_);
  std::vector<core::LedgerModel> models_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> model_args_ ABSL_GUARDED_BY(mu_);  // count, then (name, slots) pairs
  std::string incarnation_ ABSL_GUARDED_BY(mu_);
  int64_t seen_ ABSL_GUARDED_BY(mu_) = 0;
  bool degraded_ ABSL_GUARDED_BY(mu_) = false;
  bool guarded_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time open_until_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::string last_error_ ABSL_GUARDED_BY(mu_);
  // The newest snapshot a reply carried, the sequence number of that reply and when it came.
  std::optional<core::LedgerSnapshot> recent_ ABSL_GUARDED_BY(mu_);
  int64_t recent_seq_ ABSL_GUARDED_BY(mu_) = 0;
  std::chrono::steady_clock::time_point recent_at_ ABSL_GUARDED_BY(mu_);
  // When a batch last asked for the recent snapshot; a batch that asks wakes the refresher if it
  // is idle (waiting for one to ask).
  std::chrono::steady_clock::time_point recent_wanted_ ABSL_GUARDED_BY(mu_);
  absl::CondVar recent_wanted_cv_;
  bool refresher_idle_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread refresher_;  // runs KeepSnapshotFresh; none when refresh_snapshot_for is 0

  // Completes waiting for a call (oldest first), and whether one is in flight. Never held together
  // with mu_ or escrow_mu_.
  absl::Mutex complete_mu_;
  absl::CondVar complete_done_;
  std::deque<PendingComplete*> completes_ ABSL_GUARDED_BY(complete_mu_);
  bool completing_ ABSL_GUARDED_BY(complete_mu_) = false;

  const bool escrow_on_;
  // Never held together with mu_.
  mutable absl::Mutex escrow_mu_;
  std::unique_ptr<Escrow> escrow_ ABSL_GUARDED_BY(escrow_mu_);  // null = none
  bool renewing_ ABSL_GUARDED_BY(escrow_mu_) = false;
  absl::Time next_escrow_try_ ABSL_GUARDED_BY(escrow_mu_) = absl::InfinitePast();
  uint64_t escrow_ids_ ABSL_GUARDED_BY(escrow_mu_) = 0;  // numbers of local holds and leases
  const std::unique_ptr<EscrowWindows> escrow_windows_ ABSL_PT_GUARDED_BY(escrow_mu_);
};

// Micro-USD of `usd` rounded up (a charge) or down (a limit), absorbing a thousandth of a micro-USD
// of floating-point noise; -1 for +inf.
int64_t MicrosUp(double usd);
int64_t MicrosDown(double usd);

}  // namespace router::server

#endif  // ROUTER_SERVER_LEDGER_REDIS_REDIS_LEDGER_H_
