// File: redis_server.h
//
// A real redis-server for tests: started on a free loopback port in its own temporary directory,
// with its own config (no eviction; append-only file optional; a password optional), and the
// failures the fleet must survive: killed with SIGKILL and restarted from its append-only file,
// restarted empty, or stalled with SIGSTOP and resumed. The directory is removed on destruction.
//
// Thread-safety: none; one test thread drives it.
//
// Errors: Start and Restart return UNAVAILABLE (with redis-server's log) when the server does not
// answer PING within 10 s, FAILED_PRECONDITION when redis-server is not installed.

#ifndef ROUTER_TESTS_SERVER_LEDGER_REDIS_REDIS_SERVER_H_
#define ROUTER_TESTS_SERVER_LEDGER_REDIS_REDIS_SERVER_H_

#include <sys/types.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace router::testing {

struct RedisServerOptions {
  bool append_only = true;  // appendonly yes, appendfsync always (nothing lost on SIGKILL)
  std::string password;     // empty = none
};

class RedisServer {
 public:
  static absl::StatusOr<std::unique_ptr<RedisServer>> Start(const RedisServerOptions& options = {});
  ~RedisServer();

  int port() const { return port_; }
  std::string address() const;  // "127.0.0.1:<port>"
  const std::string& dir() const { return dir_; }

  // SIGKILL, then start again on the same port and directory (the append-only file is replayed).
  absl::Status KillAndRestart();
  // SIGKILL, delete its data, start again empty on the same port.
  absl::Status RestartEmpty();
  // Stops answering (SIGSTOP) / answers again (SIGCONT).
  void Stall();
  void Resume();
  // Runs redis-cli with `args` against it; its standard output.
  absl::StatusOr<std::string> Cli(const std::string& args) const;

 private:
  RedisServer() = default;
  absl::Status Launch();
  void Kill();

  RedisServerOptions options_;
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace router::testing

#endif  // ROUTER_TESTS_SERVER_LEDGER_REDIS_REDIS_SERVER_H_
