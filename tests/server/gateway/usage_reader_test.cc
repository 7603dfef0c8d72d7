#include "server/gateway/usage_reader.h"

#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::server::gateway {
namespace {


constexpr ResponseFormat kJson = ResponseFormat::kJson;
constexpr ResponseFormat kSse = ResponseFormat::kServerSentEvents;

absl::StatusOr<Usage> Read(ResponseFormat format, const std::vector<std::string>& chunks,
                           const UsageReaderOptions& options = {}) {
  absl::StatusOr<UsageReader> reader = UsageReader::Create(options, format);
  EXPECT_THAT(reader, IsOk());
  for (const std::string& chunk : chunks) EXPECT_THAT(reader->Append(chunk), IsOk());
  return reader->Finish();
}

// Every split into two chunks, and one byte at a time, gives `want`.
void ExpectEverySplit(ResponseFormat format, const std::string& body,
                      const absl::StatusOr<Usage>& want) {
  for (size_t k = 0; k <= body.size(); ++k) {
    SCOPED_TRACE(k);
    absl::StatusOr<Usage> got = Read(format, {body.substr(0, k), body.substr(k)});
    ASSERT_EQ(got.status(), want.status());
    if (want.ok()) {
      ASSERT_EQ(*got, *want);
    }
  }
  std::vector<std::string> bytes;
  for (char c : body) bytes.emplace_back(1, c);
  absl::StatusOr<Usage> got = Read(format, bytes);
  ASSERT_EQ(got.status(), want.status());
  if (want.ok()) {
    EXPECT_EQ(*got, *want);
  }
}

const char kJsonBody[] =
    R"({"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o","choices":[{"index":0,)"
    R"("message":{"role":"assistant","content":"caf\u00e9 \"usage\": 1 )"
    "\xe2\x82\xac"
    R"("},"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":10,)"
    R"("total_tokens":29,"prompt_tokens_details":{"cached_tokens":0}}})";

TEST(UsageReaderTest, ReadsAJsonBodyAtEverySplit) {
  ExpectEverySplit(kJson, kJsonBody, Usage{19, 10});
}

TEST(UsageReaderTest, JsonBodiesWithoutUsableUsage) {
  EXPECT_THAT(Read(kJson, {R"({"id":"x","choices":[]})"}),
              StatusIs(absl::StatusCode::kNotFound, "response body: no usage"));
  EXPECT_THAT(Read(kJson, {R"({"usage":null})"}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no usage")));
  EXPECT_THAT(Read(kJson, {R"({"usage":{"prompt_tokens":"19","completion_tokens":1}})"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "response body: usage.prompt_tokens: expected a non-negative integer, got "
                       "string"));
  EXPECT_THAT(Read(kJson, {R"({"usage":{"prompt_tokens":19,"completion_tokens":-1}})"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "response body: usage.completion_tokens: expected a non-negative "
                       "integer, got -1"));
  EXPECT_THAT(Read(kJson, {R"({"usage":{"prompt_tokens":19}})"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "response body: usage.completion_tokens: required"));
  EXPECT_THAT(Read(kJson, {R"({"usage":[1,2]})"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "response body: usage: expected an object, got array"));
  EXPECT_THAT(Read(kJson, {"[1]"}), StatusIs(absl::StatusCode::kInvalidArgument,
                                             "response body: expected a JSON object, got array"));
  EXPECT_THAT(Read(kJson, {R"({"usage":{)"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("response body: not JSON")));
  EXPECT_THAT(Read(kJson, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("response body: not JSON")));
}

// nlohmann's parser throws out_of_range, not parse_error, for a number beyond a double; it must
// not escape the reader (it would terminate routerd).
TEST(UsageReaderTest, NumberTooLargeForADoubleIsNotJsonAndNoCrash) {
  EXPECT_THAT(Read(kJson, {R"({"usage":{"prompt_tokens":1e999,"completion_tokens":1}})"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "response body: not JSON (a number too large for a double)"));
  EXPECT_THAT(Read(kSse, {"data: {\"usage\":{\"prompt_tokens\":1e999}}\n\n"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "event 1: data has a usage key but is not JSON"));
}

TEST(UsageReaderTest, JsonBodyPastTheLimitIsDropped) {
  UsageReaderOptions options;
  options.max_json_body_bytes = 100;
  absl::StatusOr<UsageReader> reader = UsageReader::Create(options, kJson);
  ASSERT_THAT(reader, IsOk());
  const std::string body = kJsonBody;
  ASSERT_GT(body.size(), 100u);
  ASSERT_THAT(reader->Append(body.substr(0, 100)), IsOk());
  EXPECT_EQ(reader->held_bytes(), 100);
  ASSERT_THAT(reader->Append(body.substr(100)), IsOk());
  EXPECT_EQ(reader->held_bytes(), 0);
  EXPECT_THAT(reader->Finish(),
              StatusIs(absl::StatusCode::kOutOfRange,
                       "response body: longer than 100 bytes (usage.max_json_body_bytes); usage "
                       "not read"));
  EXPECT_THAT(reader->Append("x"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("finished")));
  EXPECT_THAT(reader->Finish(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("finished")));
}

// An OpenAI chat stream with include_usage: content chunks carry "usage":null, the last chunk has
// empty choices and the usage, then [DONE].
std::string OpenAiStream(bool with_usage, absl::string_view eol = "\n") {
  std::string s;
  auto event = [&](absl::string_view data) { absl::StrAppend(&s, "data: ", data, eol, eol); };
  const std::string null_usage = with_usage ? R"(,"usage":null)" : "";
  event(
      absl::StrCat(R"({"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":""}}])",
                   null_usage, "}"));
  event(absl::StrCat(R"({"id":"c","choices":[{"index":0,"delta":{"content":"caf)"
                     "\xc3\xa9 \xf0\x9f\x98\x80 the \\\"usage\\\": {\\\"prompt_tokens\\\": 1}\"}}]",
                     null_usage, "}"));
  absl::StrAppend(&s, ": keep-alive comment", eol, eol);
  event(absl::StrCat(R"({"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}])",
                     null_usage, "}"));
  if (with_usage) {
    event(
        R"({"id":"c","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}})");
  }
  event("[DONE]");
  return s;
}

TEST(UsageReaderTest, ReadsAStreamAtEverySplitWithAnyLineEnding) {
  for (absl::string_view eol : {"\n", "\r\n", "\r"}) {
    SCOPED_TRACE(absl::CEscape(eol));
    ExpectEverySplit(kSse, OpenAiStream(true, eol), Usage{12, 7});
  }
}

TEST(UsageReaderTest, StreamWithoutUsage) {
  const std::string stream = OpenAiStream(false);
  absl::StatusOr<UsageReader> reader = UsageReader::Create({}, kSse);
  ASSERT_THAT(reader, IsOk());
  ASSERT_THAT(reader->Append(stream), IsOk());
  EXPECT_THAT(reader->Finish(), StatusIs(absl::StatusCode::kNotFound,
                                         HasSubstr("no event carried usage (4 events, 0 skipped")));
  EXPECT_TRUE(reader->saw_done());
  EXPECT_EQ(reader->events(), 4);  // three chunks and [DONE]; the comment is no event
  for (absl::string_view eol : {"\n", "\r\n"}) {
    ExpectEverySplit(kSse, OpenAiStream(false, eol),
                     absl::NotFoundError(
                         "response stream: no event carried usage (4 events, 0 skipped as longer "
                         "than usage.max_sse_event_bytes; a stream carries usage only when the "
                         "request sets stream_options.include_usage)"));
  }
}

TEST(UsageReaderTest, StreamEventDetails) {
  // The last event with usage wins; multi-line data is joined by LF; fields other than data and
  // a missing space after the colon are fine; [DONE] is passed over.
  const std::string stream =
      "event: chunk\nid: 1\ndata:{\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\n"
      "retry: 10\ndata: {\"choices\":[],\ndata: \"usage\"\ndata: :\n"
      "data: {\"prompt_tokens\":3,\"completion_tokens\":4}}\n\n"
      "data: [DONE]\n\n";
  for (absl::string_view eol : {"\n", "\r\n", "\r"}) {
    SCOPED_TRACE(absl::CEscape(eol));
    ExpectEverySplit(kSse, absl::StrReplaceAll(stream, {{"\n", eol}}), Usage{3, 4});
  }
  // An event still open at the end of the body is read.
  ExpectEverySplit(kSse,
                   "data: {\"choices\":[]}\n\ndata: {\"usage\":{\"prompt_tokens\":5,"
                   "\"completion_tokens\":6}}",
                   Usage{5, 6});
  // A later event with a malformed usage decides: it is the provider's last report.
  EXPECT_THAT(
      Read(kSse, {"data: {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\n"
                  "data: {\"usage\":{\"prompt_tokens\":\"x\",\"completion_tokens\":2}}\n\n"}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               "event 2: usage.prompt_tokens: expected a non-negative integer, got "
               "string"));
  EXPECT_THAT(Read(kSse, {"data: {\"usage\": {\"prompt_tokens\"\n\n"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "event 1: data has a usage key but is not JSON"));
  // "usage":null and the word usage in text carry nothing; an event that is not JSON and has no
  // usage key is passed over.
  EXPECT_THAT(Read(kSse, {"data: {\"usage\" : null, \"text\": \"usage\"}\n\ndata: hello\n\n"}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("(2 events, 0 skipped")));
}

TEST(UsageReaderTest, HoldsOnlyTheOpenEvent) {
  UsageReaderOptions options;
  options.max_sse_event_bytes = 200;
  absl::StatusOr<UsageReader> reader = UsageReader::Create(options, kSse);
  ASSERT_THAT(reader, IsOk());
  // 5 MB of content events, each under the limit, in odd-sized chunks.
  std::string stream;
  const std::string content = absl::StrCat("data: ", R"({"choices":[{"delta":{"content":")",
                                           std::string(100, 'x'), R"("}}],"usage":null})", "\n\n");
  while (stream.size() < 5'000'000) stream += content;
  // One event over the limit, then the usage.
  stream += "data: " + std::string(1000, 'y') + "\n\n";
  stream += "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":8,\"completion_tokens\":9}}\n\n";
  int64_t max_held = 0;
  for (size_t at = 0; at < stream.size(); at += 4099) {
    ASSERT_THAT(reader->Append(absl::string_view(stream).substr(at, 4099)), IsOk());
    max_held = std::max(max_held, reader->held_bytes());
  }
  EXPECT_LE(max_held, 200);
  EXPECT_THAT(reader->Finish(), IsOkAndHolds(Usage{8, 9}));
  EXPECT_EQ(reader->skipped_events(), 1);
  EXPECT_EQ(reader->events(), static_cast<int64_t>(5'000'000 / content.size() + 2));
}

TEST(UsageReaderTest, ContentTypes) {
  EXPECT_THAT(ResponseFormatFromContentType("text/event-stream"), IsOkAndHolds(kSse));
  EXPECT_THAT(ResponseFormatFromContentType("Text/Event-Stream; charset=utf-8"),
              IsOkAndHolds(kSse));
  EXPECT_THAT(ResponseFormatFromContentType("application/json"), IsOkAndHolds(kJson));
  EXPECT_THAT(ResponseFormatFromContentType(" application/json ;charset=UTF-8"),
              IsOkAndHolds(kJson));
  EXPECT_THAT(ResponseFormatFromContentType("application/problem+json"), IsOkAndHolds(kJson));
  EXPECT_THAT(ResponseFormatFromContentType("text/plain; charset=utf-8"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "content-type: \"text/plain\" carries no usage (expected "
                       "application/json or text/event-stream)"));
  EXPECT_THAT(ResponseFormatFromContentType(""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"\"")));
}

TEST(UsageReaderTest, OptionsAreValidated) {
  EXPECT_THAT(UsageReader::Create({.max_json_body_bytes = 0, .max_sse_event_bytes = 1}, kJson),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "max_json_body_bytes: must be in [1, 1073741824], got 0"));
  EXPECT_THAT(UsageReader::Create({.max_json_body_bytes = 1, .max_sse_event_bytes = -5}, kSse),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "max_sse_event_bytes: must be in [1, 1073741824], got -5"));
}

TEST(ActualCostUsdTest, PricesPerMillionTokens) {
  absl::StatusOr<double> cost = ActualCostUsd({1000, 500}, {3.0, 15.0});
  ASSERT_THAT(cost, IsOk());
  EXPECT_DOUBLE_EQ(*cost, 1000 * 3.0 / 1e6 + 500 * 15.0 / 1e6);
  EXPECT_THAT(ActualCostUsd({0, 0}, {3.0, 15.0}), IsOkAndHolds(0.0));
  EXPECT_THAT(ActualCostUsd({1'000'000, 0}, {2.5, 0.0}), IsOkAndHolds(2.5));
  EXPECT_THAT(ActualCostUsd({1, 1}, {-1.0, 1.0}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("input_usd_per_mtok")));
  EXPECT_THAT(ActualCostUsd({1, 1}, {1.0, std::nan("")}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("output_usd_per_mtok")));
  EXPECT_THAT(ActualCostUsd({1, 1}, {1.0, INFINITY}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("output_usd_per_mtok")));
  EXPECT_THAT(ActualCostUsd({-1, 1}, {1.0, 1.0}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("token counts")));
}

}  // namespace
}  // namespace router::server::gateway
