// File: route_batch_call.h
//
// Router.RouteBatch: a batch formed by the caller, decided as one batch (always in batch mode).
// Each query is taken in (query_intake.h) and becomes a task whose sink is the call; the call
// answers once every query has its item: an assignment, or an error item for a query that did not
// pass intake (answered at once) or that its batch could not serve. A request that does not parse,
// holds no query or more than limits.max_batch_request_queries, or that the scheduler refuses
// (queue full, shutting down), fails as a whole.
//
// When the call ends cancelled, its answer's assignments are released at once (route_call.h).
//
// Thread-safety: as gRPC's callback API requires; items are filled under the call's mutex. The
// reactor deletes itself in OnDone.

#ifndef ROUTER_SERVER_ROUTE_BATCH_CALL_H_
#define ROUTER_SERVER_ROUTE_BATCH_CALL_H_

#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/server_callback.h"
#include "server/router_runtime.h"

namespace router::server {

grpc::ServerUnaryReactor* StartRouteBatchCall(RouterRuntime* runtime,
                                              grpc::CallbackServerContext* ctx,
                                              const grpc::ByteBuffer* request,
                                              grpc::ByteBuffer* response);

}  // namespace router::server

#endif  // ROUTER_SERVER_ROUTE_BATCH_CALL_H_
