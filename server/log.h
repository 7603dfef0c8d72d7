// File: log.h
//
// routerd's log: one line per event on stderr, as text (`routerd: <message>`, the default) or as
// JSON lines (config `logging.format: json`) with stable field names:
//     {"ts": RFC 3339 UTC with microseconds, "level": "info" | "warning" | "error",
//      "event": a stable event name, "msg": the text line's message, ...the event's fields}
// Field values are strings or numbers; JSON strings are escaped, so a field can never break a
// line. Secrets are never passed to it.
//
// Thread-safety: all functions may be called from any thread; a line is written with one call, so
// lines never interleave.

#ifndef ROUTER_SERVER_LOG_H_
#define ROUTER_SERVER_LOG_H_

#include <initializer_list>
#include <string>
#include <utility>
#include <variant>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace router::server {

enum class LogFormat { kText, kJson };
absl::StatusOr<LogFormat> ParseLogFormat(absl::string_view name);  // "text" or "json"
const char* LogFormatName(LogFormat format);

// Applies to every line written from now on (process-wide; text until set).
void SetLogFormat(LogFormat format);

using LogValue = std::variant<std::string, double, int64_t>;
using LogFields = std::initializer_list<std::pair<absl::string_view, LogValue>>;

// The line `Log` writes, without its newline; `now_rfc3339` is its timestamp.
std::string FormatLogLine(LogFormat format, absl::string_view now_rfc3339, absl::string_view level,
                          absl::string_view event, absl::string_view message,
                          LogFields fields = {});

// Writes one line: in text `routerd: <message>` (fields are not repeated: the message says what
// matters), in JSON every field.
void Log(absl::string_view level, absl::string_view event, absl::string_view message,
         LogFields fields = {});

}  // namespace router::server

#endif  // ROUTER_SERVER_LOG_H_
