#include "router_core/estimate/uniroute_estimator.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "router_core/estimate/beta_distribution.h"
#include "router_core/estimate/calibration_metrics.h"
#include "tests/router_core/estimate/estimate_testing.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::core {
namespace {

using testing::Matrix;
using testing::PredictRow;
using testing::Set;
using testing::Validation;

using Json = nlohmann::json;

const testing::RouterbenchSplits& Data() { return testing::RouterbenchOrDie(); }

// The estimator fitted on the real training and calibration splits with default options.
const UniRouteEstimator& Fitted() {
  static const UniRouteEstimator* const fitted = [] {
    return testing::ReleaseOrDie(
        FitUniRoute(Data().train.features, Data().calibration, UniRouteOptions{}));
  }();
  return *fitted;
}

// Clusters from the first 600 training prompts only: for the tests of the pool mechanics, state
// and determinism, which need real data but not the best clusters (CI also runs them under Debug
// ASan).
constexpr int64_t kSmallTrainRows = 600;

const UniRouteEstimator& Small() {
  static const UniRouteEstimator* const small = [] {
    return testing::ReleaseOrDie(FitUniRoute(testing::Head(Data().train, kSmallTrainRows).features,
                                             Data().calibration, UniRouteOptions{}));
  }();
  return *small;
}

std::vector<std::vector<QualityEstimate>> PredictTest(const QualityEstimator& e) {
  return testing::PredictRows(e, Data().test.features);
}

int IndexOf(const std::vector<std::string>& names, const std::string& name) {
  return static_cast<int>(std::find(names.begin(), names.end(), name) - names.begin());
}

TEST(UniRouteRealDataTest, HeldOutPredictionsAreValidCalibratedAndRouteWell) {
  const UniRouteEstimator& e = Fitted();
  EXPECT_EQ(e.kind(), "uniroute");
  EXPECT_EQ(e.feature_dim(), testing::kTestFeatureDim);
  EXPECT_EQ(e.models(), Data().train.models);
  EXPECT_EQ(e.num_clusters(), UniRouteOptions{}.num_clusters);
  const testing::HeldOutQuality held_out = testing::EvaluateHeldOut(PredictTest(e), Data().test);
  EXPECT_LT(held_out.ece, 0.05);
  // argmax-quality routing keeps (within noise: 600 test prompts) the best single model's accuracy
  // (measured 0.884 against 0.889); far above the average model's (about 0.68).
  EXPECT_GT(held_out.routed_accuracy, held_out.best_single_accuracy - 0.03);
}

TEST(UniRouteRealDataTest, AddingAModelEqualsFittingWithItFromTheStart) {
  const TrainingSet& calibration = Data().calibration;
  // gpt-3.5-turbo-1106 has missing labels in the data, so the NaN path is exercised too.
  const int added = IndexOf(calibration.models, "gpt-3.5-turbo-1106");
  ASSERT_LT(added, static_cast<int>(calibration.models.size()));
  absl::StatusOr<std::unique_ptr<UniRouteEstimator>> without =
      FitUniRoute(testing::Head(Data().train, kSmallTrainRows).features,
                  testing::WithoutModel(calibration, added), UniRouteOptions{});
  ASSERT_THAT(without, IsOk());
  const auto before = PredictTest(**without);
  ASSERT_THAT(
      (*without)->AddModel(calibration.models[added], testing::ValidationOf(calibration, added)),
      IsOk());
  const std::vector<std::string>& names = (*without)->models();
  ASSERT_EQ(names.size(), calibration.models.size());
  EXPECT_EQ(names.back(), calibration.models[added]);

  const auto after = PredictTest(**without);
  const auto reference = PredictTest(Small());
  for (size_t i = 0; i < after.size(); ++i) {
    for (size_t j = 0; j < names.size(); ++j) {
      const QualityEstimate& want = reference[i][IndexOf(calibration.models, names[j])];
      // Same clusters, same assignments, same sums in the same order: bit-identical.
      ASSERT_EQ(after[i][j].quality, want.quality) << "prompt " << i << " model " << names[j];
      ASSERT_EQ(after[i][j].quality_lower, want.quality_lower);
      // The models already in the pool are untouched.
      if (j + 1 < names.size()) {
        ASSERT_EQ(after[i][j].quality, before[i][j].quality);
        ASSERT_EQ(after[i][j].quality_lower, before[i][j].quality_lower);
      }
    }
  }
}

TEST(UniRouteRealDataTest, RemovedModelIsNeverReturned) {
  testing::ExpectRemovalContract(Small(), "gpt-4-1106-preview", Data().test.features,
                                 &LoadUniRouteEstimator);
}

TEST(UniRouteRealDataTest, DeterministicUnderAFixedSeed) {
  const FeatureMatrix train = testing::Head(Data().train, kSmallTrainRows).features;
  for (ClusterMetric metric : {ClusterMetric::kCosine, ClusterMetric::kEuclidean}) {
    UniRouteOptions options;
    options.metric = metric;
    options.seed = 11;
    absl::StatusOr<std::unique_ptr<UniRouteEstimator>> a =
        FitUniRoute(train, Data().calibration, options);
    absl::StatusOr<std::unique_ptr<UniRouteEstimator>> b =
        FitUniRoute(train, Data().calibration, options);
    ASSERT_THAT(a, IsOk());
    ASSERT_THAT(b, IsOk());
    testing::ExpectIdentical(**a, **b, Data().test.features);
    // The seed matters: another one starts k-means++ elsewhere.
    options.seed = 12;
    absl::StatusOr<std::unique_ptr<UniRouteEstimator>> c =
        FitUniRoute(train, Data().calibration, options);
    ASSERT_THAT(c, IsOk());
    EXPECT_NE((*a)->Save()["centroids"], (*c)->Save()["centroids"]);
  }
}

TEST(UniRouteRealDataTest, SaveLoadRoundTripIsExact) {
  const Json saved = Small().Save();
  absl::StatusOr<std::unique_ptr<QualityEstimator>> loaded = LoadUniRouteEstimator(saved);
  ASSERT_THAT(loaded, IsOk());
  testing::ExpectIdentical(**loaded, Small(), Data().test.features);
  // Through text too, as an artifact file stores it.
  absl::StatusOr<std::unique_ptr<QualityEstimator>> reparsed =
      LoadUniRouteEstimator(Json::parse(saved.dump()));
  ASSERT_THAT(reparsed, IsOk());
  testing::ExpectIdentical(**reparsed, Small(), Data().test.features);
}

// Two obvious clusters in 2-D, two models with known validation results.
struct Toy {
  FeatureMatrix train = Matrix(2, {1.0f, 0.0f, 0.9f, 0.1f, 0.0f, 1.0f, 0.1f, 0.9f});
  TrainingSet validation =
      Set(Matrix(2, {1.0f, 0.0f, 0.95f, 0.05f, 0.9f, 0.1f, 0.0f, 1.0f, 0.05f, 0.95f}), {"a", "b"},
          {1, 1, 1, 1, 0, 1, 0, 1, 0, 0.5});

  // Two clusters with the default options otherwise.
  absl::StatusOr<std::unique_ptr<UniRouteEstimator>> FitTwoClusters() const {
    UniRouteOptions options;
    options.num_clusters = 2;
    return FitUniRoute(train, validation, options);
  }
};

TEST(UniRouteToyTest, PosteriorShrinksTowardTheModelsGlobalRate) {
  UniRouteOptions options;
  options.num_clusters = 2;
  options.temperature = 0.0;
  options.prior_strength = 4.0;
  options.lower_quantile = 0.1;
  Toy toy;
  absl::StatusOr<std::unique_ptr<UniRouteEstimator>> e =
      FitUniRoute(toy.train, toy.validation, options);
  ASSERT_THAT(e, IsOk());
  // Model a: 2 of 3 right near (1, 0), 0 of 2 near (0, 1); global rate (2 + 0.5) / (5 + 1).
  // Model b: 3 of 3, then 1 + 0.5 of 2 (a fractional score counts fractionally).
  const double ga = 2.5 / 6.0;
  const double gb = 5.0 / 6.0;
  struct Case {
    std::vector<float> x;
    double a_success, a_count, b_success, b_count;
  };
  for (const Case& c : {Case{{1.0f, 0.0f}, 2, 3, 3, 3}, Case{{0.0f, 2.0f}, 0, 2, 1.5, 2}}) {
    const auto out = PredictRow(**e, c.x);
    const double aa = c.a_success + 4 * ga;
    const double ab = c.a_count - c.a_success + 4 * (1 - ga);
    const double ba = c.b_success + 4 * gb;
    const double bb = c.b_count - c.b_success + 4 * (1 - gb);
    EXPECT_NEAR(out[0].quality, aa / (aa + ab), 1e-15);
    EXPECT_NEAR(out[1].quality, ba / (ba + bb), 1e-15);
    EXPECT_NEAR(out[0].quality_lower, *BetaQuantile(0.1, aa, ab), 1e-15);
    EXPECT_NEAR(out[1].quality_lower, *BetaQuantile(0.1, ba, bb), 1e-15);
  }
  // Feature scale does not matter (features are L2-normalised).
  EXPECT_THAT((*e)->NearestCluster(std::vector<float>{5.0f, 0.0f}),
              ::testing::Eq((*e)->NearestCluster(std::vector<float>{1.0f, 0.0f})));
}

TEST(UniRouteToyTest, SoftAssignmentBlendsEquidistantClusters) {
  UniRouteOptions hard;
  hard.num_clusters = 2;
  hard.temperature = 0.0;
  UniRouteOptions soft = hard;
  soft.temperature = 0.05;
  Toy toy;
  absl::StatusOr<std::unique_ptr<UniRouteEstimator>> h =
      FitUniRoute(toy.train, toy.validation, hard);
  absl::StatusOr<std::unique_ptr<UniRouteEstimator>> s =
      FitUniRoute(toy.train, toy.validation, soft);
  ASSERT_THAT(h, IsOk());
  ASSERT_THAT(s, IsOk());
  const auto left = PredictRow(**h, std::vector<float>{1.0f, 0.0f});
  const auto right = PredictRow(**h, std::vector<float>{0.0f, 1.0f});
  const auto middle = PredictRow(**s, std::vector<float>{1.0f, 1.0f});
  for (int j = 0; j < 2; ++j) {
    EXPECT_NEAR(middle[j].quality, 0.5 * (left[j].quality + right[j].quality), 1e-12);
    EXPECT_NEAR(middle[j].quality_lower, 0.5 * (left[j].quality_lower + right[j].quality_lower),
                1e-12);
  }
}

TEST(UniRouteToyTest, RejectsBadOptions) {
  Toy toy;
  auto fit_with = [&](auto&& edit) {
    UniRouteOptions options;
    options.num_clusters = 2;
    edit(options);
    return FitUniRoute(toy.train, toy.validation, options).status();
  };
  EXPECT_THAT(fit_with([](UniRouteOptions& o) { o.num_clusters = 0; }),
              InvalidNaming("num_clusters"));
  EXPECT_THAT(fit_with([](UniRouteOptions& o) { o.max_iterations = 0; }),
              InvalidNaming("max_iterations"));
  EXPECT_THAT(fit_with([](UniRouteOptions& o) { o.temperature = -1; }),
              InvalidNaming("temperature"));
  EXPECT_THAT(fit_with([](UniRouteOptions& o) { o.temperature = NAN; }),
              InvalidNaming("temperature"));
  EXPECT_THAT(fit_with([](UniRouteOptions& o) { o.prior_strength = 0; }),
              InvalidNaming("prior_strength"));
  EXPECT_THAT(fit_with([](UniRouteOptions& o) { o.lower_quantile = 0.7; }),
              InvalidNaming("lower_quantile"));
}

TEST(UniRouteToyTest, RejectsMoreClustersThanPrompts) {
  Toy toy;
  UniRouteOptions options;
  options.num_clusters = 5;
  EXPECT_THAT(FitUniRoute(toy.train, toy.validation, options).status(),
              InvalidNaming("num_clusters: 5 exceeds the number of training prompts (4)"));
  // Four rows but only two distinct directions (scale is normalised away).
  const FeatureMatrix duplicated = Matrix(2, {1.0f, 0.0f, 2.0f, 0.0f, 0.0f, 1.0f, 0.0f, 3.0f});
  options.num_clusters = 3;
  EXPECT_THAT(FitUniRoute(duplicated, toy.validation, options).status(),
              InvalidNaming("distinct training prompts"));
}

TEST(UniRouteToyTest, RejectsBadTrainingData) {
  Toy toy;
  UniRouteOptions options;
  options.num_clusters = 2;
  FeatureMatrix nan_train = toy.train;
  nan_train.values[3] = NAN;
  EXPECT_THAT(FitUniRoute(nan_train, toy.validation, options).status(),
              InvalidNaming("cluster_train.features: row 1 column 1 is not finite"));
  Toy nan_validation;
  nan_validation.validation.features.values[0] = INFINITY;
  EXPECT_THAT(FitUniRoute(toy.train, nan_validation.validation, options).status(),
              InvalidNaming("validation.features: row 0 column 0 is not finite"));
  Toy wrong_dim;
  wrong_dim.validation.features = Matrix(5, std::vector<float>(25, 0.5f));
  EXPECT_THAT(FitUniRoute(toy.train, wrong_dim.validation, options).status(),
              InvalidNaming("validation.dim: expected feature dimension 2, got 5"));
  Toy bad_label;
  bad_label.validation.labels[3] = 1.5;
  EXPECT_THAT(FitUniRoute(toy.train, bad_label.validation, options).status(),
              InvalidNaming("validation.labels[3]"));
  Toy short_labels;
  short_labels.validation.labels.pop_back();
  EXPECT_THAT(FitUniRoute(toy.train, short_labels.validation, options).status(),
              InvalidNaming("validation.labels"));
  Toy duplicate;
  duplicate.validation.models = {"a", "a"};
  EXPECT_THAT(FitUniRoute(toy.train, duplicate.validation, options).status(),
              InvalidNaming("duplicate model 'a'"));
  Toy unlabelled;
  for (int i = 0; i < 5; ++i) unlabelled.validation.labels[2 * i + 1] = NAN;
  EXPECT_THAT(FitUniRoute(toy.train, unlabelled.validation, options).status(),
              InvalidNaming("model 'b' has no labelled prompt"));
  EXPECT_THAT(FitUniRoute(FeatureMatrix{}, toy.validation, options).status(),
              InvalidNaming("cluster_train.dim"));
}

TEST(UniRouteToyTest, RejectsBadQueriesAndPoolChanges) {
  Toy toy;
  absl::StatusOr<std::unique_ptr<UniRouteEstimator>> e = toy.FitTwoClusters();
  ASSERT_THAT(e, IsOk());
  std::vector<QualityEstimate> out(2);
  EXPECT_THAT((*e)->Predict(std::vector<float>{1, 0, 0}, absl::MakeSpan(out)),
              InvalidNaming("expected dimension 2, got 3"));
  EXPECT_THAT((*e)->Predict(std::vector<float>{NAN, 0}, absl::MakeSpan(out)),
              InvalidNaming("features[0]: not finite"));
  std::vector<QualityEstimate> short_out(1);
  EXPECT_THAT((*e)->Predict(std::vector<float>{1, 0}, absl::MakeSpan(short_out)),
              InvalidNaming("out: expected 2 entries"));

  const ModelValidation good = Validation(Matrix(2, {1.0f, 0.0f}), {1.0});
  EXPECT_THAT((*e)->AddModel("a", good),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("'a'")));
  EXPECT_THAT((*e)->AddModel("", good), InvalidNaming("empty model name"));
  EXPECT_THAT((*e)->AddModel("c", Validation(Matrix(3, {1.0f, 0.0f, 0.0f}), {1.0})),
              InvalidNaming("expected feature dimension 2, got 3"));
  EXPECT_THAT((*e)->AddModel("c", Validation(Matrix(2, {NAN, 0.0f}), {1.0})),
              InvalidNaming("not finite"));
  EXPECT_THAT((*e)->AddModel("c", Validation(Matrix(2, {1.0f, 0.0f}), {1.0, 0.0})),
              InvalidNaming("scores: expected one per feature row (1), got 2"));
  EXPECT_THAT((*e)->AddModel("c", Validation(Matrix(2, {1.0f, 0.0f}), {NAN})),
              InvalidNaming("scores[0]"));
  EXPECT_THAT((*e)->AddModel("c", Validation(Matrix(2, {}), {})),
              InvalidNaming("no validation prompts"));
  EXPECT_THAT((*e)->RemoveModel("zzz"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("zzz")));
  // Failed calls left the pool as it was.
  EXPECT_EQ((*e)->models(), (std::vector<std::string>{"a", "b"}));
  // A model removed and added back from the same results predicts as before.
  const auto before = PredictRow(**e, std::vector<float>{1.0f, 0.2f});
  ASSERT_THAT((*e)->RemoveModel("a"), IsOk());
  ASSERT_THAT((*e)->AddModel("a", testing::ValidationOf(toy.validation, 0)), IsOk());
  EXPECT_EQ((*e)->models(), (std::vector<std::string>{"b", "a"}));
  const auto after = PredictRow(**e, std::vector<float>{1.0f, 0.2f});
  EXPECT_EQ(after[1].quality, before[0].quality);
  EXPECT_EQ(after[1].quality_lower, before[0].quality_lower);
}

TEST(UniRouteToyTest, LoadRejectsMalformedStateNamingTheField) {
  Toy toy;
  absl::StatusOr<std::unique_ptr<UniRouteEstimator>> e = toy.FitTwoClusters();
  ASSERT_THAT(e, IsOk());
  const Json good = (*e)->Save();
  ASSERT_THAT(LoadUniRouteEstimator(good), IsOk());

  struct Case {
    const char* field;
    void (*edit)(Json&);
  };
  const Case cases[] = {
      {"uniroute: expected an object", [](Json& j) { j = Json::array(); }},
      {"uniroute.kind", [](Json& j) { j["kind"] = "knn"; }},
      {"uniroute.version", [](Json& j) { j["version"] = 2; }},
      {"uniroute.feature_dim", [](Json& j) { j.erase("feature_dim"); }},
      {"uniroute.feature_dim", [](Json& j) { j["feature_dim"] = 0; }},
      {"uniroute.options.temperature", [](Json& j) { j["options"]["temperature"] = "hot"; }},
      {"uniroute.options.metric", [](Json& j) { j["options"]["metric"] = "manhattan"; }},
      {"uniroute.options.seed", [](Json& j) { j["options"]["seed"] = -1; }},
      {"uniroute.options.num_clusters: must be >= 1",
       [](Json& j) { j["options"]["num_clusters"] = 0; }},
      {"uniroute.options.lower_quantile", [](Json& j) { j["options"]["lower_quantile"] = 0.9; }},
      {"uniroute.centroids", [](Json& j) { j.erase("centroids"); }},
      {"uniroute.centroids", [](Json& j) { j["centroids"].erase(1); }},
      {"uniroute.centroids[1]", [](Json& j) { j["centroids"][1].push_back(0.5); }},
      {"uniroute.centroids[0][1]", [](Json& j) { j["centroids"][0][1] = nullptr; }},
      {"uniroute.models", [](Json& j) { j["models"] = Json::object(); }},
      {"uniroute.models[0].name", [](Json& j) { j["models"][0].erase("name"); }},
      {"uniroute.models[1].name", [](Json& j) { j["models"][1]["name"] = "a"; }},
      {"uniroute.models[0].count", [](Json& j) { j["models"][0]["count"] = {1.0}; }},
      {"uniroute.models[1].success[0]", [](Json& j) { j["models"][1]["success"][0] = 100.0; }},
      {"uniroute.models[0].success[1]", [](Json& j) { j["models"][0]["success"][1] = -1.0; }},
  };
  for (const Case& c : cases) {
    Json bad = good;
    c.edit(bad);
    EXPECT_THAT(LoadUniRouteEstimator(bad).status(), InvalidNaming(c.field)) << bad.dump();
  }
}

}  // namespace
}  // namespace router::core
