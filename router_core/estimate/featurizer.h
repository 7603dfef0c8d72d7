// File: featurizer.h
//
// The built-in text featurizer, so the service needs no external embedding model: text to a dense,
// L2-normalized float vector of `dim` values.
//
//   1. Only the first and last max_text_bytes/2 bytes are read (default 8 KiB each; the embedded
//      artifact reads 512 each, deploy/models/README.md): prompts put the instruction first and the
//      question last, and the cap bounds the cost of a huge text.
//   2. Terms: word unigrams and (optionally) bigrams, where a word is a run of ASCII letters and
//      digits or of non-ASCII bytes (so UTF-8 scripts form words without decoding, and invalid
//      UTF-8 is just bytes), lowercased; plus character n-grams (default 3-5 bytes) of the
//      lowercased text with whitespace runs collapsed.
//   3. Each term is hashed with FNV-1a 64 (salted by term type) into one of 2^idf_bits fine bins.
//      IDF is fitted per fine bin, idf = ln((1 + N) / (1 + df)), so a term found in every training
//      prompt weighs 0: the fixed few-shot prefixes of routerbench (see its SOURCE.md) vanish
//      instead of dominating. The fine space is what makes that work: folded straight into `dim`
//      buckets, every bucket would contain some prefix term.
//   4. weight = (1 + ln tf) * idf, added with a hashed sign (+-1, which keeps collisions unbiased)
//      to bucket Mix64(fine bin) mod dim; the vector is then L2-normalized. Empty text, or text
//      whose terms all weigh 0, gives the zero vector.
// Everything is deterministic across platforms (no std::hash, no locale).
//
// Cost: the B = min(text bytes, max_text_bytes) bytes read are normalized into a scratch buffer
// (64 bytes per step with AVX-512, text_normalize.h), then each of the L = char_ngram_max -
// char_ngram_min + 1 n-gram lengths is hashed over it in a loop without branches (8 n-grams per
// instruction with AVX-512, ngram_hash.h), then the words (8 per instruction with AVX-512); about
// B * (L + 1) term occurrences in all, each an FNV-1a and a Mix64, counted in a direct-indexed
// array of 2^idf_bits counts (no hashing, no probing), then O(distinct terms + dim); figures in
// bench/README.md, "Prediction cost". No allocation once the calling thread has
// featurized a text of that size: each thread keeps B + 66 bytes of text, 4 * B * (L + 1) bytes of
// fine bins and 2 * 2^idf_bits bytes of counts (128 KiB at the default idf_bits), plus 4 *
// 2^idf_bits once it featurized a text of 2^16 term occurrences or more (at most 6 MiB in all).
//
// Thread-safety: immutable after construction; Featurize is safe to call concurrently (the
// scratch is per thread).
//
// Errors: Create/Fit/FromJson return INVALID_ARGUMENT naming the bad option or field; Featurize
// returns INVALID_ARGUMENT for an output span of the wrong size. Nothing throws.

#ifndef ROUTER_CORE_ESTIMATE_FEATURIZER_H_
#define ROUTER_CORE_ESTIMATE_FEATURIZER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "nlohmann/json.hpp"

namespace router::core {

struct FeaturizerOptions {
  // Output dimension, in [1, 65536]. 256 keeps the kNN training matrix of routerbench_subset
  // (about 1,900 prompts) under 2 MiB of floats, and routes as well as 512 there (bench/README.md).
  int dim = 256;
  // log2 of the number of fine bins IDF is fitted on, in [8, 20]. 2^16 bins = 256 KiB of document
  // frequencies in the artifact (and of per-thread counts while featurizing).
  int idf_bits = 16;
  // Character n-gram lengths in bytes, 1 <= min <= max <= 8; max = 0 turns them off.
  int char_ngram_min = 3;
  int char_ngram_max = 5;
  bool word_bigrams = true;
  // Bytes of text read: the first and last half of this, in [16, 1 MiB].
  int64_t max_text_bytes = 16384;
};

class Featurizer {
 public:
  // A featurizer with unit IDF (sublinear term frequency only).
  static absl::StatusOr<Featurizer> Create(const FeaturizerOptions& options);
  // Fits IDF on `texts` (the training prompts).
  static absl::StatusOr<Featurizer> Fit(const FeaturizerOptions& options,
                                        absl::Span<const std::string> texts);
  static absl::StatusOr<Featurizer> FromJson(const nlohmann::json& json);

  // {"dim", "idf_bits", "char_ngram_min", "char_ngram_max", "word_bigrams", "max_text_bytes",
  //  "num_docs", "df": binary uint32 LE per fine bin (absent when num_docs is 0)}.
  nlohmann::json ToJson() const;

  int dim() const { return options_.dim; }
  const FeaturizerOptions& options() const { return options_; }

  // Writes the feature vector of `text` into `out` (out.size() == dim()).
  absl::Status Featurize(absl::string_view text, absl::Span<float> out) const;
  std::vector<float> Featurize(absl::string_view text) const;

 private:
  Featurizer(const FeaturizerOptions& options, int64_t num_docs, std::vector<uint32_t> df);

  FeaturizerOptions options_;
  int64_t num_docs_ = 0;
  std::vector<uint32_t> df_;      // per fine bin; empty when num_docs_ == 0
  // Per fine bin, derived from df_ and the bin: what Featurize looks up per distinct term, kept
  // together so that the lookup touches one cache line.
  struct Bin {
    float idf;        // all 1 without a fit
    uint32_t bucket;  // (output bucket << 1) | sign bit
  };
  std::vector<Bin> bins_;
};

}  // namespace router::core

#endif  // ROUTER_CORE_ESTIMATE_FEATURIZER_H_
