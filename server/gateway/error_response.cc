#include "server/gateway/error_response.h"

#include <cmath>
#include <cstdint>
#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/types/optional.h"
#include "nlohmann/json.hpp"

namespace router::server::gateway {
namespace {

constexpr absl::string_view kKindPayload = "router.gateway/body_error_kind";
constexpr absl::string_view kParamPayload = "router.gateway/body_error_param";

constexpr BodyErrorKind kAllKinds[] = {BodyErrorKind::kTooLarge, BodyErrorKind::kNotJson,
                                       BodyErrorKind::kInvalid, BodyErrorKind::kNoPrompt};

}  // namespace

const char* BodyErrorKindName(BodyErrorKind kind) {
  switch (kind) {
    case BodyErrorKind::kTooLarge:
      return "request_too_large";
    case BodyErrorKind::kNotJson:
      return "invalid_json";
    case BodyErrorKind::kInvalid:
      return "invalid_request";
    case BodyErrorKind::kNoPrompt:
      return "no_prompt";
  }
  return "invalid_request";
}

absl::Status BodyError(BodyErrorKind kind, absl::string_view param, absl::string_view message) {
  const absl::StatusCode code = kind == BodyErrorKind::kTooLarge
                                    ? absl::StatusCode::kOutOfRange
                                    : absl::StatusCode::kInvalidArgument;
  absl::Status status(code, absl::StrCat(param.empty() ? "body" : param, ": ", message));
  status.SetPayload(kKindPayload, absl::Cord(BodyErrorKindName(kind)));
  if (!param.empty()) status.SetPayload(kParamPayload, absl::Cord(param));
  return status;
}

std::optional<BodyErrorKind> BodyErrorKindOf(const absl::Status& status) {
  absl::optional<absl::Cord> name = status.GetPayload(kKindPayload);
  if (!name.has_value()) return std::nullopt;
  for (BodyErrorKind kind : kAllKinds) {
    if (*name == BodyErrorKindName(kind)) return kind;
  }
  return std::nullopt;
}

std::string BodyErrorParam(const absl::Status& status) {
  absl::optional<absl::Cord> param = status.GetPayload(kParamPayload);
  return param.has_value() ? std::string(*param) : std::string();
}

std::string OpenAiErrorBody(absl::string_view message, absl::string_view type,
                            absl::string_view code, std::optional<absl::string_view> param) {
  nlohmann::ordered_json error = {
      {"message", std::string(message)},
      {"type", std::string(type)},
      {"param", param.has_value() ? nlohmann::ordered_json(std::string(*param)) : nullptr},
      {"code", std::string(code)}};
  return nlohmann::ordered_json({{"error", std::move(error)}})
      .dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

HttpErrorResponse ErrorResponseFor(const absl::Status& status) {
  HttpErrorResponse reply;
  const std::string message(status.message());
  if (std::optional<BodyErrorKind> kind = BodyErrorKindOf(status); kind.has_value()) {
    reply.http_status = *kind == BodyErrorKind::kTooLarge ? 413 : 400;
    const std::string param = BodyErrorParam(status);
    reply.body =
        OpenAiErrorBody(message, "invalid_request_error", BodyErrorKindName(*kind),
                        param.empty() ? std::nullopt : std::optional<absl::string_view>(param));
    return reply;
  }
  absl::string_view type = "server_error";
  absl::string_view code;
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
      reply.http_status = 400;
      type = "invalid_request_error";
      code = "invalid_argument";
      break;
    case absl::StatusCode::kNotFound:
      reply.http_status = 404;
      type = "invalid_request_error";
      code = "not_found";
      break;
    case absl::StatusCode::kResourceExhausted:
      reply.http_status = 429;
      type = "rate_limit_error";
      code = "resource_exhausted";
      reply.retryable = true;
      break;
    case absl::StatusCode::kUnavailable:
      reply.http_status = 503;
      code = "unavailable";
      reply.retryable = true;
      break;
    case absl::StatusCode::kDeadlineExceeded:
      reply.http_status = 504;
      code = "deadline_exceeded";
      break;
    default:
      reply.http_status = 500;
      reply.body = OpenAiErrorBody("internal error in the model router", "server_error",
                                   "internal_error", std::nullopt);
      return reply;
  }
  reply.body = OpenAiErrorBody(message, type, code, std::nullopt);
  return reply;
}

absl::StatusOr<std::string> RetryAfterValue(absl::Duration delay) {
  if (delay == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError("retry-after: the delay is infinite");
  }
  if (delay <= absl::ZeroDuration()) return std::string("0");
  // Whole seconds, rounded up: Ceil keeps exact multiples of a second as they are.
  const int64_t seconds = absl::ToInt64Seconds(absl::Ceil(delay, absl::Seconds(1)));
  return absl::StrCat(seconds);
}

}  // namespace router::server::gateway
