#include "server/ledger_redis/redis_outcome_log.h"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace router::server {
namespace {

constexpr char kFormatField[] = "v";
constexpr char kFormat[] = "1";

using StreamId = std::pair<uint64_t, uint64_t>;

// A stream id "<ms>-<seq>" as a pair (ordered as Redis orders ids) in `id`; false if malformed.
bool ParseId(absl::string_view text, StreamId& id) {
  const size_t dash = text.find('-');
  if (dash == absl::string_view::npos) return false;
  return absl::SimpleAtoi(text.substr(0, dash), &id.first) &&
         absl::SimpleAtoi(text.substr(dash + 1), &id.second);
}

std::string Number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

// One record's field value, or nullopt when it does not parse.
std::optional<core::OutcomeLogRecord> ParseRecord(absl::string_view field,
                                                  absl::string_view value) {
  core::OutcomeLogRecord r;
  if (field == "o") {
    std::vector<absl::string_view> parts = absl::StrSplit(value, absl::MaxSplits(' ', 3));
    if (parts.size() != 4 || parts[3].empty() || !absl::SimpleAtoi(parts[0], &r.cluster) ||
        r.cluster < 0 || !absl::SimpleAtod(parts[1], &r.prior_quality) ||
        !absl::SimpleAtod(parts[2], &r.score) || !(r.prior_quality >= 0 && r.prior_quality <= 1) ||
        !(r.score >= 0 && r.score <= 1)) {
      return std::nullopt;
    }
    r.kind = core::OutcomeLogRecord::Kind::kOutcome;
    r.model = std::string(parts[3]);
    return r;
  }
  if (field == "r") {
    std::vector<absl::string_view> parts = absl::StrSplit(value, absl::MaxSplits(' ', 1));
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &r.cluster) || r.cluster < -1) {
      return std::nullopt;
    }
    r.kind = core::OutcomeLogRecord::Kind::kReset;
    r.model = std::string(parts[1]);
    return r;
  }
  return std::nullopt;
}

std::string ElementText(const redisReply* e) {
  if (e == nullptr) return "";
  if (e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS) {
    return std::string(e->str, e->len);
  }
  if (e->type == REDIS_REPLY_INTEGER) return absl::StrCat(e->integer);
  return "";
}

}  // namespace

absl::StatusOr<std::unique_ptr<RedisOutcomeLog>> RedisOutcomeLog::Create(
    const RedisLedgerOptions& redis, int64_t max_entries) {
  if (absl::Status s = ValidateRedisLedgerOptions(redis); !s.ok()) return s;
  if (max_entries < 1) {
    return absl::InvalidArgumentError("learning.shared_stream_max_entries: must be >= 1");
  }
  return std::unique_ptr<RedisOutcomeLog>(new RedisOutcomeLog(redis, max_entries));
}

RedisOutcomeLog::RedisOutcomeLog(const RedisLedgerOptions& redis, int64_t max_entries)
    : address_(redis.address),
      key_(absl::StrCat("{rt:", redis.domain, "}:learn")),
      max_entries_(max_entries),
      pool_([&] {
        RedisConnectionOptions o;
        SplitRedisAddress(redis.address, o.host, o.port);
        o.password = redis.password;
        o.connect_timeout = redis.connect_timeout;
        o.call_timeout = redis.call_timeout;
        o.max_connections = std::min(redis.max_connections, 2);
        return o;
      }()) {}

std::string RedisOutcomeLog::Name() const { return absl::StrCat("redis ", address_, " ", key_); }

absl::Status RedisOutcomeLog::Unavailable(absl::string_view why) const {
  return absl::UnavailableError(
      absl::StrCat("shared learning log unavailable (redis ", address_, " ", key_, ": ", why, ")"));
}

absl::StatusOr<std::unique_ptr<RedisReply>> RedisOutcomeLog::Command(
    const std::vector<std::string>& argv) {
  RedisTransportFailure failure;
  absl::StatusOr<std::unique_ptr<RedisReply>> r = pool_.Command(argv, failure);
  if (!r.ok() && failure.stale) r = pool_.Command(argv, failure);  // one retry on a fresh one
  if (r.ok()) return r;
  if (failure.timeout && !failure.connecting) {
    return Unavailable(absl::StrCat(
        "timed out after ", absl::ToInt64Milliseconds(pool_.options().call_timeout), " ms"));
  }
  return Unavailable(failure.why);
}

absl::StatusOr<std::unique_ptr<RedisReply>> RedisOutcomeLog::Send(
    const std::vector<std::string>& argv) {
  absl::StatusOr<std::unique_ptr<RedisReply>> r = Command(argv);
  if (r.ok() && (*r)->IsError()) return Unavailable((*r)->Text());
  return r;
}

absl::Status RedisOutcomeLog::Append(absl::Span<const core::OutcomeLogRecord> records) {
  for (size_t start = 0; start < records.size(); start += kMaxRecordsPerEntry) {
    const size_t end = std::min(records.size(), start + kMaxRecordsPerEntry);
    std::vector<std::string> argv = {"XADD", key_, "MAXLEN", "~", absl::StrCat(max_entries_), "*",
                                     kFormatField, kFormat};
    argv.reserve(argv.size() + 2 * (end - start));
    for (size_t k = start; k < end; ++k) {
      const core::OutcomeLogRecord& r = records[k];
      if (r.kind == core::OutcomeLogRecord::Kind::kOutcome) {
        argv.push_back("o");
        argv.push_back(absl::StrCat(r.cluster, " ", Number(r.prior_quality), " ",
                                    Number(r.score), " ", r.model));
      } else {
        argv.push_back("r");
        argv.push_back(absl::StrCat(r.cluster < 0 ? -1 : r.cluster, " ", r.model));
      }
    }
    absl::StatusOr<std::unique_ptr<RedisReply>> reply = Send(argv);
    if (!reply.ok()) return reply.status();
  }
  return absl::OkStatus();
}

absl::StatusOr<core::OutcomeLogRead> RedisOutcomeLog::Read(absl::string_view after,
                                                           int max_entries) {
  core::OutcomeLogRead out;
  out.position = std::string(after);
  StreamId after_id{0, 0};
  if (!after.empty() && !ParseId(after, after_id)) {
    return absl::InvalidArgumentError(absl::StrCat("position '", after, "' is not a stream id"));
  }
  // Where the stream stands: a missing stream is an empty log.
  absl::StatusOr<std::unique_ptr<RedisReply>> info;
  {
    info = Command({"XINFO", "STREAM", key_});
    if (!info.ok()) return info.status();
    if ((*info)->IsError()) {
      if ((*info)->Text().find("no such key") != std::string::npos) return out;
      return Unavailable((*info)->Text());
    }
  }
  std::string start = "-";
  if (!after.empty()) {
    StreamId last_generated{0, 0}, first{0, 0};
    bool has_last = false, has_first = false;
    const redisReply* m = (*info)->get();
    for (size_t k = 0; k + 1 < (*info)->size(); k += 2) {
      const std::string name = ElementText(m->element[k]);
      const std::string value = ElementText(m->element[k + 1]);
      if (name == "last-generated-id") has_last = ParseId(value, last_generated);
      if (name == "recorded-first-entry-id") has_first = ParseId(value, first);
    }
    if (has_last && last_generated < after_id) {
      out.gap = true;  // the stream was re-created below what this reader applied
    } else {
      // The entry last applied was trimmed: so may be entries after it that it never read.
      if (has_first && first > after_id && first != StreamId{0, 0}) out.gap = true;
      start = absl::StrCat("(", after);
    }
  }
  absl::StatusOr<std::unique_ptr<RedisReply>> range =
      Send({"XRANGE", key_, start, "+", "COUNT", absl::StrCat(std::max(1, max_entries))});
  if (!range.ok()) return range.status();
  const redisReply* entries = (*range)->get();
  out.entries = static_cast<int64_t>((*range)->size());
  for (size_t k = 0; k < (*range)->size(); ++k) {
    const redisReply* e = entries->element[k];
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2) {
      ++out.invalid_entries;
      continue;
    }
    out.position = ElementText(e->element[0]);
    const redisReply* fields = e->element[1];
    if (fields->type != REDIS_REPLY_ARRAY || fields->elements < 2 || fields->elements % 2 != 0 ||
        ElementText(fields->element[0]) != kFormatField ||
        ElementText(fields->element[1]) != kFormat) {
      ++out.invalid_entries;
      continue;
    }
    std::vector<core::OutcomeLogRecord> records;
    bool valid = true;
    for (size_t f = 2; f + 1 < fields->elements && valid; f += 2) {
      std::optional<core::OutcomeLogRecord> r =
          ParseRecord(ElementText(fields->element[f]), ElementText(fields->element[f + 1]));
      if (!r.has_value()) {
        valid = false;
      } else {
        records.push_back(*std::move(r));
      }
    }
    if (!valid) {
      ++out.invalid_entries;
      continue;
    }
    for (core::OutcomeLogRecord& r : records) out.records.push_back(std::move(r));
  }
  return out;
}

}  // namespace router::server
