// Checks the ThreadSanitizer stage itself (ROUTER_TSAN=ON, tests/tsan_annotations.cc): a handoff
// through each annotated Abseil primitive and gRPC's to a reactor's OnCancel is not reported, and
// an unsynchronized one is.
//
// Usage: tsan_annotations_test MODE, where MODE is one of
//   race          two threads write one int with nothing between them: TSan must report it;
//   mutex         the same under absl::MutexLock;
//   reader        a write under the lock, then a read under ReaderMutexLock;
//   await         a handoff through Mutex::Await and LockWhen;
//   condvar       a handoff through CondVar::Wait;
//   notification  a write before Notify, read after HasBeenNotified() (the inline atomic load);
//   wait          the same, read after WaitForNotification() on a notification already notified
//                 (seen through a relaxed load, which orders nothing);
//   counter       writes before BlockingCounter::DecrementCount, read after Wait;
//   cancel        a gRPC server reactor writes plain memory in its constructor and reads it in
//                 OnCancel, after the client cancelled the call: gRPC's hand-off to OnCancel, which
//                 runs through the annotated CallOnCancel (a missing symbol aborts). Whether TSan
//                 would report the hand-off without the annotation depends on what else gRPC's
//                 threads happened to synchronize through: unannotated, this mode passes here too.
// Each mode returns 0 when it has run; TSan's exit code (66) says it found a race. ctest runs
// every mode (tests/CMakeLists.txt): `race` must print a data race report, the others none.
#include <atomic>
#include <cstdio>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"

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

void Wait() {
  absl::Notification done;
  std::atomic<bool> notified{false};
  std::thread writer([&] {
    shared_value = 6;
    done.Notify();
    notified.store(true, std::memory_order_relaxed);
  });
  while (!notified.load(std::memory_order_relaxed)) std::this_thread::yield();
  done.WaitForNotification();
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

// A reactor whose constructor writes `made_` (plain memory) on the thread that runs the handler and
// whose OnCancel reads it on the thread gRPC picks. Owned by the service, which the test destroys
// once OnDone has run.
class CancelledReactor : public grpc::ServerGenericBidiReactor {
 public:
  CancelledReactor(absl::Notification* cancelled, absl::Notification* done)
      : cancelled_(cancelled), done_(done) {
    made_ = 7;
  }
  void OnCancel() override {
    std::printf("cancelled, made %d\n", made_);
    cancelled_->Notify();
    Finish(grpc::Status::CANCELLED);
  }
  void OnDone() override { done_->Notify(); }

 private:
  absl::Notification* const cancelled_;
  absl::Notification* const done_;
  int made_ = 0;
};

class CancelledService : public grpc::CallbackGenericService {
 public:
  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext*) override {
    reactor_ = std::make_unique<CancelledReactor>(&cancelled, &done);
    started.store(true, std::memory_order_relaxed);
    return reactor_.get();
  }
  // Set once the handler made the reactor; read relaxed, so that the client's thread learns it
  // without being ordered after the constructor (its cancellation must not carry the ordering).
  std::atomic<bool> started{false};
  absl::Notification cancelled, done;

 private:
  std::unique_ptr<CancelledReactor> reactor_;
};

void Cancel() {
  CancelledService service;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterCallbackGenericService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  grpc::GenericStub stub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  grpc::CompletionQueue cq;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call =
      stub.PrepareCall(&context, "/router.test.Cancel/Call", &cq);
  call->StartCall(nullptr);
  void* tag = nullptr;
  bool ok = false;
  cq.Next(&tag, &ok);
  while (!service.started.load(std::memory_order_relaxed)) std::this_thread::yield();
  context.TryCancel();
  service.cancelled.WaitForNotification();
  grpc::Status status;
  call->Finish(&status, nullptr);
  cq.Next(&tag, &ok);
  server->Shutdown();
  service.done.WaitForNotification();
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  std::printf("call ended: %s\n", status.error_message().c_str());
}
}  // namespace

int main(int argc, char** argv) {
  struct Mode {
    const char* name;
    void (*run)();
  };
  const Mode modes[] = {{"race", Race},      {"mutex", Mutex},     {"reader", Reader},
                        {"await", Await},    {"condvar", CondVar}, {"notification", Notification},
                        {"wait", Wait},      {"counter", Counter}, {"cancel", Cancel}};
  if (argc == 2) {
    for (const Mode& mode : modes) {
      if (std::strcmp(argv[1], mode.name) == 0) {
        mode.run();
        return 0;
      }
    }
  }
  std::fprintf(stderr,
               "usage: %s race|mutex|reader|await|condvar|notification|wait|counter|cancel\n",
               argv[0]);
  return 2;
}
