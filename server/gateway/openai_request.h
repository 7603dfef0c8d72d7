// File: openai_request.h
//
// The request side of an OpenAI-compatible call as a gateway adapter sees it: which endpoint the
// `:path` names, the body accumulated from the chunks the gateway sends (Envoy ext_proc: one chunk
// with end_of_stream in BUFFERED mode, many in STREAMED mode, split anywhere, even inside a JSON
// string or a UTF-8 character), what routing needs from it (model, prompt text, tenant, output
// token hint, stream flag), and the body rewritten for the chosen model.
//
// What is read (endpoint /v1/chat/completions or /v1/completions; `null` counts as absent for
// every optional field):
//   model                  required, a string. OpenAiRequest::route is true when it is one of
//                          RequestBodyOptions::routing_aliases (the router chooses), false when it
//                          names a model (passed through).
//   messages (chat)        required, an array of objects. The prompt is the text of every message
//                          in order, joined by "\n": `content` as a string, or as an array of parts
//                          whose `type` is "text" (their `text`). Parts of other types (images,
//                          audio, files, refusals) carry no text to route and are skipped; a
//                          message without content (an assistant's tool calls) adds nothing.
//   prompt (completions)   a string or an array of strings (joined by "\n"). Token-id arrays are
//                          refused as kNoPrompt: they carry no text.
//   user                   optional string: the tenant.
//   max_completion_tokens, max_tokens
//                          optional non-negative integers: the output-token hint
//                          (max_completion_tokens if given, else max_tokens).
//   stream                 optional boolean; stream_options.include_usage optional boolean.
// Every other field is left to the model provider. A body with a top-level key given twice is
// refused (kInvalid): the router and the provider could read different values of it.
//
// Errors (error_response.h): BodyError with kind kTooLarge (OUT_OF_RANGE), kNotJson (empty, not
// JSON, not UTF-8), kInvalid (a field of the wrong type, named by its JSON path, e.g.
// `messages[2].content: expected a string or an array of parts, got number`), kNoPrompt (well
// formed, but no text to route). A not-JSON error gives the position nlohmann stopped at, in
// bytes counted from 1. NOT_FOUND from EndpointFromPath; FAILED_PRECONDITION for calls
// out of order.
//
// Thread-safety: RequestBodyAccumulator is not thread-safe (one per HTTP request, as a stream's
// calls are serialized); the functions are pure.
//
// Cost: Append is O(chunk) amortized; Finish parses once, O(body) time, holding nlohmann's tree of
// the body while it runs; RewriteOpenAiBody is O(body) and copies the body once.

#ifndef ROUTER_SERVER_GATEWAY_OPENAI_REQUEST_H_
#define ROUTER_SERVER_GATEWAY_OPENAI_REQUEST_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/gateway/gateway_options.h"

namespace router::server::gateway {

enum class OpenAiEndpoint { kChatCompletions, kCompletions };

// "/v1/chat/completions" or "/v1/completions".
const char* EndpointPath(OpenAiEndpoint endpoint);

// The endpoint of an HTTP `:path` value: its part before any '?' or '#' must be exactly one of the
// two paths above. NOT_FOUND naming the path otherwise (the caller passes such requests through
// or refuses them; they are not routed).
absl::StatusOr<OpenAiEndpoint> EndpointFromPath(absl::string_view path);

// What routing needs from a request body.
struct OpenAiRequest {
  OpenAiEndpoint endpoint = OpenAiEndpoint::kChatCompletions;
  std::string model;
  // `model` is one of the routing aliases: the router chooses the model.
  bool route = false;
  // The text to route on, UTF-8, never empty.
  std::string prompt;
  std::optional<std::string> user;
  std::optional<int64_t> max_output_tokens;
  bool stream = false;
  // stream_options.include_usage (a streamed response carries usage only when this is true).
  bool stream_include_usage = false;
};

// Parses a whole body (see the file comment for what is read and refused).
absl::StatusOr<OpenAiRequest> ParseOpenAiRequest(OpenAiEndpoint endpoint, absl::string_view body,
                                                 const RequestBodyOptions& options);

// How to change a body for the chosen model.
struct RequestRewrite {
  // The new value of `model`; nullopt leaves it as it is.
  std::optional<std::string> model;
  // When the request streams (stream: true) without stream_options.include_usage: true, set it,
  // so that the last event of the response carries usage (OpenAI-compatible servers send usage in
  // a stream only when asked). The client then receives one more event, with empty `choices` and
  // the usage, as it would had it asked itself.
  bool ensure_stream_usage = false;
};

struct RewrittenBody {
  std::string body;
  // The new `content-length` value: body.size() in decimal.
  std::string content_length;
};

// `body` with `rewrite` applied, edited in place: only the bytes of the `model` value (and, for
// ensure_stream_usage, of stream_options) change; every other byte is the client's, so numbers,
// key order, escapes and whitespace reach the provider exactly as sent. `parsed` must be
// ParseOpenAiRequest's answer for this same body (FAILED_PRECONDITION if the body turns out to
// have no top-level `model`). INVALID_ARGUMENT if rewrite.model is not valid UTF-8.
absl::StatusOr<RewrittenBody> RewriteOpenAiBody(absl::string_view body, const OpenAiRequest& parsed,
                                                const RequestRewrite& rewrite);

// Collects one request's body from its chunks and parses it at the end.
class RequestBodyAccumulator {
 public:
  // INVALID_ARGUMENT naming the option if `options` is invalid.
  static absl::StatusOr<RequestBodyAccumulator> Create(const RequestBodyOptions& options,
                                                       OpenAiEndpoint endpoint);

  // Appends one chunk (any bytes, any length, including empty). Once the body would pass
  // max_body_bytes it is dropped and this and every later Append and Finish return the same
  // kTooLarge error. FAILED_PRECONDITION after Finish.
  absl::Status Append(absl::string_view chunk);

  // The chunks so far are the whole body (end of stream): parses it (ParseOpenAiRequest).
  // FAILED_PRECONDITION if called twice.
  absl::StatusOr<OpenAiRequest> Finish();

  // After a successful Finish: RewriteOpenAiBody on the body. FAILED_PRECONDITION otherwise.
  absl::StatusOr<RewrittenBody> Rewrite(const RequestRewrite& rewrite) const;

  // Bytes received so far (0 after a kTooLarge error, which drops them).
  int64_t size() const { return static_cast<int64_t>(body_.size()); }
  const std::string& body() const { return body_; }

 private:
  RequestBodyAccumulator(const RequestBodyOptions& options, OpenAiEndpoint endpoint)
      : options_(options), endpoint_(endpoint) {}

  RequestBodyOptions options_;
  OpenAiEndpoint endpoint_;
  std::string body_;
  int64_t received_ = 0;  // bytes offered to Append, kept or not
  absl::Status error_;    // sticky kTooLarge error
  bool finished_ = false;
  std::optional<OpenAiRequest> parsed_;
};

}  // namespace router::server::gateway

#endif  // ROUTER_SERVER_GATEWAY_OPENAI_REQUEST_H_
