// File: clock.h
//
// The time source of everything in router_core that reads or waits for the time: solve deadlines,
// batch windows and the batch scheduler's sleeps, slot leases, spend pacing. Production code uses
// Clock::Real(); tests inject a fake clock (tests/router_core/testing/fake_clock.h) that moves only
// when the test advances it, so they never sleep.
//
// Thread-safety: implementations must be safe to call from any thread. Clock::Real() is a
// process-wide singleton that is never destroyed.

#ifndef ROUTER_CORE_CLOCK_H_
#define ROUTER_CORE_CLOCK_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace router::core {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;

  // Blocks the calling thread, which holds `mu`, until `condition` holds or Now() reaches
  // `deadline`, whichever comes first; `mu` is released while waiting and held again on return,
  // as with absl::Mutex::AwaitWithDeadline (which the real clock is). Returns whether `condition`
  // holds. `condition` is evaluated with `mu` held, and re-evaluated whenever `mu` is released by
  // another thread, so whatever makes it true must change under `mu`.
  virtual bool AwaitWithDeadline(absl::Mutex& mu, const absl::Condition& condition,
                                 absl::Time deadline) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) = 0;

  // The wall clock (absl::Now()).
  static const Clock& Real();
};

}  // namespace router::core

#endif  // ROUTER_CORE_CLOCK_H_
