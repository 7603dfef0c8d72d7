#include "router_core/solve/problem.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "router_core/solve/instance.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::core {
namespace {


BatchProblem TwoModels() {
  BatchProblem p;
  p.models = {{"m0", 8}, {"m1", std::nullopt}};
  p.budget = 1.25;
  Query q;
  q.id = "q0";
  q.quality = {0.8, 0.6};
  q.quality_lower = {0.7, 0.5};
  q.cost = {0.01, 0.001};
  p.queries.push_back(q);
  return p;
}

TEST(ValidateBatchProblemTest, AcceptsAWellFormedBatch) {
  EXPECT_THAT(ValidateBatchProblem(TwoModels()), IsOk());
}

TEST(ValidateBatchProblemTest, NamesTheOffendingField) {
  BatchProblem p = TwoModels();
  p.queries[0].quality[1] = std::nan("");
  EXPECT_THAT(ValidateBatchProblem(p), InvalidNaming("queries[0].quality[1]: NaN"));

  p = TwoModels();
  p.queries[0].cost[0] = std::numeric_limits<double>::infinity();
  EXPECT_THAT(ValidateBatchProblem(p), InvalidNaming("queries[0].cost[0]: infinite"));

  p = TwoModels();
  p.queries[0].quality[0] = 1.5;
  EXPECT_THAT(ValidateBatchProblem(p), InvalidNaming("queries[0].quality[0]"));

  p = TwoModels();
  p.queries[0].cost[1] = -0.1;
  EXPECT_THAT(ValidateBatchProblem(p), InvalidNaming("queries[0].cost[1]"));

  p = TwoModels();
  p.queries[0].quality.pop_back();
  EXPECT_THAT(ValidateBatchProblem(p), InvalidNaming("queries[0].quality: has 1 entries"));

  p = TwoModels();
  p.queries.push_back(p.queries[0]);
  EXPECT_THAT(ValidateBatchProblem(p), InvalidNaming("queries[1].id: duplicate query id 'q0'"));

  p = TwoModels();
  p.queries[0].allowed = {"m9"};
  EXPECT_THAT(ValidateBatchProblem(p), InvalidNaming("queries[0].allowed[0]: unknown model 'm9'"));

  p = TwoModels();
  p.queries[0].allowed = {"m0", "m0"};
  EXPECT_THAT(ValidateBatchProblem(p), InvalidNaming("queries[0].allowed[1]"));

  p = TwoModels();
  p.queries[0].quality_lower[0] = 0.9;
  EXPECT_THAT(ValidateBatchProblem(p), InvalidNaming("queries[0].quality_lower[0]"));

  p = TwoModels();
  p.models[1].name = "m0";
  EXPECT_THAT(ValidateBatchProblem(p), InvalidNaming("models[1].name: duplicate model 'm0'"));

  p = TwoModels();
  p.models[0].slots = -1;
  EXPECT_THAT(ValidateBatchProblem(p), InvalidNaming("models[0].slots"));

  p = TwoModels();
  p.models.clear();
  EXPECT_THAT(ValidateBatchProblem(p), InvalidNaming("models"));

  p = TwoModels();
  p.budget = -1;
  EXPECT_THAT(ValidateBatchProblem(p), InvalidNaming("budget"));

  p = TwoModels();
  p.params.gamma = 2;
  EXPECT_THAT(ValidateBatchProblem(p), InvalidNaming("params.gamma"));

  p = TwoModels();
  p.params.tau = 1.1;
  EXPECT_THAT(ValidateBatchProblem(p), InvalidNaming("params.tau"));

  p = TwoModels();
  p.solve.time_limit = absl::ZeroDuration();
  EXPECT_THAT(ValidateBatchProblem(p), InvalidNaming("time_limit"));
}

TEST(ParsePolicyKindTest, RoundTripsEveryName) {
  for (absl::string_view name :
       {"batch", "batch_robust", "batch_gamma", "per_query", "threshold", "ndch", "ndch_p"}) {
    absl::StatusOr<PolicyKind> kind = ParsePolicyKind(name);
    ASSERT_THAT(kind, IsOk());
    EXPECT_EQ(PolicyKindName(*kind), name);
  }
  EXPECT_THAT(ParsePolicyKind("best"), InvalidNaming("policy"));
}

TEST(BuildInstanceTest, ResolvesAllowedNamesAndValueSource) {
  BatchProblem p = TwoModels();
  p.queries[0].allowed = {"m1"};
  const Instance nominal = BuildInstance(p, ValueSource::kQuality);
  EXPECT_FALSE(nominal.is_allowed(0, 0));
  EXPECT_TRUE(nominal.is_allowed(0, 1));
  EXPECT_DOUBLE_EQ(nominal.value[0], 0.8);
  EXPECT_NEAR(nominal.deviation[0], 0.1, 1e-12);
  EXPECT_EQ(nominal.slots[0], 8);
  EXPECT_EQ(nominal.slots[1], kUnlimited);
  const Instance lower = BuildInstance(p, ValueSource::kQualityLower);
  EXPECT_DOUBLE_EQ(lower.value[1], 0.5);
  EXPECT_DOUBLE_EQ(lower.deviation[1], 0.0);
}

}  // namespace
}  // namespace router::core
