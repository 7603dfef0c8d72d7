#include "router_core/estimate/featurizer.h"

#include <cmath>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/router_core/estimate/real_data.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::core {
namespace {

using ::router::core::testing::IsOk;
using ::router::core::testing::Real;
using ::router::core::testing::StatusIs;
using ::testing::Each;
using ::testing::Eq;
using ::testing::HasSubstr;

double Norm(const std::vector<float>& v) {
  double s = 0;
  for (const float x : v) s += static_cast<double>(x) * x;
  return std::sqrt(s);
}

double Dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t k = 0; k < a.size(); ++k) s += static_cast<double>(a[k]) * b[k];
  return s;
}

Featurizer Default() {
  absl::StatusOr<Featurizer> f = Featurizer::Create(FeaturizerOptions());
  EXPECT_THAT(f, IsOk());
  return *std::move(f);
}

TEST(FeaturizerTest, EmptyAndBlankTextGiveTheZeroVector) {
  const Featurizer f = Default();
  EXPECT_THAT(f.Featurize(""), Each(Eq(0.0f)));
  EXPECT_THAT(f.Featurize(" \n\t "), Each(Eq(0.0f)));
  EXPECT_EQ(f.Featurize("").size(), 256u);
}

TEST(FeaturizerTest, UnitNormAndDeterministic) {
  const Featurizer f = Default();
  const std::vector<float> a = f.Featurize("What is the capital of France?");
  EXPECT_NEAR(Norm(a), 1.0, 1e-5);
  EXPECT_EQ(a, f.Featurize("What is the capital of France?"));
  // A second featurizer built from the same options agrees bit for bit.
  EXPECT_EQ(a, Default().Featurize("What is the capital of France?"));
}

TEST(FeaturizerTest, SimilarTextsAreCloserThanUnrelatedOnes) {
  const Featurizer f = Default();
  const auto a = f.Featurize("Write a python function to reverse a linked list.");
  const auto b = f.Featurize("Write a python function to reverse a string.");
  const auto c = f.Featurize("Quel temps fait-il a Paris aujourd'hui ?");
  EXPECT_GT(Dot(a, b), Dot(a, c) + 0.2);
}

TEST(FeaturizerTest, HugeTextIsCappedAndStillNormalized) {
  const Featurizer f = Default();
  std::string huge(10 << 20, 'a');
  for (size_t k = 0; k < huge.size(); k += 7) huge[k] = ' ';
  huge.replace(0, 9, "headword ");
  const std::vector<float> v = f.Featurize(huge);
  EXPECT_NEAR(Norm(v), 1.0, 1e-5);
  // Only the first and last 8 KiB are read: the middle does not matter.
  std::string other = huge;
  other.replace(5 << 20, 12, "middle words");
  EXPECT_EQ(v, f.Featurize(other));
  other.replace(2, 4, "XXXX");
  EXPECT_NE(v, f.Featurize(other));
}

TEST(FeaturizerTest, InvalidUtf8AndBinaryBytesAreJustBytes) {
  const Featurizer f = Default();
  const std::string bad = std::string("caf\xc3\x28 \xff\xfe\x80 abc ") + std::string("\0\x01zz", 4);
  const std::vector<float> v = f.Featurize(bad);
  EXPECT_NEAR(Norm(v), 1.0, 1e-5);
  for (const float x : v) EXPECT_TRUE(std::isfinite(x));
  EXPECT_EQ(v, f.Featurize(bad));
}

TEST(FeaturizerTest, IdfSilencesTermsFoundInEveryTrainingText) {
  FeaturizerOptions o;
  o.char_ngram_max = 0;  // words only, so the test can reason about terms
  o.word_bigrams = false;
  const std::vector<std::string> texts = {"common apple", "common banana", "common cherry"};
  absl::StatusOr<Featurizer> f = Featurizer::Fit(o, texts);
  ASSERT_THAT(f, IsOk());
  EXPECT_THAT(f->Featurize("common"), Each(Eq(0.0f)));
  EXPECT_NEAR(Norm(f->Featurize("common apple")), 1.0, 1e-5);
  // With IDF, "common" adds nothing: "common apple" == "apple".
  EXPECT_EQ(f->Featurize("common apple"), f->Featurize("apple"));
}

TEST(FeaturizerTest, JsonRoundTripGivesIdenticalFeatures) {
  const Featurizer& fitted = Real().featurizer;
  absl::StatusOr<Featurizer> back = Featurizer::FromJson(fitted.ToJson());
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->ToJson(), fitted.ToJson());
  for (const int64_t p : Real().test_rows) {
    const std::string& text = Real().dataset.prompts[p].text;
    ASSERT_EQ(back->Featurize(text), fitted.Featurize(text)) << "prompt " << p;
  }
}

TEST(FeaturizerTest, RejectsBadOptionsAndJsonNamingTheField) {
  FeaturizerOptions o;
  o.dim = 0;
  EXPECT_THAT(Featurizer::Create(o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dim")));
  o = FeaturizerOptions();
  o.char_ngram_min = 6;
  EXPECT_THAT(Featurizer::Create(o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("char_ngram_min")));
  o = FeaturizerOptions();
  o.max_text_bytes = 2;
  EXPECT_THAT(Featurizer::Create(o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_text_bytes")));

  nlohmann::json j = Real().featurizer.ToJson();
  j["df"] = nlohmann::json::binary({1, 2, 3});
  EXPECT_THAT(Featurizer::FromJson(j),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("featurizer.df")));
  j = Real().featurizer.ToJson();
  j.erase("word_bigrams");
  EXPECT_THAT(Featurizer::FromJson(j),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("word_bigrams")));
  std::vector<float> out(3);
  EXPECT_THAT(Real().featurizer.Featurize("x", absl::MakeSpan(out)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("features: expected 128")));
}

}  // namespace
}  // namespace router::core
