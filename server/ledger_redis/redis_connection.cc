#include "server/ledger_redis/redis_connection.h"

#include <hiredis/hiredis.h>
#include <sys/time.h>

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"

namespace router::server {

bool SplitRedisAddress(absl::string_view address, std::string& host, int& port) {
  const size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos || colon == 0) return false;
  absl::string_view h = address.substr(0, colon);
  if (absl::StartsWith(h, "[") && absl::EndsWith(h, "]")) h = h.substr(1, h.size() - 2);
  const absl::string_view p = address.substr(colon + 1);
  if (h.empty() || p.empty() || p.find_first_not_of("0123456789") != absl::string_view::npos ||
      !absl::SimpleAtoi(p, &port) || port < 1 || port > 65535) {
    return false;
  }
  host = std::string(h);
  return true;
}

RedisReply::RedisReply(redisReply* r) : reply_(r) {}

RedisReply::~RedisReply() {
  if (reply_ != nullptr) freeReplyObject(reply_);
}

bool RedisReply::IsError() const { return reply_->type == REDIS_REPLY_ERROR; }

bool RedisReply::IsNil() const { return reply_->type == REDIS_REPLY_NIL; }

std::string RedisReply::Text() const {
  if (reply_->type != REDIS_REPLY_STRING && reply_->type != REDIS_REPLY_STATUS &&
      reply_->type != REDIS_REPLY_ERROR) {
    return "";
  }
  return std::string(reply_->str, reply_->len);
}

size_t RedisReply::size() const {
  return reply_->type == REDIS_REPLY_ARRAY ? reply_->elements : 0;
}

int64_t RedisReply::Int(size_t k) const {
  if (k >= size()) return 0;
  const redisReply* e = reply_->element[k];
  if (e->type == REDIS_REPLY_INTEGER) return e->integer;
  int64_t v = 0;
  if (e->type == REDIS_REPLY_STRING && absl::SimpleAtoi(absl::string_view(e->str, e->len), &v)) {
    return v;
  }
  return 0;
}

std::string RedisReply::Str(size_t k) const {
  if (k >= size()) return "";
  const redisReply* e = reply_->element[k];
  if (e->type == REDIS_REPLY_STRING) return std::string(e->str, e->len);
  if (e->type == REDIS_REPLY_INTEGER) return std::to_string(e->integer);
  return "";
}

RedisConnectionPool::RedisConnectionPool(RedisConnectionOptions options)
    : options_(std::move(options)) {}

RedisConnectionPool::~RedisConnectionPool() {
  absl::MutexLock lock(&mu_);
  for (redisContext* c : idle_) redisFree(c);
}

absl::StatusOr<redisContext*> RedisConnectionPool::Acquire(bool& fresh) {
  {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](RedisConnectionPool* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu_) {
          return !p->idle_.empty() || p->open_ < p->options_.max_connections;
        },
        this));
    if (!idle_.empty()) {
      redisContext* c = idle_.back();
      idle_.pop_back();
      fresh = false;
      return c;
    }
    ++open_;
  }
  fresh = true;
  redisContext* c = redisConnectWithTimeout(options_.host.c_str(), options_.port,
                                            absl::ToTimeval(options_.connect_timeout));
  std::string error;
  if (c == nullptr) {
    error = "cannot allocate a connection";
  } else if (c->err != 0) {
    error = c->errstr;
  } else if (redisSetTimeout(c, absl::ToTimeval(options_.call_timeout)) != REDIS_OK) {
    error = "cannot set the call timeout";
  } else if (!options_.password.empty()) {
    const char* argv[] = {"AUTH", options_.password.data()};
    const size_t len[] = {4, options_.password.size()};
    redisReply* r = static_cast<redisReply*>(redisCommandArgv(c, 2, argv, len));
    if (r == nullptr) {
      error = c->errstr;
    } else if (r->type == REDIS_REPLY_ERROR) {
      // The reply names the failure (WRONGPASS, ...), never the password.
      error = std::string(r->str, r->len);
    }
    if (r != nullptr) freeReplyObject(r);
  }
  if (!error.empty()) {
    if (c != nullptr) redisFree(c);
    absl::MutexLock lock(&mu_);
    --open_;
    return absl::UnavailableError(error);
  }
  return c;
}

void RedisConnectionPool::Return(redisContext* c) {
  absl::MutexLock lock(&mu_);
  idle_.push_back(c);
}

void RedisConnectionPool::Discard(redisContext* c) {
  std::vector<redisContext*> idle;
  {
    absl::MutexLock lock(&mu_);
    idle.swap(idle_);
    open_ -= 1 + static_cast<int>(idle.size());
  }
  redisFree(c);
  for (redisContext* i : idle) redisFree(i);
}

absl::StatusOr<std::unique_ptr<RedisReply>> RedisConnectionPool::Command(
    const std::vector<std::string>& argv, RedisTransportFailure& failure) {
  const auto is_timeout = [](const std::string& why) {
    return absl::StrContains(why, "timed out") || absl::StrContains(why, "temporarily unavailable");
  };
  bool fresh = false;
  absl::StatusOr<redisContext*> c = Acquire(fresh);
  if (!c.ok()) {
    failure.why = std::string(c.status().message());
    failure.timeout = is_timeout(failure.why);
    failure.stale = false;
    failure.connecting = true;
    return c.status();
  }
  std::vector<const char*> ptrs;
  std::vector<size_t> lens;
  ptrs.reserve(argv.size());
  lens.reserve(argv.size());
  for (const std::string& a : argv) {
    ptrs.push_back(a.data());
    lens.push_back(a.size());
  }
  redisReply* r = static_cast<redisReply*>(
      redisCommandArgv(*c, static_cast<int>(argv.size()), ptrs.data(), lens.data()));
  if (r == nullptr) {
    failure.why = (*c)->errstr;
    failure.timeout = is_timeout(failure.why);
    failure.stale = !fresh && !failure.timeout;
    failure.connecting = false;
    Discard(*c);
    return absl::UnavailableError(failure.why);
  }
  Return(*c);
  return std::make_unique<RedisReply>(r);
}

}  // namespace router::server
