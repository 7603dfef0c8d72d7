// File: json_scan.h
//
// Byte offsets of the members of a JSON object inside a body, so that a request body can be
// edited in place (openai_request.h: RewriteOpenAiBody) and every byte outside the edited values
// stays as the client sent it. This is not a validating parser: run a real one (nlohmann) over the
// body first. On valid JSON the offsets are exact; on anything else ObjectMembers returns
// INVALID_ARGUMENT (or offsets of no use) but never reads outside the body.
//
// Thread-safety: pure functions. Cost: O(bytes of the object), no recursion (nesting depth is
// counted, not recursed into).

#ifndef ROUTER_SERVER_GATEWAY_JSON_SCAN_H_
#define ROUTER_SERVER_GATEWAY_JSON_SCAN_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace router::server::gateway {

struct JsonMember {
  std::string key;         // decoded (escapes resolved)
  size_t value_begin = 0;  // first byte of the value
  size_t value_end = 0;    // one past its last byte
};

struct JsonObjectSpans {
  size_t open = 0;                  // offset of '{'
  size_t close = 0;                 // offset of the matching '}'
  std::vector<JsonMember> members;  // in body order, duplicates included
};

// The object whose '{' is the first non-whitespace byte at or after `begin`.
absl::StatusOr<JsonObjectSpans> ScanJsonObject(absl::string_view body, size_t begin);

}  // namespace router::server::gateway

#endif  // ROUTER_SERVER_GATEWAY_JSON_SCAN_H_
