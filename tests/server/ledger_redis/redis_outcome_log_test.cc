// The fleet's shared learning log (server/ledger_redis/redis_outcome_log.h) against a real
// redis-server (redis_server.h), and routerd's shared learning over it (server/outcome_learning.h)
// without the gRPC layer: records come back exactly and in order, from any replica's log client;
// a reader behind a trimmed or re-created stream is told of the gap; entries of another format are
// skipped; an unreachable Redis is UNAVAILABLE naming the log. Two learning replicas on one log
// hold the same cells, a reset at one resets the other, a restart resumes from the snapshot's
// position without applying anything twice, and a stalled Redis degrades learning and recovers.

#include "server/ledger_redis/redis_outcome_log.h"

#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "router_core/learn/outcome_learner.h"
#include "router_core/learn/outcome_log.h"
#include "server/config.h"
#include "server/metrics.h"
#include "server/outcome_learning.h"
#include "tests/router_core/testing/status_matchers.h"
#include "tests/server/ledger_redis/shared_redis_server.h"

namespace router::server {
namespace {

using ::router::core::OutcomeCell;
using ::router::core::OutcomeLogRead;
using ::router::core::OutcomeLogRecord;
using ::router::testing::AddSharedRedisServer;
using ::router::testing::RedisServer;
using ::router::testing::SharedRedisServer;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

// The redis-server of this test process, started before its first test (each test uses its own
// domain).
::testing::Environment* const kRedisEnvironment =
    AddSharedRedisServer({.append_only = false, .password = ""});

// Timeouts far above any call's time on a loaded machine.
RedisLedgerOptions TestRedis(const std::string& address, const std::string& domain) {
  RedisLedgerOptions r;
  r.address = address;
  r.domain = domain;
  r.connect_timeout = absl::Seconds(5);
  r.call_timeout = absl::Seconds(5);
  return r;
}

std::unique_ptr<RedisOutcomeLog> MakeLog(const std::string& domain, int64_t max_entries = 100000,
                                         const std::string& address = "") {
  absl::StatusOr<std::unique_ptr<RedisOutcomeLog>> log = RedisOutcomeLog::Create(
      TestRedis(address.empty() ? SharedRedisServer().address() : address, domain), max_entries);
  EXPECT_THAT(log, IsOk());
  return log.ok() ? *std::move(log) : nullptr;
}

OutcomeLogRecord Outcome(const std::string& model, int cluster, double prior, double score) {
  OutcomeLogRecord r;
  r.model = model;
  r.cluster = cluster;
  r.prior_quality = prior;
  r.score = score;
  return r;
}

OutcomeLogRecord ResetRecord(const std::string& model, int cluster) {
  OutcomeLogRecord r;
  r.kind = OutcomeLogRecord::Kind::kReset;
  r.model = model;
  r.cluster = cluster;
  return r;
}

// Every record after `after`, read in pages of `page` entries.
std::vector<OutcomeLogRecord> ReadAll(RedisOutcomeLog& log, std::string after, int page = 1000) {
  std::vector<OutcomeLogRecord> all;
  for (int k = 0; k < 10000; ++k) {
    absl::StatusOr<OutcomeLogRead> read = log.Read(after, page);
    EXPECT_THAT(read, IsOk());
    if (!read.ok()) break;
    all.insert(all.end(), read->records.begin(), read->records.end());
    if (read->entries < page) break;
    after = read->position;
  }
  return all;
}

TEST(RedisOutcomeLogTest, RecordsComeBackExactlyInOrderFromEveryClient) {
  std::unique_ptr<RedisOutcomeLog> a = MakeLog("exact");
  std::unique_ptr<RedisOutcomeLog> b = MakeLog("exact");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(a->key(), "{rt:exact}:learn");
  const std::vector<OutcomeLogRecord> first = {
      Outcome("gpt-4", 3, 0.1 + 0.2, 1.0 / 3.0), Outcome("a model with spaces", 0, 0.0, 1.0),
      ResetRecord("", -1), ResetRecord("gpt-4", 7)};
  const std::vector<OutcomeLogRecord> second = {Outcome("m", 12, 0.123456789012345678, 0.0)};
  ASSERT_THAT(a->Append(first), IsOk());
  ASSERT_THAT(b->Append(second), IsOk());
  std::vector<OutcomeLogRecord> want = first;
  want.insert(want.end(), second.begin(), second.end());
  EXPECT_THAT(ReadAll(*a, ""), ElementsAreArray(want));
  EXPECT_THAT(ReadAll(*b, ""), ElementsAreArray(want));

  // From a position: only what came after it.
  absl::StatusOr<OutcomeLogRead> head = b->Read("", 1);
  ASSERT_THAT(head, IsOk());
  EXPECT_EQ(head->entries, 1);
  EXPECT_THAT(head->records, ElementsAreArray(first));
  EXPECT_FALSE(head->gap);
  EXPECT_THAT(ReadAll(*b, head->position), ElementsAreArray(second));
  absl::StatusOr<OutcomeLogRead> end = b->Read(head->position, 10);
  ASSERT_THAT(end, IsOk());
  EXPECT_EQ(end->entries, 1);
  absl::StatusOr<OutcomeLogRead> nothing = b->Read(end->position, 10);
  ASSERT_THAT(nothing, IsOk());
  EXPECT_EQ(nothing->entries, 0);
  EXPECT_EQ(nothing->position, end->position);
}

TEST(RedisOutcomeLogTest, ALargeBatchIsSplitIntoEntriesOfBoundedSize) {
  std::unique_ptr<RedisOutcomeLog> log = MakeLog("large");
  ASSERT_NE(log, nullptr);
  std::vector<OutcomeLogRecord> records;
  for (int k = 0; k < 2 * RedisOutcomeLog::kMaxRecordsPerEntry + 7; ++k) {
    records.push_back(Outcome(absl::StrCat("m", k % 5), k % 11, (k % 100) / 100.0, k % 2));
  }
  ASSERT_THAT(log->Append(records), IsOk());
  absl::StatusOr<std::string> len = SharedRedisServer().Cli("XLEN {rt:large}:learn");
  ASSERT_THAT(len, IsOk());
  EXPECT_EQ(*len, "3\n");
  EXPECT_THAT(ReadAll(*log, "", 2), ElementsAreArray(records));
}

TEST(RedisOutcomeLogTest, AReaderBehindATrimOrARecreatedStreamIsToldOfTheGap) {
  std::unique_ptr<RedisOutcomeLog> log = MakeLog("trim", /*max_entries=*/100);
  ASSERT_NE(log, nullptr);
  ASSERT_THAT(log->Append({Outcome("m", 0, 0.5, 1)}), IsOk());
  absl::StatusOr<OutcomeLogRead> first = log->Read("", 10);
  ASSERT_THAT(first, IsOk());
  ASSERT_EQ(first->entries, 1);
  absl::StatusOr<OutcomeLogRead> caught_up = log->Read(first->position, 10);
  ASSERT_THAT(caught_up, IsOk());
  EXPECT_FALSE(caught_up->gap);
  // One entry per Append: far past the bound, so whole nodes of old entries are trimmed.
  for (int k = 0; k < 1000; ++k) ASSERT_THAT(log->Append({Outcome("m", 0, 0.5, 0)}), IsOk());
  absl::StatusOr<OutcomeLogRead> behind = log->Read(first->position, 10000);
  ASSERT_THAT(behind, IsOk());
  EXPECT_TRUE(behind->gap);
  EXPECT_GE(behind->entries, 100);
  EXPECT_LT(behind->entries, 1000);
  // Caught up again: no gap.
  absl::StatusOr<OutcomeLogRead> after = log->Read(behind->position, 10);
  ASSERT_THAT(after, IsOk());
  EXPECT_FALSE(after->gap);
  EXPECT_EQ(after->entries, 0);

  // A position beyond the stream's last id: the stream was re-created (Redis lost its data);
  // the reader starts again from the oldest entry.
  std::unique_ptr<RedisOutcomeLog> other = MakeLog("recreated");
  ASSERT_NE(other, nullptr);
  ASSERT_THAT(other->Append({Outcome("m", 1, 0.25, 1)}), IsOk());
  absl::StatusOr<OutcomeLogRead> lost = other->Read("99999999999999-0", 10);
  ASSERT_THAT(lost, IsOk());
  EXPECT_TRUE(lost->gap);
  EXPECT_THAT(lost->records, ElementsAreArray({Outcome("m", 1, 0.25, 1)}));
}

TEST(RedisOutcomeLogTest, EntriesOfAnotherFormatAreSkippedAndCounted) {
  std::unique_ptr<RedisOutcomeLog> log = MakeLog("format");
  ASSERT_NE(log, nullptr);
  ASSERT_THAT(log->Append({Outcome("m", 0, 0.5, 1)}), IsOk());
  ASSERT_THAT(SharedRedisServer().Cli("XADD {rt:format}:learn '*' v 2 o x"), IsOk());
  ASSERT_THAT(SharedRedisServer().Cli("XADD {rt:format}:learn '*' v 1 o '0 1.5 1 m'"), IsOk());
  ASSERT_THAT(SharedRedisServer().Cli("XADD {rt:format}:learn '*' v 1 q '0 1 1 m'"), IsOk());
  ASSERT_THAT(log->Append({Outcome("n", 2, 0.5, 0)}), IsOk());
  absl::StatusOr<OutcomeLogRead> read = log->Read("", 100);
  ASSERT_THAT(read, IsOk());
  EXPECT_EQ(read->entries, 5);
  EXPECT_EQ(read->invalid_entries, 3);
  EXPECT_THAT(read->records, ElementsAreArray({Outcome("m", 0, 0.5, 1), Outcome("n", 2, 0.5, 0)}));
}

TEST(RedisOutcomeLogTest, UnreachableRedisIsUnavailableNamingTheLogNotThePassword) {
  RedisLedgerOptions redis = TestRedis("127.0.0.1:1", "gone");
  redis.password = "sesame-do-not-log";
  absl::StatusOr<std::unique_ptr<RedisOutcomeLog>> log = RedisOutcomeLog::Create(redis, 1000);
  ASSERT_THAT(log, IsOk());
  const absl::Status append = (*log)->Append({Outcome("m", 0, 0.5, 1)});
  EXPECT_THAT(append, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("{rt:gone}:learn")));
  EXPECT_THAT(append.message(), ::testing::Not(HasSubstr("sesame")));
  EXPECT_THAT((*log)->Read("", 10).status(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("127.0.0.1:1")));
  EXPECT_THAT(RedisOutcomeLog::Create(TestRedis("127.0.0.1:6379", "x"), 0).status(),
              InvalidNaming("learning.shared_stream_max_entries"));
  EXPECT_THAT(RedisOutcomeLog::Create(TestRedis("nowhere", "x"), 10).status(),
              InvalidNaming("redis.address"));
}

// What routerd's shared learning reports.
class SharedMetrics final : public Metrics {
 public:
  void OnLearningSharedDegraded(bool degraded) override {
    absl::MutexLock lock(&mu_);
    degraded_ = degraded;
  }
  void OnLearningSharedGap() override {
    absl::MutexLock lock(&mu_);
    ++gaps_;
  }
  bool degraded() const {
    absl::MutexLock lock(&mu_);
    return degraded_;
  }
  int gaps() const {
    absl::MutexLock lock(&mu_);
    return gaps_;
  }

 private:
  mutable absl::Mutex mu_;
  bool degraded_ ABSL_GUARDED_BY(mu_) = false;
  int gaps_ ABSL_GUARDED_BY(mu_) = 0;
};

class SharedLearningTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/redis_outcome_log_test.XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    for (const char* name : {"a.json", "a.json.tmp", "a.json.rejected"}) {
      std::remove((dir_ + "/" + name).c_str());
    }
    rmdir(dir_.c_str());
  }
  // A replica's learning on the log of `domain` (at `address`, default the test's Redis), with
  // its snapshot in `snapshot` (a name in the temp dir; "" = none).
  std::unique_ptr<OutcomeLearning> Replica(const std::string& domain, SharedMetrics* metrics,
                                           const std::string& snapshot = "",
                                           const std::string& address = "",
                                           int64_t max_entries = 100000,
                                           absl::Duration timeout = absl::Seconds(5)) {
    LearningConfig config;
    config.enabled = true;
    if (!snapshot.empty()) config.snapshot_file = dir_ + "/" + snapshot;
    RedisLedgerOptions redis =
        TestRedis(address.empty() ? SharedRedisServer().address() : address, domain);
    redis.connect_timeout = timeout;
    redis.call_timeout = timeout;
    absl::StatusOr<std::unique_ptr<RedisOutcomeLog>> log =
        RedisOutcomeLog::Create(redis, max_entries);
    EXPECT_THAT(log, IsOk());
    absl::StatusOr<std::unique_ptr<OutcomeLearning>> learning =
        OutcomeLearning::Create(config, "", metrics, *std::move(log));
    EXPECT_THAT(learning, IsOk());
    return learning.ok() ? *std::move(learning) : nullptr;
  }

  std::string dir_;
};

// The cells' every field, for exact comparison between replicas.
std::vector<std::string> Fingerprint(const std::vector<OutcomeCell>& cells) {
  std::vector<std::string> out;
  for (const OutcomeCell& c : cells) {
    out.push_back(absl::StrCat(c.model, "/", c.cluster, " w=", absl::StrFormat("%.17g", c.weight),
                               " o=", absl::StrFormat("%.17g", c.observed_mean),
                               " p=", absl::StrFormat("%.17g", c.prior_mean),
                               " n=", c.outcomes));
  }
  return out;
}

TEST_F(SharedLearningTest, ReplicasApplyTheSameSequenceAndAResetResetsTheFleet) {
  SharedMetrics ma, mb;
  std::unique_ptr<OutcomeLearning> a = Replica("fleet1", &ma);
  std::unique_ptr<OutcomeLearning> b = Replica("fleet1", &mb);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_TRUE(a->shared());
  std::unique_ptr<RedisOutcomeLog> writer = MakeLog("fleet1");
  // Interleaved writers, as replicas would be; each reader applies all of it in one order.
  for (int k = 0; k < 300; ++k) {
    ASSERT_THAT(writer->Append({Outcome(k % 3 == 0 ? "x" : "y", k % 4, 0.6, (k % 5) != 0)}),
                IsOk());
    if (k % 50 == 0) {
      ASSERT_THAT(a->SyncOnce(), IsOk());
    }
  }
  ASSERT_THAT(a->SyncOnce(), IsOk());
  ASSERT_THAT(b->SyncOnce(), IsOk());
  const std::vector<OutcomeCell> cells = a->Cells(std::nullopt, std::nullopt);
  ASSERT_EQ(cells.size(), 8u);
  int64_t outcomes = 0;
  for (const OutcomeCell& c : cells) outcomes += c.outcomes;
  EXPECT_EQ(outcomes, 300);
  EXPECT_THAT(Fingerprint(b->Cells(std::nullopt, std::nullopt)),
              ElementsAreArray(Fingerprint(cells)));
  EXPECT_EQ(a->position(), b->position());

  // A reset at `a` is an entry of the log: `a` applies it before answering, `b` at its next round.
  absl::StatusOr<int64_t> removed = a->Reset("x", std::nullopt);
  ASSERT_THAT(removed, IsOk());
  EXPECT_EQ(*removed, 4);
  EXPECT_TRUE(a->Cells("x", std::nullopt).empty());
  EXPECT_EQ(b->Cells("x", std::nullopt).size(), 4u);
  ASSERT_THAT(b->SyncOnce(), IsOk());
  EXPECT_TRUE(b->Cells("x", std::nullopt).empty());
  EXPECT_THAT(Fingerprint(b->Cells(std::nullopt, std::nullopt)),
              ElementsAreArray(Fingerprint(a->Cells(std::nullopt, std::nullopt))));
  EXPECT_FALSE(ma.degraded());
  EXPECT_EQ(ma.gaps(), 0);
}

TEST_F(SharedLearningTest, ARestartResumesFromTheSnapshotsPositionAndCountsAGap) {
  SharedMetrics m1;
  std::unique_ptr<RedisOutcomeLog> writer = MakeLog("resume", /*max_entries=*/100);
  for (int k = 0; k < 10; ++k) ASSERT_THAT(writer->Append({Outcome("m", 0, 0.5, 1)}), IsOk());
  std::string position;
  {
    std::unique_ptr<OutcomeLearning> a = Replica("resume", &m1, "a.json", "", 100);
    ASSERT_NE(a, nullptr);
    ASSERT_THAT(a->SyncOnce(), IsOk());
    ASSERT_EQ(a->Cells("m", 0).size(), 1u);
    EXPECT_EQ(a->Cells("m", 0)[0].outcomes, 10);
    ASSERT_THAT(a->WriteSnapshot(), IsOk());
    position = a->position();
  }
  ASSERT_THAT(writer->Append({Outcome("m", 0, 0.5, 0)}), IsOk());
  SharedMetrics m2;
  std::unique_ptr<OutcomeLearning> again = Replica("resume", &m2, "a.json", "", 100);
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->position(), position);
  ASSERT_THAT(again->SyncOnce(), IsOk());
  ASSERT_EQ(again->Cells("m", 0).size(), 1u);
  EXPECT_EQ(again->Cells("m", 0)[0].outcomes, 11);  // the new one only, nothing twice
  EXPECT_EQ(m2.gaps(), 0);
  ASSERT_THAT(again->WriteSnapshot(), IsOk());

  // Away while the log was trimmed past its position: counted, and it goes on.
  for (int k = 0; k < 1000; ++k) ASSERT_THAT(writer->Append({Outcome("m", 1, 0.5, 1)}), IsOk());
  SharedMetrics m3;
  std::unique_ptr<OutcomeLearning> late = Replica("resume", &m3, "a.json", "", 100);
  ASSERT_NE(late, nullptr);
  ASSERT_THAT(late->SyncOnce(), IsOk());
  EXPECT_EQ(m3.gaps(), 1);
  ASSERT_EQ(late->Cells("m", 1).size(), 1u);
  EXPECT_LT(late->Cells("m", 1)[0].outcomes, 1000);
  EXPECT_GE(late->Cells("m", 1)[0].outcomes, 100);
}

TEST_F(SharedLearningTest, AStalledRedisDegradesLearningUntilItAnswersAgain) {
  absl::StatusOr<std::unique_ptr<RedisServer>> own = RedisServer::Start({.append_only = false, .password = ""});
  ASSERT_THAT(own, IsOk());
  SharedMetrics m;
  std::unique_ptr<OutcomeLearning> a =
      Replica("stall", &m, "", (*own)->address(), 100000, absl::Milliseconds(300));
  ASSERT_NE(a, nullptr);
  ASSERT_THAT(a->SyncOnce(), IsOk());
  (*own)->Stall();
  const absl::Status stalled = a->SyncOnce();
  const bool degraded = m.degraded();
  const absl::StatusOr<int64_t> reset = a->Reset(std::nullopt, std::nullopt);
  (*own)->Resume();
  EXPECT_THAT(stalled, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("{rt:stall}:learn")));
  EXPECT_TRUE(degraded);
  EXPECT_THAT(reset.status(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("not confirmed")));
  ASSERT_THAT(a->SyncOnce(), IsOk());
  EXPECT_FALSE(m.degraded());
}

}  // namespace
}  // namespace router::server
