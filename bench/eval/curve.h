// File: curve.h
//
// Quality-cost curve figures of the evaluation harness (BRIEF section 4). The figures themselves
// (CurvePoints, CurveMetrics, ComputeCurveMetrics, EnvelopeAt) live in
// router_core/estimate/deferral_curve.h, shared with estimator_eval.h, so that a policy's figures
// and the estimator's held-out lambda sweep are computed by the same code:
//   points    (realized mean cost / best single model's mean cost, accuracy), one per operating
//             point of a policy (a budget, a lambda, a tau)
//   envelope  upper concave envelope of the points from the cheapest one up to the most accurate
//             one (a router can mix two operating points at random)
//   acc_rel_at_50 / acc_rel_at_100  envelope at cost fraction 0.5 / 1.0 over the best model's
//             accuracy (NaN below the cheapest point)
//   qnc       smallest cost fraction where the envelope reaches the best model's accuracy
//             (quality-neutral cost); NaN if it never does
//   auc       mean envelope accuracy over cost fractions [x0, 1], x0 the cheapest point; NaN when
//             x0 >= 1
// And the seed statistics every reported number carries: mean, sample standard deviation, range,
// and a paired verdict (win / loss / tie) for differences between two methods on the same seeds.
//
// Thread-safety: pure functions.

#ifndef BENCH_EVAL_CURVE_H_
#define BENCH_EVAL_CURVE_H_

#include <string>
#include <utility>
#include <vector>

#include "router_core/estimate/deferral_curve.h"

namespace router::core::eval {

struct Spread {
  int n = 0;  // finite values summarized
  double mean = 0.0;
  double sd = 0.0;  // sample standard deviation (0 for n = 1)
  double min = 0.0;
  double max = 0.0;
};

// Over the finite values (NaN values are skipped; n = 0 gives NaN figures).
Spread Summarize(const std::vector<double>& values);

// "a > b", "a < b" or "tie" for paired per-seed differences a - b: a win needs the mean difference
// beyond two standard errors (sd / sqrt(n)) and n >= 2; anything inside is a tie.
std::string PairedVerdict(const std::vector<double>& differences);

// "0.812 ± 0.011" (mean ± sd over seeds) with `digits` decimals; "n/a" without finite values.
std::string FormatSpread(const Spread& spread, int digits);

}  // namespace router::core::eval

#endif  // BENCH_EVAL_CURVE_H_
