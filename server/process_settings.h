// File: process_settings.h
//
// Process-wide settings a routerd process applies once at start, before any thread or gRPC server
// exists. routerd's main.cc applies them, and so does the load benchmark that runs routerd in its
// own process, so that both measure the same locking behaviour. (Both also link the same allocator,
// jemalloc: server/CMakeLists.txt.)
//
//   * Abseil's mutex deadlock detection is off. Debian builds Abseil without NDEBUG, so every
//     absl::Mutex (gRPC's included) records its lock order in a global graph; that cost 15-20% of
//     the process CPU per query in load_bench (bench/README.md). Tests keep it on: they do not
//     call this.
//
// Thread-safety: call once from main before starting threads.
#ifndef ROUTER_SERVER_PROCESS_SETTINGS_H_
#define ROUTER_SERVER_PROCESS_SETTINGS_H_

namespace router::server {

void ApplyProcessSettings();

}  // namespace router::server

#endif  // ROUTER_SERVER_PROCESS_SETTINGS_H_
