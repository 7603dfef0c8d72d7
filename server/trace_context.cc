#include "server/trace_context.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace router::server {
namespace {

bool IsLowerHex(absl::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

bool AllZero(absl::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == '0'; });
}

}  // namespace

std::string TraceContext::ToHeader() const {
  return absl::StrCat("00-", trace_id, "-", parent_id, "-", flags);
}

std::optional<TraceContext> ParseTraceparent(absl::string_view value) {
  // version(2) - trace-id(32) - parent-id(16) - flags(2) = 55 characters.
  constexpr size_t kLength = 55;
  if (value.size() < kLength || value[2] != '-' || value[35] != '-' || value[52] != '-') {
    return std::nullopt;
  }
  const absl::string_view version = value.substr(0, 2);
  if (!IsLowerHex(version) || version == "ff") return std::nullopt;
  // Version 00 is exactly 55 characters; a later version may append fields after a '-'.
  if (version == "00" ? value.size() != kLength
                      : value.size() > kLength && value[kLength] != '-') {
    return std::nullopt;
  }
  TraceContext t;
  t.trace_id = std::string(value.substr(3, 32));
  t.parent_id = std::string(value.substr(36, 16));
  t.flags = std::string(value.substr(53, 2));
  if (!IsLowerHex(t.trace_id) || !IsLowerHex(t.parent_id) || !IsLowerHex(t.flags) ||
      AllZero(t.trace_id) || AllZero(t.parent_id)) {
    return std::nullopt;
  }
  return t;
}

std::string TraceIdOf(absl::string_view traceparent) {
  std::optional<TraceContext> trace = ParseTraceparent(traceparent);
  return trace.has_value() ? std::move(trace->trace_id) : "";
}

}  // namespace router::server
