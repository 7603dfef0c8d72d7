#include "clients/cpp/routerctl_support.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::client::ctl {
namespace {

using ::router::core::testing::IsOk;
using ::router::core::testing::StatusIs;
using ::testing::_;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

TEST(ParseCommandLineTest, SplitsWordsAndFlagsInAnyOrder) {
  absl::StatusOr<CommandLine> line = ParseCommandLine(
      {"--address", "h:1", "config", "--dry-run", "set", "--file=c.yaml"}, {"dry-run"});
  ASSERT_THAT(line, IsOk());
  EXPECT_THAT(line->words, ElementsAre("config", "set"));
  EXPECT_THAT(line->flags,
              ElementsAre(Pair("address", "h:1"), Pair("dry-run", "true"), Pair("file", "c.yaml")));
  EXPECT_EQ(line->Get("file"), "c.yaml");
  EXPECT_EQ(line->Get("text"), std::nullopt);
}

TEST(ParseCommandLineTest, AnEmptyValueIsAValue) {
  absl::StatusOr<CommandLine> line = ParseCommandLine({"route", "--text", ""}, {});
  ASSERT_THAT(line, IsOk());
  EXPECT_EQ(line->Get("text"), "");
}

TEST(ParseCommandLineTest, RefusesMalformedFlags) {
  EXPECT_THAT(ParseCommandLine({"route", "--text"}, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--text: needs a value")));
  EXPECT_THAT(ParseCommandLine({"--id", "a", "--id", "b"}, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--id: given twice")));
  EXPECT_THAT(ParseCommandLine({"--dry-run=yes"}, {"dry-run"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("takes no value")));
  EXPECT_THAT(ParseCommandLine({"--"}, {}), StatusIs(absl::StatusCode::kInvalidArgument, _));
}

TEST(CheckFlagsTest, NamesTheFirstUnknownFlag) {
  absl::StatusOr<CommandLine> line = ParseCommandLine({"models", "--bogus", "1"}, {});
  ASSERT_THAT(line, IsOk());
  EXPECT_THAT(CheckFlags(*line, {"address"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--bogus")));
  EXPECT_THAT(CheckFlags(*line, {"bogus"}), IsOk());
}

TEST(QueryFromJsonLineTest, ReadsTextAndId) {
  absl::StatusOr<v1::Query> q =
      QueryFromJsonLine(R"({"prompt_id": "p7", "text": "hi", "task": "x"})", 3, {});
  ASSERT_THAT(q, IsOk());
  EXPECT_EQ(q->id(), "p7");
  EXPECT_EQ(q->text(), "hi");
}

TEST(QueryFromJsonLineTest, IntegerIdAndMissingId) {
  absl::StatusOr<v1::Query> q = QueryFromJsonLine(R"({"prompt_id": 42, "text": "a"})", 1, {});
  ASSERT_THAT(q, IsOk());
  EXPECT_EQ(q->id(), "42");
  q = QueryFromJsonLine(R"({"text": "a"})", 9, {});
  ASSERT_THAT(q, IsOk());
  EXPECT_EQ(q->id(), "line-9");
}

TEST(QueryFromJsonLineTest, CustomFields) {
  absl::StatusOr<v1::Query> q = QueryFromJsonLine(R"({"qid": "a", "prompt": "b", "text": "c"})", 1,
                                                  {.text_field = "prompt", .id_field = "qid"});
  ASSERT_THAT(q, IsOk());
  EXPECT_EQ(q->id(), "a");
  EXPECT_EQ(q->text(), "b");
}

TEST(QueryFromJsonLineTest, RefusesBadRecords) {
  EXPECT_THAT(QueryFromJsonLine("{not json", 1, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not valid JSON")));
  EXPECT_THAT(QueryFromJsonLine("[1, 2]", 1, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a JSON object")));
  EXPECT_THAT(QueryFromJsonLine(R"({"prompt_id": "a"})", 1, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no field 'text'")));
  EXPECT_THAT(QueryFromJsonLine(R"({"text": 5})", 1, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'text': not a string")));
  EXPECT_THAT(QueryFromJsonLine(R"({"text": "a", "prompt_id": 1.5})", 1, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'prompt_id'")));
}

class ReadQueriesJsonlTest : public ::testing::Test {
 protected:
  // One file per test and process: ctest runs this binary's tests in parallel processes, which
  // overwrote one another's shared file (seen in CI: a test read the other's "text": 1).
  void SetUp() override {
    path_ = absl::StrCat(::testing::TempDir(), "/routerctl_support_test.",
                         ::testing::UnitTest::GetInstance()->current_test_info()->name(), ".",
                         getpid(), ".jsonl");
  }
  void TearDown() override { std::remove(path_.c_str()); }
  void Write(const std::string& content) { std::ofstream(path_) << content; }

  std::string path_;
};

TEST_F(ReadQueriesJsonlTest, SkipsBlankLinesAndKeepsLineNumbers) {
  Write("{\"text\": \"a\"}\n\n  \n{\"text\": \"b\"}\n");
  absl::StatusOr<std::vector<v1::Query>> queries = ReadQueriesJsonl(path_, {});
  ASSERT_THAT(queries, IsOk());
  ASSERT_EQ(queries->size(), 2u);
  EXPECT_EQ((*queries)[0].id(), "line-1");
  EXPECT_EQ((*queries)[1].id(), "line-4");
}

TEST_F(ReadQueriesJsonlTest, AnErrorNamesFileAndLine) {
  Write("{\"text\": \"a\"}\n{\"text\": 1}\n");
  EXPECT_THAT(ReadQueriesJsonl(path_, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(path_ + ":2: ")));
}

TEST_F(ReadQueriesJsonlTest, AMissingFileIsNotFound) {
  EXPECT_THAT(ReadQueriesJsonl(path_ + ".missing", {}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(".missing")));
}

TEST(NearestRankQuantileTest, MatchesTheDefinition) {
  std::vector<double> values;
  for (int k = 100; k >= 1; --k) values.push_back(k);
  EXPECT_EQ(NearestRankQuantile(values, 0.50), 50);
  EXPECT_EQ(NearestRankQuantile(values, 0.99), 99);
  EXPECT_EQ(NearestRankQuantile(values, 1.0), 100);
  EXPECT_EQ(NearestRankQuantile({7}, 0.99), 7);
  EXPECT_EQ(NearestRankQuantile({}, 0.5), 0);
}

TEST(StreamSummaryTest, CountsModelsErrorsAndSpend) {
  StreamSummary summary;
  v1::RouteBatchItem a;
  a.mutable_assignment()->set_model("m1");
  a.mutable_assignment()->set_predicted_cost_usd(0.25);
  v1::RouteBatchItem b = a;
  b.mutable_assignment()->set_model("m2");
  v1::RouteBatchItem e;
  e.mutable_error()->set_code(3);
  summary.Add(a, absl::Milliseconds(1));
  summary.Add(a, absl::Milliseconds(3));
  summary.Add(b, absl::Milliseconds(2));
  summary.Add(e, absl::Milliseconds(4));
  const nlohmann::json j = summary.ToJson(5, absl::OkStatus());
  EXPECT_EQ(j["count"], 5);
  EXPECT_EQ(j["answered"], 4);
  EXPECT_EQ(j["assigned"], 3);
  EXPECT_EQ(j["models"], (nlohmann::json{{"m1", 2}, {"m2", 1}}));
  EXPECT_EQ(j["errors"], (nlohmann::json{{"INVALID_ARGUMENT", 1}}));
  EXPECT_DOUBLE_EQ(j["predicted_spend_usd"].get<double>(), 0.75);
  EXPECT_DOUBLE_EQ(j["latency_ms"]["p50"].get<double>(), 2);
  EXPECT_DOUBLE_EQ(j["latency_ms"]["p99"].get<double>(), 4);
  EXPECT_EQ(j["stream_status"], "OK");
  EXPECT_EQ(summary.ToJson(5, absl::UnavailableError("draining"))["stream_status"],
            "UNAVAILABLE: draining");
}

TEST(ModeFlagTest, ParsesTheThreeModesAndNamesTheFlagOtherwise) {
  for (auto [name, mode] :
       {std::pair<const char*, v1::RoutingMode>{"batch", v1::ROUTING_MODE_BATCH},
        {"inline", v1::ROUTING_MODE_INLINE},
        {"auto", v1::ROUTING_MODE_AUTO}}) {
    absl::StatusOr<v1::RoutingMode> parsed = ParseModeFlag(name);
    ASSERT_THAT(parsed, IsOk()) << name;
    EXPECT_EQ(*parsed, mode);
    EXPECT_EQ(ModeName(mode), name);
  }
  EXPECT_THAT(ParseModeFlag("INLINE"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--mode: 'INLINE'")));
  EXPECT_THAT(ParseModeFlag(""), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--mode")));
  EXPECT_EQ(ModeName(v1::ROUTING_MODE_UNSPECIFIED), "unspecified");
}

TEST(StreamSummaryTest, CountsDecisionModesAndSummarizesInlinePrices) {
  StreamSummary summary;
  v1::RouteBatchItem batch;
  batch.mutable_assignment()->set_model("m1");
  batch.mutable_assignment()->set_decision_mode(v1::ROUTING_MODE_BATCH);
  auto inline_answer = [](double lambda, double slot_price, bool guarded) {
    v1::RouteBatchItem r;
    r.mutable_assignment()->set_model("m2");
    r.mutable_assignment()->set_decision_mode(v1::ROUTING_MODE_INLINE);
    v1::InlineDecision* d = r.mutable_assignment()->mutable_inline_decision();
    d->set_lambda_per_usd(lambda);
    d->set_slot_price(slot_price);
    d->set_guarded(guarded);
    return r;
  };
  summary.Add(batch, absl::Milliseconds(1));
  summary.Add(inline_answer(10, 0, false), absl::Milliseconds(1));
  summary.Add(inline_answer(30, 0.5, true), absl::Milliseconds(1));
  summary.Add(inline_answer(20, 0.25, false), absl::Milliseconds(1));
  const nlohmann::json j = summary.ToJson(4, absl::OkStatus());
  EXPECT_EQ(j["modes"], (nlohmann::json{{"batch", 1}, {"inline", 3}}));
  EXPECT_EQ(j["inline"]["decisions"], 3);
  EXPECT_EQ(j["inline"]["guarded"], 1);
  EXPECT_DOUBLE_EQ(j["inline"]["lambda_p50"].get<double>(), 20);
  EXPECT_DOUBLE_EQ(j["inline"]["lambda_max"].get<double>(), 30);
  EXPECT_DOUBLE_EQ(j["inline"]["slot_price_max"].get<double>(), 0.5);
  // Without inline answers the block is there, with zeros.
  const nlohmann::json none = StreamSummary().ToJson(0, absl::OkStatus());
  EXPECT_EQ(none["modes"], nlohmann::json::object());
  EXPECT_EQ(none["inline"]["decisions"], 0);
  EXPECT_DOUBLE_EQ(none["inline"]["lambda_max"].get<double>(), 0);
}

TEST(ProgressBarTest, DrawsTheFraction) {
  EXPECT_EQ(ProgressBar(5, 10, 10), "[#####-----] 5/10  50%");
  EXPECT_EQ(ProgressBar(10, 10, 4), "[####] 10/10 100%");
  EXPECT_EQ(ProgressBar(0, 0, 4), "[----] 0/0   0%");
}

}  // namespace
}  // namespace router::client::ctl
