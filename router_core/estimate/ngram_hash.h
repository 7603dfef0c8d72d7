// File: ngram_hash.h
//
// The featurizer's hashing kernels (featurizer.h), each with a portable scalar version and an
// AVX-512 one that computes exactly the same bins, used when the CPU has the extensions it needs:
//   - FineBins: the fine bin of every character n-gram of one length in a byte string,
//     bin = Mix64(FNV-1a 64 of the n-gram's bytes from `seed`) >> bin_shift; the AVX-512 kernel
//     (F, DQ) hashes 8 n-grams per instruction (bench/README.md, "Prediction cost").
//   - WordBins: the fine bins of the words of a byte string and of their bigrams; the AVX-512
//     kernel (F, DQ, BW) finds the words 64 bytes at a time from bit masks and hashes 8 words per
//     instruction (VL and BMI too), where the scalar loop hashes one byte at a time and branches
//     at every word boundary.
//
// Cost: FineBins: count * (len + 3) 64-bit multiplies (scalar), an eighth of that in vector
// multiplies. WordBins: one multiply per word byte plus 3 per word and 3 per bigram (scalar); the
// AVX-512 kernel does an eighth of that per word group, padded to the group's longest word.
//
// Thread-safety: pure functions (WordBinsAvx512 keeps per-thread scratch).

#ifndef ROUTER_CORE_ESTIMATE_NGRAM_HASH_H_
#define ROUTER_CORE_ESTIMATE_NGRAM_HASH_H_

#include <cstddef>
#include <cstdint>

namespace router::core::ngram_hash {

// FNV-1a 64: h = offset (^ a salt); per byte h = (h ^ byte) * prime.
inline constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ULL;
inline constexpr uint64_t kFnvPrime = 0x100000001b3ULL;

// Writes out[i] = bin of the n-gram bytes[i, i + len) for i < count; bytes must hold
// count + len - 1 bytes. len in [1, 8], bin_shift in [44, 56] (idf_bits 8..20).
void FineBins(const uint8_t* bytes, size_t count, int len, uint64_t seed, int bin_shift,
              uint32_t* out);

// The two kernels behind FineBins, for tests: the scalar one, and the AVX-512 one, which returns
// how many leading n-grams it wrote (a multiple of 8; 0 on a CPU without AVX-512 or on other
// architectures), leaving the rest to the scalar kernel.
void FineBinsScalar(const uint8_t* bytes, size_t count, int len, uint64_t seed, int bin_shift,
                    uint32_t* out);
size_t FineBinsAvx512(const uint8_t* bytes, size_t count, int len, uint64_t seed, int bin_shift,
                      uint32_t* out);
bool HaveAvx512();

// A word is a maximal run of word bytes: ASCII letters and digits (either case) and bytes >= 0x80
// (so UTF-8 scripts form words without decoding). Word k's hash is w_k = FNV-1a 64 of its bytes
// from `word_seed`; it gives the bin Mix64(w_k) >> bin_shift and, when `bigrams` and k > 0, the
// bigram bin Mix64(Mix64(w_{k-1} ^ bigram_salt) ^ w_k) >> bin_shift.
//
// WordBins writes all these bins to `out` and returns how many. Only the multiset is defined: the
// order depends on the kernel. `out` must hold WordBinsCapacity(n) entries, and `text` must be
// followed by kWordBinsReadPastEnd readable bytes (read by the vector kernel, never used).
inline constexpr size_t kWordBinsReadPastEnd = 64;
constexpr size_t WordBinsCapacity(size_t n) { return n + 16; }
size_t WordBins(const uint8_t* text, size_t n, uint64_t word_seed, uint64_t bigram_salt,
                bool bigrams, int bin_shift, uint32_t* out);

// The two kernels behind WordBins, for tests. WordBinsAvx512 returns false, writing nothing, on a
// CPU without AVX-512 F, DQ, BW and VL (and BMI1/2) or on other architectures.
size_t WordBinsScalar(const uint8_t* text, size_t n, uint64_t word_seed, uint64_t bigram_salt,
                      bool bigrams, int bin_shift, uint32_t* out);
bool WordBinsAvx512(const uint8_t* text, size_t n, uint64_t word_seed, uint64_t bigram_salt,
                    bool bigrams, int bin_shift, uint32_t* out, size_t* count);
bool HaveAvx512Bw();

}  // namespace router::core::ngram_hash

#endif  // ROUTER_CORE_ESTIMATE_NGRAM_HASH_H_
