// File: router_service.h
//
// router.v1.Router on gRPC's callback API: each method hands its call to the reactor of its shape
// (route_call.h, route_stream_call.h, route_batch_call.h), which takes its queries in and lets the
// runtime decide them (router_runtime.h); Complete is answered inline against the ledger. Every
// call is answered exactly once.
//
// Requests arrive and answers leave as raw gRPC byte buffers, parsed and serialized by
// raw_message.h, so that a request that does not parse gets INVALID_ARGUMENT naming the field (a
// stream: an error item with an empty query id, and the stream goes on) instead of gRPC's own
// UNIMPLEMENTED, or a stream silently ended.
//
// With an authorizer (api.token_file), every call is first authorized (call_auth.h); a refused
// call gets UNAUTHENTICATED or PERMISSION_DENIED and none of its queries is taken in.
//
// Thread-safety: as the callback API requires; the runtime is shared.

#ifndef ROUTER_SERVER_ROUTER_SERVICE_H_
#define ROUTER_SERVER_ROUTER_SERVICE_H_

#include "router/v1/router.grpc.pb.h"
#include "server/call_auth.h"
#include "server/router_runtime.h"

namespace router::server {

// The four methods of router.v1.Router, each taking and giving raw bytes.
using RawRouterService = v1::Router::WithRawCallbackMethod_Route<
    v1::Router::WithRawCallbackMethod_RouteStream<v1::Router::WithRawCallbackMethod_RouteBatch<
        v1::Router::WithRawCallbackMethod_Complete<v1::Router::Service>>>>;

class RouterService final : public RawRouterService {
 public:
  // `authorizer` (not owned, outlives the service) may be null: every call is let in.
  explicit RouterService(RouterRuntime* runtime, const CallAuthorizer* authorizer = nullptr)
      : runtime_(runtime), authorizer_(authorizer) {}

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
  // The authorizer's refusal of the call `ctx` (counted under `method`), or OK.
  absl::Status Authorize(grpc::CallbackServerContext* ctx, absl::string_view method);

  RouterRuntime* const runtime_;
  const CallAuthorizer* const authorizer_;
};

}  // namespace router::server

#endif  // ROUTER_SERVER_ROUTER_SERVICE_H_
