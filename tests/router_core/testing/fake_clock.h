// File: fake_clock.h
//
// A manually advanced clock for tests: time moves only when the test calls Advance() or Set().
//
// Thread-safety: all methods may be called concurrently.

#ifndef ROUTER_TESTS_ROUTER_CORE_TESTING_FAKE_CLOCK_H_
#define ROUTER_TESTS_ROUTER_CORE_TESTING_FAKE_CLOCK_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "router_core/clock.h"

namespace router::core::testing {

class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1'700'000'000)) : now_(start) {}

  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }
  void Set(absl::Time t) {
    absl::MutexLock lock(&mu_);
    now_ = t;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace router::core::testing

#endif  // ROUTER_TESTS_ROUTER_CORE_TESTING_FAKE_CLOCK_H_
