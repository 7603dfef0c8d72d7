// File: beta_distribution.h
//
// The Beta distribution's regularized incomplete beta function I_x(a, b) (its CDF) and quantile,
// self-contained (no Boost: Debian's libboost-math is not among the project's dependencies). Both
// UniRoute's per-cluster posteriors and the classifier's per-bucket lower bounds use them.
//
// Accuracy: the CDF uses the Lentz continued fraction (Numerical Recipes 6.4) to about 1e-14
// relative; the quantile bisects the CDF on [0, 1] down to a relative interval of 1e-15, so it is
// deterministic and monotone in p.
//
// Thread-safety: pure functions. The log-gamma is a Lanczos approximation of our own (relative
// error about 1e-15) rather than std::lgamma, which may write the global `signgam` and so race.
//
// Errors: INVALID_ARGUMENT when a or b is not finite and > 0, or x / p is outside [0, 1].

#ifndef ROUTER_CORE_ESTIMATE_BETA_DISTRIBUTION_H_
#define ROUTER_CORE_ESTIMATE_BETA_DISTRIBUTION_H_

#include "absl/status/statusor.h"

namespace router::core {

// P(X <= x) for X ~ Beta(a, b).
absl::StatusOr<double> BetaCdf(double x, double a, double b);

// The smallest x in [0, 1] with P(X <= x) >= p, to 1e-15 relative, for X ~ Beta(a, b).
absl::StatusOr<double> BetaQuantile(double p, double a, double b);

}  // namespace router::core

#endif  // ROUTER_CORE_ESTIMATE_BETA_DISTRIBUTION_H_
