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
#include "router_core/estimate/splitmix.h"

namespace router::core {
namespace {

constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ULL;
constexpr uint64_t kFnvPrime = 0x100000001b3ULL;
// Salts keep a word, a bigram and a character n-gram with the same bytes apart.
constexpr uint64_t kWordSalt = 0x11;
constexpr uint64_t kBigramSalt = 0x22;
constexpr uint64_t kCharSalt = 0x33;

bool IsWordByte(uint8_t c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c >= 0x80; }

bool IsSpace(uint8_t c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

uint8_t Lower(uint8_t c) { return (c >= 'A' && c <= 'Z') ? static_cast<uint8_t>(c + 32) : c; }

// Calls sink(byte) for each byte of the text that is read, lowercased: all of it, or its head and
// tail halves of the cap joined by a space; whitespace runs collapse to one space and leading
// whitespace is dropped. Streaming it, rather than building the normalized string, saves a copy
// of up to max_bytes per call.
template <typename Sink>
void ForEachNormalizedByte(absl::string_view text, int64_t max_bytes, Sink sink) {
  const size_t cap = static_cast<size_t>(max_bytes);
  bool empty = true;
  bool last_space = false;
  auto space = [&] {
    if (!empty && !last_space) {
      sink(uint8_t{' '});
      last_space = true;
    }
  };
  auto append = [&](absl::string_view part) {
    for (const char ch : part) {
      const uint8_t c = static_cast<uint8_t>(ch);
      if (IsSpace(c)) {
        space();
      } else {
        sink(Lower(c));
        empty = false;
        last_space = false;
      }
    }
  };
  if (text.size() <= cap) {
    append(text);
  } else {
    append(text.substr(0, cap / 2));
    space();
    append(text.substr(text.size() - (cap - cap / 2)));
  }
}

// Calls add(64-bit term hash) once per term occurrence (words, bigrams, char n-grams; in stream
// order, which does not matter: only the counts are used). One pass over the normalized bytes:
// the word hash is extended byte by byte and the last 8 bytes are kept in a shift register for
// the character n-grams, each hashed with FNV-1a 64 from its first byte, as defined above.
template <typename Add>
void ForEachTerm(absl::string_view text, const FeaturizerOptions& o, Add add) {
  uint64_t word = 0;
  bool in_word = false;
  uint64_t previous_word = 0;
  bool have_previous = false;
  auto end_word = [&] {
    add(word);
    if (o.word_bigrams && have_previous) add(Mix64(previous_word ^ kBigramSalt) ^ word);
    previous_word = word;
    have_previous = true;
    in_word = false;
  };
  uint64_t window = 0;  // the last 8 normalized bytes, newest in the low byte
  int64_t seen = 0;
  const int n_min = o.char_ngram_min;
  const int n_max = o.char_ngram_max;
  ForEachNormalizedByte(text, o.max_text_bytes, [&](uint8_t c) {
    if (IsWordByte(c)) {
      if (!in_word) {
        word = kFnvOffset ^ kWordSalt;
        in_word = true;
      }
      word = (word ^ c) * kFnvPrime;
    } else if (in_word) {
      end_word();
    }
    window = (window << 8) | c;
    ++seen;
    for (int n = n_min; n <= n_max && n <= seen; ++n) {
      uint64_t h = kFnvOffset ^ (kCharSalt + static_cast<uint64_t>(n));
      for (int i = n - 1; i >= 0; --i) h = (h ^ ((window >> (8 * i)) & 0xff)) * kFnvPrime;
      add(h);
    }
  });
  if (in_word) end_word();
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

// Per-thread scratch of VisitTermCounts: an open-addressing table (linear probing) of fine bin ->
// count, all-empty between calls, plus the slots one call filled. Kept per thread so that a call
// allocates nothing once its thread has counted a text of that size; the table is at most 2^18
// slots (2 MiB, for a 16 KiB text with 8 n-gram lengths), typically 2^13 (64 KiB).
struct TermTable {
  struct Slot {
    uint32_t key = 0;  // fine bin + 1; 0 = empty
    uint32_t count = 0;
  };
  std::vector<Slot> slots;
  std::vector<uint32_t> used;  // indices into slots
  std::vector<int64_t> sums;   // Featurize's per-bucket accumulators, dim values
};

TermTable& ThreadTermTable() {
  static thread_local TermTable table;
  return table;
}

// Calls visit(fine bin, count) once per distinct fine bin of the terms of `text` (in first-seen
// order), using `table`, which it leaves all-empty again.
// Cost: O(normalized bytes * (char n-gram lengths + 1)) hashing and table updates.
template <typename Visit>
void VisitTermCounts(absl::string_view text, const FeaturizerOptions& o, TermTable& table,
                     Visit visit) {
  // Bound the number of term occurrences: per normalized byte at most one n-gram of each length,
  // and at most one word and one bigram per two bytes (words are separated).
  const uint64_t bytes = std::min<uint64_t>(text.size(), static_cast<uint64_t>(o.max_text_bytes)) + 1;
  const uint64_t lengths =
      o.char_ngram_max > 0 ? static_cast<uint64_t>(o.char_ngram_max - o.char_ngram_min + 1) : 0;
  const uint64_t terms = std::min(bytes * (lengths + 1), uint64_t{1} << o.idf_bits);
  // More slots than occurrences, so a free slot always ends a probe; distinct terms are typically
  // under half the occurrences, so probes stay short, and a small table stays in cache.
  int log_capacity = 4;
  while ((uint64_t{1} << log_capacity) <= terms) ++log_capacity;
  const size_t capacity = size_t{1} << log_capacity;
  if (table.slots.size() < capacity) table.slots.resize(capacity);
  const size_t mask = capacity - 1;
  const int slot_shift = 32 - log_capacity;
  const int bin_shift = 64 - o.idf_bits;
  TermTable::Slot* const slots = table.slots.data();
  table.used.clear();
  ForEachTerm(text, o, [&](uint64_t hash) {
    const uint32_t key = static_cast<uint32_t>(Mix64(hash) >> bin_shift) + 1;
    // Fibonacci hashing spreads the bins over the slots whatever idf_bits and capacity are.
    size_t s = static_cast<size_t>((key * 0x9e3779b1U) >> slot_shift);
    while (slots[s].key != key) {
      if (slots[s].key == 0) {
        slots[s].key = key;
        table.used.push_back(static_cast<uint32_t>(s));
        break;
      }
      s = (s + 1) & mask;
    }
    ++slots[s].count;
  });
  for (const uint32_t s : table.used) {
    visit(slots[s].key - 1, slots[s].count);
    slots[s] = TermTable::Slot();
  }
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
  TermTable& table = ThreadTermTable();
  for (const std::string& text : texts) {
    VisitTermCounts(text, options, table, [&df](uint32_t bin, uint32_t) { ++df[bin]; });
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
  // Fixed-point accumulation: integer sums do not depend on the order the terms are visited in,
  // so features are bit-identical on every run and for every table layout.
  constexpr double kScale = 16777216.0;  // 2^24: weights < 2^9, at most 2^22 terms, so |sum| < 2^55
  const std::array<double, kTfTableSize>& tf_table = TfTable();
  TermTable& table = ThreadTermTable();
  std::vector<int64_t>& sums = table.sums;
  sums.assign(out.size(), 0);
  VisitTermCounts(text, options_, table, [&](uint32_t bin, uint32_t count) {
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
