#include "router_core/estimate/predictor.h"

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "router_core/estimate/knn_estimator.h"
#include "tests/router_core/estimate/real_data.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::core {
namespace {

using ::router::core::testing::IsOk;
using ::router::core::testing::Real;
using ::router::core::testing::StatusIs;
using ::testing::HasSubstr;

Predictor Make() {
  absl::StatusOr<std::unique_ptr<KnnEstimator>> knn = KnnEstimator::Fit(Real().train, KnnOptions());
  EXPECT_THAT(knn, IsOk());
  absl::StatusOr<CostModel> cost =
      CostModel::Fit(Real().dataset, Real().split.train, CostModelOptions());
  EXPECT_THAT(cost, IsOk());
  absl::StatusOr<Predictor> p =
      Predictor::Create(Real().featurizer, std::shared_ptr<const QualityEstimator>(*std::move(knn)),
                        *std::move(cost));
  EXPECT_THAT(p, IsOk());
  return *std::move(p);
}

TEST(PredictorTest, TextAndItsEmbeddingGiveTheSamePredictionsInPoolOrder) {
  const Predictor p = Make();
  const std::string& text = Real().dataset.prompts[Real().test_rows[0]].text;
  PredictRequest by_text;
  by_text.text = text;
  absl::StatusOr<std::vector<ModelPrediction>> a = p.Predict(by_text);
  ASSERT_THAT(a, IsOk());
  ASSERT_EQ(a->size(), p.models().size());
  const std::vector<float> features = Real().featurizer.Featurize(text);
  PredictRequest by_embedding = by_text;
  by_embedding.embedding = absl::MakeConstSpan(features);
  absl::StatusOr<std::vector<ModelPrediction>> b = p.Predict(by_embedding);
  ASSERT_THAT(b, IsOk());
  for (size_t j = 0; j < a->size(); ++j) {
    EXPECT_EQ((*a)[j].quality, (*b)[j].quality);
    EXPECT_EQ((*a)[j].quality_lower, (*b)[j].quality_lower);
    EXPECT_LE((*a)[j].quality_lower, (*a)[j].quality);
    EXPECT_GT((*a)[j].cost_usd, 0.0);  // routerbench has per-call costs for every model
  }
  // The task hint switches the cost to the task mean.
  by_text.task = "mbpp";
  absl::StatusOr<std::vector<ModelPrediction>> c = p.Predict(by_text);
  ASSERT_THAT(c, IsOk());
  EXPECT_NE((*c)[0].cost_usd, (*a)[0].cost_usd);
}

TEST(PredictorTest, WrongEmbeddingIsInvalidArgumentNamingTheField) {
  const Predictor p = Make();
  const std::vector<float> short_embedding(7, 0.1f);
  PredictRequest r;
  r.embedding = absl::MakeConstSpan(short_embedding);
  EXPECT_THAT(p.Predict(r), StatusIs(absl::StatusCode::kInvalidArgument,
                                     HasSubstr("embedding: expected 128 values, got 7")));
  std::vector<float> inf(128, 0.0f);
  inf[3] = 1.0f / 0.0f;
  r.embedding = absl::MakeConstSpan(inf);
  EXPECT_THAT(p.Predict(r),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("embedding[3]")));
  PredictRequest hint;
  hint.text = "hello";
  hint.output_tokens = -1;
  EXPECT_THAT(p.Predict(hint),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("output_tokens")));
}

TEST(PredictorTest, CreateChecksDimensionsAndCostEntries) {
  absl::StatusOr<std::unique_ptr<KnnEstimator>> knn = KnnEstimator::Fit(Real().train, KnnOptions());
  ASSERT_THAT(knn, IsOk());
  std::shared_ptr<const QualityEstimator> shared = *std::move(knn);
  absl::StatusOr<CostModel> partial =
      CostModel::Create({ModelCost{"claude-v2", {}, {}, 0.001, {}}}, CostModelOptions());
  ASSERT_THAT(partial, IsOk());
  EXPECT_THAT(Predictor::Create(Real().featurizer, shared, *partial),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("WizardLM")));
  absl::StatusOr<Featurizer> other = Featurizer::Create(FeaturizerOptions());
  ASSERT_THAT(other, IsOk());
  absl::StatusOr<CostModel> cost =
      CostModel::Fit(Real().dataset, Real().split.train, CostModelOptions());
  ASSERT_THAT(cost, IsOk());
  EXPECT_THAT(Predictor::Create(*other, shared, *cost),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("featurizer.dim")));
  // Without a featurizer only embeddings are accepted.
  absl::StatusOr<Predictor> embedding_only = Predictor::Create(std::nullopt, shared, *cost);
  ASSERT_THAT(embedding_only, IsOk());
  PredictRequest r;
  r.text = "hello";
  EXPECT_THAT(embedding_only->Predict(r),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("embedding")));
}

}  // namespace
}  // namespace router::core
