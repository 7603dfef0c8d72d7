#include "router_core/estimate/beta_distribution.h"

#include <array>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace router::core {
namespace {

constexpr double kPi = 3.14159265358979323846;

// log Gamma(x) for x > 0: Lanczos, g = 7, 9 coefficients (relative error ~1e-15); the reflection
// formula covers x < 0.5.
double LogGamma(double x) {
  static constexpr std::array<double, 9> kCoef = {
      0.99999999999980993,  676.5203681218851,     -1259.1392167224028,
      771.32342877765313,   -176.61502916214059,   12.507343278686905,
      -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7};
  if (x < 0.5) return std::log(kPi / std::sin(kPi * x)) - LogGamma(1.0 - x);
  x -= 1.0;
  double sum = kCoef[0];
  for (int i = 1; i < 9; ++i) sum += kCoef[i] / (x + i);
  const double t = x + 7.5;
  return 0.5 * std::log(2.0 * kPi) + (x + 0.5) * std::log(t) - t + std::log(sum);
}

// Continued fraction of I_x(a, b), modified Lentz; converges fast for x < (a + 1) / (a + b + 2).
double BetaContinuedFraction(double x, double a, double b) {
  constexpr double kTiny = 1e-300;
  constexpr double kEps = 1e-15;
  const double qab = a + b;
  const double qap = a + 1.0;
  const double qam = a - 1.0;
  double c = 1.0;
  double d = 1.0 - qab * x / qap;
  if (std::fabs(d) < kTiny) d = kTiny;
  d = 1.0 / d;
  double h = d;
  for (int m = 1; m <= 1000; ++m) {
    const int m2 = 2 * m;
    double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
    d = 1.0 + aa * d;
    if (std::fabs(d) < kTiny) d = kTiny;
    c = 1.0 + aa / c;
    if (std::fabs(c) < kTiny) c = kTiny;
    d = 1.0 / d;
    h *= d * c;
    aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
    d = 1.0 + aa * d;
    if (std::fabs(d) < kTiny) d = kTiny;
    c = 1.0 + aa / c;
    if (std::fabs(c) < kTiny) c = kTiny;
    d = 1.0 / d;
    const double del = d * c;
    h *= del;
    if (std::fabs(del - 1.0) < kEps) break;
  }
  return h;
}

absl::Status CheckShape(double a, double b) {
  if (!(std::isfinite(a) && a > 0)) {
    return absl::InvalidArgumentError(absl::StrCat("Beta shape a must be finite and > 0, got ", a));
  }
  if (!(std::isfinite(b) && b > 0)) {
    return absl::InvalidArgumentError(absl::StrCat("Beta shape b must be finite and > 0, got ", b));
  }
  return absl::OkStatus();
}

// I_x(a, b) for valid arguments.
double Cdf(double x, double a, double b) {
  if (x <= 0.0) return 0.0;
  if (x >= 1.0) return 1.0;
  const double log_front =
      LogGamma(a + b) - LogGamma(a) - LogGamma(b) + a * std::log(x) + b * std::log1p(-x);
  const double front = std::exp(log_front);
  // Use the symmetry I_x(a, b) = 1 - I_{1-x}(b, a) where the fraction converges faster.
  if (x < (a + 1.0) / (a + b + 2.0)) return front * BetaContinuedFraction(x, a, b) / a;
  return 1.0 - front * BetaContinuedFraction(1.0 - x, b, a) / b;
}

}  // namespace

absl::StatusOr<double> BetaCdf(double x, double a, double b) {
  if (absl::Status s = CheckShape(a, b); !s.ok()) return s;
  if (!(x >= 0.0 && x <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("Beta CDF argument must be in [0, 1], got ", x));
  }
  return Cdf(x, a, b);
}

absl::StatusOr<double> BetaQuantile(double p, double a, double b) {
  if (absl::Status s = CheckShape(a, b); !s.ok()) return s;
  if (!(p >= 0.0 && p <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("Beta quantile level must be in [0, 1], got ", p));
  }
  if (p == 0.0) return 0.0;
  if (p == 1.0) return 1.0;
  // Bisection rather than Newton: the density can be unbounded at 0 or 1 (a or b < 1), where
  // Newton steps overshoot. The stop is relative to the bracket's top, so that a tiny quantile
  // (about 1e-60 for Beta(0.05, 0.3) at p = 0.001) is resolved as well as a large one; halving from
  // 1 down to the smallest normal double and then 50 more steps bounds the loop.
  double lo = 0.0;
  double hi = 1.0;
  for (int step = 0; step < 1100 && hi - lo > 1e-15 * hi; ++step) {
    const double mid = 0.5 * (lo + hi);
    if (Cdf(mid, a, b) >= p) {
      hi = mid;
    } else {
      lo = mid;
    }
  }
  return hi;
}

}  // namespace router::core
