#include "server/gateway/gateway_options.h"

#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace router::server::gateway {
namespace {

constexpr size_t kMaxAliasBytes = 256;

absl::Status CheckLimit(int64_t value, absl::string_view field) {
  if (value < 1 || value > kMaxBodyLimitBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": must be in [1, ", kMaxBodyLimitBytes, "], got ", value));
  }
  return absl::OkStatus();
}

// RFC 9110 tchar, lower-case letters only.
bool IsLowerTokenChar(char c) {
  if (c >= 'a' && c <= 'z') return true;
  if (c >= '0' && c <= '9') return true;
  return absl::string_view("!#$%&'*+-.^_`|~").find(c) != absl::string_view::npos;
}

absl::Status WithPrefix(absl::Status s, absl::string_view prefix) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(prefix, s.message()));
}

}  // namespace

absl::Status ValidateRequestBodyOptions(const RequestBodyOptions& options) {
  if (absl::Status s = CheckLimit(options.max_body_bytes, "max_body_bytes"); !s.ok()) return s;
  if (options.routing_aliases.empty()) {
    return absl::InvalidArgumentError(
        "routing_aliases: at least one alias is needed (e.g. \"auto\")");
  }
  absl::flat_hash_set<absl::string_view> seen;
  for (size_t k = 0; k < options.routing_aliases.size(); ++k) {
    const std::string& alias = options.routing_aliases[k];
    if (alias.empty() || alias.size() > kMaxAliasBytes) {
      return absl::InvalidArgumentError(absl::StrCat("routing_aliases[", k, "]: must be 1 to ",
                                                     kMaxAliasBytes, " bytes, got ", alias.size()));
    }
    if (!seen.insert(alias).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("routing_aliases[", k, "]: duplicate alias \"", alias, "\""));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateUsageReaderOptions(const UsageReaderOptions& options) {
  if (absl::Status s = CheckLimit(options.max_json_body_bytes, "max_json_body_bytes"); !s.ok()) {
    return s;
  }
  return CheckLimit(options.max_sse_event_bytes, "max_sse_event_bytes");
}

absl::Status ValidateModelHeaderName(absl::string_view name, absl::string_view field) {
  if (name.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": required"));
  for (char c : name) {
    if (!IsLowerTokenChar(c)) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": \"", name,
          "\" is not a lower-case HTTP header name (letters a-z, digits and !#$%&'*+-.^_`|~)"));
    }
  }
  if (absl::StartsWith(name, "x-envoy-")) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": \"", name, "\": Envoy ignores header mutations of x-envoy- headers"));
  }
  for (absl::string_view reserved :
       {"host", "content-length", "content-type", "transfer-encoding", "te", "connection"}) {
    if (name == reserved) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": \"", name, "\" is a header Envoy or HTTP itself relies on; pick another"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateGatewayOptions(const GatewayOptions& options) {
  if (absl::Status s = WithPrefix(ValidateRequestBodyOptions(options.request), "request.");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = WithPrefix(ValidateUsageReaderOptions(options.usage), "usage."); !s.ok()) {
    return s;
  }
  return ValidateModelHeaderName(options.model_header, "model_header");
}

}  // namespace router::server::gateway
