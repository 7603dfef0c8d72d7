#include "router_core/estimate/knn_estimator.h"

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/router_core/estimate/real_data.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::core {
namespace {

using ::router::core::testing::Real;

KnnOptions Options() {
  KnnOptions o;
  o.k = 20;
  o.bootstrap_samples = 30;
  return o;
}

std::unique_ptr<KnnEstimator> FitOn(const TrainingSet& set, const KnnOptions& o = Options()) {
  absl::StatusOr<std::unique_ptr<KnnEstimator>> knn = KnnEstimator::Fit(set, o);
  EXPECT_THAT(knn, IsOk());
  return *std::move(knn);
}

// Predictions for every test prompt, flattened.
std::vector<QualityEstimate> PredictAll(const QualityEstimator& e, int64_t max_rows = 100) {
  const TrainingSet& test = Real().test;
  std::vector<QualityEstimate> all;
  std::vector<QualityEstimate> out(e.models().size());
  for (int64_t r = 0; r < std::min(max_rows, test.features.rows()); ++r) {
    EXPECT_THAT(e.Predict(test.features.row(r), absl::MakeSpan(out)), IsOk());
    all.insert(all.end(), out.begin(), out.end());
  }
  return all;
}

// The training set without model `model` (column dropped).
TrainingSet Without(const TrainingSet& set, int model) {
  TrainingSet out;
  out.features = set.features;
  for (size_t j = 0; j < set.models.size(); ++j) {
    if (static_cast<int>(j) != model) out.models.push_back(set.models[j]);
  }
  for (int64_t r = 0; r < set.features.rows(); ++r) {
    for (size_t j = 0; j < set.models.size(); ++j) {
      if (static_cast<int>(j) != model) out.labels.push_back(set.label(r, static_cast<int>(j)));
    }
  }
  return out;
}

TEST(KnnEstimatorTest, PredictionsAreBoundedAndDeterministic) {
  const auto a = FitOn(Real().train);
  const auto b = FitOn(Real().train);
  const std::vector<QualityEstimate> pa = PredictAll(*a);
  const std::vector<QualityEstimate> pb = PredictAll(*b);
  ASSERT_EQ(pa.size(), pb.size());
  bool some_gap = false;
  for (size_t k = 0; k < pa.size(); ++k) {
    EXPECT_GE(pa[k].quality_lower, 0.0);
    EXPECT_LE(pa[k].quality_lower, pa[k].quality);
    EXPECT_LE(pa[k].quality, 1.0);
    EXPECT_EQ(pa[k].quality, pb[k].quality);
    EXPECT_EQ(pa[k].quality_lower, pb[k].quality_lower);
    some_gap = some_gap || pa[k].quality - pa[k].quality_lower > 0.01;
  }
  EXPECT_TRUE(some_gap) << "the bootstrap bound never moved below the estimate";
}

TEST(KnnEstimatorTest, PredictionsTrackTheModelsRealAccuracy) {
  // gpt-4 is the most accurate model of routerbench: its mean prediction must beat claude-v2's.
  const auto knn = FitOn(Real().train);
  const std::vector<QualityEstimate> p = PredictAll(*knn);
  const auto& names = knn->models();
  const size_t m = names.size();
  const size_t gpt4 = std::find(names.begin(), names.end(), "gpt-4-1106-preview") - names.begin();
  const size_t claude2 = std::find(names.begin(), names.end(), "claude-v2") - names.begin();
  ASSERT_LT(gpt4, m);
  ASSERT_LT(claude2, m);
  double g = 0, c = 0;
  for (size_t k = 0; k < p.size(); k += m) g += p[k + gpt4].quality, c += p[k + claude2].quality;
  EXPECT_GT(g, c + 0.1 * static_cast<double>(p.size() / m));
}

TEST(KnnEstimatorTest, AddedModelPredictsLikeAModelFittedFromTheStart) {
  const TrainingSet& train = Real().train;
  const int added = 4;  // gpt-3.5-turbo-1106: it has blank labels, so its point set is a subset
  const auto full = FitOn(train);
  auto partial = FitOn(Without(train, added));
  ModelValidation validation;
  validation.features.dim = train.features.dim;
  for (int64_t r = 0; r < train.features.rows(); ++r) {
    const double y = train.label(r, added);
    if (std::isnan(y)) continue;
    const auto row = train.features.row(r);
    validation.features.values.insert(validation.features.values.end(), row.begin(), row.end());
    validation.scores.push_back(y);
  }
  ASSERT_LT(validation.scores.size(), static_cast<size_t>(train.features.rows()));
  ASSERT_THAT(partial->AddModel(train.models[added], validation), IsOk());
  ASSERT_EQ(partial->models().back(), train.models[added]);

  const size_t m = train.models.size();
  const std::vector<QualityEstimate> pf = PredictAll(*full);
  const std::vector<QualityEstimate> pp = PredictAll(*partial);
  for (size_t q = 0; q < pf.size() / m; ++q) {
    EXPECT_EQ(pp[q * m + m - 1].quality, pf[q * m + added].quality) << "query " << q;
    EXPECT_EQ(pp[q * m + m - 1].quality_lower, pf[q * m + added].quality_lower) << "query " << q;
    EXPECT_EQ(pp[q * m].quality, pf[q * m].quality);  // the others are untouched
  }
}

TEST(KnnEstimatorTest, AddModelRejectsDuplicatesAndBadValidation) {
  auto knn = FitOn(Real().train);
  ModelValidation v;
  v.features.dim = knn->feature_dim();
  v.features.values.assign(static_cast<size_t>(knn->feature_dim()), 0.5f);
  v.scores = {1.0};
  EXPECT_THAT(knn->AddModel("claude-v2", v),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("claude-v2")));
  v.scores = {1.5};
  EXPECT_THAT(knn->AddModel("new", v),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("validation.scores[0]")));
  v.scores = {1.0, 0.0};
  EXPECT_THAT(knn->AddModel("new", v),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("validation.scores")));
  v.scores = {1.0};
  v.features.dim = 3;
  v.features.values = {1, 2, 3};
  EXPECT_THAT(knn->AddModel("new", v),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("validation.features.dim")));
}

TEST(KnnEstimatorTest, RemovedModelIsNeverReturnedAndOthersAreUnchanged) {
  auto knn = FitOn(Real().train);
  const std::vector<QualityEstimate> before = PredictAll(*knn, 30);
  const std::string removed = knn->models()[2];
  ASSERT_THAT(knn->RemoveModel(removed), IsOk());
  EXPECT_EQ(knn->models().size(), 10u);
  EXPECT_EQ(std::find(knn->models().begin(), knn->models().end(), removed), knn->models().end());
  EXPECT_THAT(knn->RemoveModel(removed), StatusIs(absl::StatusCode::kNotFound, HasSubstr(removed)));
  std::vector<QualityEstimate> out(11);
  EXPECT_THAT(knn->Predict(Real().test.features.row(0), absl::MakeSpan(out)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("out: expected 10")));
  const std::vector<QualityEstimate> after = PredictAll(*knn, 30);
  for (size_t q = 0; q < 30; ++q) {
    for (size_t j = 0, k = 0; j < 11; ++j) {
      if (j == 2) continue;
      EXPECT_EQ(after[q * 10 + k].quality, before[q * 11 + j].quality);
      ++k;
    }
  }
  // Removing every model but one compacts the points to that model's own.
  while (knn->models().size() > 1) ASSERT_THAT(knn->RemoveModel(knn->models()[0]), IsOk());
  EXPECT_LE(knn->num_points(), Real().train.features.rows());
  EXPECT_EQ(PredictAll(*knn, 5).size(), 5u);
}

TEST(KnnEstimatorTest, SaveLoadAndCloneGiveIdenticalPredictions) {
  auto knn = FitOn(Real().train);
  ASSERT_THAT(knn->RemoveModel("claude-v1"), IsOk());
  absl::StatusOr<std::unique_ptr<QualityEstimator>> loaded = LoadKnnEstimator(knn->Save());
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ((*loaded)->models(), knn->models());
  EXPECT_EQ((*loaded)->Save(), knn->Save());
  const std::vector<QualityEstimate> a = PredictAll(*knn, 50);
  const std::vector<QualityEstimate> b = PredictAll(**loaded, 50);
  const std::vector<QualityEstimate> c = PredictAll(*knn->Clone(), 50);
  for (size_t k = 0; k < a.size(); ++k) {
    EXPECT_EQ(a[k].quality, b[k].quality);
    EXPECT_EQ(a[k].quality_lower, b[k].quality_lower);
    EXPECT_EQ(a[k].quality, c[k].quality);
  }
}

TEST(KnnEstimatorTest, LoadRejectsMalformedStateNamingTheField) {
  const nlohmann::json good = FitOn(Real().train)->Save();
  nlohmann::json j = good;
  j["kind"] = "uniroute";
  EXPECT_THAT(LoadKnnEstimator(j),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("knn.kind")));
  j = good;
  j["options"]["k"] = 0;
  EXPECT_THAT(LoadKnnEstimator(j), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("k:")));
  j = good;
  j["models"][1]["points"] = nlohmann::json::binary({255, 255, 255, 255});
  EXPECT_THAT(LoadKnnEstimator(j),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("knn.models[1].scores")));
  j = good;
  j["points"] = nlohmann::json::binary({1, 2, 3});
  EXPECT_THAT(LoadKnnEstimator(j),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("knn.points")));
  j = good;
  j["models"][0].erase("mean");
  EXPECT_THAT(LoadKnnEstimator(j),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("knn.models[0].mean")));
}

TEST(KnnEstimatorTest, BadInputsAreInvalidArgumentNamingTheField) {
  const auto knn = FitOn(Real().train);
  std::vector<QualityEstimate> out(11);
  std::vector<float> wrong(5, 0.1f);
  EXPECT_THAT(knn->Predict(wrong, absl::MakeSpan(out)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("features: expected 128 values, got 5")));
  std::vector<float> nan(128, 0.0f);
  nan[7] = std::nanf("");
  EXPECT_THAT(knn->Predict(nan, absl::MakeSpan(out)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("features[7]")));
  KnnOptions o = Options();
  o.lower_quantile = 2;
  EXPECT_THAT(KnnEstimator::Fit(Real().train, o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("lower_quantile")));
  // The zero vector (empty text) carries no information: the model means.
  std::vector<float> zero(128, 0.0f);
  ASSERT_THAT(knn->Predict(zero, absl::MakeSpan(out)), IsOk());
  EXPECT_EQ(out[0].quality, out[0].quality_lower);
}

}  // namespace
}  // namespace router::core
