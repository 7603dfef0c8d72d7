// ThreadSanitizer annotations for what Debian builds without TSan and our code synchronizes
// through: Abseil's synchronization library and gRPC's core. Linked into every test binary of a
// ROUTER_TSAN=ON build (tests/CMakeLists.txt), and only there.
//
// gRPC: a reactor's operation (a read, a write, a finish, a client call) is a batch that gRPC's
// C++ headers start with grpc_call_start_batch(call, ops, n, tag) and whose completion runs the
// tag's Run on whatever thread gRPC core completes it on; core orders the two with its own
// uninstrumented atomics. grpc_call_start_batch is defined here to release on `tag` first; the TSan
// build compiles against a copy of grpcpp/support/callback_common.h whose callback tags acquire on
// themselves first in Run (the top-level CMakeLists.txt makes it). So what a thread did before it
// started an operation happens before the reaction to its completion, as gRPC guarantees.
// A server reactor's OnCancel runs once the reactor is bound (on the thread that ran the handler,
// which made the reactor) and the call is cancelled (on a thread of gRPC core), whichever comes
// last: core counts the two with an uninstrumented atomic, and the last one calls
// ServerCallbackCall::CallOnCancel (libgrpc++, reached through the PLT from gRPC's headers and from
// libgrpc++ itself), which runs OnCancel on an executor thread after a hand-off under a gpr_mu (an
// absl::Mutex, annotated below). Binding releases on the reactor (the TSan build's copy of
// grpcpp/support/server_callback.h begins MaybeCallOnCancel(reactor) with it) and CallOnCancel is
// defined here to acquire on it first. So what the reactor's constructor and the handler did
// happens before its OnCancel, as gRPC guarantees.
// A server call's OnDone, and then the call object's destruction, run once every reference to the
// call is given back: by binding the reactor, by each reaction to a completed operation, by the
// call's own completion and by OnCancel's hand-off. The thread that gives back the last one calls
// ServerCallbackCall::ScheduleOnDone (libgrpc++, through the PLT as above), which runs OnDone there
// or on an executor thread as above. The copy of server_callback.h begins Unref() with a release
// on the call, so the references that gRPC's headers give back (binding, reactions, the call's
// completion) release, and ScheduleOnDone is defined here to acquire on the call first. The two
// that libgrpc++ gives back itself (the call's completion as the server sees it, and the hand-off
// after OnCancel) release nothing: what a reactor's OnCancel did is ordered before its OnDone by
// the reactor's own mutex, which both take (server/*_call.cc).
//
// Abseil:
// Debian builds libabsl_synchronization.so without -fsanitize=thread, so TSan cannot see that an
// absl::Mutex orders the accesses it guards and reports every handoff through one as a race. This
// library defines the exported absl::Mutex, absl::CondVar, absl::Notification and
// absl::BlockingCounter entry points itself. Being earlier in the symbol lookup order than
// libabsl_synchronization.so, these definitions are what our code, gRPC and Abseil's own internal
// PLT calls reach. Each one tells TSan what the operation does with TSan's mutex annotation API
// (sanitizer/tsan_interface.h: release before the real unlock, acquire after the real lock, memory
// accesses ignored while inside the real function) and calls the real function, found with
// dlsym(RTLD_NEXT). This is the annotation an instrumented Abseil makes itself
// (ABSL_TSAN_MUTEX_* in absl/synchronization/mutex.cc), put around the whole call:
//   - Lock/ReaderLock/TryLock/LockWhen*: pre_lock, real call, post_lock (a failed try: no acquire).
//   - Unlock/ReaderUnlock: pre_unlock, real call, post_unlock.
//   - Mutex::Await*, CondVar::Wait*: the mutex is released and taken again inside: pre_unlock,
//     real call, post_unlock, pre_lock, post_lock. Conditions that the real code evaluates (in the
//     waiter or in another thread's Unlock) run while TSan ignores the thread's accesses, as they
//     do in an instrumented Abseil's unlock path.
//   - Notification::Notify releases on the flag that the inline HasBeenNotified() loads with
//     acquire order in our (instrumented) code, and WaitForNotification* acquire on it when they
//     return notified (their check of the flag is in Abseil's code, where TSan cannot see it);
//     BlockingCounter::DecrementCount releases and BlockingCounter::Wait acquires on the counter,
//     whose count is an uninstrumented atomic.
//   - ~Mutex is left alone: gRPC frees its objects when an uninstrumented reference count drops,
//     so TSan would see a destruction annotation race with the last unlock. A mutex freed with
//     its object is forgotten by TSan with the memory.
// The mutex mode (shared or exclusive) of a wait is read from the mutex word as Abseil does.
// Everything here depends on the Abseil ABI of Debian 12 (20220623, inline namespace debian3): a
// missing symbol aborts the program at its first use, naming the symbol.
//
// Thread-safety: as the wrapped functions. Ownership: none. Cost: one dlsym per entry point, then
// a few TSan annotations per call.
#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "grpc/grpc.h"
#include "grpcpp/support/server_callback.h"

namespace {

// Looks up the next definition of `symbol` after this library (the real one: Abseil's, gRPC's).
template <typename Fn>
Fn Real(const char* symbol) {
  void* found = dlsym(RTLD_NEXT, symbol);
  if (found == nullptr) {
    std::fprintf(stderr, "tsan_annotations: %s not found after this library: %s\n", symbol,
                 dlerror());
    std::abort();
  }
  return reinterpret_cast<Fn>(found);
}

// Abseil's mutex word: the writer bit of absl/synchronization/mutex.cc (kMuWriter).
constexpr intptr_t kMuWriter = 0x0008L;
static_assert(sizeof(absl::Mutex) == sizeof(std::atomic<intptr_t>),
              "absl::Mutex is expected to be its mutex word alone");

unsigned ModeFlags(const absl::Mutex* mu) {
  const auto* word = reinterpret_cast<const std::atomic<intptr_t>*>(mu);
  return (word->load(std::memory_order_relaxed) & kMuWriter) != 0 ? 0u : __tsan_mutex_read_lock;
}

// Depth of the Mutex and CondVar wrappers on this thread: Abseil's functions call each other
// through the PLT too (CondVar::WaitWithTimeout calls CondVar::WaitWithDeadline), and only the
// outermost call is annotated.
thread_local int wrapper_depth = 0;

class Outermost {
 public:
  Outermost() : outer_(wrapper_depth++ == 0) {}
  ~Outermost() { --wrapper_depth; }
  Outermost(const Outermost&) = delete;
  Outermost& operator=(const Outermost&) = delete;
  bool inner() const { return !outer_; }

 private:
  const bool outer_;
};

// A wait that releases `mu` (held in `flags` mode) and holds it again on return.
template <typename Call>
auto ReleaseAndRetake(absl::Mutex* mu, unsigned flags, Call call) {
  __tsan_mutex_pre_unlock(mu, flags);
  auto result = call();
  __tsan_mutex_post_unlock(mu, flags);
  __tsan_mutex_pre_lock(mu, flags);
  __tsan_mutex_post_lock(mu, flags, 0);
  return result;
}

// Notification's flag, right after its mutex (absl/synchronization/notification.h:
// `mutable Mutex mutex_; std::atomic<bool> notified_yet_;`).
static_assert(sizeof(absl::Notification) == 2 * sizeof(absl::Mutex),
              "absl::Notification's layout is not the one this file knows");
void* NotifiedFlag(const absl::Notification* n) {
  return const_cast<char*>(reinterpret_cast<const char*>(n) + sizeof(absl::Mutex));
}

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

#define ROUTER_REAL(type, mangled) static const auto real = Real<type>(mangled)
// ROUTER_REAL, then a call from inside another wrapper goes straight to the real function.
#define ROUTER_REAL_OUTERMOST(type, mangled, ...) \
  ROUTER_REAL(type, mangled);                     \
  const Outermost outermost;                      \
  if (outermost.inner()) return real(__VA_ARGS__)

void Mutex::Lock() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  ROUTER_REAL_OUTERMOST(void (*)(Mutex*), "_ZN4absl7debian35Mutex4LockEv", this);
  __tsan_mutex_pre_lock(this, 0);
  real(this);
  __tsan_mutex_post_lock(this, 0, 0);
}

void Mutex::ReaderLock() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  ROUTER_REAL_OUTERMOST(void (*)(Mutex*), "_ZN4absl7debian35Mutex10ReaderLockEv", this);
  __tsan_mutex_pre_lock(this, __tsan_mutex_read_lock);
  real(this);
  __tsan_mutex_post_lock(this, __tsan_mutex_read_lock, 0);
}

bool Mutex::TryLock() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  ROUTER_REAL_OUTERMOST(bool (*)(Mutex*), "_ZN4absl7debian35Mutex7TryLockEv", this);
  __tsan_mutex_pre_lock(this, __tsan_mutex_try_lock);
  const bool locked = real(this);
  __tsan_mutex_post_lock(
      this, locked ? __tsan_mutex_try_lock : __tsan_mutex_try_lock | __tsan_mutex_try_lock_failed,
      0);
  return locked;
}

bool Mutex::ReaderTryLock() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  ROUTER_REAL_OUTERMOST(bool (*)(Mutex*), "_ZN4absl7debian35Mutex13ReaderTryLockEv", this);
  __tsan_mutex_pre_lock(this, __tsan_mutex_try_read_lock);
  const bool locked = real(this);
  __tsan_mutex_post_lock(
      this, locked ? __tsan_mutex_try_read_lock : __tsan_mutex_try_read_lock_failed, 0);
  return locked;
}

void Mutex::Unlock() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  ROUTER_REAL_OUTERMOST(void (*)(Mutex*), "_ZN4absl7debian35Mutex6UnlockEv", this);
  __tsan_mutex_pre_unlock(this, 0);
  real(this);
  __tsan_mutex_post_unlock(this, 0);
}

void Mutex::ReaderUnlock() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  ROUTER_REAL_OUTERMOST(void (*)(Mutex*), "_ZN4absl7debian35Mutex12ReaderUnlockEv", this);
  __tsan_mutex_pre_unlock(this, __tsan_mutex_read_lock);
  real(this);
  __tsan_mutex_post_unlock(this, __tsan_mutex_read_lock);
}

void Mutex::LockWhen(const Condition& cond) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  ROUTER_REAL_OUTERMOST(void (*)(Mutex*, const Condition&),
                        "_ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE", this, cond);
  __tsan_mutex_pre_lock(this, 0);
  real(this, cond);
  __tsan_mutex_post_lock(this, 0, 0);
}

void Mutex::ReaderLockWhen(const Condition& cond) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  ROUTER_REAL_OUTERMOST(void (*)(Mutex*, const Condition&),
                        "_ZN4absl7debian35Mutex14ReaderLockWhenERKNS0_9ConditionE", this, cond);
  __tsan_mutex_pre_lock(this, __tsan_mutex_read_lock);
  real(this, cond);
  __tsan_mutex_post_lock(this, __tsan_mutex_read_lock, 0);
}

bool Mutex::LockWhenWithTimeout(const Condition& cond,
                                Duration timeout) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  ROUTER_REAL_OUTERMOST(
      bool (*)(Mutex*, const Condition&, Duration),
      "_ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE", this, cond,
      timeout);
  __tsan_mutex_pre_lock(this, 0);
  const bool met = real(this, cond, timeout);
  __tsan_mutex_post_lock(this, 0, 0);
  return met;
}

bool Mutex::LockWhenWithDeadline(const Condition& cond,
                                 Time deadline) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  ROUTER_REAL_OUTERMOST(bool (*)(Mutex*, const Condition&, Time),
                        "_ZN4absl7debian35Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE",
                        this, cond, deadline);
  __tsan_mutex_pre_lock(this, 0);
  const bool met = real(this, cond, deadline);
  __tsan_mutex_post_lock(this, 0, 0);
  return met;
}

bool Mutex::ReaderLockWhenWithTimeout(const Condition& cond,
                                      Duration timeout) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  ROUTER_REAL_OUTERMOST(
      bool (*)(Mutex*, const Condition&, Duration),
      "_ZN4absl7debian35Mutex25ReaderLockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE", this,
      cond, timeout);
  __tsan_mutex_pre_lock(this, __tsan_mutex_read_lock);
  const bool met = real(this, cond, timeout);
  __tsan_mutex_post_lock(this, __tsan_mutex_read_lock, 0);
  return met;
}

bool Mutex::ReaderLockWhenWithDeadline(const Condition& cond,
                                       Time deadline) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  ROUTER_REAL_OUTERMOST(
      bool (*)(Mutex*, const Condition&, Time),
      "_ZN4absl7debian35Mutex26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE", this, cond,
      deadline);
  __tsan_mutex_pre_lock(this, __tsan_mutex_read_lock);
  const bool met = real(this, cond, deadline);
  __tsan_mutex_post_lock(this, __tsan_mutex_read_lock, 0);
  return met;
}

void Mutex::Await(const Condition& cond) {
  ROUTER_REAL_OUTERMOST(void (*)(Mutex*, const Condition&),
                        "_ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE", this, cond);
  ReleaseAndRetake(this, ModeFlags(this), [&] {
    real(this, cond);
    return 0;
  });
}

bool Mutex::AwaitWithTimeout(const Condition& cond, Duration timeout) {
  ROUTER_REAL_OUTERMOST(bool (*)(Mutex*, const Condition&, Duration),
                        "_ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE",
                        this, cond, timeout);
  return ReleaseAndRetake(this, ModeFlags(this), [&] { return real(this, cond, timeout); });
}

bool Mutex::AwaitWithDeadline(const Condition& cond, Time deadline) {
  ROUTER_REAL_OUTERMOST(bool (*)(Mutex*, const Condition&, Time),
                        "_ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE",
                        this, cond, deadline);
  return ReleaseAndRetake(this, ModeFlags(this), [&] { return real(this, cond, deadline); });
}

void CondVar::Wait(Mutex* mu) {
  ROUTER_REAL_OUTERMOST(void (*)(CondVar*, Mutex*), "_ZN4absl7debian37CondVar4WaitEPNS0_5MutexE",
                        this, mu);
  ReleaseAndRetake(mu, ModeFlags(mu), [&] {
    real(this, mu);
    return 0;
  });
}

bool CondVar::WaitWithTimeout(Mutex* mu, Duration timeout) {
  ROUTER_REAL_OUTERMOST(bool (*)(CondVar*, Mutex*, Duration),
                        "_ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE",
                        this, mu, timeout);
  return ReleaseAndRetake(mu, ModeFlags(mu), [&] { return real(this, mu, timeout); });
}

bool CondVar::WaitWithDeadline(Mutex* mu, Time deadline) {
  ROUTER_REAL_OUTERMOST(bool (*)(CondVar*, Mutex*, Time),
                        "_ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE", this,
                        mu, deadline);
  return ReleaseAndRetake(mu, ModeFlags(mu), [&] { return real(this, mu, deadline); });
}

void Notification::Notify() {
  ROUTER_REAL(void (*)(Notification*), "_ZN4absl7debian312Notification6NotifyEv");
  __tsan_release(NotifiedFlag(this));
  real(this);
}

void Notification::WaitForNotification() const {
  ROUTER_REAL(void (*)(const Notification*),
              "_ZNK4absl7debian312Notification19WaitForNotificationEv");
  real(this);
  __tsan_acquire(NotifiedFlag(this));
}

bool Notification::WaitForNotificationWithTimeout(Duration timeout) const {
  ROUTER_REAL(bool (*)(const Notification*, Duration),
              "_ZNK4absl7debian312Notification30WaitForNotificationWithTimeoutENS0_8DurationE");
  const bool notified = real(this, timeout);
  if (notified) __tsan_acquire(NotifiedFlag(this));
  return notified;
}

bool Notification::WaitForNotificationWithDeadline(Time deadline) const {
  ROUTER_REAL(bool (*)(const Notification*, Time),
              "_ZNK4absl7debian312Notification31WaitForNotificationWithDeadlineENS0_4TimeE");
  const bool notified = real(this, deadline);
  if (notified) __tsan_acquire(NotifiedFlag(this));
  return notified;
}

bool BlockingCounter::DecrementCount() {
  ROUTER_REAL(bool (*)(BlockingCounter*), "_ZN4absl7debian315BlockingCounter14DecrementCountEv");
  __tsan_release(this);
  return real(this);
}

void BlockingCounter::Wait() {
  ROUTER_REAL(void (*)(BlockingCounter*), "_ZN4absl7debian315BlockingCounter4WaitEv");
  real(this);
  __tsan_acquire(this);
}

ABSL_NAMESPACE_END
}  // namespace absl

extern "C" grpc_call_error grpc_call_start_batch(grpc_call* call, const grpc_op* ops, size_t nops,
                                                 void* tag, void* reserved) {
  ROUTER_REAL(grpc_call_error (*)(grpc_call*, const grpc_op*, size_t, void*, void*),
              "grpc_call_start_batch");
  __tsan_release(tag);
  return real(call, ops, nops, tag, reserved);
}

namespace grpc::internal {

void ServerCallbackCall::CallOnCancel(ServerReactor* reactor) {
  ROUTER_REAL(void (*)(ServerCallbackCall*, ServerReactor*),
              "_ZN4grpc8internal18ServerCallbackCall12CallOnCancelEPNS0_13ServerReactorE");
  __tsan_acquire(reactor);
  real(this, reactor);
}

void ServerCallbackCall::ScheduleOnDone(bool inline_ondone) {
  ROUTER_REAL(void (*)(ServerCallbackCall*, bool),
              "_ZN4grpc8internal18ServerCallbackCall14ScheduleOnDoneEb");
  __tsan_acquire(this);
  real(this, inline_ondone);
}

}  // namespace grpc::internal

#undef ROUTER_REAL_OUTERMOST
#undef ROUTER_REAL
