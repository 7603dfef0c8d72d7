#include "router_core/estimate/featurizer.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "router_core/estimate/binary_blob.h"
#include "router_core/estimate/splitmix.h"

namespace router::core {
namespace {

constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ULL;
constexpr uint64_t kFnvPrime = 0x100000001b3ULL;
// Salts keep a word, a bigram and a character n-gram with the same bytes apart.
constexpr uint64_t kWordSalt = 0x11;
constexpr uint64_t kBigramSalt = 0x22;
constexpr uint64_t kCharSalt = 0x33;

uint64_t Fnv1a(absl::string_view bytes, uint64_t salt) {
  uint64_t h = kFnvOffset ^ salt;
  for (const char c : bytes) {
    h ^= static_cast<uint8_t>(c);
    h *= kFnvPrime;
  }
  return h;
}

bool IsWordByte(uint8_t c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c >= 0x80; }

bool IsSpace(uint8_t c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

uint8_t Lower(uint8_t c) { return (c >= 'A' && c <= 'Z') ? static_cast<uint8_t>(c + 32) : c; }

// The lowercased text that is read: all of it, or its head and tail halves of the cap joined by a
// space; whitespace runs collapse to one space.
std::string Normalize(absl::string_view text, int64_t max_bytes) {
  const size_t cap = static_cast<size_t>(max_bytes);
  std::string out;
  out.reserve(std::min(text.size(), cap) + 1);
  auto append = [&out](absl::string_view part) {
    for (const char ch : part) {
      const uint8_t c = static_cast<uint8_t>(ch);
      if (IsSpace(c)) {
        if (!out.empty() && out.back() != ' ') out.push_back(' ');
      } else {
        out.push_back(static_cast<char>(Lower(c)));
      }
    }
  };
  if (text.size() <= cap) {
    append(text);
  } else {
    append(text.substr(0, cap / 2));
    if (!out.empty() && out.back() != ' ') out.push_back(' ');
    append(text.substr(text.size() - (cap - cap / 2)));
  }
  return out;
}

absl::Status ValidateOptions(const FeaturizerOptions& o) {
  if (o.dim < 1 || o.dim > 65536) {
    return absl::InvalidArgumentError(absl::StrCat("dim: expected 1..65536, got ", o.dim));
  }
  if (o.idf_bits < 8 || o.idf_bits > 24) {
    return absl::InvalidArgumentError(absl::StrCat("idf_bits: expected 8..24, got ", o.idf_bits));
  }
  if (o.char_ngram_max != 0 &&
      (o.char_ngram_min < 1 || o.char_ngram_min > o.char_ngram_max || o.char_ngram_max > 8)) {
    return absl::InvalidArgumentError(
        absl::StrCat("char_ngram_min/char_ngram_max: expected 1 <= min <= max <= 8 (or max 0), "
                     "got ",
                     o.char_ngram_min, "/", o.char_ngram_max));
  }
  if (o.max_text_bytes < 16 || o.max_text_bytes > (int64_t{1} << 20)) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_text_bytes: expected 16..1048576, got ", o.max_text_bytes));
  }
  return absl::OkStatus();
}

// Term counts of `text` per fine bin.
absl::flat_hash_map<uint32_t, uint32_t> CountTerms(absl::string_view text,
                                                   const FeaturizerOptions& o) {
  const std::string norm = Normalize(text, o.max_text_bytes);
  const int shift = 64 - o.idf_bits;
  absl::flat_hash_map<uint32_t, uint32_t> counts;
  counts.reserve(norm.size() * 2);
  auto add = [&](uint64_t hash) { ++counts[static_cast<uint32_t>(Mix64(hash) >> shift)]; };

  uint64_t previous_word = 0;
  bool have_previous = false;
  size_t k = 0;
  while (k < norm.size()) {
    if (!IsWordByte(static_cast<uint8_t>(norm[k]))) {
      ++k;
      continue;
    }
    size_t end = k;
    while (end < norm.size() && IsWordByte(static_cast<uint8_t>(norm[end]))) ++end;
    const uint64_t word = Fnv1a(absl::string_view(norm).substr(k, end - k), kWordSalt);
    add(word);
    if (o.word_bigrams && have_previous) add(Mix64(previous_word ^ kBigramSalt) ^ word);
    previous_word = word;
    have_previous = true;
    k = end;
  }
  if (o.char_ngram_max > 0) {
    for (int n = o.char_ngram_min; n <= o.char_ngram_max; ++n) {
      const size_t len = static_cast<size_t>(n);
      for (size_t start = 0; start + len <= norm.size(); ++start) {
        add(Fnv1a(absl::string_view(norm).substr(start, len), kCharSalt + len));
      }
    }
  }
  return counts;
}

}  // namespace

Featurizer::Featurizer(const FeaturizerOptions& options, int64_t num_docs, std::vector<uint32_t> df)
    : options_(options), num_docs_(num_docs), df_(std::move(df)) {
  const size_t bins = size_t{1} << options_.idf_bits;
  idf_.assign(bins, 1.0f);
  if (num_docs_ > 0) {
    for (size_t b = 0; b < bins; ++b) {
      idf_[b] = static_cast<float>(
          std::log((1.0 + static_cast<double>(num_docs_)) / (1.0 + static_cast<double>(df_[b]))));
    }
  }
  bucket_.resize(bins);
  for (size_t b = 0; b < bins; ++b) {
    const uint64_t h = Mix64(b ^ 0x5bd1e995ULL);
    bucket_[b] = static_cast<uint32_t>(((h >> 1) % static_cast<uint64_t>(options_.dim)) << 1) |
                 static_cast<uint32_t>(h & 1);
  }
}

absl::StatusOr<Featurizer> Featurizer::Create(const FeaturizerOptions& options) {
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  return Featurizer(options, 0, {});
}

absl::StatusOr<Featurizer> Featurizer::Fit(const FeaturizerOptions& options,
                                           absl::Span<const std::string> texts) {
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  if (texts.empty()) return absl::InvalidArgumentError("texts: need at least one to fit IDF");
  if (texts.size() > UINT32_MAX) return absl::InvalidArgumentError("texts: too many");
  std::vector<uint32_t> df(size_t{1} << options.idf_bits, 0);
  for (const std::string& text : texts) {
    for (const auto& [bin, count] : CountTerms(text, options)) ++df[bin];
  }
  return Featurizer(options, static_cast<int64_t>(texts.size()), std::move(df));
}

nlohmann::json Featurizer::ToJson() const {
  nlohmann::json j = {{"dim", options_.dim},
                      {"idf_bits", options_.idf_bits},
                      {"char_ngram_min", options_.char_ngram_min},
                      {"char_ngram_max", options_.char_ngram_max},
                      {"word_bigrams", options_.word_bigrams},
                      {"max_text_bytes", options_.max_text_bytes},
                      {"num_docs", num_docs_}};
  if (num_docs_ > 0) j["df"] = Uint32sToBlob(df_);
  return j;
}

absl::StatusOr<Featurizer> Featurizer::FromJson(const nlohmann::json& json) {
  if (!json.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("featurizer: expected an object, got ", json.type_name()));
  }
  FeaturizerOptions o;
  int64_t num_docs = 0;
  for (auto [key, target] : {std::pair{"dim", &o.dim}, std::pair{"idf_bits", &o.idf_bits},
                             std::pair{"char_ngram_min", &o.char_ngram_min},
                             std::pair{"char_ngram_max", &o.char_ngram_max}}) {
    const auto it = json.find(key);
    if (it == json.end() || !it->is_number_integer()) {
      return absl::InvalidArgumentError(
          absl::StrCat("featurizer.", key, ": missing or not an integer"));
    }
    const int64_t v = it->get<int64_t>();
    if (v < -1 || v > 1 << 20) {
      return absl::InvalidArgumentError(absl::StrCat("featurizer.", key, ": out of range: ", v));
    }
    *target = static_cast<int>(v);
  }
  for (auto [key, target] :
       {std::pair{"max_text_bytes", &o.max_text_bytes}, std::pair{"num_docs", &num_docs}}) {
    const auto it = json.find(key);
    if (it == json.end() || !it->is_number_integer() || it->get<int64_t>() < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("featurizer.", key, ": missing or not a non-negative integer"));
    }
    *target = it->get<int64_t>();
  }
  const auto bigrams = json.find("word_bigrams");
  if (bigrams == json.end() || !bigrams->is_boolean()) {
    return absl::InvalidArgumentError("featurizer.word_bigrams: missing or not a boolean");
  }
  o.word_bigrams = bigrams->get<bool>();
  if (absl::Status s = ValidateOptions(o); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("featurizer.", s.message()));
  }
  std::vector<uint32_t> df;
  if (num_docs > 0) {
    const auto it = json.find("df");
    if (it == json.end()) return absl::InvalidArgumentError("featurizer.df: missing");
    absl::StatusOr<std::vector<uint32_t>> values =
        BlobToUint32s(*it, "featurizer.df", size_t{1} << o.idf_bits);
    if (!values.ok()) return values.status();
    for (const uint32_t v : *values) {
      if (v > num_docs) {
        return absl::InvalidArgumentError("featurizer.df: a count exceeds num_docs");
      }
    }
    df = *std::move(values);
  }
  return Featurizer(o, num_docs, std::move(df));
}

absl::Status Featurizer::Featurize(absl::string_view text, absl::Span<float> out) const {
  if (out.size() != static_cast<size_t>(options_.dim)) {
    return absl::InvalidArgumentError(
        absl::StrCat("features: expected ", options_.dim, " values, got ", out.size()));
  }
  // Fixed-point accumulation: integer sums do not depend on the order terms come out of the hash
  // map (which varies between processes), so features are bit-identical on every run.
  constexpr double kScale = 16777216.0;  // 2^24: weights < 2^9, at most 2^22 terms, so |sum| < 2^55
  std::vector<int64_t> sums(out.size(), 0);
  for (const auto& [bin, count] : CountTerms(text, options_)) {
    const double weight = (1.0 + std::log(static_cast<double>(count))) * idf_[bin];
    const int64_t fixed = std::llround(weight * kScale);
    const uint32_t slot = bucket_[bin];
    sums[slot >> 1] += (slot & 1) != 0 ? fixed : -fixed;
  }
  double norm = 0.0;
  for (const int64_t v : sums) norm += static_cast<double>(v) * static_cast<double>(v);
  const double scale = norm > 0.0 ? 1.0 / std::sqrt(norm) : 0.0;
  for (size_t k = 0; k < out.size(); ++k) {
    out[k] = static_cast<float>(static_cast<double>(sums[k]) * scale);
  }
  return absl::OkStatus();
}

std::vector<float> Featurizer::Featurize(absl::string_view text) const {
  std::vector<float> out(static_cast<size_t>(options_.dim));
  // The span has the right size by construction.
  Featurize(text, absl::MakeSpan(out)).IgnoreError();
  return out;
}

}  // namespace router::core
