#include "router_core/estimate/featurizer.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "router_core/estimate/binary_blob.h"
#include "router_core/estimate/ngram_hash.h"
#include "router_core/estimate/splitmix.h"
#include "router_core/estimate/text_normalize.h"
#include "router_core/json/json_reader.h"

namespace router::core {
namespace {

using ngram_hash::kFnvOffset;
// Salts keep a word, a bigram and a character n-gram with the same bytes apart.
constexpr uint64_t kWordSalt = 0x11;
constexpr uint64_t kBigramSalt = 0x22;
constexpr uint64_t kCharSalt = 0x33;

// Appends to `bins` the fine bin (the top idf_bits of Mix64(term hash)) of every term occurrence of
// the normalized bytes, as defined in the file comment: the character n-grams of each length, each
// hashed with FNV-1a 64 from its first byte, then the words and their bigrams. Order does not
// matter (only the counts are used); hashing all n-grams of one length in one loop without
// branches (ngram_hash.h, vectorized where the CPU allows) is what makes this fast.
void AppendTermBins(absl::Span<const uint8_t> text, const FeaturizerOptions& o,
                    std::vector<uint32_t>& bins) {
  const int bin_shift = 64 - o.idf_bits;
  const uint8_t* const p = text.data();
  const size_t n = text.size();
  if (o.char_ngram_max > 0) {
    for (int len = o.char_ngram_min; len <= o.char_ngram_max; ++len) {
      const uint64_t seed = kFnvOffset ^ (kCharSalt + static_cast<uint64_t>(len));
      const size_t first = bins.size();
      const size_t count = n >= static_cast<size_t>(len) ? n - static_cast<size_t>(len) + 1 : 0;
      bins.resize(first + count);
      ngram_hash::FineBins(p, count, len, seed, bin_shift, bins.data() + first);
    }
  }
  const size_t first = bins.size();
  bins.resize(first + ngram_hash::WordBinsCapacity(n));
  bins.resize(first + ngram_hash::WordBins(p, n, kFnvOffset ^ kWordSalt, kBigramSalt,
                                           o.word_bigrams, bin_shift, bins.data() + first));
}

double SublinearTf(uint32_t count) { return 1.0 + std::log(static_cast<double>(count)); }

// SublinearTf of the small counts almost every term has, computed once: a libm log per distinct
// term was a tenth of the featurizer's time. Same function, same values.
constexpr size_t kTfTableSize = 256;
const std::array<double, kTfTableSize>& TfTable() {
  static const std::array<double, kTfTableSize> table = [] {
    std::array<double, kTfTableSize> t{};
    for (uint32_t c = 1; c < kTfTableSize; ++c) t[c] = SublinearTf(c);
    return t;
  }();
  return table;
}

// std::llround for 0 <= x < 2^63 (half away from zero) without the libm call: x - trunc(x) is
// exact in binary floating point, so the comparison with 0.5 decides exactly as llround does.
int64_t RoundHalfAway(double x) {
  const int64_t t = static_cast<int64_t>(x);
  return x - static_cast<double>(t) >= 0.5 ? t + 1 : t;
}

// Per-thread scratch of VisitTermCounts, kept per thread so that a call allocates nothing once its
// thread has featurized a text of that size: the normalized bytes (<= max_text_bytes + 2, and the
// bytes the kernels may write or read past them), the fine bin of every term occurrence (4 bytes
// per occurrence, 4 * (L + 1) per byte), and one count per fine bin, all zero between calls: 2
// bytes each (128 KiB at the default 16 bits) when the text has fewer than 2^16 term occurrences,
// which bound every count (the embedded artifact's texts have at most about 2,100), else 4 bytes.
struct TermScratch {
  std::vector<uint8_t> text;
  std::vector<uint32_t> bins;
  std::vector<uint16_t> small_counts;
  std::vector<uint32_t> counts;
  std::vector<uint32_t> distinct;  // fine bins in first-seen order
  std::vector<int64_t> sums;       // Featurize's per-bucket accumulators, dim values
};

TermScratch& ThreadTermScratch() {
  static thread_local TermScratch scratch;
  return scratch;
}

// The counting and visiting of VisitTermCounts over `counts` (2^idf_bits zeros, left zero again),
// for a count type wide enough for every count. The narrower type halves the array's cache
// footprint, whose misses are most of these loops' cost under load.
template <typename Count, typename Prefetch, typename Visit>
void CountAndVisit(absl::Span<const uint32_t> occurrences, Count* counts, uint32_t* distinct,
                   Prefetch prefetch, Visit visit) {
  // Prefetch distances, chosen with predictor_bench's BM_FeaturizeEvicted (bench/README.md,
  // "Prediction cost").
  constexpr size_t kCountAhead = 32;
  constexpr size_t kVisitAhead = 64;
  const size_t num_bins = occurrences.size();
  size_t num_distinct = 0;
  for (size_t t = 0; t < num_bins; ++t) {
    __builtin_prefetch(&counts[occurrences[std::min(t + kCountAhead, num_bins - 1)]]);
    const uint32_t bin = occurrences[t];
    distinct[num_distinct] = bin;  // kept only if this is the bin's first occurrence
    num_distinct += static_cast<size_t>(counts[bin]++ == 0);
  }
  for (size_t d = 0; d < num_distinct; ++d) {
    if (d + kVisitAhead < num_distinct) {
      __builtin_prefetch(&counts[distinct[d + kVisitAhead]]);
      prefetch(distinct[d + kVisitAhead]);
    }
    visit(distinct[d], static_cast<uint32_t>(counts[distinct[d]]));
    counts[distinct[d]] = 0;
  }
}

// Calls visit(fine bin, count) once per distinct fine bin of the terms of `text` (in first-seen
// order), using `scratch`, whose counts it leaves all zero again. prefetch(fine bin) is called
// some bins ahead of visit(fine bin), for what visit will read: under load the count array and the
// callers' per-bin tables are out of cache (bench/README.md, "Prediction cost").
// Cost: O(normalized bytes * (char n-gram lengths + 1)) hashing and direct-indexed count updates,
// then O(distinct bins) visits; no branch depends on the text except in the scalar word split.
template <typename Prefetch, typename Visit>
void VisitTermCounts(absl::string_view text, const FeaturizerOptions& o, TermScratch& scratch,
                     Prefetch prefetch, Visit visit) {
  const size_t max_bytes = static_cast<size_t>(o.max_text_bytes);
  scratch.text.resize(std::min(text.size(), max_bytes) + 2 +
                      std::max(text_normalize::kWritePastEnd, ngram_hash::kWordBinsReadPastEnd));
  const size_t n = text_normalize::NormalizeText(text, max_bytes, scratch.text.data());
  scratch.bins.clear();
  AppendTermBins(absl::MakeConstSpan(scratch.text.data(), n), o, scratch.bins);
  const size_t bins = size_t{1} << o.idf_bits;
  scratch.distinct.resize(scratch.bins.size() + 1);
  if (scratch.bins.size() <= UINT16_MAX) {
    if (scratch.small_counts.size() < bins) scratch.small_counts.resize(bins, 0);
    CountAndVisit(scratch.bins, scratch.small_counts.data(), scratch.distinct.data(), prefetch,
                  visit);
  } else {
    if (scratch.counts.size() < bins) scratch.counts.resize(bins, 0);
    CountAndVisit(scratch.bins, scratch.counts.data(), scratch.distinct.data(), prefetch, visit);
  }
}

absl::Status ValidateOptions(const FeaturizerOptions& o) {
  if (o.dim < 1 || o.dim > 65536) {
    return absl::InvalidArgumentError(absl::StrCat("dim: expected 1..65536, got ", o.dim));
  }
  if (o.idf_bits < 8 || o.idf_bits > 20) {
    return absl::InvalidArgumentError(absl::StrCat("idf_bits: expected 8..20, got ", o.idf_bits));
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

}  // namespace

Featurizer::Featurizer(const FeaturizerOptions& options, int64_t num_docs, std::vector<uint32_t> df)
    : options_(options), num_docs_(num_docs), df_(std::move(df)) {
  const size_t bins = size_t{1} << options_.idf_bits;
  bins_.resize(bins);
  for (size_t b = 0; b < bins; ++b) {
    bins_[b].idf = num_docs_ > 0 ? static_cast<float>(std::log(
                                       (1.0 + static_cast<double>(num_docs_)) /
                                       (1.0 + static_cast<double>(df_[b]))))
                                 : 1.0f;
    const uint64_t h = Mix64(b ^ 0x5bd1e995ULL);
    bins_[b].bucket =
        static_cast<uint32_t>(((h >> 1) % static_cast<uint64_t>(options_.dim)) << 1) |
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
  TermScratch& scratch = ThreadTermScratch();
  for (const std::string& text : texts) {
    VisitTermCounts(
        text, options, scratch, [&df](uint32_t bin) { __builtin_prefetch(&df[bin]); },
        [&df](uint32_t bin, uint32_t) { ++df[bin]; });
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
  const JsonReader root(json, "featurizer");
  if (absl::Status s = root.CheckObject(); !s.ok()) return s;
  FeaturizerOptions o;
  int64_t num_docs = 0;
  // Ranges are ValidateOptions's; these bounds only keep the values ints.
  for (auto [key, target] : {std::pair{"dim", &o.dim}, std::pair{"idf_bits", &o.idf_bits},
                             std::pair{"char_ngram_min", &o.char_ngram_min},
                             std::pair{"char_ngram_max", &o.char_ngram_max}}) {
    absl::StatusOr<int64_t> v =
        root.Get(&JsonReader::Integer, key,
                 IntegerSpec{.min = -1, .max = 1 << 20, .integral_floats = false});
    if (!v.ok()) return v.status();
    *target = static_cast<int>(*v);
  }
  for (auto [key, target] :
       {std::pair{"max_text_bytes", &o.max_text_bytes}, std::pair{"num_docs", &num_docs}}) {
    absl::StatusOr<int64_t> v =
        root.Get(&JsonReader::Integer, key, IntegerSpec{.min = 0, .integral_floats = false});
    if (!v.ok()) return v.status();
    *target = *v;
  }
  absl::StatusOr<bool> bigrams = root.Get(&JsonReader::Bool, "word_bigrams");
  if (!bigrams.ok()) return bigrams.status();
  o.word_bigrams = *bigrams;
  if (absl::Status s = ValidateOptions(o); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("featurizer.", s.message()));
  }
  std::vector<uint32_t> df;
  if (num_docs > 0) {
    absl::StatusOr<JsonReader> blob = root.Member("df");
    if (!blob.ok()) return blob.status();
    absl::StatusOr<std::vector<uint32_t>> values =
        BlobToUint32s(blob->json(), blob->path(), size_t{1} << o.idf_bits);
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
  // Fixed-point accumulation: integer sums do not depend on the order the terms are visited in,
  // so features are bit-identical on every run and for every table layout.
  constexpr double kScale = 16777216.0;  // 2^24: weights < 2^9, at most 2^22 terms, so |sum| < 2^55
  const std::array<double, kTfTableSize>& tf_table = TfTable();
  TermScratch& scratch = ThreadTermScratch();
  std::vector<int64_t>& sums = scratch.sums;
  sums.assign(out.size(), 0);
  VisitTermCounts(
      text, options_, scratch, [this](uint32_t bin) { __builtin_prefetch(&bins_[bin]); },
      [&](uint32_t bin, uint32_t count) {
        const Bin& b = bins_[bin];
        const float idf = b.idf;
        if (idf == 0.0f) return;  // a term of every training prompt adds exactly 0
        const double tf = count < tf_table.size() ? tf_table[count] : SublinearTf(count);
        const int64_t fixed = RoundHalfAway(tf * idf * kScale);
        const uint32_t slot = b.bucket;
        sums[slot >> 1] += (slot & 1) != 0 ? fixed : -fixed;
      });
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
