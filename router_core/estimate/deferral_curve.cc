#include "router_core/estimate/deferral_curve.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace router::core {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double Cross(std::pair<double, double> o, std::pair<double, double> a,
             std::pair<double, double> b) {
  return (a.first - o.first) * (b.second - o.second) - (a.second - o.second) * (b.first - o.first);
}

}  // namespace


double EnvelopeAt(const CurvePoints& env, double x) {
  if (env.empty() || x < env.front().first) return kNaN;
  if (x >= env.back().first) return env.back().second;
  for (size_t k = 1; k < env.size(); ++k) {
    if (x <= env[k].first) {
      const double t = (x - env[k - 1].first) / (env[k].first - env[k - 1].first);
      return env[k - 1].second + t * (env[k].second - env[k - 1].second);
    }
  }
  return env.back().second;
}

CurveMetrics ComputeCurveMetrics(CurvePoints points, double best_accuracy) {
  CurveMetrics r;
  std::erase_if(points,
                [](const auto& p) { return !std::isfinite(p.first) || !std::isfinite(p.second); });
  if (points.empty() || !(best_accuracy > 0)) {
    r.acc_rel_at_50 = r.acc_rel_at_100 = r.qnc = r.auc = kNaN;
    return r;
  }
  std::sort(points.begin(), points.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first < b.first : a.second > b.second;
  });
  CurvePoints hull;
  for (const auto& pt : points) {
    if (!hull.empty() && hull.back().first == pt.first) continue;  // same cost, lower accuracy
    while (hull.size() >= 2 && Cross(hull[hull.size() - 2], hull.back(), pt) >= 0) hull.pop_back();
    hull.push_back(pt);
  }
  size_t peak = 0;
  for (size_t k = 1; k < hull.size(); ++k) {
    if (hull[k].second > hull[peak].second) peak = k;
  }
  hull.resize(peak + 1);
  r.envelope = hull;
  const CurvePoints& env = r.envelope;
  r.acc_rel_at_50 = EnvelopeAt(env, 0.5) / best_accuracy;
  r.acc_rel_at_100 = EnvelopeAt(env, 1.0) / best_accuracy;

  r.qnc = kNaN;
  if (env.front().second >= best_accuracy) {
    r.qnc = env.front().first;
  } else {
    for (size_t k = 1; k < env.size(); ++k) {
      if (env[k].second >= best_accuracy) {
        const double t = (best_accuracy - env[k - 1].second) / (env[k].second - env[k - 1].second);
        r.qnc = env[k - 1].first + t * (env[k].first - env[k - 1].first);
        break;
      }
    }
  }

  const double x0 = env.front().first;
  if (x0 >= 1.0) {
    r.auc = kNaN;
    return r;
  }
  std::vector<double> xs = {x0};
  for (const auto& [x, y] : env) {
    if (x > x0 && x < 1.0) xs.push_back(x);
  }
  xs.push_back(1.0);
  double area = 0.0;
  for (size_t k = 1; k < xs.size(); ++k) {
    area += (xs[k] - xs[k - 1]) * (EnvelopeAt(env, xs[k]) + EnvelopeAt(env, xs[k - 1])) / 2.0;
  }
  r.auc = area / (1.0 - x0);
  return r;
}

}  // namespace router::core
