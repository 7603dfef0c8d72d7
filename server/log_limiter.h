// File: log_limiter.h
//
// Keeps a log from being flooded by a line that callers can cause at will (protobuf logs an error
// for every request holding invalid UTF-8 in a string field): at most `burst` lines per `period`
// pass; the rest are counted, and the next line that passes says how many were suppressed.
// LimitProtobufLogs routes protobuf's log through one such limiter to stderr.
//
// Thread-safety: Admit may be called concurrently. The clock is not owned.
//
// Cost: O(1) per line.

#ifndef ROUTER_SERVER_LOG_LIMITER_H_
#define ROUTER_SERVER_LOG_LIMITER_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "router_core/clock.h"

namespace router::server {

class LogLimiter {
 public:
  // `burst` >= 1 lines per `period` > 0.
  LogLimiter(int burst, absl::Duration period, const core::Clock* clock = &core::Clock::Real())
      : burst_(burst), period_(period), clock_(clock) {}

  // The line to write (with the count of lines suppressed since the last one that passed, if
  // any), or nullopt when this line is suppressed.
  std::optional<std::string> Admit(absl::string_view line);

 private:
  const int burst_;
  const absl::Duration period_;
  const core::Clock* const clock_;
  absl::Mutex mu_;
  absl::Time period_start_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  int passed_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t suppressed_ ABSL_GUARDED_BY(mu_) = 0;
};

// Sends protobuf's log lines to stderr through a LogLimiter of 10 lines per minute.
void LimitProtobufLogs();

}  // namespace router::server

#endif  // ROUTER_SERVER_LOG_LIMITER_H_
