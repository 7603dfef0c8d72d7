// File: fake_clock.h
//
// A manually advanced clock for tests: time moves only when the test calls Advance() or Set().
// Threads that wait on it (Clock::AwaitWithDeadline) wake when their condition holds or when the
// test moves the time to their deadline; BlockUntilWaiters lets a test wait until a thread is
// parked, then advance by an exact amount, as TF Serving's FakeClockEnv does.
//
// Thread-safety: all methods may be called concurrently. A mutex passed to AwaitWithDeadline must
// outlive any concurrent Advance or Set (which lock it to wake its waiter).

#ifndef ROUTER_TESTS_ROUTER_CORE_TESTING_FAKE_CLOCK_H_
#define ROUTER_TESTS_ROUTER_CORE_TESTING_FAKE_CLOCK_H_

#include <algorithm>
#include <utility>
#include <vector>

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

  bool AwaitWithDeadline(absl::Mutex& mu, const absl::Condition& condition,
                         absl::Time deadline) const override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    {
      absl::MutexLock lock(&mu_);
      waiters_.emplace_back(&mu, deadline);
    }
    const auto done = [&] { return condition.Eval() || Now() >= deadline; };
    mu.Await(absl::Condition(&done));
    {
      absl::MutexLock lock(&mu_);
      waiters_.erase(std::find(waiters_.begin(), waiters_.end(), std::make_pair(&mu, deadline)));
    }
    return condition.Eval();
  }

  void Advance(absl::Duration d) { Set(Now() + d); }

  void Set(absl::Time t) {
    std::vector<std::pair<absl::Mutex*, absl::Time>> waiters;
    {
      absl::MutexLock lock(&mu_);
      now_ = t;
      waiters = waiters_;
    }
    // Releasing a waiter's mutex makes absl re-evaluate its condition, which reads the new time.
    for (const auto& w : waiters) {
      w.first->Lock();
      w.first->Unlock();
    }
  }

  // Blocks until at least `n` threads wait on this clock.
  void BlockUntilWaiters(int n) const {
    absl::MutexLock lock(&mu_);
    const auto enough = [&] {
      mu_.AssertHeld();
      return static_cast<int>(waiters_.size()) >= n;
    };
    mu_.Await(absl::Condition(&enough));
  }

  // Blocks until some thread waits on this clock until exactly `deadline`.
  void BlockUntilWaitingUntil(absl::Time deadline) const {
    absl::MutexLock lock(&mu_);
    const auto waiting = [&] {
      mu_.AssertHeld();
      return std::any_of(waiters_.begin(), waiters_.end(),
                         [&](const auto& w) { return w.second == deadline; });
    };
    mu_.Await(absl::Condition(&waiting));
  }

  // The deadlines the waiting threads sleep until, earliest first.
  std::vector<absl::Time> WaiterDeadlines() const {
    absl::MutexLock lock(&mu_);
    std::vector<absl::Time> out;
    for (const auto& w : waiters_) out.push_back(w.second);
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
  mutable std::vector<std::pair<absl::Mutex*, absl::Time>> waiters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace router::core::testing

#endif  // ROUTER_TESTS_ROUTER_CORE_TESTING_FAKE_CLOCK_H_
