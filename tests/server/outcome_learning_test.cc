// End-to-end tests of learning from outcomes in routerd (server/outcome_learning.h), in process
// over loopback: failures reported for one model lower its learned quality and move traffic away,
// a reset brings it back, the statistics survive a restart through the snapshot file (and an
// unusable file is set aside), Complete's score is validated and wins over success, outcomes that
// cannot be learned from are counted and dropped without failing the Complete, learning off leaves
// decisions alone, and exploration never breaks a budget cap or a slot limit.

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "router/v1/router.grpc.pb.h"
#include "router_core/learn/outcome_learner.h"
#include "server/outcome_context.h"
#include "tests/server/routerd_fixture.h"
#include "tests/server/testing/metrics_scrape.h"

namespace router::server {
namespace {

using ::testing::HasSubstr;
using testing::HttpGet;

constexpr char kLocal[] = "mistralai/mixtral-8x7b-chat";
constexpr int kLocalSlots = 6;
constexpr char kText[] = "Which gas do plants absorb from the air?\nA) oxygen\nB) carbon dioxide";

class OutcomeLearningTest : public testing::RouterdFixture {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/outcome_learning_test.XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
    snapshot_ = dir_ + "/learning.json";
  }
  void TearDown() override {
    RouterdFixture::TearDown();
    routerd_.reset();
    for (const char* name : {"learning.json", "learning.json.tmp", "learning.json.rejected"}) {
      std::remove((dir_ + "/" + name).c_str());
    }
    rmdir(dir_.c_str());
  }

  // Inline routing (decided at once), no budget cap: each query goes to its best predicted model.
  // `learning` and `budget` are their sections' bodies; `extra` more sections.
  std::string Yaml(const std::string& learning, const std::string& extra = "",
                   const std::string& budget = "lease_timeout_s: 600") const {
    return absl::StrCat(R"(
listen: 127.0.0.1:0
metrics_listen: 127.0.0.1:0
admin: {allow_unauthenticated: true}
shutdown: {grace_s: 5, drain_s: 0}
routing: {default_mode: inline}
batching: {max_batch_size: 16, max_batch_delay_ms: 2, max_queued: 100000}
budget: {)",
                        budget, R"(}
models:
  - {name: "gpt-4-1106-preview"}
  - {name: "gpt-3.5-turbo-1106"}
  - {name: "claude-instant-v1"}
  - {name: ")",
                        kLocal, R"(", instances: 2, slots_per_instance: 3}
learning: {)",
                        learning, "}\n", extra);
  }
  // Learning on, no exploration (decisions are deterministic), with the snapshot file.
  std::string LearningYaml(const std::string& more = "") const {
    return Yaml(absl::StrCat("enabled: true, exploration: 0, snapshot_file: '", snapshot_, "'",
                             more.empty() ? "" : ", ", more));
  }

  void Start(const std::string& yaml) {
    StartRouterd(yaml);
    if (HasFatalFailure()) return;
    stub_ = v1::Router::NewStub(channel_);
    admin_ = v1::RouterAdmin::NewStub(channel_);
  }
  void Restart(const std::string& yaml) {
    routerd_->Shutdown(absl::ZeroDuration(), absl::Seconds(5));
    routerd_.reset();
    Start(yaml);
  }

  v1::Assignment Route(const std::vector<std::string>& allowed = {},
                       const std::string& text = kText) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    v1::RouteRequest request;
    request.mutable_query()->set_id(absl::StrCat("q", next_id_++));
    request.mutable_query()->set_text(text);
    for (const std::string& m : allowed) request.mutable_query()->add_allowed_models(m);
    v1::RouteResponse response;
    const grpc::Status s = stub_->Route(&ctx, request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response.assignment();
  }

  grpc::Status Complete(const std::string& id, std::optional<bool> success,
                        std::optional<double> score = std::nullopt) {
    grpc::ClientContext ctx;
    v1::CompleteRequest request;
    request.set_assignment_id(id);
    if (success.has_value()) request.set_success(*success);
    if (score.has_value()) request.set_score(*score);
    v1::CompleteResponse response;
    return stub_->Complete(&ctx, request, &response);
  }

  v1::GetLearnedStatsResponse Stats(std::optional<std::string> model = std::nullopt) {
    grpc::ClientContext ctx;
    v1::GetLearnedStatsRequest request;
    if (model.has_value()) request.set_model(*model);
    v1::GetLearnedStatsResponse response;
    const grpc::Status s = admin_->GetLearnedStats(&ctx, request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response;
  }

  grpc::Status Reset(std::optional<std::string> model, std::optional<int> cluster,
                     int64_t* removed) {
    grpc::ClientContext ctx;
    v1::ResetLearnedStatsRequest request;
    if (model.has_value()) request.set_model(*model);
    if (cluster.has_value()) request.set_cluster(*cluster);
    v1::ResetLearnedStatsResponse response;
    const grpc::Status s = admin_->ResetLearnedStats(&ctx, request, &response);
    *removed = response.cells_removed();
    return s;
  }

  grpc::Status UpdateConfig(const std::string& yaml) {
    grpc::ClientContext ctx;
    v1::UpdateConfigRequest update;
    update.set_yaml(yaml);
    v1::UpdateConfigResponse response;
    return admin_->UpdateConfig(&ctx, update, &response);
  }

  std::string Metrics() { return HttpGet(routerd_->metrics_port(), "/metrics"); }
  double Dropped(const std::string& reason) {
    return MetricValue(Metrics(),
                       absl::StrCat("router_learning_outcomes_dropped_total{reason=\"", reason,
                                    "\"}"));
  }

  // Reports failures of the best model for kText until routing moves away from it; returns how
  // many it took (at most `limit`).
  int FailUntilTrafficMoves(const std::string& model, int limit) {
    for (int n = 0; n < limit; ++n) {
      const v1::Assignment a = Route();
      if (a.model() != model) return n;
      EXPECT_TRUE(Complete(a.assignment_id(), false).ok());
    }
    return limit;
  }

  std::string dir_;
  std::string snapshot_;
  int next_id_ = 0;
  std::unique_ptr<v1::Router::Stub> stub_;
  std::unique_ptr<v1::RouterAdmin::Stub> admin_;
};

TEST_F(OutcomeLearningTest, FailuresOfOneModelMoveTrafficAwayAndAResetBringsItBack) {
  Start(LearningYaml());
  ASSERT_FALSE(HasFatalFailure());
  const v1::Assignment first = Route();
  const std::string best = first.model();
  const double prior = first.predicted_quality();
  const ParsedAssignmentId parsed = ParseAssignmentId(first.assignment_id());
  ASSERT_TRUE(parsed.context.has_value()) << first.assignment_id();
  EXPECT_EQ(parsed.context->model, best);
  EXPECT_NEAR(parsed.context->prior_quality, prior, 1e-6);
  ASSERT_TRUE(Complete(first.assignment_id(), false).ok());
  // Same query, same prediction: the learned quality alone moves the decision.
  const int failures = FailUntilTrafficMoves(best, 200) + 1;
  ASSERT_LT(failures, 200) << "traffic never moved away from " << best;
  RecordProperty("failures_until_traffic_moved", failures);

  const v1::GetLearnedStatsResponse stats = Stats(best);
  EXPECT_TRUE(stats.enabled());
  ASSERT_EQ(stats.cells_size(), 1);
  const v1::LearnedCell& cell = stats.cells(0);
  EXPECT_EQ(cell.model(), best);
  EXPECT_EQ(cell.cluster(), parsed.context->cluster);
  EXPECT_EQ(cell.outcomes(), failures);
  EXPECT_EQ(cell.observed_mean(), 0.0);
  EXPECT_NEAR(cell.prior_mean(), prior, 1e-6);
  EXPECT_LT(cell.learned_shift(), 0.0);
  // The model itself, when it is the only one allowed, is now predicted lower.
  const v1::Assignment forced = Route({best});
  EXPECT_LT(forced.predicted_quality(), prior);
  EXPECT_NEAR(ParseAssignmentId(forced.assignment_id()).context->prior_quality, prior, 1e-6);

  const std::string metrics = Metrics();
  EXPECT_EQ(MetricValue(metrics, absl::StrCat("router_outcomes_total{kind=\"success\",model=\"",
                                              best, "\"}")),
            failures);
  // The gauge is refreshed every second.
  double learned = -1;
  for (int polls = 0; polls < 100; ++polls) {
    learned = MetricValue(Metrics(), absl::StrCat("router_learning_quality{model=\"", best, "\"}"));
    if (learned >= 0 && learned < prior) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_GE(learned, 0.0);
  EXPECT_LT(learned, prior);

  int64_t removed = 0;
  ASSERT_TRUE(Reset(best, std::nullopt, &removed).ok());
  EXPECT_EQ(removed, 1);
  EXPECT_EQ(Stats(best).cells_size(), 0);
  const v1::Assignment again = Route();
  EXPECT_EQ(again.model(), best);
  EXPECT_DOUBLE_EQ(again.predicted_quality(), prior);
  // The reset removed the gauge's series.
  EXPECT_EQ(MetricValue(Metrics(), absl::StrCat("router_learning_quality{model=\"", best, "\"}")),
            -1);
  // Filters are checked.
  EXPECT_EQ(Reset(std::nullopt, -1, &removed).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(OutcomeLearningTest, TheStatisticsSurviveARestartAndAnUnusableSnapshotIsSetAside) {
  Start(LearningYaml());
  ASSERT_FALSE(HasFatalFailure());
  const v1::Assignment first = Route();
  const std::string best = first.model();
  for (int k = 0; k < 5; ++k) {
    ASSERT_TRUE(Complete(Route({best}).assignment_id(), false).ok());
  }
  const v1::GetLearnedStatsResponse before = Stats();
  ASSERT_EQ(before.cells_size(), 1);
  const double lowered = Route({best}).predicted_quality();
  EXPECT_LT(lowered, first.predicted_quality());

  Restart(LearningYaml());
  ASSERT_FALSE(HasFatalFailure());
  // Written atomically at shutdown: the file, no temporary left.
  std::ifstream in(snapshot_);
  ASSERT_TRUE(in);
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json doc = nlohmann::json::parse(text.str());
  EXPECT_EQ(doc["format"], "routerd.learning");
  EXPECT_EQ(doc["estimator_sha256"].get<std::string>().size(), 64u);
  EXPECT_NE(access((snapshot_ + ".tmp").c_str(), F_OK), 0);
  const v1::GetLearnedStatsResponse after = Stats();
  ASSERT_EQ(after.cells_size(), 1);
  EXPECT_EQ(after.cells(0).model(), before.cells(0).model());
  EXPECT_EQ(after.cells(0).cluster(), before.cells(0).cluster());
  EXPECT_EQ(after.cells(0).outcomes(), 5);
  EXPECT_DOUBLE_EQ(after.cells(0).weight(), before.cells(0).weight());
  EXPECT_DOUBLE_EQ(Route({best}).predicted_quality(), lowered);
  EXPECT_EQ(MetricValue(Metrics(), "router_learning_snapshot_rejected"), 0);

  // A truncated file: routerd starts, learning starts empty, the file is kept aside.
  routerd_->Shutdown(absl::ZeroDuration(), absl::Seconds(5));
  routerd_.reset();
  const std::string whole = [&] {
    std::ifstream f(snapshot_);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
  }();
  {
    std::ofstream out(snapshot_, std::ios::trunc);
    out << whole.substr(0, whole.size() / 2);
  }
  Start(LearningYaml());
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(Stats().cells_size(), 0);
  EXPECT_EQ(MetricValue(Metrics(), "router_learning_snapshot_rejected"), 1);
  EXPECT_EQ(access((snapshot_ + ".rejected").c_str(), F_OK), 0);
  EXPECT_DOUBLE_EQ(Route({best}).predicted_quality(), first.predicted_quality());
}

TEST_F(OutcomeLearningTest, ScoreIsValidatedAndWinsOverSuccess) {
  Start(LearningYaml());
  ASSERT_FALSE(HasFatalFailure());
  const v1::Assignment a = Route();
  for (const double bad : {1.5, -0.1, std::numeric_limits<double>::quiet_NaN()}) {
    const grpc::Status s = Complete(a.assignment_id(), true, bad);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad;
    EXPECT_THAT(s.error_message(), HasSubstr("score")) << bad;
  }
  // Nothing was completed by the refused calls.
  EXPECT_EQ(Stats().cells_size(), 0);
  ASSERT_TRUE(Complete(a.assignment_id(), /*success=*/true, /*score=*/0.25).ok());
  const v1::GetLearnedStatsResponse stats = Stats();
  ASSERT_EQ(stats.cells_size(), 1);
  EXPECT_EQ(stats.cells(0).outcomes(), 1);
  EXPECT_DOUBLE_EQ(stats.cells(0).observed_mean(), 0.25);
  EXPECT_EQ(MetricValue(Metrics(), absl::StrCat("router_outcomes_total{kind=\"score\",model=\"",
                                                a.model(), "\"}")),
            1);
  // Once only: a second Complete of the id is NOT_FOUND and learns nothing.
  EXPECT_EQ(Complete(a.assignment_id(), false).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Stats().cells(0).outcomes(), 1);
  // No outcome at all: completed, nothing learned.
  ASSERT_TRUE(Complete(Route().assignment_id(), std::nullopt).ok());
  EXPECT_EQ(Stats().cells(0).outcomes(), 1);
}

TEST_F(OutcomeLearningTest, OutcomesThatCannotBeLearnedFromAreCountedAndDroppedNeverRefused) {
  Start(LearningYaml());
  ASSERT_FALSE(HasFatalFailure());
  // A model that left the pool.
  const v1::Assignment gone = Route({"claude-instant-v1"});
  {
    grpc::ClientContext ctx;
    v1::RemoveModelRequest remove;
    remove.set_name("claude-instant-v1");
    v1::RemoveModelResponse removed;
    ASSERT_TRUE(admin_->RemoveModel(&ctx, remove, &removed).ok());
  }
  EXPECT_TRUE(Complete(gone.assignment_id(), true).ok());
  EXPECT_EQ(Dropped("unknown_model"), 1);

  // An id without its context, and one whose cluster the estimator does not have.
  const v1::Assignment bare = Route();
  const std::string ledger_id(ParseAssignmentId(bare.assignment_id()).ledger_id);
  EXPECT_TRUE(Complete(ledger_id, true).ok());
  EXPECT_EQ(Dropped("no_context"), 1);
  const v1::Assignment far = Route();
  OutcomeContext context = *ParseAssignmentId(far.assignment_id()).context;
  context.cluster = 999999;
  EXPECT_TRUE(
      Complete(PublicAssignmentId(ParseAssignmentId(far.assignment_id()).ledger_id, context), true)
          .ok());
  EXPECT_EQ(Dropped("unknown_cluster"), 1);
  const v1::GetLearnedStatsResponse stats = Stats();
  EXPECT_EQ(stats.cells_size(), 0);
  EXPECT_EQ(stats.dropped_outcomes(), 3);

  // Learning off: outcomes are counted and dropped, decisions use the estimator's predictions
  // (what was learned is kept, and used again once learning is back on).
  const v1::Assignment a = Route({"gpt-4-1106-preview"});
  for (int k = 0; k < 5; ++k) {
    ASSERT_TRUE(Complete(Route({"gpt-4-1106-preview"}).assignment_id(), false).ok());
  }
  const double learned = Route({"gpt-4-1106-preview"}).predicted_quality();
  ASSERT_LT(learned, a.predicted_quality());
  ASSERT_TRUE(UpdateConfig(Yaml(absl::StrCat("enabled: false, exploration: 0, snapshot_file: '",
                                             snapshot_, "'")))
                  .ok());
  EXPECT_EQ(MetricValue(Metrics(), "router_learning_enabled"), 0);
  const v1::Assignment off = Route({"gpt-4-1106-preview"});
  EXPECT_DOUBLE_EQ(off.predicted_quality(), a.predicted_quality());
  EXPECT_TRUE(Complete(off.assignment_id(), false).ok());
  EXPECT_EQ(Dropped("learning_off"), 1);
  EXPECT_FALSE(Stats().enabled());
  EXPECT_EQ(Stats().cells(0).outcomes(), 5);
  ASSERT_TRUE(UpdateConfig(LearningYaml()).ok());
  EXPECT_EQ(MetricValue(Metrics(), "router_learning_enabled"), 1);
  EXPECT_DOUBLE_EQ(Route({"gpt-4-1106-preview"}).predicted_quality(), learned);
}

TEST_F(OutcomeLearningTest, LearningIsOffByDefaultAndThenLeavesDecisionsAlone) {
  Start(Yaml("snapshot_file: ''"));
  ASSERT_FALSE(HasFatalFailure());
  const v1::Assignment a = Route();
  for (int k = 0; k < 10; ++k) ASSERT_TRUE(Complete(Route().assignment_id(), false).ok());
  const v1::Assignment b = Route();
  EXPECT_EQ(b.model(), a.model());
  EXPECT_DOUBLE_EQ(b.predicted_quality(), a.predicted_quality());
  EXPECT_EQ(Dropped("learning_off"), 10);
  EXPECT_FALSE(Stats().enabled());
  EXPECT_EQ(Stats().cells_size(), 0);
  EXPECT_EQ(MetricValue(Metrics(), "router_learning_explored_decisions_total"), 0);
}

// A model without validation results joins as a cold start while learning is on: predicted at the
// cold-start prior, then from its own outcomes.
TEST_F(OutcomeLearningTest, AModelWithoutValidationResultsJoinsAsAColdStartOnlyWhileLearning) {
  // LearningYaml's startup-only keys, learning off.
  Start(Yaml(absl::StrCat("enabled: false, exploration: 0, snapshot_file: '", snapshot_, "'")));
  ASSERT_FALSE(HasFatalFailure());
  v1::UpsertModelRequest upsert;
  upsert.mutable_deployment()->set_name("newcomer");
  upsert.set_mean_cost_usd(0.0001);
  {
    grpc::ClientContext ctx;
    v1::UpsertModelResponse response;
    const grpc::Status s = admin_->UpsertModel(&ctx, upsert, &response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("validation"));
  }
  ASSERT_TRUE(UpdateConfig(LearningYaml()).ok());
  {
    grpc::ClientContext ctx;
    v1::UpsertModelResponse response;
    const grpc::Status s = admin_->UpsertModel(&ctx, upsert, &response);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_TRUE(response.model().in_estimator());
  }
  const double cold_start_quality = core::OutcomeLearnerOptions().cold_start_quality;
  const v1::Assignment first = Route({"newcomer"});
  EXPECT_EQ(first.model(), "newcomer");
  EXPECT_DOUBLE_EQ(first.predicted_quality(), cold_start_quality);
  EXPECT_LT(first.predicted_quality_lower(), cold_start_quality);
  ASSERT_TRUE(Complete(first.assignment_id(), true).ok());
  for (int k = 0; k < 4; ++k) ASSERT_TRUE(Complete(Route({"newcomer"}).assignment_id(), true).ok());
  const v1::Assignment learned = Route({"newcomer"});
  EXPECT_GT(learned.predicted_quality(), cold_start_quality);
  EXPECT_GT(learned.predicted_quality_lower(), first.predicted_quality_lower());
  const v1::GetLearnedStatsResponse stats = Stats("newcomer");
  ASSERT_EQ(stats.cells_size(), 1);
  EXPECT_EQ(stats.cells(0).outcomes(), 5);
  // Its outcomes were recorded against the query's baseline (the other models' mean prediction),
  // which its assignments carried.
  const double baseline = ParseAssignmentId(first.assignment_id()).context->prior_quality;
  EXPECT_NEAR(stats.cells(0).prior_mean(), baseline, 1e-6);
  // The baseline is the query's, not a constant: another query (another cluster) carries another.
  const v1::Assignment other =
      Route({"newcomer"}, "Prove that the square root of two is irrational.");
  EXPECT_NE(ParseAssignmentId(other.assignment_id()).context->prior_quality, baseline);
}

// Every query explored (its qualities sampled from the posterior), under a tight budget cap and a
// self-hosted model's slots, in batch and inline mode, without a single Complete: every batch
// within its cap, every inline window within its cap, never more assignments of the self-hosted
// model than its slots.
TEST_F(OutcomeLearningTest, ExplorationNeverBreaksABudgetCapOrASlotLimit) {
  constexpr double kCap = 0.002;
  Start(Yaml("enabled: true, exploration: 1",
             "policy: {name: batch}\ninline: {window_arrivals: 20}\n",
             absl::StrCat("avg_cost_cap_usd: ", kCap, ", lease_timeout_s: 600")));
  ASSERT_FALSE(HasFatalFailure());
  const char* texts[] = {kText, "Write a python function that returns the n-th Fibonacci number.",
                         "Prove that the square root of two is irrational.",
                         "The trophy didn't fit into the suitcase because it was too big."};
  int routed = 0, local = 0;
  std::map<std::string, std::vector<v1::Assignment>> by_batch;
  for (int round = 0; round < 10; ++round) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    v1::RouteBatchRequest request;
    for (int k = 0; k < 16; ++k) {
      v1::Query* q = request.add_queries();
      q->set_id(absl::StrCat("b", round, "-", k));
      q->set_text(texts[k % 4]);
    }
    v1::RouteBatchResponse response;
    ASSERT_TRUE(stub_->RouteBatch(&ctx, request, &response).ok());
    for (const v1::RouteBatchItem& item : response.items()) {
      if (!item.has_assignment()) continue;
      ++routed;
      local += item.assignment().model() == kLocal;
      by_batch[item.assignment().decision().batch_id()].push_back(item.assignment());
    }
  }
  for (const auto& [id, members] : by_batch) {
    double spent = 0;
    for (const v1::Assignment& a : members) spent += a.predicted_cost_usd();
    EXPECT_LE(spent, kCap * members.front().decision().batch_size() + 1e-9) << id;
  }
  std::map<std::string, double> window_spent;
  for (int k = 0; k < 100; ++k) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    v1::RouteRequest request;
    request.mutable_query()->set_id(absl::StrCat("i", k));
    request.mutable_query()->set_text(texts[k % 4]);
    request.mutable_query()->set_mode(v1::ROUTING_MODE_INLINE);
    v1::RouteResponse response;
    const grpc::Status s = stub_->Route(&ctx, request, &response);
    if (!s.ok()) {
      EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
      continue;
    }
    ++routed;
    const v1::Assignment& a = response.assignment();
    local += a.model() == kLocal;
    const v1::InlineDecision& d = a.inline_decision();
    EXPECT_LE(d.window_spent_usd(), d.window_cap_usd() + 1e-9) << d.window_id();
    window_spent[d.window_id()] += a.predicted_cost_usd();
  }
  for (const auto& [window, spent] : window_spent) {
    EXPECT_LE(spent, kCap * 20 + 1e-9) << window;
  }
  EXPECT_LE(local, kLocalSlots);
  EXPECT_GT(routed, 0);
  // Every routed query was explored.
  EXPECT_EQ(MetricValue(Metrics(), "router_learning_explored_decisions_total"), routed);
}

}  // namespace
}  // namespace router::server
