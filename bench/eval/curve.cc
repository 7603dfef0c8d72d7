#include "bench/eval/curve.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_format.h"

namespace router::core::eval {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

}  // namespace

Spread Summarize(const std::vector<double>& values) {
  Spread s;
  double sum = 0.0;
  s.min = std::numeric_limits<double>::infinity();
  s.max = -std::numeric_limits<double>::infinity();
  for (const double v : values) {
    if (!std::isfinite(v)) continue;
    ++s.n;
    sum += v;
    s.min = std::min(s.min, v);
    s.max = std::max(s.max, v);
  }
  if (s.n == 0) {
    s.mean = s.sd = s.min = s.max = kNaN;
    return s;
  }
  s.mean = sum / s.n;
  double squares = 0.0;
  for (const double v : values) {
    if (std::isfinite(v)) squares += (v - s.mean) * (v - s.mean);
  }
  s.sd = s.n > 1 ? std::sqrt(squares / (s.n - 1)) : 0.0;
  return s;
}

std::string PairedVerdict(const std::vector<double>& differences) {
  const Spread s = Summarize(differences);
  if (s.n < 2) return "tie";
  const double se = s.sd / std::sqrt(static_cast<double>(s.n));
  if (s.mean > 2.0 * se && s.mean > 0) return "a > b";
  if (s.mean < -2.0 * se && s.mean < 0) return "a < b";
  return "tie";
}

std::string FormatSpread(const Spread& spread, int digits) {
  if (spread.n == 0) return "n/a";
  return absl::StrFormat("%.*f ± %.*f", digits, spread.mean, digits, spread.sd);
}

}  // namespace router::core::eval
