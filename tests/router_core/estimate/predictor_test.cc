#include "router_core/estimate/predictor.h"

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "router_core/estimate/knn_estimator.h"
#include "router_core/estimate/uniroute_estimator.h"
#include "tests/router_core/estimate/real_data.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::core {
namespace {

using ::router::core::testing::Real;

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
  absl::StatusOr<Predictions> a = p.Predict(by_text);
  ASSERT_THAT(a, IsOk());
  ASSERT_EQ(a->quality.size(), p.models().size());
  ASSERT_EQ(a->quality_lower.size(), p.models().size());
  ASSERT_EQ(a->cost_usd.size(), p.models().size());
  const std::vector<float> features = Real().featurizer.Featurize(text);
  PredictRequest by_embedding = by_text;
  by_embedding.embedding = absl::MakeConstSpan(features);
  absl::StatusOr<Predictions> b = p.Predict(by_embedding);
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(a->quality, b->quality);
  EXPECT_EQ(a->quality_lower, b->quality_lower);
  for (size_t j = 0; j < a->quality.size(); ++j) {
    EXPECT_LE(a->quality_lower[j], a->quality[j]);
    EXPECT_GT(a->cost_usd[j], 0.0);  // routerbench has per-call costs for every model
  }
  // The task hint switches the cost to the task mean.
  by_text.task = "mbpp";
  absl::StatusOr<Predictions> c = p.Predict(by_text);
  ASSERT_THAT(c, IsOk());
  EXPECT_NE(c->cost_usd[0], a->cost_usd[0]);
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

TEST(PredictorTest, ClusterIsUniRoutesNearestCentroidAndZeroForTheKnn) {
  UniRouteOptions options;
  options.num_clusters = 8;
  absl::StatusOr<std::unique_ptr<UniRouteEstimator>> fitted =
      FitUniRoute(Real().train.features, Real().train, options);
  ASSERT_THAT(fitted, IsOk());
  std::shared_ptr<const UniRouteEstimator> uniroute = *std::move(fitted);
  absl::StatusOr<CostModel> cost =
      CostModel::Fit(Real().dataset, Real().split.train, CostModelOptions());
  ASSERT_THAT(cost, IsOk());
  absl::StatusOr<Predictor> clustered = Predictor::Create(Real().featurizer, uniroute, *cost);
  ASSERT_THAT(clustered, IsOk());
  EXPECT_EQ(clustered->estimator().num_clusters(), 8);
  const Predictor knn = Make();
  EXPECT_EQ(knn.estimator().num_clusters(), 1);
  std::set<int> seen;
  for (int i = 0; i < 40; ++i) {
    PredictRequest r;
    r.text = Real().dataset.prompts[Real().test_rows[i]].text;
    absl::StatusOr<Predictions> a = clustered->Predict(r);
    ASSERT_THAT(a, IsOk());
    const std::vector<float> features = Real().featurizer.Featurize(r.text);
    EXPECT_THAT(uniroute->NearestCluster(features), IsOkAndHolds(a->cluster));
    seen.insert(a->cluster);
    // The cluster comes with the same qualities as Predict's.
    std::vector<QualityEstimate> plain(uniroute->models().size());
    ASSERT_THAT(uniroute->Predict(features, absl::MakeSpan(plain)), IsOk());
    for (size_t j = 0; j < plain.size(); ++j) EXPECT_EQ(a->quality[j], plain[j].quality);
    absl::StatusOr<Predictions> b = knn.Predict(r);
    ASSERT_THAT(b, IsOk());
    EXPECT_EQ(b->cluster, 0);
  }
  EXPECT_GT(seen.size(), 1u);  // the prompts do not all fall in one cluster
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
