#include "server/process_settings.h"

#include "absl/synchronization/mutex.h"

namespace router::server {

void ApplyProcessSettings() {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}

}  // namespace router::server
