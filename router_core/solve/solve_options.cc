#include "router_core/solve/solve_options.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace router::core {

absl::Status ValidateSolveOptions(const SolveOptions& o) {
  const auto invalid = [](const char* field, const char* what) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
  };
  if (o.time_limit <= absl::ZeroDuration()) return invalid("time_limit", "must be > 0");
  if (!std::isfinite(o.relative_gap) || o.relative_gap < 0 || o.relative_gap >= 1) {
    return invalid("relative_gap", "must be in [0, 1)");
  }
  if (o.small_batch_max_queries < 0 || o.small_batch_max_queries > 64) {
    return invalid("small_batch_max_queries", "must be in [0, 64]");
  }
  if (o.small_batch_max_nodes < 1) return invalid("small_batch_max_nodes", "must be >= 1");
  if (o.small_batch_gamma_max_nodes < 1) {
    return invalid("small_batch_gamma_max_nodes", "must be >= 1");
  }
  if (o.min_cbc_time < absl::ZeroDuration()) return invalid("min_cbc_time", "must be >= 0");
  return absl::OkStatus();
}

}  // namespace router::core
