#include "router_core/estimate/ngram_hash.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <array>
#include <vector>

#include "router_core/estimate/splitmix.h"

namespace router::core::ngram_hash {

namespace {

uint32_t Bin(uint64_t hash, int bin_shift) {
  return static_cast<uint32_t>(Mix64(hash) >> bin_shift);
}

bool IsWordByte(uint8_t c) {
  const uint8_t lower = c | 0x20;  // 'A'-'Z' -> 'a'-'z'; nothing else lands in 'a'-'z'
  return (lower >= 'a' && lower <= 'z') || (c >= '0' && c <= '9') || c >= 0x80;
}

}  // namespace

void FineBinsScalar(const uint8_t* bytes, size_t count, int len, uint64_t seed, int bin_shift,
                    uint32_t* out) {
  for (size_t i = 0; i < count; ++i) {
    uint64_t h = seed;
    for (int j = 0; j < len; ++j) h = (h ^ bytes[i + static_cast<size_t>(j)]) * kFnvPrime;
    out[i] = Bin(h, bin_shift);
  }
}

size_t WordBinsScalar(const uint8_t* text, size_t n, uint64_t word_seed, uint64_t bigram_salt,
                      bool bigrams, int bin_shift, uint32_t* out) {
  static const std::array<bool, 256> word_byte = [] {
    std::array<bool, 256> table{};
    for (int b = 0; b < 256; ++b) table[b] = IsWordByte(static_cast<uint8_t>(b));
    return table;
  }();
  size_t count = 0;
  uint64_t previous = 0;
  bool have_previous = false;
  size_t i = 0;
  while (true) {
    while (i < n && !word_byte[text[i]]) ++i;
    if (i == n) break;
    uint64_t word = word_seed;
    for (; i < n && word_byte[text[i]]; ++i) word = (word ^ text[i]) * kFnvPrime;
    out[count++] = Bin(word, bin_shift);
    if (bigrams && have_previous)
      out[count++] = Bin(Mix64(previous ^ bigram_salt) ^ word, bin_shift);
    previous = word;
    have_previous = true;
  }
  return count;
}

#if defined(__x86_64__)

bool HaveAvx512() {
  static const bool have = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
  return have;
}

bool HaveAvx512Bw() {
  static const bool have = HaveAvx512() && __builtin_cpu_supports("avx512bw") &&
                           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("bmi") &&
                           __builtin_cpu_supports("bmi2");
  return have;
}

// GCC 12 reports the _mm512_undefined_epi32() inside its own AVX-512 intrinsics as maybe
// uninitialized (GCC bug 105593, fixed in GCC 13).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace {

// Mix64 (splitmix.h) of 8 lanes, then >> bin_shift.
__attribute__((target("avx512f,avx512dq"))) __m512i BinsOf(__m512i h, __m128i shift) {
  h = _mm512_add_epi64(h, _mm512_set1_epi64(static_cast<long long>(0x9e3779b97f4a7c15ULL)));
  h = _mm512_mullo_epi64(_mm512_xor_si512(h, _mm512_srli_epi64(h, 30)),
                         _mm512_set1_epi64(static_cast<long long>(0xbf58476d1ce4e5b9ULL)));
  h = _mm512_mullo_epi64(_mm512_xor_si512(h, _mm512_srli_epi64(h, 27)),
                         _mm512_set1_epi64(static_cast<long long>(0x94d049bb133111ebULL)));
  h = _mm512_xor_si512(h, _mm512_srli_epi64(h, 31));
  return _mm512_srl_epi64(h, shift);
}

// Lane k of every vector is the n-gram at i + k: the j-th byte of 8 consecutive n-grams is one
// 8-byte load at i + j, widened to 64 bits. Then FNV-1a and Mix64 exactly as in the scalar kernel.
__attribute__((target("avx512f,avx512dq"))) size_t FineBinsAvx512Kernel(
    const uint8_t* bytes, size_t count, int len, uint64_t seed, int bin_shift, uint32_t* out) {
  const __m512i prime = _mm512_set1_epi64(static_cast<long long>(kFnvPrime));
  const __m512i start = _mm512_set1_epi64(static_cast<long long>(seed));
  const __m128i shift = _mm_cvtsi32_si128(bin_shift);
  size_t i = 0;
  for (; i + 8 <= count; i += 8) {
    __m512i h = start;
    for (int j = 0; j < len; ++j) {
      // Reads bytes[i + j, i + j + 8): within the count + len - 1 bytes, as i + 8 <= count.
      const __m128i eight = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(bytes + i + j));
      h = _mm512_mullo_epi64(_mm512_xor_si512(h, _mm512_cvtepu8_epi64(eight)), prime);
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i),
                        _mm512_cvtepi64_epi32(BinsOf(h, shift)));
  }
  return i;
}

// Writes the start and the end (one past the last byte) of every word of text[0, n) to `starts` and
// `ends` (each with room for n / 2 + 1 entries) and returns how many words. 64 bytes per step:
// a word starts where a word byte follows a non-word byte and ends where the reverse happens.
__attribute__((target("avx512f,avx512bw,bmi,bmi2"))) size_t WordSpansAvx512(const uint8_t* text,
                                                                            size_t n,
                                                                            uint32_t* starts,
                                                                            uint32_t* ends) {
  size_t num_starts = 0;
  size_t num_ends = 0;
  uint64_t carry = 0;  // 1 if the byte before this chunk is a word byte
  for (size_t i = 0; i < n; i += 64) {
    const size_t left = n - i;
    const __mmask64 valid = left >= 64 ? ~__mmask64{0} : _bzhi_u64(~uint64_t{0}, left);
    const __m512i c = _mm512_maskz_loadu_epi8(valid, text + i);
    const __m512i lower = _mm512_or_si512(c, _mm512_set1_epi8(0x20));
    const __mmask64 letter =
        _mm512_cmple_epu8_mask(_mm512_sub_epi8(lower, _mm512_set1_epi8('a')), _mm512_set1_epi8(25));
    const __mmask64 digit =
        _mm512_cmple_epu8_mask(_mm512_sub_epi8(c, _mm512_set1_epi8('0')), _mm512_set1_epi8(9));
    const __mmask64 high = _mm512_movepi8_mask(c);
    const uint64_t word = (letter | digit | high) & valid;
    const uint64_t before = (word << 1) | carry;  // bit k: is byte k - 1 a word byte
    uint64_t start = word & ~before;
    uint64_t end = ~word & before & valid;
    carry = word >> 63;
    for (; start != 0; start = _blsr_u64(start)) {
      starts[num_starts++] = static_cast<uint32_t>(i + _tzcnt_u64(start));
    }
    for (; end != 0; end = _blsr_u64(end)) {
      ends[num_ends++] = static_cast<uint32_t>(i + _tzcnt_u64(end));
    }
  }
  if (num_ends < num_starts) ends[num_ends++] = static_cast<uint32_t>(n);  // a word runs to the end
  return num_starts;
}

// Words in groups of 8, one per lane: each lane gathers 8 bytes of its word at a time and steps
// FNV-1a over them while its word lasts (a masked multiply), so the group costs as many steps as
// its longest word has bytes. Lane k's bigram pairs it with the lane before (or, for lane 0, the
// previous group's lane 7).
__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,bmi,bmi2"))) size_t WordBinsAvx512Kernel(
    const uint8_t* text, size_t n, uint64_t word_seed, uint64_t bigram_salt, bool bigrams,
    int bin_shift, uint32_t* out) {
  thread_local std::vector<uint32_t> starts;
  thread_local std::vector<uint32_t> ends;
  if (starts.size() < n / 2 + 1) {
    starts.resize(n / 2 + 1);
    ends.resize(n / 2 + 1);
  }
  const size_t words = WordSpansAvx512(text, n, starts.data(), ends.data());
  const __m512i prime = _mm512_set1_epi64(static_cast<long long>(kFnvPrime));
  const __m512i salt = _mm512_set1_epi64(static_cast<long long>(bigram_salt));
  const __m512i low_byte = _mm512_set1_epi64(0xff);
  const __m128i shift = _mm_cvtsi32_si128(bin_shift);
  __m512i previous = _mm512_setzero_si512();
  size_t written = 0;
  for (size_t w = 0; w < words; w += 8) {
    const size_t lanes = std::min<size_t>(8, words - w);
    const __mmask8 live = static_cast<__mmask8>(_bzhi_u32(0xff, static_cast<uint32_t>(lanes)));
    const __m512i start = _mm512_cvtepu32_epi64(_mm256_maskz_loadu_epi32(live, starts.data() + w));
    const __m512i length = _mm512_sub_epi64(
        _mm512_cvtepu32_epi64(_mm256_maskz_loadu_epi32(live, ends.data() + w)), start);
    const uint64_t longest = _mm512_reduce_max_epu64(length);
    __m512i h = _mm512_set1_epi64(static_cast<long long>(word_seed));
    for (uint64_t offset = 0; offset < longest; offset += 8) {
      // Only lanes whose word reaches this far read: up to 7 bytes past its end, still within
      // the text and the kWordBinsReadPastEnd bytes after it.
      const __mmask8 reads = _mm512_cmpgt_epu64_mask(length, _mm512_set1_epi64(offset));
      __m512i chunk =
          _mm512_mask_i64gather_epi64(_mm512_setzero_si512(), reads,
                                      _mm512_add_epi64(start, _mm512_set1_epi64(offset)), text, 1);
      const uint64_t steps = std::min<uint64_t>(8, longest - offset);
      for (uint64_t b = 0; b < steps; ++b) {
        const __mmask8 in_word = _mm512_cmpgt_epu64_mask(length, _mm512_set1_epi64(offset + b));
        h = _mm512_mask_mullo_epi64(h, in_word,
                                    _mm512_xor_si512(h, _mm512_and_si512(chunk, low_byte)), prime);
        chunk = _mm512_srli_epi64(chunk, 8);
      }
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + written),
                        _mm512_cvtepi64_epi32(BinsOf(h, shift)));
    written += lanes;
    if (bigrams) {
      // Lane k pairs word w + k with word w + k - 1: h shifted up one lane, lane 0 from `previous`.
      const __m512i before = _mm512_alignr_epi64(h, previous, 7);
      const __m512i pair =
          _mm512_xor_si512(BinsOf(_mm512_xor_si512(before, salt), _mm_setzero_si128()), h);
      // The first word of the text has no bigram.
      const __mmask8 has_pair = w == 0 ? static_cast<__mmask8>(live & 0xfe) : live;
      const __m256i bins = _mm512_cvtepi64_epi32(BinsOf(pair, shift));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + written),
                          _mm256_maskz_compress_epi32(has_pair, bins));
      written += static_cast<size_t>(__builtin_popcount(has_pair));
    }
    previous = h;
  }
  return written;
}

}  // namespace

// The CPU checks stay outside the kernels: code compiled for AVX-512 may use it before its first
// statement.
size_t FineBinsAvx512(const uint8_t* bytes, size_t count, int len, uint64_t seed, int bin_shift,
                      uint32_t* out) {
  return HaveAvx512() ? FineBinsAvx512Kernel(bytes, count, len, seed, bin_shift, out) : 0;
}

bool WordBinsAvx512(const uint8_t* text, size_t n, uint64_t word_seed, uint64_t bigram_salt,
                    bool bigrams, int bin_shift, uint32_t* out, size_t* count) {
  if (!HaveAvx512Bw()) return false;
  *count = WordBinsAvx512Kernel(text, n, word_seed, bigram_salt, bigrams, bin_shift, out);
  return true;
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#else

bool HaveAvx512() { return false; }
bool HaveAvx512Bw() { return false; }

size_t FineBinsAvx512(const uint8_t*, size_t, int, uint64_t, int, uint32_t*) { return 0; }

bool WordBinsAvx512(const uint8_t*, size_t, uint64_t, uint64_t, bool, int, uint32_t*, size_t*) {
  return false;
}

#endif

size_t WordBins(const uint8_t* text, size_t n, uint64_t word_seed, uint64_t bigram_salt,
                bool bigrams, int bin_shift, uint32_t* out) {
  size_t count = 0;
  if (WordBinsAvx512(text, n, word_seed, bigram_salt, bigrams, bin_shift, out, &count)) {
    return count;
  }
  return WordBinsScalar(text, n, word_seed, bigram_salt, bigrams, bin_shift, out);
}

void FineBins(const uint8_t* bytes, size_t count, int len, uint64_t seed, int bin_shift,
              uint32_t* out) {
  const size_t done = FineBinsAvx512(bytes, count, len, seed, bin_shift, out);
  FineBinsScalar(bytes + done, count - done, len, seed, bin_shift, out + done);
}

}  // namespace router::core::ngram_hash
