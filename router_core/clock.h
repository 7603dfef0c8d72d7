// File: clock.h
//
// The time source of everything in router_core that reads the time: solve deadlines, batch windows,
// slot leases, spend pacing. Production code uses Clock::Real(); tests inject a fake clock
// (tests/router_core/testing/fake_clock.h) and never sleep.
//
// Thread-safety: implementations must be safe to call from any thread. Clock::Real() is a
// process-wide singleton that is never destroyed.

#ifndef ROUTER_CORE_CLOCK_H_
#define ROUTER_CORE_CLOCK_H_

#include "absl/time/time.h"

namespace router::core {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;

  // The wall clock (absl::Now()).
  static const Clock& Real();
};

}  // namespace router::core

#endif  // ROUTER_CORE_CLOCK_H_
