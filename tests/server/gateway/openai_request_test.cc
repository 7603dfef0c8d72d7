#include "server/gateway/openai_request.h"

#include <cstdint>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/gateway/error_response.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::server::gateway {
namespace {

using ::testing::Optional;
using Json = nlohmann::json;

constexpr OpenAiEndpoint kChat = OpenAiEndpoint::kChatCompletions;
constexpr OpenAiEndpoint kCompletions = OpenAiEndpoint::kCompletions;

absl::StatusOr<OpenAiRequest> Parse(OpenAiEndpoint endpoint, const std::string& body) {
  return ParseOpenAiRequest(endpoint, body, RequestBodyOptions{});
}

// The kind, param and message of a refusal.
struct Refusal {
  BodyErrorKind kind;
  std::string param;
  std::string message;
};

Refusal RefusalOf(const absl::StatusOr<OpenAiRequest>& r) {
  EXPECT_FALSE(r.ok());
  std::optional<BodyErrorKind> kind = BodyErrorKindOf(r.status());
  EXPECT_TRUE(kind.has_value()) << r.status();
  return {kind.value_or(BodyErrorKind::kInvalid), BodyErrorParam(r.status()),
          std::string(r.status().message())};
}

TEST(EndpointFromPathTest, KnowsBothEndpointsAndIgnoresQueryAndFragment) {
  EXPECT_THAT(EndpointFromPath("/v1/chat/completions"), IsOkAndHolds(kChat));
  EXPECT_THAT(EndpointFromPath("/v1/chat/completions?api-version=2024-10-21"), IsOkAndHolds(kChat));
  EXPECT_THAT(EndpointFromPath("/v1/completions#x"), IsOkAndHolds(kCompletions));
  EXPECT_EQ(std::string(EndpointPath(kChat)), "/v1/chat/completions");
  EXPECT_EQ(std::string(EndpointPath(kCompletions)), "/v1/completions");
}

TEST(EndpointFromPathTest, RefusesOtherPathsNamingThem) {
  EXPECT_THAT(EndpointFromPath("/v1/embeddings?x=1"),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr(":path: \"/v1/embeddings\" is not a routed endpoint")));
  EXPECT_THAT(EndpointFromPath("/v1/chat/completions/"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/v1/chat/completions/")));
  EXPECT_THAT(EndpointFromPath(""), StatusIs(absl::StatusCode::kNotFound, HasSubstr("\"\"")));
}

TEST(ParseOpenAiRequestTest, ReadsAChatRequest) {
  absl::StatusOr<OpenAiRequest> r = Parse(kChat, R"({
    "model": "auto",
    "messages": [
      {"role": "system", "content": "Be brief."},
      {"role": "user", "content": [
        {"type": "text", "text": "What is in"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "text", "text": "this picture?"}]},
      {"role": "assistant", "content": null, "tool_calls": [{"id": "c1"}]},
      {"role": "tool", "content": ""},
      {"role": "user", "content": "Thanks, h\u00e9llo \ud83d\ude00"}],
    "user": "tenant-a",
    "max_tokens": 100,
    "max_completion_tokens": 50,
    "stream": true,
    "stream_options": {"include_usage": true},
    "temperature": 0.2})");
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->endpoint, kChat);
  EXPECT_EQ(r->model, "auto");
  EXPECT_TRUE(r->route);
  EXPECT_EQ(r->prompt,
            "Be brief.\nWhat is in\nthis picture?\nThanks, h\xc3\xa9llo \xf0\x9f\x98\x80");
  EXPECT_THAT(r->user, Optional(std::string("tenant-a")));
  EXPECT_THAT(r->max_output_tokens, Optional(int64_t{50}));  // max_completion_tokens wins
  EXPECT_TRUE(r->stream);
  EXPECT_TRUE(r->stream_include_usage);
}

TEST(ParseOpenAiRequestTest, NamedModelPassesThroughAndNullMeansAbsent) {
  absl::StatusOr<OpenAiRequest> r =
      Parse(kChat, R"({"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"user":null,
                 "max_tokens":7,"max_completion_tokens":null,"stream":null,
                 "stream_options":null})");
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->model, "gpt-4o");
  EXPECT_FALSE(r->route);
  EXPECT_EQ(r->prompt, "hi");
  EXPECT_EQ(r->user, std::nullopt);
  EXPECT_THAT(r->max_output_tokens, Optional(int64_t{7}));
  EXPECT_FALSE(r->stream);
  EXPECT_FALSE(r->stream_include_usage);
}

TEST(ParseOpenAiRequestTest, RoutingAliasesComeFromTheOptions) {
  RequestBodyOptions options;
  options.routing_aliases = {"router", "openrouter/auto"};
  const std::string body = R"({"model":"openrouter/auto","messages":[{"content":"x"}]})";
  absl::StatusOr<OpenAiRequest> r = ParseOpenAiRequest(kChat, body, options);
  ASSERT_THAT(r, IsOk());
  EXPECT_TRUE(r->route);
  r = ParseOpenAiRequest(kChat, R"({"model":"auto","messages":[{"content":"x"}]})", options);
  ASSERT_THAT(r, IsOk());
  EXPECT_FALSE(r->route);  // "auto" is not an alias here
  r = ParseOpenAiRequest(kChat, R"({"model":"Router","messages":[{"content":"x"}]})", options);
  ASSERT_THAT(r, IsOk());
  EXPECT_FALSE(r->route);  // exact, case-sensitive
}

TEST(ParseOpenAiRequestTest, ReadsCompletionsPrompts) {
  absl::StatusOr<OpenAiRequest> r =
      Parse(kCompletions, R"({"model":"auto","prompt":"Say this","max_tokens":16})");
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->prompt, "Say this");
  EXPECT_THAT(r->max_output_tokens, Optional(int64_t{16}));
  r = Parse(kCompletions, R"({"model":"m","prompt":["one","","two"]})");
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->prompt, "one\ntwo");
  // On /v1/completions, chat's messages are not the prompt.
  r = Parse(kCompletions, R"({"model":"m","messages":[{"content":"x"}]})");
  EXPECT_EQ(RefusalOf(r).kind, BodyErrorKind::kNoPrompt);
}

struct BadBody {
  OpenAiEndpoint endpoint;
  std::string body;
  BodyErrorKind kind;
  std::string param;
  std::string message;  // the whole status message
};

TEST(ParseOpenAiRequestTest, RefusesBadBodiesNamingTheField) {
  const std::vector<BadBody> cases = {
      {kChat, R"({"model":"a","messages":[{"content":"x"},{"content":"y"},{"content":3}]})",
       BodyErrorKind::kInvalid, "messages[2].content",
       "messages[2].content: expected a string or an array of parts, got number"},
      {kChat, R"({"model":"a","messages":[{"content":[{"text":"x"}]}]})", BodyErrorKind::kInvalid,
       "messages[0].content[0].type", "messages[0].content[0].type: required"},
      {kChat, R"({"model":"a","messages":[{"content":[{"type":"text"}]}]})",
       BodyErrorKind::kInvalid, "messages[0].content[0].text",
       "messages[0].content[0].text: required for a part of type text"},
      {kChat, R"({"model":"a","messages":[{"content":[{"type":"text","text":["x"]}]}]})",
       BodyErrorKind::kInvalid, "messages[0].content[0].text",
       "messages[0].content[0].text: expected a string, got array"},
      {kChat, R"({"model":"a","messages":[{"content":["x"]}]})", BodyErrorKind::kInvalid,
       "messages[0].content[0]", "messages[0].content[0]: expected an object, got string"},
      {kChat, R"({"model":"a","messages":[{"content":[{"type":7}]}]})", BodyErrorKind::kInvalid,
       "messages[0].content[0].type", "messages[0].content[0].type: expected a string, got number"},
      {kChat, R"({"model":"a","messages":["hi"]})", BodyErrorKind::kInvalid, "messages[0]",
       "messages[0]: expected an object, got string"},
      {kChat, R"({"model":"a","messages":{"content":"x"}})", BodyErrorKind::kInvalid, "messages",
       "messages: expected an array of messages, got object"},
      {kChat, R"({"model":"a"})", BodyErrorKind::kInvalid, "messages", "messages: required"},
      {kChat, R"({"model":"a","messages":[]})", BodyErrorKind::kNoPrompt, "messages",
       "messages: empty"},
      {kChat,
       R"({"model":"a","messages":[{"content":[{"type":"image_url","image_url":{"url":"u"}}]},{"content":""}]})",
       BodyErrorKind::kNoPrompt, "messages",
       "messages: no text content (only non-text parts or empty strings)"},
      {kChat, R"({"messages":[{"content":"x"}]})", BodyErrorKind::kInvalid, "model",
       "model: required"},
      {kChat, R"({"model":null,"messages":[{"content":"x"}]})", BodyErrorKind::kInvalid, "model",
       "model: required"},
      {kChat, R"({"model":4,"messages":[{"content":"x"}]})", BodyErrorKind::kInvalid, "model",
       "model: expected a string, got number"},
      {kChat, R"({"model":"a","messages":[{"content":"x"}],"user":5})", BodyErrorKind::kInvalid,
       "user", "user: expected a string, got number"},
      {kChat, R"({"model":"a","messages":[{"content":"x"}],"max_tokens":-1})",
       BodyErrorKind::kInvalid, "max_tokens", "max_tokens: must be >= 0, got -1"},
      {kChat, R"({"model":"a","messages":[{"content":"x"}],"max_tokens":1.5})",
       BodyErrorKind::kInvalid, "max_tokens",
       "max_tokens: expected a non-negative integer, got number"},
      {kChat, R"({"model":"a","messages":[{"content":"x"}],"max_completion_tokens":"10"})",
       BodyErrorKind::kInvalid, "max_completion_tokens",
       "max_completion_tokens: expected a non-negative integer, got string"},
      {kChat, R"({"model":"a","messages":[{"content":"x"}],"max_tokens":18446744073709551615})",
       BodyErrorKind::kInvalid, "max_tokens", "max_tokens: too large (18446744073709551615)"},
      {kChat, R"({"model":"a","messages":[{"content":"x"}],"stream":"yes"})",
       BodyErrorKind::kInvalid, "stream", "stream: expected a boolean, got string"},
      {kChat, R"({"model":"a","messages":[{"content":"x"}],"stream_options":true})",
       BodyErrorKind::kInvalid, "stream_options",
       "stream_options: expected an object, got boolean"},
      {kChat, R"({"model":"a","messages":[{"content":"x"}],"stream_options":{"include_usage":1}})",
       BodyErrorKind::kInvalid, "stream_options.include_usage",
       "stream_options.include_usage: expected a boolean, got number"},
      {kChat, R"({"model":"a","messages":[{"content":"x"}],"model":"auto"})",
       BodyErrorKind::kInvalid, "model", "model: given more than once at the top level"},
      {kChat, R"({"model":"a","messages":[{"content":"x"}],"mod\u0065l":"auto"})",
       BodyErrorKind::kInvalid, "model", "model: given more than once at the top level"},
      {kChat, R"(["model","auto"])", BodyErrorKind::kInvalid, "",
       "body: expected a JSON object, got array"},
      {kChat, "", BodyErrorKind::kNotJson, "", "body: empty (expected a JSON object)"},
      {kChat, R"({"model":"a","messages":[{"content":"x"}])", BodyErrorKind::kNotJson, "",
       "body: not JSON: syntax error while parsing object - unexpected end of input; expected "
       "'}' (at byte 42)"},
      {kChat, "model=auto", BodyErrorKind::kNotJson, "",
       "body: not JSON: syntax error while parsing value - invalid literal (at byte 1)"},
      {kChat, "{\"model\":\"a\xff\",\"messages\":[{\"content\":\"x\"}]}", BodyErrorKind::kNotJson,
       "",
       "body: not JSON: syntax error while parsing value - invalid string: ill-formed UTF-8 "
       "byte (at byte 12)"},
      {kCompletions, R"({"model":"a"})", BodyErrorKind::kNoPrompt, "prompt", "prompt: required"},
      {kCompletions, R"({"model":"a","prompt":""})", BodyErrorKind::kNoPrompt, "prompt",
       "prompt: empty"},
      {kCompletions, R"({"model":"a","prompt":[]})", BodyErrorKind::kNoPrompt, "prompt",
       "prompt: empty"},
      {kCompletions, R"({"model":"a","prompt":["",""]})", BodyErrorKind::kNoPrompt, "prompt",
       "prompt: only empty strings"},
      {kCompletions, R"({"model":"a","prompt":[1212, 318]})", BodyErrorKind::kNoPrompt, "prompt",
       "prompt: token ids carry no text to route (send the prompt as text)"},
      {kCompletions, R"({"model":"a","prompt":[[1212],[318]]})", BodyErrorKind::kNoPrompt, "prompt",
       "prompt: token ids carry no text to route (send the prompt as text)"},
      {kCompletions, R"({"model":"a","prompt":[1212,"x"]})", BodyErrorKind::kInvalid, "prompt[1]",
       "prompt[1]: expected a token id, got string"},
      {kCompletions, R"({"model":"a","prompt":["x",7]})", BodyErrorKind::kInvalid, "prompt[1]",
       "prompt[1]: expected a string, got number"},
      {kCompletions, R"({"model":"a","prompt":{"text":"x"}})", BodyErrorKind::kInvalid, "prompt",
       "prompt: expected a string or an array of strings, got object"},
  };
  for (const BadBody& c : cases) {
    SCOPED_TRACE(c.body);
    absl::StatusOr<OpenAiRequest> r = Parse(c.endpoint, c.body);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    Refusal refusal = RefusalOf(r);
    EXPECT_EQ(refusal.kind, c.kind);
    EXPECT_EQ(refusal.param, c.param);
    EXPECT_EQ(refusal.message, c.message);
  }
}

// nlohmann's parser throws out_of_range, not parse_error, for a number beyond a double: it escaped
// ParseOpenAiRequest and terminated routerd (found by openai_request_fuzz; its input is the last
// case, after its first byte, which the fuzz target reads as options).
TEST(ParseOpenAiRequestTest, NumberTooLargeForADoubleIsNotJsonAndNoCrash) {
  for (const std::string& body :
       {std::string(R"({"model":"auto","messages":[{"content":"x"}],"max_tokens":1e999})"),
        std::string(R"({"model":"auto","messages":[{"content":"x"}],"temperature":-1e400})"),
        std::string("666000000000088e30000074832520925666666666;832520666000000000000000700000"
                    "0007660000\x82\"YYYYY\xd9YYYYYYYYYYYA{666666666666000000000088e30")}) {
    EXPECT_THAT(Parse(kChat, body),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("not JSON: a number too large for a double")))
        << body;
  }
}

TEST(ParseOpenAiRequestTest, DeepNestingElsewhereIsNoProblem) {
  // The parser and the scanner are iterative: 200k levels in a field the router does not read.
  const int depth = 200'000;
  std::string body = R"({"model":"auto","messages":[{"content":"x"}],"metadata":)";
  body.append(depth, '[');
  body.append(depth, ']');
  body += "}";
  absl::StatusOr<OpenAiRequest> r = Parse(kChat, body);
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->prompt, "x");
  absl::StatusOr<RewrittenBody> out = RewriteOpenAiBody(body, *r, {.model = "m"});
  ASSERT_THAT(out, IsOk());
  EXPECT_EQ(out->body.size(), body.size() - 3);  // "auto" -> "m"
}

// Bodies that exercise chunk boundaries: multi-byte UTF-8, escapes, braces and quotes inside
// strings, whitespace; valid and not.
std::vector<std::string> ChunkTestBodies() {
  return {
      R"({"model":"auto","messages":[{"role":"user","content":"h\u00e9 \"}{\" ][ caf)"
      "\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"
      R"("}],"user":"t\\1","max_tokens":12,"stream":true})",
      "  {\r\n \"model\" : \"gpt-4o\" ,\n\t\"messages\" : [ { \"content\" : [ {\"type\":\"text\","
      "\"text\":\"\xe4\xb8\xad\xe6\x96\x87\"} ] } ] }  ",
      R"({"model":"auto","messages":[{"content":3}]})",
      "{\"model\":\"auto\",\"messages\":[{\"content\":\"\xe2\x82\"}]}",  // truncated UTF-8
      R"({"model":"auto","messages":[{"content":"x"}])",                 // truncated JSON
  };
}

absl::StatusOr<OpenAiRequest> Accumulate(OpenAiEndpoint endpoint,
                                         const std::vector<std::string>& chunks) {
  absl::StatusOr<RequestBodyAccumulator> acc = RequestBodyAccumulator::Create({}, endpoint);
  EXPECT_THAT(acc, IsOk());
  for (const std::string& chunk : chunks) {
    if (absl::Status s = acc->Append(chunk); !s.ok()) return s;
  }
  return acc->Finish();
}

void ExpectSameAnswer(const absl::StatusOr<OpenAiRequest>& got,
                      const absl::StatusOr<OpenAiRequest>& want) {
  ASSERT_EQ(got.status(), want.status());
  if (!want.ok()) return;
  EXPECT_EQ(got->model, want->model);
  EXPECT_EQ(got->route, want->route);
  EXPECT_EQ(got->prompt, want->prompt);
  EXPECT_EQ(got->user, want->user);
  EXPECT_EQ(got->max_output_tokens, want->max_output_tokens);
  EXPECT_EQ(got->stream, want->stream);
}

TEST(RequestBodyAccumulatorTest, EverySplitGivesTheSameAnswerAsTheWholeBody) {
  for (const std::string& body : ChunkTestBodies()) {
    SCOPED_TRACE(body);
    const absl::StatusOr<OpenAiRequest> whole = Parse(kChat, body);
    for (size_t k = 0; k <= body.size(); ++k) {
      SCOPED_TRACE(k);
      ExpectSameAnswer(Accumulate(kChat, {body.substr(0, k), body.substr(k)}), whole);
    }
    std::vector<std::string> bytes;
    for (char c : body) bytes.emplace_back(1, c);
    ExpectSameAnswer(Accumulate(kChat, bytes), whole);
  }
  // The first body is valid and its prompt survives every split (checked above against this).
  absl::StatusOr<OpenAiRequest> first = Parse(kChat, ChunkTestBodies()[0]);
  ASSERT_THAT(first, IsOk());
  EXPECT_EQ(first->prompt, "h\xc3\xa9 \"}{\" ][ caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  EXPECT_THAT(first->user, Optional(std::string("t\\1")));
  EXPECT_EQ(RefusalOf(Parse(kChat, ChunkTestBodies()[3])).kind, BodyErrorKind::kNotJson);
  EXPECT_EQ(RefusalOf(Parse(kChat, ChunkTestBodies()[4])).kind, BodyErrorKind::kNotJson);
}

TEST(RequestBodyAccumulatorTest, RefusesABodyPastTheLimitAndDropsIt) {
  RequestBodyOptions options;
  options.max_body_bytes = 64;
  const std::string body = R"({"model":"auto","messages":[{"content":"0123456789"}]})";
  ASSERT_LT(body.size(), 64u);
  const std::string padded =
      body.substr(0, body.size() - 1) + std::string(64 - body.size(), ' ') + "}";
  ASSERT_EQ(padded.size(), 64u);
  absl::StatusOr<RequestBodyAccumulator> acc = RequestBodyAccumulator::Create(options, kChat);
  ASSERT_THAT(acc, IsOk());
  ASSERT_THAT(acc->Append(padded), IsOk());  // exactly the limit
  EXPECT_THAT(acc->Finish(), IsOk());

  acc = RequestBodyAccumulator::Create(options, kChat);
  ASSERT_THAT(acc->Append(padded.substr(0, 60)), IsOk());
  absl::Status s = acc->Append(padded.substr(60) + " ");
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kOutOfRange,
                          "body: longer than 64 bytes (request.max_body_bytes; 65 bytes "
                          "received so far)"));
  EXPECT_EQ(BodyErrorKindOf(s), BodyErrorKind::kTooLarge);
  EXPECT_EQ(acc->size(), 0);
  EXPECT_EQ(acc->Append("x"), s);  // sticky
  EXPECT_EQ(acc->Finish().status(), s);
}

TEST(RequestBodyAccumulatorTest, HugeBodies) {
  const std::string text(5 << 20, 'a');  // 5 MiB of prompt
  const std::string body = R"({"model":"auto","messages":[{"content":")" + text + R"("}]})";
  std::vector<std::string> chunks;
  for (size_t at = 0; at < body.size(); at += 65536) chunks.push_back(body.substr(at, 65536));
  // Default limit 4 MiB.
  EXPECT_EQ(BodyErrorKindOf(Accumulate(kChat, chunks).status()), BodyErrorKind::kTooLarge);
  RequestBodyOptions options;
  options.max_body_bytes = 8 << 20;
  absl::StatusOr<RequestBodyAccumulator> acc = RequestBodyAccumulator::Create(options, kChat);
  ASSERT_THAT(acc, IsOk());
  for (const std::string& chunk : chunks) ASSERT_THAT(acc->Append(chunk), IsOk());
  absl::StatusOr<OpenAiRequest> r = acc->Finish();
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->prompt.size(), text.size());
}

TEST(RequestBodyAccumulatorTest, CallsOutOfOrderAreRefused) {
  EXPECT_THAT(
      RequestBodyAccumulator::Create({.max_body_bytes = 0, .routing_aliases = {"auto"}}, kChat),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_body_bytes")));
  absl::StatusOr<RequestBodyAccumulator> acc = RequestBodyAccumulator::Create({}, kChat);
  ASSERT_THAT(acc, IsOk());
  EXPECT_THAT(acc->Rewrite({.model = "m"}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("Finish")));
  ASSERT_THAT(acc->Append(R"({"model":"auto","messages":[{"content":"x"}]})"), IsOk());
  ASSERT_THAT(acc->Finish(), IsOk());
  EXPECT_THAT(acc->Append("x"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("finished")));
  EXPECT_THAT(acc->Finish(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("finished")));
  absl::StatusOr<RewrittenBody> out = acc->Rewrite({.model = "gpt-4o"});
  ASSERT_THAT(out, IsOk());
  EXPECT_EQ(out->body, R"({"model":"gpt-4o","messages":[{"content":"x"}]})");
  EXPECT_EQ(out->content_length, std::to_string(out->body.size()));
}

// Rewrites `body` and checks that only the model value changed: the bytes before and after it
// are the client's, and the result parses to the original with the new model.
void ExpectModelRewritten(const std::string& body, const std::string& model) {
  SCOPED_TRACE(body);
  absl::StatusOr<OpenAiRequest> parsed = Parse(kChat, body);
  ASSERT_THAT(parsed, IsOk());
  absl::StatusOr<RewrittenBody> out = RewriteOpenAiBody(body, *parsed, {.model = model});
  ASSERT_THAT(out, IsOk());
  Json want = Json::parse(body);
  want["model"] = model;
  EXPECT_EQ(Json::parse(out->body), want);
  EXPECT_EQ(out->content_length, std::to_string(out->body.size()));
  // Common prefix and suffix cover everything but the old and the new value.
  size_t prefix = 0;
  while (prefix < body.size() && prefix < out->body.size() && body[prefix] == out->body[prefix]) {
    ++prefix;
  }
  size_t suffix = 0;
  while (suffix < body.size() - prefix && suffix < out->body.size() - prefix &&
         body[body.size() - 1 - suffix] == out->body[out->body.size() - 1 - suffix]) {
    ++suffix;
  }
  const std::string old_value = Json(parsed->model).dump();
  const std::string new_value = Json(model).dump();
  EXPECT_LE(body.size() - prefix - suffix, old_value.size());
  EXPECT_LE(out->body.size() - prefix - suffix, new_value.size());
  EXPECT_EQ(out->body.size() - body.size(), new_value.size() - old_value.size());
}

TEST(RewriteOpenAiBodyTest, ChangesOnlyTheModelValue) {
  ExpectModelRewritten(R"({"model":"auto","messages":[{"content":"x"}]})", "gpt-4o-mini");
  // Numbers, escapes, key order and whitespace the way the client wrote them.
  ExpectModelRewritten(
      "{ \"temperature\" : 1.0e0, \"seed\": 123456789012345678901234567890,\n"
      "  \"messages\": [{\"content\": \"\\u00e9\\\"model\\\": \\\"x\\\"\"}],\n"
      "  \"z\": {\"model\": \"nested\"},\n  \"model\"\t:\t\"auto\" "
      ",\"logit_bias\":{\"50256\":-100}\n}",
      "claude-3-haiku");
  ExpectModelRewritten(R"({"mod\u0065l":"auto","messages":[{"content":"x"}]})", "m");
  ExpectModelRewritten(R"({"model":"auto","messages":[{"content":"x"}]})",
                       "caf\xc3\xa9/\"quoted\"\\model");
  const std::string body = R"({"temperature":1.0e0,"model":"auto","messages":[{"content":"x"}]})";
  absl::StatusOr<OpenAiRequest> parsed = Parse(kChat, body);
  ASSERT_THAT(parsed, IsOk());
  absl::StatusOr<RewrittenBody> out = RewriteOpenAiBody(body, *parsed, {.model = "gpt-4o"});
  ASSERT_THAT(out, IsOk());
  EXPECT_EQ(out->body, R"({"temperature":1.0e0,"model":"gpt-4o","messages":[{"content":"x"}]})");
  EXPECT_EQ(out->content_length, "67");
}

TEST(RewriteOpenAiBodyTest, RefusesAModelThatIsNotUtf8) {
  const std::string body = R"({"model":"auto","messages":[{"content":"x"}]})";
  absl::StatusOr<OpenAiRequest> parsed = Parse(kChat, body);
  ASSERT_THAT(parsed, IsOk());
  EXPECT_THAT(RewriteOpenAiBody(body, *parsed, {.model = "bad\xff"}),
              StatusIs(absl::StatusCode::kInvalidArgument, "rewrite.model: not valid UTF-8"));
}

TEST(RewriteOpenAiBodyTest, EnsuresStreamUsageOnlyWhenStreamingWithoutIt) {
  struct Case {
    std::string body;
    std::string want;
  };
  const std::vector<Case> cases = {
      {R"({"model":"auto","messages":[{"content":"x"}],"stream":true} )",
       R"({"model":"m","messages":[{"content":"x"}],"stream":true,"stream_options":{"include_usage":true}} )"},
      {R"({"model":"auto","stream":true,"stream_options":null,"messages":[{"content":"x"}]})",
       R"({"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"content":"x"}]})"},
      {R"({"model":"auto","stream":true,"stream_options":{ },"messages":[{"content":"x"}]})",
       R"({"model":"m","stream":true,"stream_options":{"include_usage":true },"messages":[{"content":"x"}]})"},
      {R"({"model":"auto","stream":true,"stream_options":{"x":1},"messages":[{"content":"x"}]})",
       R"({"model":"m","stream":true,"stream_options":{"include_usage":true,"x":1},"messages":[{"content":"x"}]})"},
      {R"({"model":"auto","stream":true,"stream_options":{"include_usage":false},"messages":[{"content":"x"}]})",
       R"({"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"content":"x"}]})"},
      {R"({"model":"auto","stream":true,"stream_options":{"include_usage":null},"messages":[{"content":"x"}]})",
       R"({"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"content":"x"}]})"},
      // Already asked for, or not streaming: only the model changes.
      {R"({"model":"auto","stream":true,"stream_options":{"include_usage":true},"messages":[{"content":"x"}]})",
       R"({"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"content":"x"}]})"},
      {R"({"model":"auto","stream":false,"messages":[{"content":"x"}]})",
       R"({"model":"m","stream":false,"messages":[{"content":"x"}]})"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.body);
    absl::StatusOr<OpenAiRequest> parsed = Parse(kChat, c.body);
    ASSERT_THAT(parsed, IsOk());
    absl::StatusOr<RewrittenBody> out =
        RewriteOpenAiBody(c.body, *parsed, {.model = "m", .ensure_stream_usage = true});
    ASSERT_THAT(out, IsOk());
    EXPECT_EQ(out->body, c.want);
    EXPECT_EQ(out->content_length, std::to_string(c.want.size()));
    absl::StatusOr<OpenAiRequest> again = Parse(kChat, out->body);
    ASSERT_THAT(again, IsOk());
    EXPECT_EQ(again->stream_include_usage, parsed->stream);
  }
  // Without a model change, only stream_options changes.
  const std::string body = R"({"model":"gpt-4o","messages":[{"content":"x"}],"stream":true})";
  absl::StatusOr<OpenAiRequest> parsed = Parse(kChat, body);
  ASSERT_THAT(parsed, IsOk());
  absl::StatusOr<RewrittenBody> out =
      RewriteOpenAiBody(body, *parsed, {.model = std::nullopt, .ensure_stream_usage = true});
  ASSERT_THAT(out, IsOk());
  EXPECT_EQ(
      out->body,
      R"({"model":"gpt-4o","messages":[{"content":"x"}],"stream":true,"stream_options":{"include_usage":true}})");
  out = RewriteOpenAiBody(body, *parsed, {});
  ASSERT_THAT(out, IsOk());
  EXPECT_EQ(out->body, body);
}

}  // namespace
}  // namespace router::server::gateway
