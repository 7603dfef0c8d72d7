// File: beta_lower_table.h
//
// The lower quantile L(q, n) of Beta(q n, (1 - q) n) (a success rate q with n pseudo-outcomes of
// evidence), for one fixed level, in O(1) per look-up: what the outcome learner (outcome_learner.h)
// needs once per model and query, where an exact quantile (beta_distribution.h: a bisection of
// about 50 CDF evaluations, several microseconds) would cost more than the whole prediction.
//
// How. A table of quantiles on a grid, interpolated bilinearly:
//   q on t in [0, 1] with q = sin^2(pi t / 2), 129 points: denser near 0 and 1, where L bends most;
//     L(0, n) = 0 and L(1, n) = 1 (the limits: all mass at the edge).
//   n on log2(n) in [-1, 12] in steps of 1/4 (53 points). Above 2^12 the Cornish-Fisher expansion
//     (normal quantile plus the skewness term), whose error there is far below the grid's; below
//     n = 1/2 (a prior of less than half an outcome, which only an unusual configuration gives)
//     the exact BetaQuantile, slow but exact.
//   Each grid point is the exact quantile to 1e-12 (regula falsi on BetaCdf, bracketed by the
//     previous q's point: about ten CDF evaluations instead of the bisection's fifty).
// The result is clamped to [0, q]. Absolute error against BetaQuantile, worst of 20,000 random
// (q, n) per level 0.025, 0.1 and 0.5: 3e-3 for n < 8, 7e-4 up to 2^12, 2e-5 above
// (beta_lower_table_test.cc checks 5e-3 on a smaller sample).
//
// Cost: building is about 6,800 quantiles (a tenth of a second), done once per process and level:
// ForLevel caches tables by level. A look-up is a sqrt, an asin, a log2 and a bilinear
// interpolation.
//
// Thread-safety: a table is immutable; ForLevel is safe to call from any thread (the cache is
// guarded by a mutex). Tables are never freed (one per distinct level in the process).
//
// Errors: ForLevel returns INVALID_ARGUMENT for a level outside (0, 0.5].

#ifndef ROUTER_CORE_LEARN_BETA_LOWER_TABLE_H_
#define ROUTER_CORE_LEARN_BETA_LOWER_TABLE_H_

#include <vector>

#include "absl/status/statusor.h"

namespace router::core {

class BetaLowerTable {
 public:
  // The process-wide table of `level` (built on first use).
  static absl::StatusOr<const BetaLowerTable*> ForLevel(double level);

  double level() const { return level_; }

  // L(q, n) for q in [0, 1] (clamped) and n > 0; in [0, q].
  double Lower(double q, double n) const;

  // The grid's size, for tests.
  static constexpr int kQPoints = 129;
  static constexpr double kLogNMin = -1.0;
  static constexpr double kLogNMax = 12.0;
  static constexpr int kNPerDoubling = 4;
  static constexpr int kNPoints = static_cast<int>((kLogNMax - kLogNMin) * kNPerDoubling) + 1;

 private:
  explicit BetaLowerTable(double level);
  absl::Status Build();
  // The level_ quantile of Beta(a, b), known to be >= at_least.
  absl::StatusOr<double> Quantile(double a, double b, double at_least) const;

  double level_;
  double z_;                    // the standard normal quantile of level_ (<= 0)
  std::vector<double> values_;  // kNPoints x kQPoints, n-major
};

}  // namespace router::core

#endif  // ROUTER_CORE_LEARN_BETA_LOWER_TABLE_H_
