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
// Background. Start() runs one thread that every second publishes the learned quality per model
// (router_learning_quality) and writes the snapshot every snapshot interval when something changed;
// a write that fails is logged and counted (router_learning_snapshot_errors_total) and retried at
// the next interval. Stop() ends the thread; WriteSnapshot() is also called once at shutdown.
//
// Thread-safety: every method may be called from any thread (the learner is thread-safe; the rest
// is atomics and a mutex around the snapshot writer).
//
// Cost: Record is the learner's O(1) plus an O(pool) check of the model; the gauges O(cells) per
// second; a snapshot O(cells).
//
// Errors: Create returns INVALID_ARGUMENT for bad learner options (naming learning.<option>).
// WriteSnapshot returns the I/O error naming the path.

#ifndef ROUTER_SERVER_OUTCOME_LEARNING_H_
#define ROUTER_SERVER_OUTCOME_LEARNING_H_

#include <atomic>
#include <cstdint>
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
#include "server/config.h"
#include "server/metrics.h"
#include "server/outcome_context.h"

namespace router::server {

struct RuntimeState;

class OutcomeLearning {
 public:
  // `config` gives the learner's options, the snapshot file and the first snapshot interval;
  // `estimator_sha256` identifies the estimator artifact (hex; may be empty when there is no file,
  // then any snapshot's fingerprint is accepted). `metrics` (not owned) must outlive this.
  static absl::StatusOr<std::unique_ptr<OutcomeLearning>> Create(const LearningConfig& config,
                                                                std::string estimator_sha256,
                                                                Metrics* metrics);
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
  // Forgets cells (OutcomeLearner::Reset) and republishes the gauges; returns how many.
  int64_t Reset(std::optional<std::string> model, std::optional<int> cluster);
  // Outcomes dropped since the start: by routerd (the reasons above) and by the learner.
  int64_t dropped_outcomes() const;

  // Applies the runtime keys of a new configuration (the snapshot interval).
  void SetSnapshotInterval(absl::Duration interval);
  // Writes the snapshot file now (OK without one).
  absl::Status WriteSnapshot();
  // Sets router_learning_quality per model: the weighted mean over the model's cells of what
  // learning predicts for their queries (prior mean + learned shift).
  void PublishGauges();

  // Starts / stops the background thread (see the file comment). Stop is idempotent.
  void Start();
  void Stop();

 private:
  OutcomeLearning(std::unique_ptr<core::OutcomeLearner> learner, std::string snapshot_file,
                  std::string estimator_sha256, absl::Duration interval, Metrics* metrics);
  // Restores snapshot_file_ if it exists; a file that cannot be used is moved aside (see above).
  void RestoreOrReject();
  void Drop(absl::string_view reason);
  // Counts into the metrics what the learner dropped since the last call.
  void CountLearnerDrops();
  void Run();

  const std::unique_ptr<core::OutcomeLearner> learner_;
  const std::string snapshot_file_;
  const std::string estimator_sha256_;
  Metrics* const metrics_;
  std::atomic<int64_t> interval_ms_;
  // Bumped by every change of the statistics; the snapshot is written when it moved.
  std::atomic<uint64_t> version_{0};
  std::atomic<int64_t> dropped_by_routerd_{0};
  std::atomic<int64_t> learner_dropped_seen_{0};

  absl::Mutex write_mu_;
  uint64_t written_version_ ABSL_GUARDED_BY(write_mu_) = 0;

  absl::Mutex run_mu_;
  bool stop_ ABSL_GUARDED_BY(run_mu_) = false;
  std::thread thread_;
};

// The hex SHA-256 of the file at `path` (the estimator artifact's fingerprint); NOT_FOUND or
// UNAVAILABLE naming the path when it cannot be read.
absl::StatusOr<std::string> FileSha256(const std::string& path);

}  // namespace router::server

#endif  // ROUTER_SERVER_OUTCOME_LEARNING_H_
