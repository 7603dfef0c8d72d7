#include "router_core/estimate/cost_model.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/router_core/estimate/real_data.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::core {
namespace {

using ::router::core::testing::Real;
using ::testing::DoubleEq;

CostModel Make() {
  ModelCost priced{"priced", 0.2, 0.4, std::nullopt, {}};
  ModelCost observed{"observed", std::nullopt, std::nullopt, 0.003, {{"mbpp", 0.009}}};
  ModelCost both{"both", 1.0, 2.0, 0.5, {}};
  ModelCost free{"self-hosted", std::nullopt, std::nullopt, std::nullopt, {}};
  absl::StatusOr<CostModel> c =
      CostModel::Create({priced, observed, both, free}, CostModelOptions());
  EXPECT_THAT(c, IsOk());
  return *std::move(c);
}

double Expect(const CostModel& c, int model, const CostQuery& q) {
  absl::StatusOr<double> v = c.Expected(model, q);
  EXPECT_THAT(v, IsOk());
  return v.value_or(-1);
}

TEST(CostModelTest, FollowsTheDocumentedRuleOrder) {
  const CostModel c = Make();
  CostQuery q;
  q.text_bytes = 4000;  // 1000 tokens at 4 bytes per token
  // Rule 4: prices x (text tokens, default 256 output tokens).
  EXPECT_THAT(Expect(c, 0, q), DoubleEq((0.2 * 1000 + 0.4 * 256) / 1e6));
  // Rule 3: observed mean; rule 2: the task mean when the task is known.
  EXPECT_THAT(Expect(c, 1, q), DoubleEq(0.003));
  q.task = "mbpp";
  EXPECT_THAT(Expect(c, 1, q), DoubleEq(0.009));
  q.task = "unknown-task";
  EXPECT_THAT(Expect(c, 1, q), DoubleEq(0.003));
  // Rule 1: token hints beat observed means when the model has prices.
  EXPECT_THAT(Expect(c, 2, q), DoubleEq(0.5));
  q.input_tokens = 100;
  q.output_tokens = 10;
  EXPECT_THAT(Expect(c, 2, q), DoubleEq((1.0 * 100 + 2.0 * 10) / 1e6));
  EXPECT_THAT(Expect(c, 1, q), DoubleEq(0.003));  // hints need prices
  // Rule 5: nothing known = self-hosted = free.
  EXPECT_THAT(Expect(c, 3, q), DoubleEq(0.0));
}

TEST(CostModelTest, FitsPerTaskMeansFromRealData) {
  const Dataset& d = Real().dataset;
  absl::StatusOr<CostModel> c = CostModel::Fit(d, Real().split.train, CostModelOptions());
  ASSERT_THAT(c, IsOk());
  absl::StatusOr<int> gpt4 = c->IndexOf("gpt-4-1106-preview");
  ASSERT_THAT(gpt4, IsOk());
  const ModelCost& m = c->models()[*gpt4];
  ASSERT_TRUE(m.mean_usd.has_value());
  EXPECT_NEAR(*m.mean_usd, 0.005, 0.001);  // SOURCE.md: 0.0050150 over all prompts
  ASSERT_EQ(m.task_mean_usd.count("mbpp"), 1u);
  EXPECT_GT(m.task_mean_usd.at("mbpp"), m.task_mean_usd.at("winogrande"));
  EXPECT_FALSE(m.input_usd_per_mtok.has_value());
}

TEST(CostModelTest, JsonRoundTripAndErrors) {
  const CostModel c = Make();
  absl::StatusOr<CostModel> back = CostModel::FromJson(c.ToJson());
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->ToJson(), c.ToJson());

  nlohmann::json j = c.ToJson();
  j["models"][0]["input_usd_per_mtok"] = -1;
  EXPECT_THAT(CostModel::FromJson(j), StatusIs(absl::StatusCode::kInvalidArgument,
                                               HasSubstr("models[0].input_usd_per_mtok")));
  j = c.ToJson();
  j["models"][0]["input_usd_per_mtok"] = "cheap";
  EXPECT_THAT(CostModel::FromJson(j),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("cost_model.models[0].input_usd_per_mtok: expected a number, "
                                 "got string")));
  j = c.ToJson();
  j["options"].erase("bytes_per_token");
  EXPECT_THAT(CostModel::FromJson(j),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("cost_model.options.bytes_per_token: required field missing")));
  j = c.ToJson();
  j["models"][1]["name"] = "priced";
  EXPECT_THAT(CostModel::FromJson(j),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("duplicate")));
  CostQuery q;
  q.input_tokens = -3;
  EXPECT_THAT(c.Expected(0, q),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("input_tokens")));
  EXPECT_THAT(c.Expected(9, CostQuery()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("model")));
  EXPECT_THAT(c.IndexOf("nope"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope")));
  CostModel copy = c;
  EXPECT_THAT(copy.AddModel(ModelCost{"priced", {}, {}, {}, {}}),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("priced")));
  EXPECT_THAT(copy.AddModel(ModelCost{"half", 1.0, std::nullopt, {}, {}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("both")));
}

}  // namespace
}  // namespace router::core
