// File: route_stream_call.h
//
// Router.RouteStream: a bidirectional stream of queries and answers, one answer per query, in the
// order they are decided. Each query read is taken in (query_intake.h) and dispatched
// (router_runtime.h) as a task whose sink is the stream: inline answers and refusals are written
// as soon as they are delivered; the answers of one batch are held until the whole batch is
// delivered and then written together (one message when the stream has several queries in the
// batch). One write is in flight at a time; the rest wait in the reactor. A message that does not
// parse, or a query that does not pass intake, gets an error item (the message's own query id if
// it has one) and the stream goes on.
//
// The server ends the stream with OK once the client half-closed and every query read was
// answered and written; with CANCELLED after a cancellation, or UNAVAILABLE after a failed write,
// once every task was delivered (tasks point at the stream, so it outlives them). Answers that
// can no longer be written have their assignments released at once.
//
// Thread-safety: as gRPC's callback API requires; deliveries come from the handler and the batch
// thread and are serialized by the reactor's mutex. The reactor deletes itself in OnDone.

#ifndef ROUTER_SERVER_ROUTE_STREAM_CALL_H_
#define ROUTER_SERVER_ROUTE_STREAM_CALL_H_

#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/server_callback.h"
#include "server/router_runtime.h"

namespace router::server {

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* StartRouteStreamCall(
    RouterRuntime* runtime, grpc::CallbackServerContext* ctx);

}  // namespace router::server

#endif  // ROUTER_SERVER_ROUTE_STREAM_CALL_H_
