// File: route_call.h
//
// Router.Route: one query per call. The handler takes the query in (query_intake.h) and dispatches
// it (router_runtime.h); the call is its task's sink, so whichever thread delivers the answer
// (the handler, for an inline decision or a refusal; the batch thread otherwise) finishes the
// call. A request that does not parse or does not pass intake is answered at once with
// INVALID_ARGUMENT naming the field.
//
// When the call ends cancelled (its client cancelled, or its deadline passed, while the answer
// was being sent), the answer's assignment is released at once instead of holding its slot until
// the lease timeout. (A client that cancels after the answer left holds it until then anyway: the
// server cannot tell.)
//
// Thread-safety: as gRPC's callback API requires; the reactor deletes itself in OnDone.

#ifndef ROUTER_SERVER_ROUTE_CALL_H_
#define ROUTER_SERVER_ROUTE_CALL_H_

#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/server_callback.h"
#include "server/router_runtime.h"

namespace router::server {

// Serves one Route call; `request` and `response` are gRPC's, alive until the call is done.
grpc::ServerUnaryReactor* StartRouteCall(RouterRuntime* runtime, grpc::CallbackServerContext* ctx,
                                         const grpc::ByteBuffer* request,
                                         grpc::ByteBuffer* response);

}  // namespace router::server

#endif  // ROUTER_SERVER_ROUTE_CALL_H_
