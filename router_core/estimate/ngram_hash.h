// File: ngram_hash.h
//
// The featurizer's inner loop (featurizer.h): the fine bin of every character n-gram of one length
// in a byte string, bin = Mix64(FNV-1a 64 of the n-gram's bytes from `seed`) >> bin_shift. Two
// kernels compute exactly the same bins: a portable scalar loop, and an AVX-512 one (8 n-grams per
// instruction; about 7x faster on routerbench's prompts) used when the CPU has AVX-512F and DQ.
//
// Cost: count * (len + 3) 64-bit multiplies (scalar), an eighth of that in vector multiplies.
//
// Thread-safety: pure functions.

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

}  // namespace router::core::ngram_hash

#endif  // ROUTER_CORE_ESTIMATE_NGRAM_HASH_H_
