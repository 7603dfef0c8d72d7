#include "router_core/estimate/text_normalize.h"

#include <array>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace router::core::text_normalize {
namespace {

bool IsSpace(uint8_t c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

uint8_t Lower(uint8_t c) { return (c >= 'A' && c <= 'Z') ? static_cast<uint8_t>(c + 32) : c; }

// What the scalar loop looks up per byte, one table each instead of a chain of comparisons.
struct ByteClasses {
  std::array<uint8_t, 256> lower{};
  std::array<bool, 256> space{};
};

const ByteClasses& Classes() {
  static const ByteClasses classes = [] {
    ByteClasses c;
    for (int b = 0; b < 256; ++b) {
      const uint8_t byte = static_cast<uint8_t>(b);
      c.lower[b] = Lower(byte);
      c.space[b] = IsSpace(byte);
    }
    return c;
  }();
  return classes;
}

void Append(absl::string_view part, uint8_t* out, Progress& progress) {
  const size_t done = AppendAvx512(part, out, progress);
  AppendScalar(part.substr(done), out, progress);
}

}  // namespace

// Each byte is stored before the decision to keep it (a dropped byte is overwritten by the next),
// which keeps the loop free of branches.
void AppendScalar(absl::string_view part, uint8_t* out, Progress& progress) {
  const ByteClasses& classes = Classes();
  size_t n = progress.written;
  bool empty = progress.empty;
  bool last_space = progress.last_space;
  for (const char ch : part) {
    const uint8_t c = static_cast<uint8_t>(ch);
    const bool space = classes.space[c];
    out[n] = space ? uint8_t{' '} : classes.lower[c];
    n += static_cast<size_t>(!(space && (empty || last_space)));
    empty = empty && space;
    last_space = space;
  }
  progress = {n, empty, last_space};
}

#if defined(__x86_64__)

bool HaveAvx512Vbmi2() {
  static const bool have = __builtin_cpu_supports("avx512f") &&
                           __builtin_cpu_supports("avx512bw") &&
                           __builtin_cpu_supports("avx512vbmi2") && __builtin_cpu_supports("bmi");
  return have;
}

namespace {

// Per 64 bytes: the whitespace and upper-case masks from two range compares each; a whitespace
// byte is dropped when the byte before it is whitespace too, or when nothing but whitespace came
// before it; the kept bytes are packed to the front of a register and stored whole (the bytes
// after them are overwritten by the next step or left past the end).
__attribute__((target("avx512f,avx512bw,avx512vbmi2,bmi"))) size_t AppendAvx512Kernel(
    absl::string_view part, uint8_t* out, Progress& progress) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(part.data());
  size_t n = progress.written;
  bool empty = progress.empty;
  uint64_t last_space = progress.last_space ? 1 : 0;
  size_t i = 0;
  for (; i + 64 <= part.size(); i += 64) {
    const __m512i c = _mm512_loadu_si512(bytes + i);
    // \t \n \v \f \r are 9..13.
    const uint64_t space =
        _mm512_cmpeq_epi8_mask(c, _mm512_set1_epi8(' ')) |
        _mm512_cmple_epu8_mask(_mm512_sub_epi8(c, _mm512_set1_epi8('\t')), _mm512_set1_epi8(4));
    const __mmask64 upper =
        _mm512_cmple_epu8_mask(_mm512_sub_epi8(c, _mm512_set1_epi8('A')), _mm512_set1_epi8(25));
    __m512i normalized = _mm512_mask_add_epi8(c, upper, c, _mm512_set1_epi8(32));
    normalized = _mm512_mask_mov_epi8(normalized, space, _mm512_set1_epi8(' '));
    uint64_t dropped = space & ((space << 1) | last_space);
    if (empty) {
      // Everything before the first byte that is not whitespace (all of it if there is none).
      const uint64_t other = ~space;
      dropped |= other == 0 ? ~uint64_t{0} : _blsmsk_u64(other) >> 1;
      empty = other == 0;
    }
    const uint64_t kept = ~dropped;
    _mm512_storeu_si512(out + n, _mm512_maskz_compress_epi8(kept, normalized));
    n += static_cast<size_t>(__builtin_popcountll(kept));
    last_space = space >> 63;
  }
  progress = {n, empty, last_space != 0};
  return i;
}

}  // namespace

// The CPU check stays outside the kernel: code compiled for AVX-512 may use it before its first
// statement.
size_t AppendAvx512(absl::string_view part, uint8_t* out, Progress& progress) {
  return HaveAvx512Vbmi2() ? AppendAvx512Kernel(part, out, progress) : 0;
}

#else

bool HaveAvx512Vbmi2() { return false; }

size_t AppendAvx512(absl::string_view, uint8_t*, Progress&) { return 0; }

#endif

size_t NormalizeText(absl::string_view text, size_t max_bytes, uint8_t* out) {
  Progress progress;
  if (text.size() <= max_bytes) {
    Append(text, out, progress);
  } else {
    Append(text.substr(0, max_bytes / 2), out, progress);
    Append(" ", out, progress);
    Append(text.substr(text.size() - (max_bytes - max_bytes / 2)), out, progress);
  }
  return progress.written;
}

}  // namespace router::core::text_normalize
