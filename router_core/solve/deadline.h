// File: deadline.h
//
// The time by which a solve stage must hand back what it has: a point on a clock. Stages that
// iterate (the Lagrangian search, the theta grid) check it between iterations and return their
// best answer so far, still feasible and with a valid bound, once it has passed. A default
// Deadline never passes.
//
// Thread-safety: a value; Passed() reads the clock, which must be safe to read from the calling
// thread. The clock is not owned and must outlive the Deadline.
//
// Cost: Passed() is one clock reading.

#ifndef ROUTER_CORE_SOLVE_DEADLINE_H_
#define ROUTER_CORE_SOLVE_DEADLINE_H_

#include "absl/time/time.h"
#include "router_core/clock.h"

namespace router::core {

class Deadline {
 public:
  Deadline() = default;
  Deadline(absl::Time at, const Clock& clock) : at_(at), clock_(&clock) {}

  bool Passed() const { return clock_ != nullptr && clock_->Now() >= at_; }

 private:
  absl::Time at_ = absl::InfiniteFuture();
  const Clock* clock_ = nullptr;
};

}  // namespace router::core

#endif  // ROUTER_CORE_SOLVE_DEADLINE_H_
