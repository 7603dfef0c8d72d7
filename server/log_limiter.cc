#include "server/log_limiter.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "google/protobuf/stubs/logging.h"

namespace router::server {

std::optional<std::string> LogLimiter::Admit(absl::string_view line) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  if (now - period_start_ >= period_) {
    period_start_ = now;
    passed_ = 0;
  }
  if (passed_ >= burst_) {
    ++suppressed_;
    return std::nullopt;
  }
  ++passed_;
  if (suppressed_ == 0) return std::string(line);
  std::string out = absl::StrCat(line, " (", suppressed_, " similar lines suppressed)");
  suppressed_ = 0;
  return out;
}

namespace {

void LimitedProtobufLog(google::protobuf::LogLevel level, const char* filename, int line,
                        const std::string& message) {
  static LogLimiter* const limiter = new LogLimiter(10, absl::Minutes(1));
  const char* const levels[] = {"INFO", "WARNING", "ERROR", "FATAL"};
  const int index = static_cast<int>(level);
  const char* name = index >= 0 && index < 4 ? levels[index] : "LOG";
  if (std::optional<std::string> out = limiter->Admit(
          absl::StrCat("[libprotobuf ", name, " ", filename, ":", line, "] ", message))) {
    std::fprintf(stderr, "%s\n", out->c_str());
  }
}

}  // namespace

void LimitProtobufLogs() { google::protobuf::SetLogHandler(&LimitedProtobufLog); }

}  // namespace router::server
