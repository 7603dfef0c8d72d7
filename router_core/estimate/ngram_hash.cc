#include "router_core/estimate/ngram_hash.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "router_core/estimate/splitmix.h"

namespace router::core::ngram_hash {

void FineBinsScalar(const uint8_t* bytes, size_t count, int len, uint64_t seed, int bin_shift,
                    uint32_t* out) {
  for (size_t i = 0; i < count; ++i) {
    uint64_t h = seed;
    for (int j = 0; j < len; ++j) h = (h ^ bytes[i + static_cast<size_t>(j)]) * kFnvPrime;
    out[i] = static_cast<uint32_t>(Mix64(h) >> bin_shift);
  }
}

#if defined(__x86_64__)

bool HaveAvx512() {
  static const bool have = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
  return have;
}

// GCC 12 reports the _mm512_undefined_epi32() inside its own AVX-512 intrinsics as maybe
// uninitialized (GCC bug 105593, fixed in GCC 13).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

// Lane k of every vector is the n-gram at i + k: the j-th byte of 8 consecutive n-grams is one
// 8-byte load at i + j, widened to 64 bits. Then FNV-1a and Mix64 exactly as in the scalar kernel.
__attribute__((target("avx512f,avx512dq"))) size_t FineBinsAvx512(const uint8_t* bytes,
                                                                  size_t count, int len,
                                                                  uint64_t seed, int bin_shift,
                                                                  uint32_t* out) {
  if (!HaveAvx512()) return 0;
  const __m512i prime = _mm512_set1_epi64(static_cast<long long>(kFnvPrime));
  const __m512i start = _mm512_set1_epi64(static_cast<long long>(seed));
  const __m512i golden = _mm512_set1_epi64(static_cast<long long>(0x9e3779b97f4a7c15ULL));
  const __m512i mix1 = _mm512_set1_epi64(static_cast<long long>(0xbf58476d1ce4e5b9ULL));
  const __m512i mix2 = _mm512_set1_epi64(static_cast<long long>(0x94d049bb133111ebULL));
  const __m128i shift = _mm_cvtsi32_si128(bin_shift);
  size_t i = 0;
  for (; i + 8 <= count; i += 8) {
    __m512i h = start;
    for (int j = 0; j < len; ++j) {
      // Reads bytes[i + j, i + j + 8): within the count + len - 1 bytes, as i + 8 <= count.
      const __m128i eight = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(bytes + i + j));
      h = _mm512_mullo_epi64(_mm512_xor_si512(h, _mm512_cvtepu8_epi64(eight)), prime);
    }
    h = _mm512_add_epi64(h, golden);  // Mix64 (splitmix.h)
    h = _mm512_mullo_epi64(_mm512_xor_si512(h, _mm512_srli_epi64(h, 30)), mix1);
    h = _mm512_mullo_epi64(_mm512_xor_si512(h, _mm512_srli_epi64(h, 27)), mix2);
    h = _mm512_xor_si512(h, _mm512_srli_epi64(h, 31));
    h = _mm512_srl_epi64(h, shift);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm512_cvtepi64_epi32(h));
  }
  return i;
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#else

bool HaveAvx512() { return false; }

size_t FineBinsAvx512(const uint8_t*, size_t, int, uint64_t, int, uint32_t*) { return 0; }

#endif

void FineBins(const uint8_t* bytes, size_t count, int len, uint64_t seed, int bin_shift,
              uint32_t* out) {
  const size_t done = FineBinsAvx512(bytes, count, len, seed, bin_shift, out);
  FineBinsScalar(bytes + done, count - done, len, seed, bin_shift, out + done);
}

}  // namespace router::core::ngram_hash
