// File: text_normalize.h
//
// The featurizer's first step (featurizer.h): the bytes of a text that are read, lowercased (ASCII
// 'A'-'Z' only; every other byte, UTF-8 included, is kept as is), with each run of whitespace
// (space, \t, \n, \r, \f, \v) collapsed to one space and leading whitespace dropped. A text longer
// than the cap is read as its first cap/2 and last cap - cap/2 bytes joined by a space.
//
// Two kernels compute exactly the same bytes: a portable scalar loop (a chain of dependent steps
// per byte), and an AVX-512 one (BW and VBMI2) that classifies 64 bytes per step into bit masks
// and packs the kept bytes with one compress instruction. Cost: O(bytes read) either way.
//
// Thread-safety: pure functions.

#ifndef ROUTER_CORE_ESTIMATE_TEXT_NORMALIZE_H_
#define ROUTER_CORE_ESTIMATE_TEXT_NORMALIZE_H_

#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"

namespace router::core::text_normalize {

// Bytes of `out` past the normalized text that NormalizeText may write (and leave undefined).
inline constexpr size_t kWritePastEnd = 64;

// Writes the normalized bytes to `out` and returns how many. `out` must hold
// min(text.size(), max_bytes) + 2 + kWritePastEnd bytes; max_bytes >= 2.
size_t NormalizeText(absl::string_view text, size_t max_bytes, uint8_t* out);

// Normalization of a text read in parts: the state carried from one part to the next.
struct Progress {
  size_t written = 0;       // bytes kept so far
  bool empty = true;        // no byte other than whitespace seen yet
  bool last_space = false;  // the last byte seen was whitespace
};

// The two kernels behind NormalizeText, for tests: each appends the normalization of `part` to
// out + progress.written and advances `progress`. The AVX-512 one returns how many leading bytes of
// `part` it consumed (a multiple of 64; 0 on a CPU without AVX-512 BW and VBMI2 or on other
// architectures), leaving the rest to the scalar one.
void AppendScalar(absl::string_view part, uint8_t* out, Progress& progress);
size_t AppendAvx512(absl::string_view part, uint8_t* out, Progress& progress);
bool HaveAvx512Vbmi2();

}  // namespace router::core::text_normalize

#endif  // ROUTER_CORE_ESTIMATE_TEXT_NORMALIZE_H_
