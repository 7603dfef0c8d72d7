// File: outcome_log.h
//
// A log of learning records shared by several learners (the replicas of a fleet), so that they
// learn together: every replica appends its own outcomes and reads everyone's, in the log's one
// order, and applies each record to its OutcomeLearner (ApplyOutcomeLogRecord). Learners that
// start from the same state, with the same options, and apply the same records in the same order
// reach the same state (Record and Reset are deterministic), whichever replica saw the outcome.
// This header is the interface only; the fleet's implementation is a Redis Stream
// (server/ledger_redis/redis_outcome_log.h), tests use an in-memory one.
//
// Positions. Each entry has a position, an opaque string ordered by the log; Read returns the
// entries after a position ("" = from the start). A log that bounds its length drops its oldest
// entries: a reader that was behind them is told (OutcomeLogRead::gap) and goes on from the
// oldest entry kept.
//
// Thread-safety: implementations must accept concurrent calls.
//
// Errors: Append and Read return UNAVAILABLE when the log cannot be reached (nothing appended or
// read), with a message that names where the log is and never a secret.
//
// Cost: the implementation's; ApplyOutcomeLogRecord is the learner's Record (O(1)) or Reset
// (O(cells)).

#ifndef ROUTER_CORE_LEARN_OUTCOME_LOG_H_
#define ROUTER_CORE_LEARN_OUTCOME_LOG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "router_core/learn/outcome_learner.h"

namespace router::core {

// One record: an outcome for OutcomeLearner::Record, or a reset for OutcomeLearner::Reset.
struct OutcomeLogRecord {
  enum class Kind { kOutcome, kReset };
  Kind kind = Kind::kOutcome;
  // Outcome: the model (non-empty). Reset: the model to forget, "" = every model.
  std::string model;
  // Outcome: the query's cluster, >= 0. Reset: the cluster to forget, -1 = every cluster.
  int cluster = 0;
  // Outcome only: the prior's prediction at decision time (a cold-start model's baseline), and
  // the score, both in [0, 1].
  double prior_quality = 0.0;
  double score = 0.0;

  friend bool operator==(const OutcomeLogRecord&, const OutcomeLogRecord&) = default;
};

struct OutcomeLogRead {
  std::vector<OutcomeLogRecord> records;  // in log order
  // The position after the last entry read; the `after` given when nothing was read.
  std::string position;
  // Entries read (fewer than asked: the reader has caught up).
  int64_t entries = 0;
  // Entries after `after` were dropped (trimmed, lost) before this reader read them.
  bool gap = false;
  // Entries read but not understood (another format; skipped).
  int64_t invalid_entries = 0;
};

class OutcomeLog {
 public:
  virtual ~OutcomeLog() = default;
  // Appends `records` (in this order, after every entry already in the log); at least one.
  virtual absl::Status Append(absl::Span<const OutcomeLogRecord> records) = 0;
  // The records of at most `max_entries` (>= 1) entries after position `after`.
  virtual absl::StatusOr<OutcomeLogRead> Read(absl::string_view after, int max_entries) = 0;
  // Where the log is, for logs and snapshots ("redis 127.0.0.1:6379 {rt:D}:learn"); a snapshot's
  // position is only used again with the log of the same name.
  virtual std::string Name() const = 0;
};

// Applies one record to `learner`: Record for an outcome (its error, if the record is out of
// range), Reset for a reset (OK; `removed` gets the number of cells removed, when not null).
absl::Status ApplyOutcomeLogRecord(const OutcomeLogRecord& record, OutcomeLearner& learner,
                                   int64_t* removed = nullptr);

}  // namespace router::core

#endif  // ROUTER_CORE_LEARN_OUTCOME_LOG_H_
