// File: gateway_options.h
//
// The knobs of the HTTP-body side of routerd's gateway adapters (the Envoy ext_proc adapter and
// any other that sees OpenAI-style bodies): how much request and response body to hold, which
// `model` values ask the router to choose, and which header carries the chosen model. Every field
// has a documented default; ValidateGatewayOptions checks them all, and the factories of
// RequestBodyAccumulator and UsageReader call the part they use.
//
// Thread-safety: plain values.
//
// Errors: INVALID_ARGUMENT naming the field (`request.max_body_bytes: must be in [1, 1073741824],
// got 0`).

#ifndef ROUTER_SERVER_GATEWAY_GATEWAY_OPTIONS_H_
#define ROUTER_SERVER_GATEWAY_GATEWAY_OPTIONS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace router::server::gateway {

// Largest body limit accepted for either direction (1 GiB): a body is held in memory.
inline constexpr int64_t kMaxBodyLimitBytes = int64_t{1} << 30;

struct RequestBodyOptions {
  // Largest request body accumulated, in bytes, in [1, kMaxBodyLimitBytes]. A longer body is
  // refused (HTTP 413). 4 MiB is about a million tokens at 4 bytes per token; raise it for
  // requests that carry images inline, together with Envoy's own buffer limit
  // (deploy/envoy/README.md).
  int64_t max_body_bytes = int64_t{4} << 20;
  // `model` values that ask the router to choose (compared exactly, case-sensitive): each
  // non-empty, at most 256 bytes, no duplicates; at least one. Any other model name passes
  // through unchanged. "auto" is what vLLM Semantic Router and OpenRouter ("openrouter/auto")
  // callers already send.
  std::vector<std::string> routing_aliases = {"auto"};
};

struct UsageReaderOptions {
  // Largest non-streamed (application/json) response body held to read `usage`, in bytes, in
  // [1, kMaxBodyLimitBytes]. Past it the body is no longer held and usage is reported absent.
  int64_t max_json_body_bytes = int64_t{4} << 20;
  // Largest server-sent event held while reading a streamed (text/event-stream) response, in
  // bytes, in [1, kMaxBodyLimitBytes]: only the event being received is kept, never the stream.
  // A longer event is skipped (counted in UsageReader::skipped_events()). A usage event is one
  // small JSON object (the token counts and an empty `choices`).
  int64_t max_sse_event_bytes = int64_t{256} << 10;
};

struct GatewayOptions {
  RequestBodyOptions request;
  UsageReaderOptions usage;
  // The request header set to the chosen model, so that routes can match on it. Lower-case HTTP
  // token characters; not a pseudo-header, not `host`, not one of Envoy's `x-envoy-` headers
  // (Envoy ignores mutations of those), not a header that frames the body (content-length,
  // content-type, transfer-encoding, te, connection). The default is the Gateway API Inference
  // Extension's; Envoy AI Gateway uses x-ai-eg-model, vLLM Semantic Router x-selected-model.
  std::string model_header = "x-gateway-model-name";
};

absl::Status ValidateRequestBodyOptions(const RequestBodyOptions& options);
absl::Status ValidateUsageReaderOptions(const UsageReaderOptions& options);
// All of the above, field names prefixed by `request.` and `usage.`, and model_header.
absl::Status ValidateGatewayOptions(const GatewayOptions& options);

// OK if `name` may be set by an ext_proc header mutation as the model header (the rules of
// GatewayOptions::model_header); otherwise INVALID_ARGUMENT naming `field`.
absl::Status ValidateModelHeaderName(absl::string_view name, absl::string_view field);

}  // namespace router::server::gateway

#endif  // ROUTER_SERVER_GATEWAY_GATEWAY_OPTIONS_H_
