// File: status_util.h
//
// The one mapping from absl::Status to grpc::Status (identical code numbering), and the retry hint
// UNAVAILABLE answers carry when routerd is overloaded (not when it shuts down: then the client
// should go to another replica).
//
// The hint travels in the status as a payload, and leaves routerd as the trailing metadata
// `grpc-retry-pushback-ms` of a call that fails with it (gRPC's own retry pushback: a client's
// retry policy waits that long before its next attempt; other clients can read it) and, for a
// query answered inside a RouteBatch or RouteStream, as "retry in N ms" at the end of its message.
//
// Thread-safety: pure functions, except AddRetryHint, which writes to the call's context and
// must be called by the thread that finishes the call, before it does.

#ifndef ROUTER_SERVER_STATUS_UTIL_H_
#define ROUTER_SERVER_STATUS_UTIL_H_

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/status.h"

namespace router::server {

inline grpc::Status ToGrpcStatus(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

// The payload URL of the hint in an absl::Status (milliseconds, decimal).
inline constexpr char kRetryAfterPayload[] = "type.router.v1/retry-after-ms";
// The trailing metadata key of the hint.
inline constexpr char kRetryPushbackKey[] = "grpc-retry-pushback-ms";

// `s` with the hint `after` (at least 1 ms), also appended to its message.
inline absl::Status WithRetryHint(const absl::Status& s, absl::Duration after) {
  const int64_t ms = std::max<int64_t>(1, absl::ToInt64Milliseconds(absl::Ceil(
                                              after, absl::Milliseconds(1))));
  absl::Status hinted(s.code(), absl::StrCat(s.message(), "; retry in ", ms, " ms"));
  hinted.SetPayload(kRetryAfterPayload, absl::Cord(absl::StrCat(ms)));
  return hinted;
}

// The hint `s` carries, in milliseconds.
inline std::optional<int64_t> RetryHintMs(const absl::Status& s) {
  const auto payload = s.GetPayload(kRetryAfterPayload);  // an absl::optional here
  int64_t ms = 0;
  if (!payload.has_value() || !absl::SimpleAtoi(std::string(*payload), &ms)) return std::nullopt;
  return ms;
}

// Puts the hint of `s`, if any, in the trailing metadata of the call `ctx` is finishing with it.
inline void AddRetryHint(grpc::ServerContextBase& ctx, const absl::Status& s) {
  if (std::optional<int64_t> ms = RetryHintMs(s)) {
    ctx.AddTrailingMetadata(kRetryPushbackKey, absl::StrCat(*ms));
  }
}

}  // namespace router::server

#endif  // ROUTER_SERVER_STATUS_UTIL_H_
