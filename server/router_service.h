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
// Thread-safety: as the callback API requires; the runtime is shared.

#ifndef ROUTER_SERVER_ROUTER_SERVICE_H_
#define ROUTER_SERVER_ROUTER_SERVICE_H_

#include "router/v1/router.grpc.pb.h"
#include "server/router_runtime.h"

namespace router::server {

class RouterService final : public v1::Router::CallbackService {
 public:
  explicit RouterService(RouterRuntime* runtime) : runtime_(runtime) {}

  grpc::ServerUnaryReactor* Route(grpc::CallbackServerContext* ctx, const v1::RouteRequest* request,
                                  v1::RouteResponse* response) override;
  grpc::ServerBidiReactor<v1::RouteStreamRequest, v1::RouteStreamResponse>* RouteStream(
      grpc::CallbackServerContext* ctx) override;
  grpc::ServerUnaryReactor* RouteBatch(grpc::CallbackServerContext* ctx,
                                       const v1::RouteBatchRequest* request,
                                       v1::RouteBatchResponse* response) override;
  grpc::ServerUnaryReactor* Complete(grpc::CallbackServerContext* ctx,
                                     const v1::CompleteRequest* request,
                                     v1::CompleteResponse* response) override;

 private:
  RouterRuntime* const runtime_;
};

}  // namespace router::server

#endif  // ROUTER_SERVER_ROUTER_SERVICE_H_
