// File: usage_reader.h
//
// The response side of an OpenAI-compatible call: the token usage the provider reports, read from
// the response body as the gateway passes it on in chunks split anywhere, and the actual cost it
// implies at a model's prices (what the router's Complete call records).
//
// Where usage is:
//   application/json     the body's `usage` object: prompt_tokens and completion_tokens,
//                        non-negative integers. The body is held up to
//                        UsageReaderOptions::max_json_body_bytes.
//   text/event-stream    server-sent events; the usage is in the last `data:` event whose JSON
//                        has a non-null `usage` (OpenAI sends it in a final chunk with empty
//                        `choices`, and only when the request asked with
//                        stream_options.include_usage). `data: [DONE]` and events without usage
//                        are passed over. Only the event being received is held (at most
//                        max_sse_event_bytes; a longer one is skipped and counted), never the
//                        stream. Lines may end in LF, CRLF or CR; comment lines and other fields
//                        (event:, id:, retry:) are ignored; an event's data lines are joined by
//                        LF. An event still open when the body ends (no blank line after it) is
//                        read too: it is the provider's last word. An event is parsed as JSON only
//                        when its data has the key "usage" with a value other than null, found by
//                        a substring search (OpenAI-compatible servers never escape that key), so
//                        content events, which carry "usage":null, are not parsed.
//
// Thread-safety: UsageReader is not thread-safe (one per HTTP response); functions are pure.
//
// Errors: Create: INVALID_ARGUMENT naming the option. Finish: NOT_FOUND when the body has no
// usage; INVALID_ARGUMENT when it is malformed (not JSON, or a usage field of the wrong type,
// named); OUT_OF_RANGE when a JSON body passed its limit. Append and Finish after Finish:
// FAILED_PRECONDITION. ResponseFormatFromContentType: INVALID_ARGUMENT for a type without usage.
// ActualCostUsd: INVALID_ARGUMENT for a negative or non-finite price or count.
//
// Cost: Append O(chunk); Finish O(body) for JSON, O(1) for server-sent events; memory bounded by
// the options above.

#ifndef ROUTER_SERVER_GATEWAY_USAGE_READER_H_
#define ROUTER_SERVER_GATEWAY_USAGE_READER_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/gateway/gateway_options.h"

namespace router::server::gateway {

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;

  friend bool operator==(const Usage&, const Usage&) = default;
};

enum class ResponseFormat { kJson, kServerSentEvents };

// The format of a response from its `content-type`: the media type before any ';', compared
// case-insensitively: text/event-stream, or application/json (also any application/...+json).
absl::StatusOr<ResponseFormat> ResponseFormatFromContentType(absl::string_view content_type);

class UsageReader {
 public:
  static absl::StatusOr<UsageReader> Create(const UsageReaderOptions& options,
                                            ResponseFormat format);

  // Takes the next chunk of the response body (any bytes, any length). Problems with the body
  // are reported by Finish; this fails only after Finish (FAILED_PRECONDITION).
  absl::Status Append(absl::string_view chunk);

  // The body has ended: its usage, or why there is none (see Errors above).
  absl::StatusOr<Usage> Finish();

  // Server-sent events dispatched so far (with data; [DONE] included), events skipped for
  // passing max_sse_event_bytes, and whether `data: [DONE]` was seen.
  int64_t events() const { return events_; }
  int64_t skipped_events() const { return skipped_events_; }
  bool saw_done() const { return saw_done_; }
  // Bytes held right now (the JSON body, or the open event): bounded by the options.
  int64_t held_bytes() const {
    return static_cast<int64_t>(buffer_.size() + line_.size() + data_.size());
  }

 private:
  UsageReader(const UsageReaderOptions& options, ResponseFormat format)
      : options_(options), format_(format) {}

  void AppendSse(absl::string_view chunk);
  void EndLine();
  void DispatchEvent();

  UsageReaderOptions options_;
  ResponseFormat format_;
  bool finished_ = false;

  // JSON: the body so far, until it passes max_json_body_bytes (then json_overflow_).
  std::string buffer_;
  bool json_overflow_ = false;

  // Server-sent events: the open line and the open event's data.
  std::string line_;
  int64_t line_bytes_ = 0;  // bytes of the open line, held or not
  bool after_cr_ = false;   // the last byte was CR: a LF right after it ends no second line
  std::string data_;
  bool has_data_ = false;        // the open event has a data field
  bool event_overflow_ = false;  // the open event passed max_sse_event_bytes
  int64_t events_ = 0;
  int64_t skipped_events_ = 0;
  bool saw_done_ = false;
  // The usage of the last event that carried one, or why that event's usage was unusable.
  std::optional<absl::StatusOr<Usage>> last_usage_;
};

// A model's token prices.
struct TokenPrices {
  double input_usd_per_mtok = 0.0;   // USD per million prompt tokens, finite, >= 0
  double output_usd_per_mtok = 0.0;  // USD per million completion tokens, finite, >= 0
};

// prompt_tokens x input price + completion_tokens x output price, per million tokens, in USD.
absl::StatusOr<double> ActualCostUsd(const Usage& usage, const TokenPrices& prices);

}  // namespace router::server::gateway

#endif  // ROUTER_SERVER_GATEWAY_USAGE_READER_H_
