#include "router_core/estimate/calibration_metrics.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace router::core {

absl::StatusOr<double> ExpectedCalibrationError(absl::Span<const double> predictions,
                                                absl::Span<const double> labels, int bins) {
  if (predictions.size() != labels.size()) {
    return absl::InvalidArgumentError(absl::StrCat("predictions (", predictions.size(),
                                                   ") and labels (", labels.size(),
                                                   ") differ in length"));
  }
  if (bins < 1) return absl::InvalidArgumentError(absl::StrCat("bins must be >= 1, got ", bins));
  std::vector<double> count(static_cast<size_t>(bins), 0.0);
  std::vector<double> sum_prediction(static_cast<size_t>(bins), 0.0);
  std::vector<double> sum_label(static_cast<size_t>(bins), 0.0);
  double total = 0.0;
  for (size_t i = 0; i < predictions.size(); ++i) {
    const double p = predictions[i];
    const double y = labels[i];
    if (!(p >= 0.0 && p <= 1.0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("predictions[", i, "] must be in [0, 1], got ", p));
    }
    if (std::isnan(y)) continue;
    if (!(y >= 0.0 && y <= 1.0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("labels[", i, "] must be in [0, 1] or NaN, got ", y));
    }
    const size_t b = std::min(static_cast<size_t>(p * bins), static_cast<size_t>(bins - 1));
    count[b] += 1.0;
    sum_prediction[b] += p;
    sum_label[b] += y;
    total += 1.0;
  }
  if (total == 0.0) return absl::InvalidArgumentError("no labelled predictions");
  double ece = 0.0;
  for (size_t b = 0; b < count.size(); ++b) {
    ece += std::fabs(sum_prediction[b] - sum_label[b]) / total;
  }
  return ece;
}

}  // namespace router::core
