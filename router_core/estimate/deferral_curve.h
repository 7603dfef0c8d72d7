// File: deferral_curve.h
//
// Quality-cost (deferral) curve figures, shared by the estimators' held-out evaluation
// (estimator_eval.h) and the evaluation harness (bench/eval): one point per operating point
// of a router (cost fraction of the best single model, accuracy); the upper concave envelope from the
// cheapest point up to the most accurate one (a router can mix two operating points at random); the
// envelope's accuracy at cost fractions 0.5 and 1.0 relative to the best model; QNC, the smallest
// cost fraction where the envelope reaches the best model's accuracy (NaN if never); and the mean
// envelope accuracy over [x0, 1] (x0 the cheapest point; NaN when x0 >= 1).
//
// Thread-safety: pure functions.

#ifndef ROUTER_CORE_ESTIMATE_DEFERRAL_CURVE_H_
#define ROUTER_CORE_ESTIMATE_DEFERRAL_CURVE_H_

#include <utility>
#include <vector>

namespace router::core {

using CurvePoints = std::vector<std::pair<double, double>>;  // (cost fraction, accuracy)

struct CurveMetrics {
  CurvePoints envelope;
  double acc_rel_at_50 = 0.0;
  double acc_rel_at_100 = 0.0;
  double qnc = 0.0;
  double auc = 0.0;
};

// Figures of `points` against the best single model's accuracy (> 0). Points with a non-finite
// coordinate are ignored; with none left every figure is NaN and the envelope empty.
CurveMetrics ComputeCurveMetrics(CurvePoints points, double best_accuracy);

// Envelope value at cost fraction x: NaN below the first vertex, flat after the last.
double EnvelopeAt(const CurvePoints& envelope, double x);

}  // namespace router::core

#endif  // ROUTER_CORE_ESTIMATE_DEFERRAL_CURVE_H_
