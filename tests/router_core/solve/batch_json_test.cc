#include "router_core/solve/batch_json.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::core {
namespace {

using ::testing::ElementsAre;
using ::testing::StartsWith;

// The example of the format (batch_json.h), with two queries so that gamma fits.
constexpr char kExample[] = R"json({
  "models": [{"name": "m0", "slots": 8}, {"name": "m1"}],
  "budget": 1.25,
  "policy": "batch_gamma",
  "params": {"lambda": 0.5, "tau": 0.6, "gamma": 1.5, "seed": 42},
  "time_limit_ms": 20,
  "relative_gap": 0.001,
  "queries": [
    {"id": "q0", "quality": [0.8, 0.6], "quality_lower": [0.7, 0.5], "cost": [0.01, 0.001],
     "allowed": ["m0", "m1"]},
    {"id": "q1", "quality": [0.9, 0.4], "cost": [0.02, 0.002]}
  ]
})json";

TEST(ParseBatchProblemJsonTest, ParsesTheExample) {
  absl::StatusOr<BatchProblem> p = ParseBatchProblemJson(kExample);
  ASSERT_THAT(p, IsOk());
  ASSERT_EQ(p->models.size(), 2u);
  EXPECT_EQ(p->models[0].name, "m0");
  EXPECT_EQ(p->models[0].slots, 8);
  EXPECT_EQ(p->models[1].name, "m1");
  EXPECT_EQ(p->models[1].slots, std::nullopt);
  EXPECT_EQ(p->budget, 1.25);
  EXPECT_EQ(p->policy, PolicyKind::kBatchGamma);
  EXPECT_EQ(p->params.lambda, 0.5);
  EXPECT_EQ(p->params.tau, 0.6);
  EXPECT_EQ(p->params.gamma, 1.5);
  EXPECT_EQ(p->params.seed, 42u);
  EXPECT_EQ(p->solve.time_limit, absl::Milliseconds(20));
  EXPECT_EQ(p->solve.relative_gap, 0.001);
  ASSERT_EQ(p->queries.size(), 2u);
  const Query& q0 = p->queries[0];
  EXPECT_EQ(q0.id, "q0");
  EXPECT_THAT(q0.quality, ElementsAre(0.8, 0.6));
  EXPECT_THAT(q0.quality_lower, ElementsAre(0.7, 0.5));
  EXPECT_THAT(q0.cost, ElementsAre(0.01, 0.001));
  EXPECT_THAT(q0.allowed, ElementsAre("m0", "m1"));
  const Query& q1 = p->queries[1];
  EXPECT_EQ(q1.id, "q1");
  EXPECT_THAT(q1.quality, ElementsAre(0.9, 0.4));
  EXPECT_TRUE(q1.quality_lower.empty());
  EXPECT_THAT(q1.cost, ElementsAre(0.02, 0.002));
  EXPECT_TRUE(q1.allowed.empty());
}

TEST(ParseBatchProblemJsonTest, AbsentFieldsTakeTheDefaults) {
  absl::StatusOr<BatchProblem> p = ParseBatchProblemJson(
      R"({"models":[{"name":"a"}],"queries":[{"id":"q","quality":[1],"cost":[0]}]})");
  ASSERT_THAT(p, IsOk());
  const BatchProblem defaults;
  EXPECT_EQ(p->models[0].slots, std::nullopt);
  EXPECT_EQ(p->budget, std::nullopt);
  EXPECT_EQ(p->policy, PolicyKind::kBatch);
  EXPECT_EQ(p->params.lambda, 0.0);
  EXPECT_EQ(p->params.tau, 0.7);
  EXPECT_EQ(p->params.gamma, 0.0);
  EXPECT_EQ(p->params.seed, 0u);
  // The service's solve options (solve_options.h), as every other binary uses.
  EXPECT_EQ(p->solve.time_limit, absl::Milliseconds(20));
  EXPECT_EQ(p->solve.time_limit, defaults.solve.time_limit);
  EXPECT_EQ(p->solve.relative_gap, 5e-3);
  EXPECT_EQ(p->solve.relative_gap, defaults.solve.relative_gap);
}

TEST(ParseBatchProblemJsonTest, NullBudgetAndSlotsMeanUnlimited) {
  absl::StatusOr<BatchProblem> p =
      ParseBatchProblemJson(R"({"models":[{"name":"a","slots":null}],"budget":null,"queries":[]})");
  ASSERT_THAT(p, IsOk());
  EXPECT_EQ(p->models[0].slots, std::nullopt);
  EXPECT_EQ(p->budget, std::nullopt);
}

TEST(ParseBatchProblemJsonTest, AcceptsIntegralFloatsAsIntegersAndZeroSlots) {
  absl::StatusOr<BatchProblem> p = ParseBatchProblemJson(
      R"({"models":[{"name":"a","slots":3.0},{"name":"b","slots":0}],"params":{"seed":7.0},
          "time_limit_ms":0.5,"queries":[]})");
  ASSERT_THAT(p, IsOk());
  EXPECT_EQ(p->models[0].slots, 3);
  EXPECT_EQ(p->models[1].slots, 0);
  EXPECT_EQ(p->params.seed, 7u);
  EXPECT_EQ(p->solve.time_limit, absl::Microseconds(500));
}

TEST(ParseBatchProblemJsonTest, ParsesEveryPolicyName) {
  const std::vector<std::pair<std::string, PolicyKind>> policies = {
      {"batch", PolicyKind::kBatch},
      {"batch_robust", PolicyKind::kBatchRobust},
      {"batch_gamma", PolicyKind::kBatchGamma},
      {"per_query", PolicyKind::kPerQuery},
      {"threshold", PolicyKind::kThreshold},
      {"ndch", PolicyKind::kNdch},
      {"ndch_p", PolicyKind::kNdchP}};
  for (const auto& [name, kind] : policies) {
    absl::StatusOr<BatchProblem> p = ParseBatchProblemJson(
        absl::StrCat(R"({"models":[{"name":"a"}],"queries":[],"policy":")", name, R"("})"));
    ASSERT_THAT(p, IsOk()) << name;
    EXPECT_EQ(p->policy, kind) << name;
  }
}

struct MalformedCase {
  std::string name;
  std::string json;
  std::string message;  // expected substring of the INVALID_ARGUMENT message
};

std::string WithQuery(const std::string& query) {
  return absl::StrCat(R"({"models":[{"name":"m0"},{"name":"m1"}],"queries":[)", query, "]}");
}

std::string WithTop(const std::string& extra) {
  return absl::StrCat(
      R"({"models":[{"name":"m0"}],"queries":[{"id":"q","quality":[1],"cost":[0]}],)", extra, "}");
}

void PrintTo(const MalformedCase& c, std::ostream* os) { *os << c.name; }

class MalformedTest : public ::testing::TestWithParam<MalformedCase> {};

TEST_P(MalformedTest, NamesTheField) {
  EXPECT_THAT(ParseBatchProblemJson(GetParam().json), InvalidNaming(GetParam().message));
}

const char kGoodQuery[] = R"({"id":"q0","quality":[0.8,0.6],"cost":[0.01,0.001]})";

INSTANTIATE_TEST_SUITE_P(
    ParseBatchProblemJsonTest, MalformedTest,
    ::testing::Values(
        // Not JSON at all.
        MalformedCase{"Truncated", R"({"models":)", "invalid JSON: "},
        MalformedCase{"Empty", "", "invalid JSON: "},
        MalformedCase{"TrailingGarbage", R"({"models":[],"queries":[]} x)", "invalid JSON: "},
        MalformedCase{"BytePosition", R"({"models": [}])", "(byte 13)"},
        MalformedCase{"TopLevelArray", "[]", "top level: expected an object, got array"},
        // Wrong types.
        MalformedCase{"CostString",
                      WithQuery(R"({"id":"q0","quality":[0.8,0.6],"cost":[0.01,"x"]})"),
                      "queries[0].cost[1]: expected a number, got string"},
        MalformedCase{
            "ThirdQueryCost",
            WithQuery(absl::StrCat(kGoodQuery, ",",
                                   R"({"id":"q1","quality":[0.8,0.6],"cost":[0,0]})", ",",
                                   R"({"id":"q2","quality":[0.8,0.6],"cost":[0.01,null]})")),
            "queries[2].cost[1]: expected a number, got null"},
        MalformedCase{"QualityNotArray", WithQuery(R"({"id":"q0","quality":0.8,"cost":[0,0]})"),
                      "queries[0].quality: expected an array of numbers, got number"},
        MalformedCase{"QualityBoolean",
                      WithQuery(R"({"id":"q0","quality":[true,0.5],"cost":[0,0]})"),
                      "queries[0].quality[0]: expected a number, got boolean"},
        MalformedCase{"IdNumber", WithQuery(R"({"id":7,"quality":[0.8,0.6],"cost":[0,0]})"),
                      "queries[0].id: expected a string, got number"},
        MalformedCase{"AllowedNumber",
                      WithQuery(R"({"id":"q0","quality":[0.8,0.6],"cost":[0,0],"allowed":[1]})"),
                      "queries[0].allowed[0]: expected a string, got number"},
        MalformedCase{"QueryNotObject", WithQuery("42"), "queries[0]: expected an object"},
        MalformedCase{"ModelsNotArray", R"({"models":{"name":"m0"},"queries":[]})",
                      "models: expected an array, got object"},
        MalformedCase{"ModelNameNumber", R"({"models":[{"name":"m0"},{"name":3}],"queries":[]})",
                      "models[1].name: expected a string, got number"},
        MalformedCase{"QueriesNotArray", R"({"models":[{"name":"m0"}],"queries":"all"})",
                      "queries: expected an array, got string"},
        MalformedCase{"BudgetBoolean", WithTop(R"("budget":true)"),
                      "budget: expected a number, got boolean"},
        MalformedCase{"BudgetString", WithTop(R"("budget":"1.25")"),
                      "budget: expected a number, got string"},
        MalformedCase{"ParamsNotObject", WithTop(R"("params":[1])"),
                      "params: expected an object, got array"},
        MalformedCase{"TauString", WithTop(R"("params":{"tau":"high"})"),
                      "params.tau: expected a number, got string"},
        MalformedCase{"SeedNegative", WithTop(R"("params":{"seed":-1})"),
                      "params.seed: expected a non-negative integer, got -1"},
        MalformedCase{"RelativeGapString", WithTop(R"("relative_gap":"tight")"),
                      "relative_gap: expected a number, got string"},
        MalformedCase{"TimeLimitString", WithTop(R"("time_limit_ms":"50")"),
                      "time_limit_ms: expected a number, got string"},
        MalformedCase{"TimeLimitZero", WithTop(R"("time_limit_ms":0)"),
                      "time_limit_ms: must be > 0"},
        MalformedCase{"TimeLimitNegative", WithTop(R"("time_limit_ms":-5)"),
                      "time_limit_ms: must be > 0"},
        MalformedCase{"TimeLimitTiny", WithTop(R"("time_limit_ms":1e-300)"),
                      "time_limit_ms: must be > 0"},
        // Missing required fields.
        MalformedCase{"MissingQuality", WithQuery(R"({"id":"q0","cost":[0,0]})"),
                      "queries[0].quality: required field missing"},
        MalformedCase{"MissingCost", WithQuery(R"({"id":"q0","quality":[0.8,0.6]})"),
                      "queries[0].cost: required field missing"},
        MalformedCase{"MissingId", WithQuery(R"({"quality":[0.8,0.6],"cost":[0,0]})"),
                      "queries[0].id: required field missing"},
        MalformedCase{"MissingModelName", R"({"models":[{"slots":2}],"queries":[]})",
                      "models[0].name: required field missing"},
        MalformedCase{"MissingModels", R"({"queries":[]})", "models: required field missing"},
        MalformedCase{"MissingQueries", R"({"models":[{"name":"m0"}]})",
                      "queries: required field missing"},
        // Unknown keys.
        MalformedCase{
            "UnknownQueryKey",
            WithQuery(R"({"id":"q0","qualty":[0.8,0.6],"quality":[0.8,0.6],"cost":[0,0]})"),
            "queries[0].qualty: unknown field"},
        MalformedCase{"UnknownTopKey", WithTop(R"("budjet":1)"), "budjet: unknown field"},
        MalformedCase{"UnknownModelKey", R"({"models":[{"name":"m0","slot":2}],"queries":[]})",
                      "models[0].slot: unknown field"},
        MalformedCase{"UnknownParamsKey", WithTop(R"("params":{"lamda":1})"),
                      "params.lamda: unknown field"},
        // Bad values.
        MalformedCase{"BadPolicy", WithTop(R"("policy":"greedy")"),
                      "policy: unknown policy 'greedy'"},
        MalformedCase{"PolicyNotString", WithTop(R"("policy":1)"),
                      "policy: expected a string, got number"},
        MalformedCase{"NegativeSlots", R"({"models":[{"name":"m0","slots":-1}],"queries":[]})",
                      "models[0].slots: expected a non-negative integer, got -1"},
        MalformedCase{"FractionalSlots", R"({"models":[{"name":"m0","slots":1.5}],"queries":[]})",
                      "models[0].slots: expected a non-negative integer, got 1.5"},
        MalformedCase{"SlotsString", R"({"models":[{"name":"m0","slots":"4"}],"queries":[]})",
                      "models[0].slots: expected a non-negative integer, got string"},
        // nlohmann refuses numbers that overflow a double (no inf can reach validation); the
        // message quotes the literal and its position.
        MalformedCase{"OverflowingCost",
                      WithQuery(R"({"id":"q0","quality":[0.8,0.6],"cost":[1e999,0]})"),
                      "invalid JSON: number overflow parsing '1e999' (byte"},
        MalformedCase{"OverflowingBudget", WithTop(R"("budget":-1e999)"),
                      "invalid JSON: number overflow parsing '-1e999' (byte"},
        MalformedCase{"OverflowingTimeLimit", WithTop(R"("time_limit_ms":1e999)"),
                      "invalid JSON: number overflow parsing '1e999' (byte"},
        // Caught by ValidateBatchProblem after parsing.
        MalformedCase{"NoModels", R"({"models":[],"queries":[]})", "models: at least one model"},
        MalformedCase{"QualityLength", WithQuery(R"({"id":"q0","quality":[0.8],"cost":[0,0]})"),
                      "queries[0].quality: has 1 entries"},
        MalformedCase{"QualityOutOfRange",
                      WithQuery(R"({"id":"q0","quality":[1.5,0.6],"cost":[0,0]})"),
                      "queries[0].quality[0]: 1.5 is outside [0, 1]"},
        MalformedCase{"NegativeBudget", WithTop(R"("budget":-1)"), "budget: -1 is negative"},
        MalformedCase{
            "LowerAboveQuality",
            WithQuery(R"({"id":"q0","quality":[0.8,0.6],"quality_lower":[0.9,0.5],"cost":[0,0]})"),
            "queries[0].quality_lower[0]: 0.9 is above quality"},
        MalformedCase{
            "UnknownAllowedModel",
            WithQuery(R"({"id":"q0","quality":[0.8,0.6],"cost":[0,0],"allowed":["m0","m9"]})"),
            "queries[0].allowed[1]: unknown model 'm9'"},
        MalformedCase{"DuplicateQueryId", WithQuery(absl::StrCat(kGoodQuery, ",", kGoodQuery)),
                      "queries[1].id: duplicate query id 'q0'"},
        MalformedCase{"GammaAboveQueries", WithTop(R"("params":{"gamma":5})"),
                      "params.gamma: 5 exceeds the number of queries (1)"},
        MalformedCase{"TauOutOfRange", WithTop(R"("params":{"tau":1.5})"),
                      "params.tau: must be in [0, 1]"},
        MalformedCase{"RelativeGapOne", WithTop(R"("relative_gap":1)"),
                      "relative_gap: must be in [0, 1)"}),
    [](const ::testing::TestParamInfo<MalformedCase>& info) { return info.param.name; });

TEST(ParseBatchProblemJsonTest, InvalidJsonReportsTheParserMessage) {
  absl::StatusOr<BatchProblem> p = ParseBatchProblemJson(R"({"models": [}])");
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(std::string(p.status().message()),
              StartsWith("invalid JSON: parse error at line 1, column 13"));
}

TEST(ParseBatchProblemJsonTest, DeepNestingIsAnErrorNotACrash) {
  const std::string deep = std::string(10000, '[') + std::string(10000, ']');
  EXPECT_THAT(ParseBatchProblemJson(deep), InvalidNaming("top level: expected an object"));
  EXPECT_THAT(ParseBatchProblemJson(std::string(10000, '[')), InvalidNaming("invalid JSON"));
}

// --- SolutionToJson ----------------------------------------------------------------------------

BatchProblem ThreeQueries() {
  BatchProblem p;
  p.models = {{"m0", 1}, {"m1", std::nullopt}};
  p.budget = 0.5;
  p.policy = PolicyKind::kBatchRobust;
  for (const char* id : {"q0", "q1", "q2"}) {
    Query q;
    q.id = id;
    q.quality = {0.9, 0.5};
    q.cost = {0.0, 0.25};
    p.queries.push_back(q);
  }
  return p;
}

TEST(SolutionToJsonTest, WritesEveryField) {
  const BatchProblem p = ThreeQueries();
  Solution s;
  s.model_of_query = {1, kUnserved, 0};
  s.unserved_reason = {UnservedReason::kNoSlot, UnservedReason::kNoBudget, UnservedReason::kNoSlot};
  s.objective = 1.4;
  s.upper_bound = 1.5;
  s.status = SolveStatus::kFeasible;
  s.total_cost = 0.25;
  s.solve_time = absl::Microseconds(1500);
  s.nodes = 17;
  s.method = "cbc";

  const std::string text = SolutionToJson(p, s);
  EXPECT_EQ(text.find('\n'), std::string::npos);
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << text;
  std::vector<std::string> keys;
  const nlohmann::ordered_json ordered = nlohmann::ordered_json::parse(text);
  for (const auto& [key, value] : ordered.items()) keys.push_back(key);
  EXPECT_THAT(keys,
              ElementsAre("assignment", "unserved", "unserved_reasons", "objective", "upper_bound",
                          "gap", "status", "total_cost", "solve_ms", "nodes", "method", "policy"));
  EXPECT_EQ(j["assignment"], nlohmann::json({{"q0", "m1"}, {"q2", "m0"}}));
  EXPECT_EQ(j["unserved"], nlohmann::json::array({"q1"}));
  EXPECT_EQ(j["unserved_reasons"], nlohmann::json({{"q1", "no_budget"}}));
  EXPECT_EQ(j["objective"].get<double>(), 1.4);
  EXPECT_EQ(j["upper_bound"].get<double>(), 1.5);
  EXPECT_DOUBLE_EQ(j["gap"].get<double>(), (1.5 - 1.4) / 1.5);
  EXPECT_EQ(j["status"], "FEASIBLE");
  EXPECT_EQ(j["total_cost"].get<double>(), 0.25);
  EXPECT_EQ(j["solve_ms"].get<double>(), 1.5);
  EXPECT_EQ(j["nodes"].get<int64_t>(), 17);
  EXPECT_EQ(j["method"], "cbc");
  EXPECT_EQ(j["policy"], "batch_robust");
}

TEST(SolutionToJsonTest, NoBoundGivesNullUpperBoundAndGap) {
  const BatchProblem p = ThreeQueries();
  Solution s;
  s.model_of_query = {0, 1, 1};
  s.unserved_reason.resize(3);
  s.status = SolveStatus::kHeuristic;
  s.method = "per_query";
  const nlohmann::json j = nlohmann::json::parse(SolutionToJson(p, s));
  EXPECT_TRUE(j["upper_bound"].is_null());
  EXPECT_TRUE(j["gap"].is_null());
  EXPECT_EQ(j["status"], "HEURISTIC");
  EXPECT_TRUE(j["unserved"].is_array());
  EXPECT_TRUE(j["unserved"].empty());
  EXPECT_TRUE(j["unserved_reasons"].is_object());
  EXPECT_TRUE(j["unserved_reasons"].empty());
  EXPECT_EQ(j["assignment"].size(), 3u);
}

TEST(SolutionToJsonTest, KeepsFullPrecisionAndEscapesNames) {
  BatchProblem p = ThreeQueries();
  p.queries[0].id = "say \"hi\"\n";
  p.models[0].name = "m\\0";
  Solution s;
  s.model_of_query = {0, 1, 1};
  s.unserved_reason.resize(3);
  s.objective = 0.1 + 0.2;
  s.total_cost = 1.0 / 3.0;
  s.upper_bound = s.objective;
  s.status = SolveStatus::kOptimal;
  const nlohmann::json j = nlohmann::json::parse(SolutionToJson(p, s));
  EXPECT_EQ(j["objective"].get<double>(), 0.1 + 0.2);
  EXPECT_EQ(j["total_cost"].get<double>(), 1.0 / 3.0);
  EXPECT_EQ(j["gap"].get<double>(), 0.0);
  EXPECT_EQ(j["status"], "OPTIMAL");
  EXPECT_EQ(j["assignment"]["say \"hi\"\n"], "m\\0");
}

TEST(SolutionToJsonTest, InvalidUtf8IsReplacedNotThrown) {
  BatchProblem p = ThreeQueries();
  p.queries[0].id = "q\xff";
  Solution s;
  s.model_of_query = {0, 1, 1};
  s.unserved_reason.resize(3);
  const nlohmann::json j = nlohmann::json::parse(SolutionToJson(p, s), nullptr, false);
  EXPECT_FALSE(j.is_discarded());
}

TEST(SolutionToJsonTest, ParsedExampleAnswersInQueryOrder) {
  absl::StatusOr<BatchProblem> p = ParseBatchProblemJson(kExample);
  ASSERT_THAT(p, IsOk());
  Solution s;
  s.model_of_query = {1, 0};
  s.unserved_reason.resize(2);
  const std::string text = SolutionToJson(*p, s);
  EXPECT_THAT(text, StartsWith(R"({"assignment":{"q0":"m1","q1":"m0"},"unserved":[])"));
  EXPECT_THAT(text, HasSubstr(R"("policy":"batch_gamma")"));
}

}  // namespace
}  // namespace router::core
