// File: router_service.h
//
// router.v1.Router on gRPC's callback API. Handlers validate and predict on their own thread and
// resolve the query's routing mode (routing_mode.h). A batch-mode query is handed to the batch
// scheduler and the handler returns; the batch thread answers. An inline-mode query (Route and
// RouteStream only; RouteBatch is always batch) is decided on the handler thread by the inline
// router, against the same ledger, and answered before the handler returns. Every call is
// answered exactly once: by its task (routed, per-query error, cancelled, deadline, shutdown), by
// its inline decision, or at once when refused (INVALID_ARGUMENT naming the field, UNAVAILABLE
// when the queue is full or the server drains, batch and inline alike).
//
// RouteStream: answers are written in the order they are decided, inline ones as soon as they are
// read, batched ones as their batches close (one write in flight, the rest queued in the
// reactor); the server ends the stream with OK once the client half-closed and every query sent
// was answered, or with CANCELLED after a cancellation, once every task has answered (tasks hold
// a pointer to the reactor, so it outlives them).
//
// Requests arrive and answers leave as raw gRPC byte buffers, parsed and serialized by
// raw_message.h, so that a request that does not parse gets INVALID_ARGUMENT naming the field (a
// stream: an error item with an empty query id, and the stream goes on) instead of gRPC's own
// UNIMPLEMENTED, or a stream silently ended.
//
// Thread-safety: as the callback API requires; the runtime is shared.

#ifndef ROUTER_SERVER_ROUTER_SERVICE_H_
#define ROUTER_SERVER_ROUTER_SERVICE_H_

#include "router/v1/router.grpc.pb.h"
#include "server/router_runtime.h"

namespace router::server {

// The four methods of router.v1.Router, each taking and giving raw bytes.
using RawRouterService = v1::Router::WithRawCallbackMethod_Route<
    v1::Router::WithRawCallbackMethod_RouteStream<v1::Router::WithRawCallbackMethod_RouteBatch<
        v1::Router::WithRawCallbackMethod_Complete<v1::Router::Service>>>>;

class RouterService final : public RawRouterService {
 public:
  explicit RouterService(RouterRuntime* runtime) : runtime_(runtime) {}

  grpc::ServerUnaryReactor* Route(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
                                  grpc::ByteBuffer* response) override;
  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* RouteStream(
      grpc::CallbackServerContext* ctx) override;
  grpc::ServerUnaryReactor* RouteBatch(grpc::CallbackServerContext* ctx,
                                       const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Complete(grpc::CallbackServerContext* ctx,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;

 private:
  RouterRuntime* const runtime_;
};

}  // namespace router::server

#endif  // ROUTER_SERVER_ROUTER_SERVICE_H_
