#include "server/process_settings.h"

#include <malloc.h>

#include "absl/synchronization/mutex.h"

namespace router::server {

void ApplyProcessSettings() {
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}

}  // namespace router::server
