// File: bench_stats.h
//
// What the Google Benchmark programs of bench/ share: the percentile their counters report.
// Header-only, bench-only.

#ifndef ROUTER_BENCH_BENCH_STATS_H_
#define ROUTER_BENCH_BENCH_STATS_H_

#include <algorithm>
#include <vector>

namespace router::bench {

// The value at index floor(q x n) of the sorted `v` (clamped to the last); `v` not empty.
inline double Percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  return v[k];
}

}  // namespace router::bench

#endif  // ROUTER_BENCH_BENCH_STATS_H_
