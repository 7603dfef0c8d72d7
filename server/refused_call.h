// File: refused_call.h
//
// Reactors for a call refused before it reads anything (an authorization or admission failure):
// the call is finished at once with the refusal's status, mapped by ToGrpcStatus.
//
// Thread-safety: each reactor belongs to its call. Ownership: gRPC holds the returned reactor;
// RefusedStream deletes itself in OnDone, the unary one is the call's default reactor.
//
// Cost: O(1).

#ifndef ROUTER_SERVER_REFUSED_CALL_H_
#define ROUTER_SERVER_REFUSED_CALL_H_

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"

namespace router::server {

// A bidirectional stream finished with `status`.
grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* RefusedStream(
    const absl::Status& status);

// A unary call finished with `status`.
grpc::ServerUnaryReactor* RefusedUnary(grpc::CallbackServerContext* ctx,
                                       const absl::Status& status);

}  // namespace router::server

#endif  // ROUTER_SERVER_REFUSED_CALL_H_
