#include "server/gateway/json_scan.h"

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace router::server::gateway {
namespace {

absl::Status Malformed(size_t at, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("body: malformed JSON at byte ", at, ": ", what));
}

size_t SkipWhitespace(absl::string_view s, size_t i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
  return i;
}

// s[i] == '"'; returns one past the closing quote.
absl::StatusOr<size_t> SkipString(absl::string_view s, size_t i) {
  for (++i; i < s.size(); ++i) {
    if (s[i] == '\\') {
      ++i;  // the escaped byte; a \uXXXX escape's hex digits need no special care
    } else if (s[i] == '"') {
      return i + 1;
    }
  }
  return Malformed(s.size(), "unterminated string");
}

// One value starting at s[i] (no leading whitespace); returns one past its end.
absl::StatusOr<size_t> SkipValue(absl::string_view s, size_t i) {
  if (i >= s.size()) return Malformed(i, "value expected");
  if (s[i] == '"') return SkipString(s, i);
  if (s[i] == '{' || s[i] == '[') {
    size_t depth = 0;
    while (i < s.size()) {
      const char c = s[i];
      if (c == '"') {
        absl::StatusOr<size_t> next = SkipString(s, i);
        if (!next.ok()) return next.status();
        i = *next;
        continue;
      }
      if (c == '{' || c == '[') {
        ++depth;
      } else if (c == '}' || c == ']') {
        if (--depth == 0) return i + 1;
      }
      ++i;
    }
    return Malformed(s.size(), "unterminated object or array");
  }
  // A number or a literal: up to the next delimiter.
  const size_t begin = i;
  while (i < s.size() && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' && s[i] != '\t' &&
         s[i] != '\n' && s[i] != '\r') {
    ++i;
  }
  if (i == begin) return Malformed(i, "value expected");
  return i;
}

absl::StatusOr<std::string> DecodeKey(absl::string_view token) {
  const absl::string_view inner = token.substr(1, token.size() - 2);
  if (inner.find('\\') == absl::string_view::npos) return std::string(inner);
  try {
    return nlohmann::json::parse(token.begin(), token.end()).get<std::string>();
  } catch (const nlohmann::json::exception&) {
    return absl::InvalidArgumentError("body: malformed JSON: bad escape in a key");
  }
}

}  // namespace

absl::StatusOr<JsonObjectSpans> ScanJsonObject(absl::string_view s, size_t begin) {
  JsonObjectSpans spans;
  size_t i = SkipWhitespace(s, begin);
  if (i >= s.size() || s[i] != '{') return Malformed(i, "'{' expected");
  spans.open = i;
  i = SkipWhitespace(s, i + 1);
  if (i < s.size() && s[i] == '}') {
    spans.close = i;
    return spans;
  }
  while (true) {
    if (i >= s.size() || s[i] != '"') return Malformed(i, "key expected");
    absl::StatusOr<size_t> key_end = SkipString(s, i);
    if (!key_end.ok()) return key_end.status();
    JsonMember member;
    absl::StatusOr<std::string> key = DecodeKey(s.substr(i, *key_end - i));
    if (!key.ok()) return key.status();
    member.key = *std::move(key);
    i = SkipWhitespace(s, *key_end);
    if (i >= s.size() || s[i] != ':') return Malformed(i, "':' expected");
    i = SkipWhitespace(s, i + 1);
    absl::StatusOr<size_t> value_end = SkipValue(s, i);
    if (!value_end.ok()) return value_end.status();
    member.value_begin = i;
    member.value_end = *value_end;
    spans.members.push_back(std::move(member));
    i = SkipWhitespace(s, *value_end);
    if (i < s.size() && s[i] == ',') {
      i = SkipWhitespace(s, i + 1);
      continue;
    }
    if (i < s.size() && s[i] == '}') {
      spans.close = i;
      return spans;
    }
    return Malformed(i, "',' or '}' expected");
  }
}

}  // namespace router::server::gateway
