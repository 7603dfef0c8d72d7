// Checks the ThreadSanitizer stage itself (ROUTER_TSAN=ON, tests/tsan_annotations.cc): a handoff
// through each annotated Abseil primitive is not reported, and an unsynchronized one is.
//
// Usage: tsan_annotations_test MODE, where MODE is one of
//   race          two threads write one int with nothing between them: TSan must report it;
//   mutex         the same under absl::MutexLock;
//   reader        a write under the lock, then a read under ReaderMutexLock;
//   await         a handoff through Mutex::Await and LockWhen;
//   condvar       a handoff through CondVar::Wait;
//   notification  a write before Notify, read after HasBeenNotified() (the inline atomic load);
//   counter       writes before BlockingCounter::DecrementCount, read after Wait.
// Each mode returns 0 when it has run; TSan's exit code (66) says it found a race. ctest runs
// every mode (tests/CMakeLists.txt): `race` must print a data race report, the others none.
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"

namespace {

// Plain memory that the modes hand from one thread to another.
int shared_value = 0;

void Race() {
  std::thread writer([] { shared_value = 1; });
  shared_value = 2;
  writer.join();
}

void Mutex() {
  absl::Mutex mu;
  std::thread writer([&] {
    absl::MutexLock lock(&mu);
    ++shared_value;
  });
  {
    absl::MutexLock lock(&mu);
    ++shared_value;
  }
  writer.join();
}

void Reader() {
  absl::Mutex mu;
  bool written = false;
  std::thread writer([&] {
    absl::MutexLock lock(&mu);
    shared_value = 3;
    written = true;
  });
  for (bool seen = false; !seen;) {
    absl::ReaderMutexLock lock(&mu);
    seen = written;
    if (seen) std::printf("read %d\n", shared_value);
  }
  writer.join();
}

void Await() {
  absl::Mutex mu;
  int stage = 0;
  std::thread other([&] {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(
        +[](int* s) { return *s == 1; }, &stage));
    shared_value += 10;
    stage = 2;
  });
  shared_value = 1;
  {
    absl::MutexLock lock(&mu);
    stage = 1;
  }
  mu.LockWhen(absl::Condition(
      +[](int* s) { return *s == 2; }, &stage));
  std::printf("value %d\n", shared_value);
  mu.Unlock();
  other.join();
}

void CondVar() {
  absl::Mutex mu;
  absl::CondVar cv;
  bool ready = false;
  std::thread writer([&] {
    shared_value = 4;
    absl::MutexLock lock(&mu);
    ready = true;
    cv.Signal();
  });
  {
    absl::MutexLock lock(&mu);
    while (!ready) cv.Wait(&mu);
  }
  std::printf("value %d\n", shared_value);
  writer.join();
}

void Notification() {
  absl::Notification done;
  std::thread writer([&] {
    shared_value = 5;
    done.Notify();
  });
  while (!done.HasBeenNotified()) std::this_thread::yield();
  std::printf("value %d\n", shared_value);
  writer.join();
}

void Counter() {
  constexpr int kThreads = 4;
  static int slots[kThreads];
  absl::BlockingCounter counter(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&counter, i] {
      slots[i] = i + 1;
      counter.DecrementCount();
    });
  }
  counter.Wait();
  int sum = 0;
  for (int v : slots) sum += v;
  std::printf("sum %d\n", sum);
  for (std::thread& t : threads) t.join();
}

}  // namespace

int main(int argc, char** argv) {
  struct Mode {
    const char* name;
    void (*run)();
  };
  const Mode modes[] = {{"race", Race},      {"mutex", Mutex},     {"reader", Reader},
                        {"await", Await},    {"condvar", CondVar}, {"notification", Notification},
                        {"counter", Counter}};
  if (argc == 2) {
    for (const Mode& mode : modes) {
      if (std::strcmp(argv[1], mode.name) == 0) {
        mode.run();
        return 0;
      }
    }
  }
  std::fprintf(stderr, "usage: %s race|mutex|reader|await|condvar|notification|counter\n", argv[0]);
  return 2;
}
