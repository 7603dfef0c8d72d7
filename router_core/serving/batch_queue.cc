#include "router_core/serving/batch_queue.h"

namespace router::core {

absl::Status ValidateBatchQueueOptions(const BatchQueueOptions& o) {
  if (o.max_batch_size < 1) return absl::InvalidArgumentError("max_batch_size: must be >= 1");
  if (o.max_batch_delay < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("max_batch_delay: must be >= 0");
  }
  if (o.max_queued < o.max_batch_size) {
    return absl::InvalidArgumentError("max_queued: must be >= max_batch_size");
  }
  if (o.solve_margin < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("solve_margin: must be >= 0");
  }
  return absl::OkStatus();
}

}  // namespace router::core
