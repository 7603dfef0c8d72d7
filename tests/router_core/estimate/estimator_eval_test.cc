#include "router_core/estimate/estimator_eval.h"

#include <cmath>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::core {
namespace {

using ::testing::DoubleNear;

// Two models: "big" (cost 1, always right) and "small" (cost 0.1, right on the first half).
HeldOutPredictions TwoModels(bool informative) {
  HeldOutPredictions p;
  p.num_prompts = 10;
  p.models = {"small", "big"};
  for (int i = 0; i < 10; ++i) {
    const bool small_right = i < 5;
    const double small_quality = informative ? (small_right ? 0.95 : 0.1) : 0.5;
    p.quality.insert(p.quality.end(), {small_quality, 0.9});
    p.quality_lower.insert(p.quality_lower.end(), {small_quality * 0.8, 0.8});
    p.predicted_cost.insert(p.predicted_cost.end(), {0.1, 1.0});
    p.correct.insert(p.correct.end(), {small_right ? 1.0 : 0.0, 1.0});
    p.realized_cost.insert(p.realized_cost.end(), {0.1, 1.0});
  }
  return p;
}

TEST(EstimatorEvalTest, InformativePredictionsReachTheBestModelAtHalfItsCost) {
  absl::StatusOr<RoutingEvaluation> r = EvaluateRouting(TwoModels(true));
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->best_model, "big");
  EXPECT_DOUBLE_EQ(r->best_accuracy, 1.0);
  EXPECT_DOUBLE_EQ(r->oracle_accuracy, 1.0);
  // Small on the first half, big on the rest: accuracy 1 at cost (5 * 0.1 + 5 * 1) / 10 = 0.55.
  EXPECT_THAT(r->qnc, DoubleNear(0.55, 1e-9));
  // Between all-small (0.1, 0.5) and the mix (0.55, 1): at 0.5 the envelope is 0.5 + 0.4/0.45*0.5.
  EXPECT_THAT(r->relative_accuracy_at_50, DoubleNear(0.5 + 0.5 * 0.4 / 0.45, 1e-9));
  EXPECT_TRUE(std::isnan(r->relative_accuracy_at_20) == false);
  EXPECT_DOUBLE_EQ(r->relative_accuracy_at_100, 1.0);
  EXPECT_GT(r->deferral_auc, 0.8);
}

TEST(EstimatorEvalTest, UninformativePredictionsOnlyMixTheTwoModels) {
  absl::StatusOr<RoutingEvaluation> r = EvaluateRouting(TwoModels(false));
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(r->qnc, DoubleNear(1.0, 1e-9));
  EXPECT_THAT(r->relative_accuracy_at_50, DoubleNear(0.5 + 0.5 * 0.4 / 0.9, 1e-9));
}

TEST(EstimatorEvalTest, CalibrationMetricsPerModel) {
  absl::StatusOr<std::vector<ModelCalibration>> c = CalibrationMetrics(TwoModels(true));
  ASSERT_THAT(c, IsOk());
  ASSERT_EQ(c->size(), 2u);
  EXPECT_DOUBLE_EQ((*c)[0].auc, 1.0);    // small's predictions separate its outcomes perfectly
  EXPECT_TRUE(std::isnan((*c)[1].auc));  // big is always right: one class
  EXPECT_THAT((*c)[0].brier, DoubleNear((0.05 * 0.05 + 0.1 * 0.1) / 2, 1e-12));
  EXPECT_EQ((*c)[0].labelled, 10);
}

TEST(EstimatorEvalTest, WithoutCostsOnlyAccuracyIsReported) {
  HeldOutPredictions p = TwoModels(true);
  for (double& c : p.realized_cost) c = std::nan("");
  absl::StatusOr<RoutingEvaluation> r = EvaluateRouting(p);
  ASSERT_THAT(r, IsOk());
  EXPECT_DOUBLE_EQ(r->argmax_accuracy, 1.0);
  EXPECT_TRUE(std::isnan(r->qnc));
  EXPECT_TRUE(std::isnan(r->best_cost));
  EXPECT_TRUE(RoutingToJson(*r)["qnc"].is_null());
}

TEST(EstimatorEvalTest, BadInputsAreNamed) {
  HeldOutPredictions p = TwoModels(true);
  p.quality.pop_back();
  EXPECT_THAT(EvaluateRouting(p),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("quality")));
  p = TwoModels(true);
  p.quality[3] = 1.5;
  EXPECT_THAT(CalibrationMetrics(p),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("quality[3]")));
}

}  // namespace
}  // namespace router::core
