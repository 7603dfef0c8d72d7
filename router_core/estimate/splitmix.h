// File: splitmix.h
//
// SplitMix64 (Steele, Lea, Flood 2014): a tiny, portable pseudo-random generator. The estimators
// use it instead of <random> engines + distributions because the standard distributions (and
// std::shuffle) are implementation-defined, and splits, bootstrap resamples and artifacts must be
// identical on every compiler and standard library.
//
// Thread-safety: a value type; one instance per thread.

#ifndef ROUTER_CORE_ESTIMATE_SPLITMIX_H_
#define ROUTER_CORE_ESTIMATE_SPLITMIX_H_

#include <cstdint>

namespace router::core {

// The SplitMix64 finalizer: a bijective 64-bit mix, also used to derive hashes and seeds.
constexpr uint64_t Mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}

  uint64_t Next() {
    const uint64_t out = Mix64(state_);
    state_ += 0x9e3779b97f4a7c15ULL;
    return out;
  }

  // Uniform in [0, n) for n >= 1 (Lemire's multiply-shift; the bias is below 2^-32 for the n
  // used here, which is far under any statistical effect we measure).
  uint64_t Below(uint64_t n) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(Next()) * n) >> 64);
  }

 private:
  uint64_t state_;
};

}  // namespace router::core

#endif  // ROUTER_CORE_ESTIMATE_SPLITMIX_H_
