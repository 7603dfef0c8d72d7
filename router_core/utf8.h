// File: utf8.h
//
// UTF-8 validation for names that leave routerd as protobuf strings (model names from an artifact
// or a config file's text): a client refuses to parse a message whose string field is not valid
// UTF-8, so such a name is refused where it enters, naming its field, instead of breaking every
// answer. router_core cannot use protobuf's own check (no protobuf in the core), hence this one.
//
// Thread-safety: a pure function. Cost: one pass, O(bytes).

#ifndef ROUTER_CORE_UTF8_H_
#define ROUTER_CORE_UTF8_H_

#include <cstddef>
#include <optional>

#include "absl/strings/string_view.h"

namespace router::core {

// The offset of the first byte of `s` that does not start a valid RFC 3629 UTF-8 sequence (no
// overlong forms, no surrogates U+D800-U+DFFF, nothing above U+10FFFF, no truncated sequence);
// nullopt if `s` is valid UTF-8.
std::optional<size_t> InvalidUtf8Offset(absl::string_view s);

inline bool IsValidUtf8(absl::string_view s) { return !InvalidUtf8Offset(s).has_value(); }

}  // namespace router::core

#endif  // ROUTER_CORE_UTF8_H_
