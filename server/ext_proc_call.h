// File: ext_proc_call.h
//
// envoy.service.ext_proc.v3.ExternalProcessor/Process: routerd as Envoy's external processor, so
// that an Envoy-based LLM gateway routes through routerd by configuration alone
// (docs/envoy_ext_proc.md is the protocol as built; deploy/envoy/ the example Envoy config).
// One bidirectional stream per HTTP request, served by one reactor (ExtProcCall in the .cc), which
// is also the AnswerSink of the one query it may route:
//
//   request_headers   not POST, a path other than /v1/chat/completions and /v1/completions, or the
//                     skip header: CONTINUE removing the model header, clear_route_cache, a
//                     mode_override turning every later phase off, and the stream is closed (OK).
//                     Otherwise CONTINUE removing the model header (and accept-encoding, option).
//                     Refused at once (immediate response): no body (400), a content-length over
//                     gateway.request.max_body_bytes (413), an ext_proc request body mode other
//                     than BUFFERED or STREAMED in protocol_config (500: misconfigured).
//   request_body      accumulated (gateway/openai_request.h); a chunk without end_of_stream is
//                     answered with clear_body (STREAMED mode), the last one with the whole body.
//                     Not JSON, invalid, no prompt: 400; too large: 413 (OpenAI-style JSON error).
//                     A named model: the model header set to it, clear_route_cache, no assignment.
//                     A routing alias (or any model with gateway.route_all): the prompt is taken in
//                     (query_intake.h) and dispatched (router_runtime.h); the answer, written when
//                     the decision is delivered, rewrites the body's `model`, sets the model
//                     header and content-length, clears the route cache and carries dynamic
//                     metadata router.{assignment_id, model, predicted_cost_usd, trace_id}
//                     (trace_id: that of the request's W3C traceparent header, trace_context.h,
//                     also in the decision's log line; absent without a valid one). A refusal: 429
//                     (budget, slots) or 503 (draining, queue full) with retry-after, 504 (no
//                     decision before gateway.decision_timeout), 400 (the prompt refused).
//   response_headers  a routed request: a non-2xx status releases the assignment at once; a 2xx
//                     status starts reading usage (JSON or server-sent events by content-type),
//                     and the response gets the model header naming the chosen model.
//   response_body     each chunk feeds the usage reader and is answered unchanged; at
//                     end_of_stream the assignment is completed: at the usage's cost at the
//                     model's token prices (the estimator's cost model), or at the predicted cost
//                     when the response has no usage or the model has no token prices.
//
// Exactly once: every assignment made for a stream is completed or released exactly once (a
// per-stream flag under the reactor's mutex; the ledger call is made under it), whatever the
// order of events: a decision delivered after the stream was cancelled or half-closed is
// released at once (it never reached Envoy); a stream that ends before its response did (client
// abort, Envoy timeout, reset, a protocol violation, a failed write) releases its assignment,
// unless the usage of the response was already read (a server-sent event stream cut after its
// usage event), which completes it. Releases record an actual cost of 0.
//
// The stream ends with OK (after the peer half-closes, or at once after an immediate response or
// a pass-through answer), CANCELLED when the peer cancelled, or INVALID_ARGUMENT naming the
// message for a protocol violation (a message that does not parse, or is of the wrong kind for
// the phase, or observability_mode). Every request-level problem is an immediate response with an
// OpenAI-style JSON body, never a gRPC error (which Envoy would turn into an opaque 500).
//
// Metrics: router_ext_proc_open_streams, router_ext_proc_streams_total{outcome} (one per stream:
// completed_actual, completed_predicted, released, unknown_assignment, ledger_error, not_routed,
// refused, protocol_error, abandoned), router_ext_proc_immediate_responses_total{code}, and
// router_requests_total{method="Process"}.
//
// Thread-safety: as gRPC's callback API requires. Reactions (reads, writes) come from gRPC's
// threads, the decision from the handler's thread (inline) or the batch thread; all state is
// under the reactor's mutex and no reaction waits for anything but that mutex. One read and one
// write are in flight at most. The reactor deletes itself in OnDone, which gRPC calls once the
// stream is finished and no read, write or decision is outstanding.
//
// Ownership: the service keeps a pointer to the runtime, which must outlive the gRPC server that
// the service is registered with.
//
// Cost per stream: the body is held once (up to gateway.request.max_body_bytes), parsed once,
// rewritten once (O(body), on the thread that delivers the decision); the response is read in
// O(chunk) per chunk with bounded memory (gateway/usage_reader.h).

#ifndef ROUTER_SERVER_EXT_PROC_CALL_H_
#define ROUTER_SERVER_EXT_PROC_CALL_H_

#include "envoy/service/ext_proc/v3/external_processor.grpc.pb.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/server_callback.h"
#include "server/call_auth.h"
#include "server/router_runtime.h"

namespace router::server {

// Process, taking and giving raw bytes (parsed in the reactor, as raw_message.h explains).
using RawExtProcService =
    envoy::service::ext_proc::v3::ExternalProcessor::WithRawCallbackMethod_Process<
        envoy::service::ext_proc::v3::ExternalProcessor::Service>;

class ExtProcService final : public RawExtProcService {
 public:
  // `runtime` and `authorizer` (not owned) must outlive the server this service is registered
  // with. With an authorizer (api.token_file), a stream whose call does not pass it is finished at
  // once with UNAUTHENTICATED or PERMISSION_DENIED (Envoy sends the token as the gRPC service's
  // initial metadata, `authorization: Bearer ...`; docs/envoy_ext_proc.md).
  ExtProcService(RouterRuntime* runtime, const CallAuthorizer* authorizer)
      : runtime_(runtime), authorizer_(authorizer) {}

  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* Process(
      grpc::CallbackServerContext* ctx) override;

 private:
  RouterRuntime* const runtime_;
  const CallAuthorizer* const authorizer_;
};

}  // namespace router::server

#endif  // ROUTER_SERVER_EXT_PROC_CALL_H_
