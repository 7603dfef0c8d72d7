// File: calibration_metrics.h
//
// Expected calibration error of probability predictions against observed outcomes:
//
//     ECE = sum_b (n_b / n) * | mean prediction in b - mean label in b |
//
// over `bins` equal-width bins of [0, 1] (bin b holds predictions in [b/bins, (b+1)/bins), the
// last bin also holds 1.0). Equal-width bins, the common definition (Guo et al. 2017), so numbers
// are comparable across estimators whatever their output distribution. Labels may be fractional
// scores in [0, 1]; pairs whose label is NaN (missing, as in TrainingSet) are skipped.
//
// Thread-safety: a pure function.
//
// Errors: INVALID_ARGUMENT when the spans differ in length, bins < 1, a prediction is not in
// [0, 1], a label is neither NaN nor in [0, 1], or no pair has a label.

#ifndef ROUTER_CORE_ESTIMATE_CALIBRATION_METRICS_H_
#define ROUTER_CORE_ESTIMATE_CALIBRATION_METRICS_H_

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace router::core {

absl::StatusOr<double> ExpectedCalibrationError(absl::Span<const double> predictions,
                                                absl::Span<const double> labels, int bins = 10);

}  // namespace router::core

#endif  // ROUTER_CORE_ESTIMATE_CALIBRATION_METRICS_H_
