#include "router_core/learn/beta_lower_table.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "router_core/estimate/beta_distribution.h"

namespace router::core {
namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr int kQIntervals = BetaLowerTable::kQPoints - 1;

// The standard normal quantile of p in (0, 0.5]: bisection on erfc, once per table.
double NormalQuantile(double p) {
  double lo = -40.0, hi = 0.0;
  for (int step = 0; step < 200; ++step) {
    const double mid = 0.5 * (lo + hi);
    if (0.5 * std::erfc(-mid / std::sqrt(2.0)) < p) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return 0.5 * (lo + hi);
}

double QOf(int k) {
  const double s = std::sin(0.5 * kPi * static_cast<double>(k) / kQIntervals);
  return s * s;
}

struct Cache {
  absl::Mutex mu;
  std::map<double, std::unique_ptr<BetaLowerTable>> tables ABSL_GUARDED_BY(mu);
};

}  // namespace

BetaLowerTable::BetaLowerTable(double level) : level_(level), z_(NormalQuantile(level)) {}

absl::Status BetaLowerTable::Build() {
  values_.assign(static_cast<size_t>(kNPoints) * kQPoints, 0.0);
  for (int i = 0; i < kNPoints; ++i) {
    const double n = std::exp2(kLogNMin + static_cast<double>(i) / kNPerDoubling);
    double* row = values_.data() + static_cast<size_t>(i) * kQPoints;
    row[0] = 0.0;
    row[kQIntervals] = 1.0;
    // The quantile grows with q at fixed n (Beta(q n, (1 - q) n) is stochastically increasing in
    // q), so the previous point brackets the next one from below.
    double previous = 0.0;
    for (int k = 1; k < kQIntervals; ++k) {
      const double q = QOf(k);
      absl::StatusOr<double> lower = Quantile(q * n, (1.0 - q) * n, previous);
      if (!lower.ok()) return lower.status();
      previous = *lower;
      row[k] = std::min(*lower, q);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<double> BetaLowerTable::Quantile(double a, double b, double at_least) const {
  // Regula falsi with the Illinois modification on F(x) - level over [at_least, 1]: superlinear,
  // and bracketing, so the steep CDF of a tiny shape near 0 cannot throw it off.
  double lo = at_least, hi = 1.0;
  absl::StatusOr<double> f_lo = BetaCdf(lo, a, b);
  if (!f_lo.ok()) return f_lo.status();
  double g_lo = *f_lo - level_;
  double g_hi = 1.0 - level_;
  if (g_lo >= 0.0) return lo;
  int side = 0;
  for (int step = 0; step < 200 && hi - lo > 1e-12; ++step) {
    double x = (lo * g_hi - hi * g_lo) / (g_hi - g_lo);
    // Keep strictly inside the bracket (and bisect when the secant stalls at an end).
    if (!(x > lo && x < hi)) x = 0.5 * (lo + hi);
    absl::StatusOr<double> f = BetaCdf(x, a, b);
    if (!f.ok()) return f.status();
    const double g = *f - level_;
    if (g == 0.0) return x;
    if (g > 0.0) {
      hi = x;
      g_hi = g;
      if (side == 1) g_lo *= 0.5;
      side = 1;
    } else {
      lo = x;
      g_lo = g;
      if (side == -1) g_hi *= 0.5;
      side = -1;
    }
  }
  return hi;
}

absl::StatusOr<const BetaLowerTable*> BetaLowerTable::ForLevel(double level) {
  if (!(level > 0.0 && level <= 0.5)) {
    return absl::InvalidArgumentError(
        absl::StrCat("lower_quantile: must be in (0, 0.5], got ", level));
  }
  static Cache* cache = new Cache();
  absl::MutexLock lock(&cache->mu);
  auto it = cache->tables.find(level);
  if (it != cache->tables.end()) return it->second.get();
  std::unique_ptr<BetaLowerTable> table(new BetaLowerTable(level));
  if (absl::Status s = table->Build(); !s.ok()) return s;
  const BetaLowerTable* out = table.get();
  cache->tables.emplace(level, std::move(table));
  return out;
}

double BetaLowerTable::Lower(double q, double n) const {
  q = std::clamp(q, 0.0, 1.0);
  if (q <= 0.0) return 0.0;
  if (q >= 1.0) return 1.0;
  const double log_n = std::log2(n);
  if (!(log_n <= kLogNMax)) {
    // Beyond the grid: the Cornish-Fisher expansion to the skewness term around the normal.
    const double a = q * n, b = (1.0 - q) * n;
    const double sd = std::sqrt(q * (1.0 - q) / (n + 1.0));
    const double skew = 2.0 * (b - a) * std::sqrt(n + 1.0) / ((n + 2.0) * std::sqrt(a * b));
    return std::clamp(q + sd * (z_ + (z_ * z_ - 1.0) * skew / 6.0), 0.0, q);
  }
  if (log_n < kLogNMin) {
    // Below the grid (a prior of less than half an outcome): the exact quantile, slow but rare.
    absl::StatusOr<double> exact = BetaQuantile(level_, q * n, (1.0 - q) * n);
    return exact.ok() ? std::clamp(*exact, 0.0, q) : 0.0;
  }
  const double u = (log_n - kLogNMin) * kNPerDoubling;
  const int i = std::min(static_cast<int>(u), kNPoints - 2);
  const double fu = std::min(1.0, u - i);
  const double t = std::asin(std::sqrt(q)) * (2.0 / kPi) * kQIntervals;
  const int k = std::min(static_cast<int>(t), kQIntervals - 1);
  const double ft = t - k;
  const double* r0 = values_.data() + static_cast<size_t>(i) * kQPoints + k;
  const double* r1 = r0 + kQPoints;
  const double v0 = r0[0] + ft * (r0[1] - r0[0]);
  const double v1 = r1[0] + ft * (r1[1] - r1[0]);
  return std::clamp(v0 + fu * (v1 - v0), 0.0, q);
}

}  // namespace router::core
