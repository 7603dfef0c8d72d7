// File: bench_stats.h
//
// What the Google Benchmark programs of bench/ share: the statistics their counters report.
// Header-only, bench-only.

#ifndef ROUTER_BENCH_BENCH_STATS_H_
#define ROUTER_BENCH_BENCH_STATS_H_

#include <algorithm>
#include <numeric>
#include <vector>

namespace router::bench {

// The value at index floor(q x n) of the sorted `v` (clamped to the last); `v` not empty.
inline double Percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  return v[k];
}

// The arithmetic mean of `v`; `v` not empty.
inline double Mean(const std::vector<double>& v) {
  return std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
}

}  // namespace router::bench

#endif  // ROUTER_BENCH_BENCH_STATS_H_
