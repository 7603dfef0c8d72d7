#include "server/gateway/usage_reader.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace router::server::gateway {
namespace {

using Json = nlohmann::json;

absl::StatusOr<int64_t> TokenCount(const Json& usage, absl::string_view key,
                                   absl::string_view where) {
  auto it = usage.find(std::string(key));
  if (it == usage.end() || it->is_null()) {
    return absl::InvalidArgumentError(absl::StrCat(where, "usage.", key, ": required"));
  }
  if (it->is_number_unsigned() &&
      it->get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return static_cast<int64_t>(it->get<uint64_t>());
  }
  return absl::InvalidArgumentError(
      absl::StrCat(where, "usage.", key, ": expected a non-negative integer, got ",
                   it->is_number() ? it->dump() : std::string(it->type_name())));
}

// The usage of one response object (a JSON body or an event's data); `where` prefixes errors.
// NOT_FOUND when there is none.
absl::StatusOr<Usage> UsageOf(const Json& response, absl::string_view where) {
  if (!response.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "expected a JSON object, got ", response.type_name()));
  }
  auto it = response.find("usage");
  if (it == response.end() || it->is_null()) {
    return absl::NotFoundError(absl::StrCat(where, "no usage"));
  }
  if (!it->is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "usage: expected an object, got ", it->type_name()));
  }
  Usage usage;
  absl::StatusOr<int64_t> prompt = TokenCount(*it, "prompt_tokens", where);
  if (!prompt.ok()) return prompt.status();
  absl::StatusOr<int64_t> completion = TokenCount(*it, "completion_tokens", where);
  if (!completion.ok()) return completion.status();
  usage.prompt_tokens = *prompt;
  usage.completion_tokens = *completion;
  return usage;
}

// Whether an event's data may carry usage: it has a `"usage"` key whose value is not null. Cheap
// (a substring search), so only such events are parsed: with stream_options.include_usage every
// OpenAI chunk has "usage":null and only the last one a usage object.
bool MayCarryUsage(absl::string_view data) {
  constexpr absl::string_view kKey = "\"usage\"";
  for (size_t at = data.find(kKey); at != absl::string_view::npos; at = data.find(kKey, at + 1)) {
    size_t i = at + kKey.size();
    while (i < data.size() && absl::ascii_isspace(static_cast<unsigned char>(data[i]))) ++i;
    if (i >= data.size() || data[i] != ':') continue;  // not a key
    ++i;
    while (i < data.size() && absl::ascii_isspace(static_cast<unsigned char>(data[i]))) ++i;
    if (!absl::StartsWith(data.substr(i), "null")) return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<ResponseFormat> ResponseFormatFromContentType(absl::string_view content_type) {
  const std::string media = absl::AsciiStrToLower(
      absl::StripAsciiWhitespace(content_type.substr(0, content_type.find(';'))));
  if (media == "text/event-stream") return ResponseFormat::kServerSentEvents;
  if (media == "application/json" ||
      (absl::StartsWith(media, "application/") && absl::EndsWith(media, "+json"))) {
    return ResponseFormat::kJson;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("content-type: \"", media,
                   "\" carries no usage (expected application/json or text/event-stream)"));
}

absl::StatusOr<UsageReader> UsageReader::Create(const UsageReaderOptions& options,
                                                ResponseFormat format) {
  if (absl::Status s = ValidateUsageReaderOptions(options); !s.ok()) return s;
  return UsageReader(options, format);
}

absl::Status UsageReader::Append(absl::string_view chunk) {
  if (finished_) return absl::FailedPreconditionError("response body: already finished");
  if (format_ == ResponseFormat::kServerSentEvents) {
    AppendSse(chunk);
    return absl::OkStatus();
  }
  if (json_overflow_) return absl::OkStatus();
  if (static_cast<int64_t>(buffer_.size() + chunk.size()) > options_.max_json_body_bytes) {
    json_overflow_ = true;
    std::string().swap(buffer_);
    return absl::OkStatus();
  }
  buffer_.append(chunk.data(), chunk.size());
  return absl::OkStatus();
}

void UsageReader::AppendSse(absl::string_view chunk) {
  size_t pos = 0;
  if (after_cr_ && !chunk.empty()) {
    after_cr_ = false;
    if (chunk[0] == '\n') pos = 1;  // the LF of a CRLF split between chunks
  }
  while (pos < chunk.size()) {
    const size_t eol = chunk.find_first_of("\r\n", pos);
    const absl::string_view piece =
        chunk.substr(pos, eol == absl::string_view::npos ? absl::string_view::npos : eol - pos);
    line_bytes_ += static_cast<int64_t>(piece.size());
    if (!event_overflow_) {
      if (static_cast<int64_t>(line_.size() + data_.size() + piece.size()) >
          options_.max_sse_event_bytes) {
        event_overflow_ = true;
        std::string().swap(line_);
        std::string().swap(data_);
      } else {
        line_.append(piece.data(), piece.size());
      }
    }
    if (eol == absl::string_view::npos) return;
    pos = eol + 1;
    if (chunk[eol] == '\r') {
      if (pos < chunk.size()) {
        if (chunk[pos] == '\n') ++pos;
      } else {
        after_cr_ = true;
      }
    }
    EndLine();
  }
}

void UsageReader::EndLine() {
  const bool blank = line_bytes_ == 0;
  line_bytes_ = 0;
  if (blank) {
    DispatchEvent();
    return;
  }
  if (event_overflow_) return;
  const absl::string_view line = line_;
  if (line[0] != ':') {  // ':' starts a comment
    const size_t colon = line.find(':');
    const absl::string_view field = line.substr(0, colon);
    if (field == "data") {
      absl::string_view value =
          colon == absl::string_view::npos ? absl::string_view() : line.substr(colon + 1);
      if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
      if (has_data_) data_.push_back('\n');
      data_.append(value.data(), value.size());
      has_data_ = true;
    }
  }
  line_.clear();
}

void UsageReader::DispatchEvent() {
  if (event_overflow_) {
    ++skipped_events_;
  } else if (has_data_) {
    ++events_;
    if (data_ == "[DONE]") {
      saw_done_ = true;
    } else if (MayCarryUsage(data_)) {
      const std::string where = absl::StrCat("event ", events_, ": ");
      Json event;
      bool parsed = true;
      try {
        event = Json::parse(data_);
      } catch (const Json::exception&) {  // parse_error, or out_of_range for a huge number
        parsed = false;
      }
      if (!parsed) {
        last_usage_ =
            absl::InvalidArgumentError(absl::StrCat(where, "data has a usage key but is not JSON"));
      } else if (absl::StatusOr<Usage> usage = UsageOf(event, where);
                 usage.status().code() != absl::StatusCode::kNotFound) {
        last_usage_ = std::move(usage);  // usage, or why this event's usage is unusable
      }
    }
  }
  line_.clear();
  data_.clear();
  has_data_ = false;
  event_overflow_ = false;
}

absl::StatusOr<Usage> UsageReader::Finish() {
  if (finished_) return absl::FailedPreconditionError("response body: already finished");
  finished_ = true;
  if (format_ == ResponseFormat::kJson) {
    if (json_overflow_) {
      return absl::OutOfRangeError(
          absl::StrCat("response body: longer than ", options_.max_json_body_bytes,
                       " bytes (usage.max_json_body_bytes); usage not read"));
    }
    Json body;
    try {
      body = Json::parse(buffer_);
    } catch (const Json::parse_error& e) {
      return absl::InvalidArgumentError(
          absl::StrCat("response body: not JSON (error at byte ", e.byte, ")"));
    } catch (const Json::out_of_range&) {
      // nlohmann's parser throws out_of_range, not parse_error, for a number beyond a double.
      return absl::InvalidArgumentError("response body: not JSON (a number too large for a double)");
    }
    std::string().swap(buffer_);
    return UsageOf(body, "response body: ");
  }
  // An open line and event at the end of the body are the provider's last word: read them.
  if (line_bytes_ > 0) EndLine();
  DispatchEvent();
  if (last_usage_.has_value()) return *last_usage_;
  return absl::NotFoundError(absl::StrCat(
      "response stream: no event carried usage (", events_, " events, ", skipped_events_,
      " skipped as longer than usage.max_sse_event_bytes; a stream carries usage only when the "
      "request sets stream_options.include_usage)"));
}

absl::StatusOr<double> ActualCostUsd(const Usage& usage, const TokenPrices& prices) {
  if (!std::isfinite(prices.input_usd_per_mtok) || prices.input_usd_per_mtok < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "input_usd_per_mtok: must be finite and >= 0, got ", prices.input_usd_per_mtok));
  }
  if (!std::isfinite(prices.output_usd_per_mtok) || prices.output_usd_per_mtok < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "output_usd_per_mtok: must be finite and >= 0, got ", prices.output_usd_per_mtok));
  }
  if (usage.prompt_tokens < 0 || usage.completion_tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat("usage: token counts must be >= 0, got ",
                                                   usage.prompt_tokens, " and ",
                                                   usage.completion_tokens));
  }
  return (static_cast<double>(usage.prompt_tokens) * prices.input_usd_per_mtok +
          static_cast<double>(usage.completion_tokens) * prices.output_usd_per_mtok) /
         1e6;
}

}  // namespace router::server::gateway
