#include "router_core/estimate/featurizer.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "router_core/estimate/ngram_hash.h"
#include "router_core/estimate/splitmix.h"
#include "router_core/estimate/text_normalize.h"
#include "tests/router_core/estimate/real_data.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::core {
namespace {

using ::router::core::testing::Real;
using ::testing::Each;
using ::testing::Eq;

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

// The definition in featurizer.h transcribed for clarity, not speed: normalized string, term
// hashes, std::map counts, double accumulation. Featurize must agree with it to float precision
// on any text, whatever the implementation does to be fast.
class ReferenceFeaturizer {
 public:
  ReferenceFeaturizer(const FeaturizerOptions& o, const std::vector<std::string>& fit_texts)
      : o_(o), num_docs_(static_cast<double>(fit_texts.size())) {
    for (const std::string& text : fit_texts) {
      for (const auto& [bin, count] : BinCounts(text)) ++df_[bin];
    }
  }

  std::vector<double> Featurize(const std::string& text) const {
    std::vector<double> v(static_cast<size_t>(o_.dim), 0.0);
    for (const auto& [bin, count] : BinCounts(text)) {
      const auto df = df_.find(bin);
      const float idf = num_docs_ == 0
                            ? 1.0f
                            : static_cast<float>(std::log(
                                  (1.0 + num_docs_) / (1.0 + (df == df_.end() ? 0 : df->second))));
      const uint64_t h = Mix64(bin ^ 0x5bd1e995ULL);
      const double sign = (h & 1) != 0 ? 1.0 : -1.0;
      v[(h >> 1) % static_cast<uint64_t>(o_.dim)] += sign * (1.0 + std::log(count)) * idf;
    }
    double norm = 0;
    for (const double x : v) norm += x * x;
    for (double& x : v) x = norm > 0 ? x / std::sqrt(norm) : 0.0;
    return v;
  }

 private:
  static uint64_t Fnv1a(uint64_t salt, const std::string& bytes) {
    uint64_t h = 0xcbf29ce484222325ULL ^ salt;
    for (const char c : bytes) h = (h ^ static_cast<uint8_t>(c)) * 0x100000001b3ULL;
    return h;
  }

  std::string Normalized(const std::string& text) const {
    const size_t cap = static_cast<size_t>(o_.max_text_bytes);
    const std::string read = text.size() <= cap ? text
                                                : text.substr(0, cap / 2) + " " +
                                                      text.substr(text.size() - (cap - cap / 2));
    std::string out;
    for (const char ch : read) {
      if (std::string(" \t\n\r\f\v").find(ch) != std::string::npos) {
        if (!out.empty() && out.back() != ' ') out += ' ';
      } else {
        out += (ch >= 'A' && ch <= 'Z') ? static_cast<char>(ch + 32) : ch;
      }
    }
    return out;
  }

  std::map<uint32_t, int> BinCounts(const std::string& text) const {
    const std::string s = Normalized(text);
    std::vector<uint64_t> hashes;
    for (int n = o_.char_ngram_min; o_.char_ngram_max > 0 && n <= o_.char_ngram_max; ++n) {
      for (size_t i = 0; i + static_cast<size_t>(n) <= s.size(); ++i) {
        hashes.push_back(
            Fnv1a(0x33 + static_cast<uint64_t>(n), s.substr(i, static_cast<size_t>(n))));
      }
    }
    auto is_word_byte = [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || static_cast<uint8_t>(c) >= 0x80;
    };
    std::vector<uint64_t> words;
    for (size_t i = 0; i < s.size();) {
      if (!is_word_byte(s[i])) {
        ++i;
        continue;
      }
      size_t end = i;
      while (end < s.size() && is_word_byte(s[end])) ++end;
      words.push_back(Fnv1a(0x11, s.substr(i, end - i)));
      i = end;
    }
    for (size_t w = 0; w < words.size(); ++w) {
      hashes.push_back(words[w]);
      if (o_.word_bigrams && w > 0) hashes.push_back(Mix64(words[w - 1] ^ 0x22) ^ words[w]);
    }
    std::map<uint32_t, int> counts;
    for (const uint64_t h : hashes) ++counts[static_cast<uint32_t>(Mix64(h) >> (64 - o_.idf_bits))];
    return counts;
  }

  FeaturizerOptions o_;
  double num_docs_;
  std::map<uint32_t, int> df_;
};

TEST(FeaturizerTest, MatchesTheReferenceDefinition) {
  std::vector<std::string> fit_texts;
  std::vector<std::string> texts = {"",
                                    " \n ",
                                    "a",
                                    "ab",
                                    "Hello,  World!\t\tHELLO world.",
                                    "\xff\xfe\x80 caf\xc3\xa9 na\xc3\xafve \x01\x02",
                                    std::string(300, 'x') + " tail  words " + std::string(50, ' ')};
  const std::vector<int64_t>& train = Real().train_rows;
  for (size_t k = 0; k < train.size(); ++k) {
    (k % 2 == 0 ? fit_texts : texts).push_back(Real().dataset.prompts[train[k]].text);
  }
  FeaturizerOptions defaults;
  FeaturizerOptions fourgrams;
  fourgrams.char_ngram_min = fourgrams.char_ngram_max = 4;
  FeaturizerOptions words_only;
  words_only.char_ngram_max = 0;
  words_only.idf_bits = 8;  // many collisions in the fine bins
  FeaturizerOptions wide;   // every n-gram length, no bigrams, a short head and tail
  wide.char_ngram_min = 1;
  wide.char_ngram_max = 8;
  wide.word_bigrams = false;
  wide.max_text_bytes = 64;
  wide.dim = 7;
  for (const FeaturizerOptions& o : {defaults, fourgrams, words_only, wide}) {
    for (const bool fitted : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "char n-grams " << o.char_ngram_min << "-"
                                        << o.char_ngram_max << ", idf fitted " << fitted);
      absl::StatusOr<Featurizer> f = fitted ? Featurizer::Fit(o, fit_texts) : Featurizer::Create(o);
      ASSERT_THAT(f, IsOk());
      const ReferenceFeaturizer reference(o, fitted ? fit_texts : std::vector<std::string>());
      for (size_t t = 0; t < texts.size(); ++t) {
        const std::vector<float> got = f->Featurize(texts[t]);
        const std::vector<double> want = reference.Featurize(texts[t]);
        ASSERT_EQ(got.size(), want.size());
        for (size_t k = 0; k < got.size(); ++k) {
          ASSERT_NEAR(got[k], want[k], 1e-6) << "text " << t << ", component " << k;
        }
      }
    }
  }
}

// Counts are kept in 16 bits when a text has fewer than 2^16 term occurrences; a longer text with a
// term far more frequent than that must still weigh it by its true count.
TEST(FeaturizerTest, ATermSeenMoreThan65535TimesIsCountedExactly) {
  FeaturizerOptions o;
  o.char_ngram_min = o.char_ngram_max = 4;
  o.max_text_bytes = 1 << 20;
  absl::StatusOr<Featurizer> f = Featurizer::Create(o);
  ASSERT_THAT(f, IsOk());
  const ReferenceFeaturizer reference(o, {});
  for (const std::string& text : {std::string(100'000, 'a') + " b", std::string(30'000, 'a')}) {
    const std::vector<float> got = f->Featurize(text);
    const std::vector<double> want = reference.Featurize(text);
    ASSERT_EQ(got.size(), want.size());
    for (size_t k = 0; k < got.size(); ++k) ASSERT_NEAR(got[k], want[k], 1e-6) << k;
  }
}

TEST(NgramHashTest, TheAvx512KernelMatchesTheScalarOne) {
  if (!ngram_hash::HaveAvx512()) GTEST_SKIP() << "this CPU has no AVX-512; FineBins is scalar";
  std::vector<std::string> texts = {std::string(), "abcdefghijklmnopq", std::string(1, '\xff')};
  for (size_t k = 0; k < 20; ++k)
    texts.push_back(Real().dataset.prompts[Real().train_rows[k]].text);
  for (const std::string& text : texts) {
    const auto* bytes = reinterpret_cast<const uint8_t*>(text.data());
    for (int len = 1; len <= 8; ++len) {
      for (const int bin_shift : {44, 48, 56}) {
        const size_t count = text.size() >= static_cast<size_t>(len) ? text.size() - len + 1 : 0;
        std::vector<uint32_t> scalar(count), vector(count), dispatched(count);
        ngram_hash::FineBinsScalar(bytes, count, len, 0x1234 + len, bin_shift, scalar.data());
        const size_t done =
            ngram_hash::FineBinsAvx512(bytes, count, len, 0x1234 + len, bin_shift, vector.data());
        ASSERT_EQ(done, count / 8 * 8);
        vector.resize(done);
        ngram_hash::FineBins(bytes, count, len, 0x1234 + len, bin_shift, dispatched.data());
        EXPECT_EQ(vector, std::vector<uint32_t>(scalar.begin(), scalar.begin() + done))
            << "len " << len << ", shift " << bin_shift << ", " << count << " n-grams";
        EXPECT_EQ(dispatched, scalar);
      }
    }
  }
}

// Texts that probe the byte scans: chunk boundaries (64 bytes), whitespace runs across them,
// leading whitespace longer than a chunk, words longer than 8 and than 64 bytes, upper case, bytes
// >= 0x80 and control bytes, and real prompts.
std::vector<std::string> ScanTexts() {
  std::vector<std::string> texts = {std::string(),
                                    " ",
                                    "a",
                                    "Ab1 \xc3\xa9t\xc3\xa9-x",
                                    std::string(130, ' ') + "Start",
                                    std::string(63, 'x') + "  \t\n" + std::string(70, 'Y') + " ",
                                    std::string(200, 'w'),
                                    "tail word at the end"};
  SplitMix64 random(7);
  const std::string alphabet = "aZ09 \t\n\r\f\v.,-_\x80\xff\x01@[`{";
  for (const size_t size : {1, 63, 64, 65, 127, 128, 129, 500, 1000}) {
    for (int round = 0; round < 4; ++round) {
      std::string text;
      for (size_t k = 0; k < size; ++k) {
        // Runs make long words and long whitespace as often as short ones.
        const char c = alphabet[random.Below(alphabet.size())];
        text.append(1 + random.Below(round == 0 ? 1 : 12), c);
      }
      texts.push_back(text);
    }
  }
  for (size_t k = 0; k < 20; ++k)
    texts.push_back(Real().dataset.prompts[Real().train_rows[k]].text);
  return texts;
}

TEST(TextNormalizeTest, LowercasesCollapsesWhitespaceAndJoinsHeadAndTail) {
  std::vector<uint8_t> out(64 + 2 + text_normalize::kWritePastEnd);
  auto normalize = [&](absl::string_view text, size_t max_bytes) {
    const size_t n = text_normalize::NormalizeText(text, max_bytes, out.data());
    return std::string(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(n));
  };
  EXPECT_EQ(normalize(" \t Hello,\n\n  WORLD \xc3\x89 ", 64), "hello, world \xc3\x89 ");
  EXPECT_EQ(normalize("   ", 64), "");
  EXPECT_EQ(normalize("ABCDEFGHIJ", 4), "ab ij");
}

TEST(TextNormalizeTest, TheAvx512KernelMatchesTheScalarOne) {
  if (!text_normalize::HaveAvx512Vbmi2()) {
    GTEST_SKIP() << "this CPU has no AVX-512 VBMI2; NormalizeText is scalar";
  }
  for (const std::string& text : ScanTexts()) {
    // From the start, and after a part that leaves whitespace pending or nothing but whitespace.
    for (const std::string& before : {std::string(), std::string("x "), std::string("  ")}) {
      std::vector<uint8_t> scalar(before.size() + text.size() + 2 + text_normalize::kWritePastEnd);
      std::vector<uint8_t> vector = scalar;
      text_normalize::Progress scalar_progress;
      text_normalize::AppendScalar(before, scalar.data(), scalar_progress);
      text_normalize::Progress vector_progress = scalar_progress;
      std::copy(scalar.begin(), scalar.begin() + 2, vector.begin());
      text_normalize::AppendScalar(text, scalar.data(), scalar_progress);
      const size_t done = text_normalize::AppendAvx512(text, vector.data(), vector_progress);
      ASSERT_EQ(done, text.size() / 64 * 64);
      text_normalize::AppendScalar(absl::string_view(text).substr(done), vector.data(),
                                   vector_progress);
      ASSERT_EQ(vector_progress.written, scalar_progress.written) << text;
      EXPECT_EQ(vector_progress.empty, scalar_progress.empty);
      EXPECT_EQ(vector_progress.last_space, scalar_progress.last_space);
      EXPECT_TRUE(
          std::equal(scalar.begin(), scalar.begin() + scalar_progress.written, vector.begin()))
          << text;
    }
  }
}

// FNV-1a 64 spelled out, for the expected bins below.
uint64_t Fnv(uint64_t seed, absl::string_view bytes) {
  for (const char c : bytes) seed = (seed ^ static_cast<uint8_t>(c)) * ngram_hash::kFnvPrime;
  return seed;
}

TEST(WordBinsTest, WordsAndBigramsAreRunsOfLettersDigitsAndHighBytes) {
  constexpr uint64_t kSeed = 5;
  constexpr uint64_t kSalt = 9;
  constexpr int kShift = 48;
  const std::string text = "Ab1, \xc3\xa9t\xc3\xa9";  // words "Ab1" and "\xc3\xa9t\xc3\xa9"
  const uint64_t first = Fnv(kSeed, "Ab1");
  const uint64_t second = Fnv(kSeed, "\xc3\xa9t\xc3\xa9");
  auto bin = [](uint64_t h) { return static_cast<uint32_t>(Mix64(h) >> kShift); };
  std::vector<uint32_t> expected = {bin(first), bin(second), bin(Mix64(first ^ kSalt) ^ second)};
  std::sort(expected.begin(), expected.end());
  std::string padded = text + std::string(ngram_hash::kWordBinsReadPastEnd, '\0');
  const auto* bytes = reinterpret_cast<const uint8_t*>(padded.data());
  std::vector<uint32_t> out(ngram_hash::WordBinsCapacity(text.size()));
  out.resize(
      ngram_hash::WordBinsScalar(bytes, text.size(), kSeed, kSalt, true, kShift, out.data()));
  std::sort(out.begin(), out.end());
  EXPECT_EQ(out, expected);
  out.assign(ngram_hash::WordBinsCapacity(text.size()), 0);
  out.resize(ngram_hash::WordBins(bytes, text.size(), kSeed, kSalt, false, kShift, out.data()));
  std::sort(out.begin(), out.end());
  EXPECT_EQ(out, (std::vector<uint32_t>{std::min(bin(first), bin(second)),
                                        std::max(bin(first), bin(second))}));
}

TEST(WordBinsTest, TheAvx512KernelMatchesTheScalarOne) {
  if (!ngram_hash::HaveAvx512Bw()) GTEST_SKIP() << "this CPU has no AVX-512 BW; WordBins is scalar";
  for (const std::string& text : ScanTexts()) {
    const std::string padded = text + std::string(ngram_hash::kWordBinsReadPastEnd, 'x');
    const auto* bytes = reinterpret_cast<const uint8_t*>(padded.data());
    for (const bool bigrams : {false, true}) {
      for (const int bin_shift : {44, 48, 56}) {
        std::vector<uint32_t> scalar(ngram_hash::WordBinsCapacity(text.size()));
        std::vector<uint32_t> vector(scalar.size());
        scalar.resize(ngram_hash::WordBinsScalar(bytes, text.size(), 3, 4, bigrams, bin_shift,
                                                 scalar.data()));
        size_t count = 0;
        ASSERT_TRUE(ngram_hash::WordBinsAvx512(bytes, text.size(), 3, 4, bigrams, bin_shift,
                                               vector.data(), &count));
        vector.resize(count);
        std::sort(scalar.begin(), scalar.end());
        std::sort(vector.begin(), vector.end());
        EXPECT_EQ(vector, scalar) << "bigrams " << bigrams << ", shift " << bin_shift << ": "
                                  << text;
      }
    }
  }
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
  o.idf_bits = 21;  // the per-thread counts would pass 4 MiB
  EXPECT_THAT(Featurizer::Create(o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("idf_bits: expected 8..20")));
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
