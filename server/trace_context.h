// File: trace_context.h
//
// W3C Trace Context (https://www.w3.org/TR/trace-context/), the `traceparent` header a gateway
// sends with a request (gRPC metadata, or an Envoy request header): version-traceid-parentid-
// flags, lowercase hex, 00-<32>-<16>-<2>. routerd carries it into the log line of the decision and
// into the answer, so that a decision can be found from a gateway's trace; no tracing library
// (none is packaged in Debian 12) is needed for that.
//
// Thread-safety: pure functions.

#ifndef ROUTER_SERVER_TRACE_CONTEXT_H_
#define ROUTER_SERVER_TRACE_CONTEXT_H_

#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace router::server {

struct TraceContext {
  std::string trace_id;   // 32 lowercase hex digits, not all zero
  std::string parent_id;  // 16 lowercase hex digits, not all zero
  std::string flags;      // 2 lowercase hex digits

  // The header value again: 00-<trace_id>-<parent_id>-<flags>.
  std::string ToHeader() const;
};

// The trace context of a `traceparent` value; nullopt for anything the specification says to
// ignore: a wrong length or separator, uppercase or non-hex digits, an all-zero id, version ff, or
// (for version 00) anything after the flags. A later version is read by its version-00 prefix, as
// the specification asks.
std::optional<TraceContext> ParseTraceparent(absl::string_view value);

// The trace id of a `traceparent` value (ParseTraceparent); empty when the value is to be ignored
// (an absent header read as ""). What routerd carries into a decision's log line and answer.
std::string TraceIdOf(absl::string_view traceparent);

}  // namespace router::server

#endif  // ROUTER_SERVER_TRACE_CONTEXT_H_
