// File: outcome_learning.h
//
// routerd's learning from outcomes (docs/configuration.md, "Learning from outcomes"): it owns the
// core learner (router_core/learn/outcome_learner.h), turns each Complete's outcome into one of its
// records, keeps its statistics in `learning.snapshot_file` across restarts, and reports to the
// metrics. The decision path reads the learner through RuntimeState::learner (set while
// learning.enabled), and adjusts each query's predictions at intake (query_intake.h).
//
// Outcomes. Record takes the context the assignment id carried (outcome_context.h) and a score in
// [0, 1]. It is learned when learning is on, the context is well formed, its model is in the
// current pool and its cluster is one of the estimator's; otherwise it is counted, by reason, in
// router_learning_outcomes_dropped_total (`learning_off`, `no_context`, `unknown_model`,
// `unknown_cluster`, `invalid`; `memory_full` for what the learner itself drops at
// learning.max_cells) and dropped. It is never an error for the caller. Every outcome with a
// context is also counted in router_outcomes_total{model, kind}, learning on or off.
//
// Snapshot file. A relative learning.snapshot_file is taken in $STATE_DIRECTORY (systemd's
// StateDirectory=) when routerd runs with one, else in the working directory. A JSON object
// {format: "routerd.learning", version: 1, estimator_sha256, learner: OutcomeLearner::Snapshot()},
// written by writing `<file>.tmp`, fsync, rename over `<file>`, and fsync of the directory, so a
// crash leaves the old file or the new one, never a mix. The estimator
// fingerprint ties the statistics to the artifact whose clusters and predictions they correct.
// At start (Create) an existing file is restored. A file that cannot be used (unreadable, not
// JSON, another format or version, written for another estimator artifact, or refused by the
// learner) does not stop routerd: decisions without learning are the trained router's, which is
// what routerd did before learning existed. It is moved aside to `<file>.rejected` (kept for
// inspection, never overwritten by the next snapshot), the reason is logged as an error
// (event `learning_snapshot_rejected`) and learning starts empty; router_learning_snapshot_rejected
// is 1 until the next start. A missing file is a first start (nothing to restore).
//
// Shared learning (a fleet: ledger.backend redis with learning.shared, the default). The replicas
// learn together through the fleet's learning log (router_core/learn/outcome_log.h; in Redis,
// server/ledger_redis/redis_outcome_log.h). A replica never applies its own outcomes directly:
// Record checks the outcome as above and puts it in a bounded in-memory queue
// (learning.shared_queue_max; a full queue drops it, reason `queue_full`), never waiting on Redis.
// Every learning.shared_poll_interval_ms a second background thread (SyncOnce) appends what is
// queued to the log, in order, then reads the log from the position it last applied and applies
// every entry, everyone's, its own included, in the log's order: replicas with the same options
// and the same start replay the same sequence and hold the same statistics. A Reset is an entry of
// the log too, so it resets the fleet (every replica applies it where it stands in the sequence);
// Reset writes it at once and applies the log up to it before answering. Delivery is at least
// once: an append that timed out may still have reached Redis and is written again (an outcome
// then counts twice, in every replica alike). While Redis cannot be
// reached, outcomes wait in the queue, learning pauses, decisions go on with what was learned
// (never an error for the gateway): router_learning_shared_degraded is 1 and a log line says so
// (`learning_shared_unavailable`, at most one a minute), until a round succeeds
// (`learning_shared_recovered`). Entries the log lost before this replica applied them (trimmed
// past learning.shared_stream_max_entries while it was away, Redis emptied) are counted
// (router_learning_shared_gaps_total), logged (`learning_shared_gap`) and skipped. The snapshot
// also records the log's name and the position last applied (`shared_log`: {name, position}), so a
// restart resumes from it; a snapshot without it (a first start, a replica that learned alone,
// another domain) starts reading from the oldest entry the log holds, on top of what it restored.
// With learning.enabled off a replica queues none of its own outcomes (dropped, `learning_off`)
// and still applies the fleet's, so it stays in step. Cold-start marks (SetColdStart) are each
// replica's, as its pool is: give every replica the same pool.
//
// Background. Start() runs one thread that every second publishes the learned quality per model
// (router_learning_quality) and writes the snapshot every snapshot interval when something changed;
// a write that fails is logged and counted (router_learning_snapshot_errors_total) and retried at
// the next interval. Stop() ends the thread; WriteSnapshot() is also called once at shutdown.
//
// Thread-safety: every method may be called from any thread (the learner is thread-safe; the rest
// is atomics, a mutex around the snapshot writer, and, when shared, a mutex around the queue and
// one that serialises the log's rounds). Lock order: write_mu_ or sync_mu_, then apply_mu_; the
// queue's mutex is never held with another.
//
// Cost: Record is the learner's O(1) plus an O(pool) check of the model (when shared: a queue
// push under a mutex instead of the learner's Record); the gauges O(cells) per second; a snapshot
// O(cells); a shared round two log calls per 256 entries read plus one per 512 outcomes written.
//
// Errors: Create returns INVALID_ARGUMENT for bad learner options (naming learning.<option>).
// WriteSnapshot returns the I/O error naming the path. Reset, when shared, UNAVAILABLE when the
// log did not confirm the reset.

#ifndef ROUTER_SERVER_OUTCOME_LEARNING_H_
#define ROUTER_SERVER_OUTCOME_LEARNING_H_

#include <atomic>
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
#include "router_core/learn/outcome_learner.h"
#include "router_core/learn/outcome_log.h"
#include "server/config.h"
#include "server/log_limiter.h"
#include "server/metrics.h"
#include "server/outcome_context.h"

namespace router::server {

struct RuntimeState;

class OutcomeLearning {
 public:
  // `config` gives the learner's options, the snapshot file and the first snapshot interval (and
  // the shared_* keys when `log` is given); `estimator_sha256` identifies the estimator artifact
  // (hex; may be empty when there is no file, then any snapshot's fingerprint is accepted).
  // `log`: the fleet's learning log (shared learning, see above), or null to learn alone.
  // `metrics` (not owned) must outlive this.
  static absl::StatusOr<std::unique_ptr<OutcomeLearning>> Create(
      const LearningConfig& config, std::string estimator_sha256, Metrics* metrics,
      std::unique_ptr<core::OutcomeLog> log = nullptr);
  ~OutcomeLearning();

  const core::OutcomeLearner& learner() const { return *learner_; }

  // One Complete's outcome (see the file comment); `kind` is "success" or "score".
  void Record(const RuntimeState& state, const std::optional<OutcomeContext>& context,
              absl::string_view kind, double score);

  // The learner's cells, only those of `model` and/or `cluster` when given.
  std::vector<core::OutcomeCell> Cells(const std::optional<std::string>& model,
                                       std::optional<int> cluster) const;
  // Marks `model` as a cold start (a model added without validation results), or not. Changing
  // the mark forgets the model's cells (OutcomeLearner::MarkColdStart).
  void SetColdStart(const std::string& model, bool cold);
  // Forgets cells (OutcomeLearner::Reset) and republishes the gauges; returns how many. Shared:
  // writes a reset entry to the log (after the outcomes queued before it) and applies the log up
  // to it; how many cells this replica removed; UNAVAILABLE when the log did not confirm the
  // write (a timed-out write may still have reached it).
  absl::StatusOr<int64_t> Reset(std::optional<std::string> model, std::optional<int> cluster);
  // Outcomes dropped since the start: by routerd (the reasons above) and by the learner.
  int64_t dropped_outcomes() const;

  // Applies the runtime keys of a new configuration (the snapshot interval).
  void SetSnapshotInterval(absl::Duration interval);
  // Writes the snapshot file now (OK without one).
  absl::Status WriteSnapshot();
  // Sets router_learning_quality per model: the weighted mean over the model's cells of what
  // learning predicts for their queries (prior mean + learned shift).
  void PublishGauges();

  // Starts / stops the background threads (see the file comment). Stop is idempotent; when
  // shared, it makes one last round (a failure is logged) so what is queued reaches the log.
  void Start();
  void Stop();

  // Shared learning only: one round of the background thread (write what is queued, then read and
  // apply the log); OK, or the log's error (then the round stopped there; what was not written
  // stays queued). Tests drive it directly instead of starting the thread.
  absl::Status SyncOnce();
  bool shared() const { return log_ != nullptr; }
  // Shared learning: outcomes waiting to be written, and the log position last applied.
  int64_t queued() const;
  std::string position() const;

 private:
  OutcomeLearning(std::unique_ptr<core::OutcomeLearner> learner, std::string snapshot_file,
                  std::string estimator_sha256, absl::Duration interval, Metrics* metrics,
                  std::unique_ptr<core::OutcomeLog> log, const LearningConfig& config);
  // Restores snapshot_file_ if it exists; a file that cannot be used is moved aside (see above).
  void RestoreOrReject();
  void Drop(absl::string_view reason);
  // Counts into the metrics what the learner dropped since the last call.
  void CountLearnerDrops();
  void Run();
  // Shared learning: the background thread's loop, one round, and the round's failure / success.
  void SyncLoop();
  absl::Status SyncLocked(int64_t* removed) ABSL_EXCLUSIVE_LOCKS_REQUIRED(sync_mu_);
  // Writes what is queued to the log, in order.
  absl::Status FlushLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(sync_mu_);
  // Reads the log and applies it; adds the cells removed by resets to *removed (may be null).
  absl::Status ApplyLocked(int64_t* removed) ABSL_EXCLUSIVE_LOCKS_REQUIRED(sync_mu_);
  void SharedFailed(const absl::Status& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(sync_mu_);
  void SharedSucceeded() ABSL_EXCLUSIVE_LOCKS_REQUIRED(sync_mu_);

  const std::unique_ptr<core::OutcomeLearner> learner_;
  const std::string snapshot_file_;
  const std::string estimator_sha256_;
  Metrics* const metrics_;
  std::atomic<int64_t> interval_ms_;
  // Bumped by every change of the statistics; the snapshot is written when it moved.
  std::atomic<uint64_t> version_{0};
  std::atomic<int64_t> dropped_by_routerd_{0};
  std::atomic<int64_t> learner_dropped_seen_{0};

  absl::Mutex write_mu_ ABSL_ACQUIRED_BEFORE(apply_mu_);
  uint64_t written_version_ ABSL_GUARDED_BY(write_mu_) = 0;

  absl::Mutex run_mu_;
  bool stop_ ABSL_GUARDED_BY(run_mu_) = false;
  std::thread thread_;

  // Shared learning (all unused when log_ is null).
  const std::unique_ptr<core::OutcomeLog> log_;
  const absl::Duration poll_interval_;
  const int64_t queue_max_;
  mutable absl::Mutex queue_mu_;
  std::deque<core::OutcomeLogRecord> queue_ ABSL_GUARDED_BY(queue_mu_);
  // Taken from the queue by a round and not yet written (pending_.size(), kept for the bound).
  int64_t in_flight_ ABSL_GUARDED_BY(queue_mu_) = 0;
  // Held for a whole round (network calls included): one round at a time.
  absl::Mutex sync_mu_ ABSL_ACQUIRED_BEFORE(apply_mu_);
  bool shared_degraded_ ABSL_GUARDED_BY(sync_mu_) = false;
  // What rounds took from the queue and have not written yet, oldest first.
  std::vector<core::OutcomeLogRecord> pending_ ABSL_GUARDED_BY(sync_mu_);
  // Held while applying entries and while a snapshot reads the learner with the position.
  mutable absl::Mutex apply_mu_;
  std::string position_ ABSL_GUARDED_BY(apply_mu_);
  LogLimiter unavailable_lines_{1, absl::Minutes(1)};
  std::thread sync_thread_;
};

// The hex SHA-256 of the file at `path` (the estimator artifact's fingerprint); NOT_FOUND or
// UNAVAILABLE naming the path when it cannot be read.
absl::StatusOr<std::string> FileSha256(const std::string& path);

}  // namespace router::server

#endif  // ROUTER_SERVER_OUTCOME_LEARNING_H_
