#include "server/log.h"

#include <atomic>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"

namespace router::server {
namespace {

std::atomic<LogFormat> g_format{LogFormat::kText};

}  // namespace

absl::StatusOr<LogFormat> ParseLogFormat(absl::string_view name) {
  if (name == "text") return LogFormat::kText;
  if (name == "json") return LogFormat::kJson;
  return absl::InvalidArgumentError(absl::StrCat("unknown log format '", name, "' (text or json)"));
}

const char* LogFormatName(LogFormat format) {
  return format == LogFormat::kJson ? "json" : "text";
}

void SetLogFormat(LogFormat format) { g_format.store(format); }

std::string FormatLogLine(LogFormat format, absl::string_view now_rfc3339, absl::string_view level,
                          absl::string_view event, absl::string_view message, LogFields fields) {
  if (format == LogFormat::kText) return absl::StrCat("routerd: ", message);
  nlohmann::ordered_json line;
  line["ts"] = std::string(now_rfc3339);
  line["level"] = std::string(level);
  line["event"] = std::string(event);
  line["msg"] = std::string(message);
  for (const auto& [key, value] : fields) {
    std::visit([&, key = std::string(key)](const auto& v) { line[key] = v; }, value);
  }
  // Bytes that are not UTF-8 (a caller's query id) are replaced, never allowed to break the line.
  return line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

void Log(absl::string_view level, absl::string_view event, absl::string_view message,
         LogFields fields) {
  const std::string now =
      absl::FormatTime("%Y-%m-%d%ET%H:%M:%E6SZ", absl::Now(), absl::UTCTimeZone());
  const std::string line = FormatLogLine(g_format.load(), now, level, event, message, fields);
  std::fprintf(stderr, "%s\n", line.c_str());
}

}  // namespace router::server
