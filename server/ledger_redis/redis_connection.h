// File: redis_connection.h
//
// The hiredis plumbing shared by the fleet's Redis clients (redis_ledger.h, redis_outcome_log.h):
// an owned reply, and a small pool of blocking connections with a connect and a call timeout and
// optional AUTH. RedisConnectionPool::Command sends one command on a pooled connection and says
// how a transport failure happened (timeout, refused or broken connection, a pooled connection
// found broken while idle); what the caller does about it (circuit breaker, metrics) is its own.
//
// Thread-safety: RedisConnectionPool may be used concurrently; each command holds one connection
// (at most `max_connections` are open, more callers wait). RedisReply is not shared.
//
// Ownership: the pool owns its connections and closes them on destruction; a RedisReply owns its
// hiredis reply.
//
// Errors: Command returns UNAVAILABLE with hiredis' reason (never the password); an error reply
// from Redis is a reply (IsError), not an error status.
//
// Cost: one round trip per command; a new connection costs a connect (and an AUTH).

#ifndef ROUTER_SERVER_LEDGER_REDIS_REDIS_CONNECTION_H_
#define ROUTER_SERVER_LEDGER_REDIS_REDIS_CONNECTION_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

struct redisContext;
struct redisReply;

namespace router::server {

// "HOST:PORT" or "[V6]:PORT" into its parts; false when malformed (port outside 1..65535).
bool SplitRedisAddress(absl::string_view address, std::string& host, int& port);

// An owned hiredis reply.
class RedisReply {
 public:
  explicit RedisReply(redisReply* r);
  ~RedisReply();
  RedisReply(const RedisReply&) = delete;
  RedisReply& operator=(const RedisReply&) = delete;

  bool IsError() const;
  bool IsNil() const;
  // The text of a string, status or error reply ("" otherwise).
  std::string Text() const;
  // Elements of an array reply (RESP2: maps are arrays of pairs); 0 otherwise.
  size_t size() const;
  // Element k as an integer (integer or decimal string), or 0.
  int64_t Int(size_t k) const;
  // Element k as a string (an integer in decimal), or "".
  std::string Str(size_t k) const;
  const redisReply* get() const { return reply_; }

 private:
  redisReply* const reply_;
};

struct RedisConnectionOptions {
  std::string host;
  int port = 0;
  std::string password;  // empty = no AUTH
  absl::Duration connect_timeout = absl::Milliseconds(200);
  absl::Duration call_timeout = absl::Milliseconds(100);
  int max_connections = 8;
};

// Why a command did not get a reply.
struct RedisTransportFailure {
  std::string why;       // hiredis' reason
  bool timeout = false;  // the connect or the call timed out
  bool connecting = false;  // no connection could be opened (else the command itself failed)
  // A pooled connection turned out broken while idle (Redis restarted, say): the next command
  // opens a fresh one, so this alone says little about Redis' health.
  bool stale = false;
};

class RedisConnectionPool {
 public:
  explicit RedisConnectionPool(RedisConnectionOptions options);
  ~RedisConnectionPool();

  const RedisConnectionOptions& options() const { return options_; }

  // Sends `argv` on a pooled connection (opening one if none is idle): the reply, or UNAVAILABLE
  // with `failure` filled in. A connection that failed is closed along with the idle ones.
  absl::StatusOr<std::unique_ptr<RedisReply>> Command(const std::vector<std::string>& argv,
                                                      RedisTransportFailure& failure);

 private:
  // A connection, `fresh` if it was just opened; or the reason none could be opened.
  absl::StatusOr<redisContext*> Acquire(bool& fresh);
  void Return(redisContext* c);
  // Closes `c` (broken) and every idle connection (probably broken by the same cause).
  void Discard(redisContext* c);

  const RedisConnectionOptions options_;
  absl::Mutex mu_;
  std::vector<redisContext*> idle_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace router::server

#endif  // ROUTER_SERVER_LEDGER_REDIS_REDIS_CONNECTION_H_
