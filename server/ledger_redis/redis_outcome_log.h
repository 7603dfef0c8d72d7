// File: redis_outcome_log.h
//
// The fleet's shared learning log (router_core/learn/outcome_log.h) in Redis: one Redis Stream per
// budget domain, key "{rt:<domain>}:learn" (the domain's hash tag, so it lives in the ledger's
// Redis Cluster slot), that every replica appends its outcomes to and reads everyone's from.
//
// Entries. Append writes one XADD per up to kMaxRecordsPerEntry records, with MAXLEN ~ max_entries
// (Redis trims whole macro nodes, so the stream holds at least max_entries entries and a little
// more). An entry's fields: "v" = "1" (the format), then one field per record, in order:
//   "o" = "<cluster> <prior_quality> <score> <model>"   an outcome (numbers as %.17g: exact)
//   "r" = "<cluster> <model>"                           a reset (cluster -1 / model "" = all)
// An entry of another format, or a record that does not parse, is skipped and counted
// (OutcomeLogRead::invalid_entries).
//
// Reading. Read is XINFO STREAM (where the stream stands) then XRANGE from the position after
// `after` (exclusive). Positions are stream ids ("<ms>-<seq>"). A gap is reported when the entry
// at `after` was trimmed (the stream's recorded-first-entry-id is past it: entries after it may
// have been trimmed unread too; Redis does not say, so this errs on the side of reporting), or
// when the stream was re-created below `after` (Redis restarted empty, flushed, or a failover
// lost writes: its last-generated-id is below `after`); the read then starts from the oldest
// entry kept. A missing stream is an empty log.
//
// Thread-safety: all methods may be called concurrently (a pool of `max_connections`
// connections, redis_connection.h).
//
// Errors: Create: INVALID_ARGUMENT naming the field (redis.<field>, learning.shared_stream_max_
// entries). Append, Read: UNAVAILABLE naming the address and the stream (never the password) when
// Redis cannot be reached, times out or answers an error.
//
// Cost: Append one round trip per kMaxRecordsPerEntry records; Read two round trips, O(entries
// read) Redis work. Figures in bench/README.md, "Learning from outcomes".

#ifndef ROUTER_SERVER_LEDGER_REDIS_REDIS_OUTCOME_LOG_H_
#define ROUTER_SERVER_LEDGER_REDIS_REDIS_OUTCOME_LOG_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "router_core/learn/outcome_log.h"
#include "server/ledger_redis/redis_connection.h"
#include "server/ledger_redis/redis_ledger.h"

namespace router::server {

class RedisOutcomeLog final : public core::OutcomeLog {
 public:
  static constexpr int kMaxRecordsPerEntry = 512;

  // `redis` as the ledger's (address, domain, password, timeouts; max_connections is capped at
  // 2: the log has one background reader-writer and the rare admin reset); `max_entries` >= 1 is
  // the stream's approximate length bound. Does not connect (the first call does).
  static absl::StatusOr<std::unique_ptr<RedisOutcomeLog>> Create(const RedisLedgerOptions& redis,
                                                                 int64_t max_entries);

  absl::Status Append(absl::Span<const core::OutcomeLogRecord> records) override;
  absl::StatusOr<core::OutcomeLogRead> Read(absl::string_view after, int max_entries) override;
  std::string Name() const override;

  const std::string& key() const { return key_; }

 private:
  RedisOutcomeLog(const RedisLedgerOptions& redis, int64_t max_entries);
  absl::Status Unavailable(absl::string_view why) const;
  // Sends one command; UNAVAILABLE on a transport failure (an error reply is a reply).
  absl::StatusOr<std::unique_ptr<RedisReply>> Command(const std::vector<std::string>& argv);
  // Sends one command; UNAVAILABLE on a transport failure or an error reply.
  absl::StatusOr<std::unique_ptr<RedisReply>> Send(const std::vector<std::string>& argv);

  const std::string address_;
  const std::string key_;
  const int64_t max_entries_;
  RedisConnectionPool pool_;
};

}  // namespace router::server

#endif  // ROUTER_SERVER_LEDGER_REDIS_REDIS_OUTCOME_LOG_H_
