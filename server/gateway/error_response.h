// File: error_response.h
//
// How the gateway adapters refuse a request: a status that says why a request body was refused
// (BodyError: too large, not JSON, invalid, no prompt) with the JSON path of the offending field,
// and the local HTTP reply for any refusal, with an OpenAI-style JSON body
// ({"error": {"message", "type", "param", "code"}}) that OpenAI SDKs surface as is. Also the
// value of a `retry-after` header.
//
// Thread-safety: pure functions. Cost: O(message length).
//
// Errors: RetryAfterValue refuses an infinite delay with INVALID_ARGUMENT; nothing else fails.

#ifndef ROUTER_SERVER_GATEWAY_ERROR_RESPONSE_H_
#define ROUTER_SERVER_GATEWAY_ERROR_RESPONSE_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace router::server::gateway {

// Why a request body was refused.
enum class BodyErrorKind {
  kTooLarge,  // longer than RequestBodyOptions::max_body_bytes                  -> HTTP 413
  kNotJson,   // empty, not JSON, or not UTF-8                                   -> HTTP 400
  kInvalid,   // JSON, but a field has the wrong type or value                   -> HTTP 400
  kNoPrompt,  // well-formed, but no text to route (e.g. only images or token ids) -> HTTP 400
};

// "request_too_large", "invalid_json", "invalid_request", "no_prompt": the `code` of the reply.
const char* BodyErrorKindName(BodyErrorKind kind);

// A status carrying `kind` and `param` (the JSON path of the field at fault, e.g.
// "messages[2].content"; empty for the body as a whole), with the message "param: message" (or
// "body: message"). Its code is OUT_OF_RANGE for kTooLarge, INVALID_ARGUMENT otherwise.
absl::Status BodyError(BodyErrorKind kind, absl::string_view param, absl::string_view message);

// The kind of a status made by BodyError; nullopt for any other status.
std::optional<BodyErrorKind> BodyErrorKindOf(const absl::Status& status);
// The param of a status made by BodyError ("" for none or another status).
std::string BodyErrorParam(const absl::Status& status);

// {"error":{"message":M,"type":T,"param":P or null,"code":C}}, compact, UTF-8 (invalid bytes in
// the message are replaced by U+FFFD).
std::string OpenAiErrorBody(absl::string_view message, absl::string_view type,
                            absl::string_view code, std::optional<absl::string_view> param);

// A local reply to send instead of forwarding the request.
struct HttpErrorResponse {
  int http_status = 500;
  std::string body;  // OpenAiErrorBody(...)
  // True for 429 and 503: add a `retry-after` header (RetryAfterValue) when the delay is known.
  bool retryable = false;
};

// The reply for a refusal:
//   BodyError kTooLarge                    -> 413 invalid_request_error, code request_too_large
//   BodyError kNotJson, kInvalid, kNoPrompt -> 400 invalid_request_error, code = the kind's name,
//                                             param = the field's JSON path
//   INVALID_ARGUMENT (e.g. from the router) -> 400 invalid_request_error, code invalid_argument
//   NOT_FOUND (e.g. an unknown model)       -> 404 invalid_request_error, code not_found
//   RESOURCE_EXHAUSTED (budget or slots)    -> 429 rate_limit_error, code resource_exhausted
//   UNAVAILABLE (router queue full, draining) -> 503 server_error, code unavailable
//   DEADLINE_EXCEEDED                       -> 504 server_error, code deadline_exceeded
//   anything else                           -> 500 server_error, code internal_error, with the
//                                             message "internal error in the model router" (the
//                                             status itself belongs in the operator's log)
// The status message is the reply's message in every other case.
HttpErrorResponse ErrorResponseFor(const absl::Status& status);

// The `retry-after` value for `delay`: whole seconds, rounded up (a client must not come back
// early), "0" for a delay <= 0. INVALID_ARGUMENT for absl::InfiniteDuration().
absl::StatusOr<std::string> RetryAfterValue(absl::Duration delay);

}  // namespace router::server::gateway

#endif  // ROUTER_SERVER_GATEWAY_ERROR_RESPONSE_H_
