#include "server/gateway/error_response.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/router_core/testing/status_matchers.h"

namespace router::server::gateway {
namespace {

using Json = nlohmann::json;

TEST(BodyErrorTest, CarriesKindAndParam) {
  absl::Status s = BodyError(BodyErrorKind::kInvalid, "messages[2].content", "expected x");
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument, "messages[2].content: expected x"));
  EXPECT_EQ(BodyErrorKindOf(s), BodyErrorKind::kInvalid);
  EXPECT_EQ(BodyErrorParam(s), "messages[2].content");
  s = BodyError(BodyErrorKind::kTooLarge, "", "longer than 5 bytes");
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kOutOfRange, "body: longer than 5 bytes"));
  EXPECT_EQ(BodyErrorKindOf(s), BodyErrorKind::kTooLarge);
  EXPECT_EQ(BodyErrorParam(s), "");
  EXPECT_EQ(BodyErrorKindOf(absl::InvalidArgumentError("x")), std::nullopt);
  EXPECT_EQ(BodyErrorKindOf(absl::OkStatus()), std::nullopt);
}

Json ErrorOf(const HttpErrorResponse& r) { return Json::parse(r.body).at("error"); }

TEST(ErrorResponseForTest, BodyErrors) {
  HttpErrorResponse r = ErrorResponseFor(
      BodyError(BodyErrorKind::kInvalid, "messages[2].content", "expected a string"));
  EXPECT_EQ(r.http_status, 400);
  EXPECT_FALSE(r.retryable);
  EXPECT_EQ(r.body,
            R"({"error":{"message":"messages[2].content: expected a string","type":)"
            R"("invalid_request_error","param":"messages[2].content","code":"invalid_request"}})");
  r = ErrorResponseFor(BodyError(BodyErrorKind::kNotJson, "", "not JSON"));
  EXPECT_EQ(r.http_status, 400);
  EXPECT_EQ(ErrorOf(r).at("code"), "invalid_json");
  EXPECT_TRUE(ErrorOf(r).at("param").is_null());
  r = ErrorResponseFor(BodyError(BodyErrorKind::kNoPrompt, "prompt", "empty"));
  EXPECT_EQ(r.http_status, 400);
  EXPECT_EQ(ErrorOf(r).at("code"), "no_prompt");
  EXPECT_EQ(ErrorOf(r).at("param"), "prompt");
  r = ErrorResponseFor(BodyError(BodyErrorKind::kTooLarge, "", "longer than 5 bytes"));
  EXPECT_EQ(r.http_status, 413);
  EXPECT_EQ(ErrorOf(r).at("code"), "request_too_large");
  EXPECT_EQ(ErrorOf(r).at("type"), "invalid_request_error");
}

TEST(ErrorResponseForTest, RouterStatuses) {
  struct Case {
    absl::Status status;
    int http;
    std::string type;
    std::string code;
    bool retryable;
  };
  for (const Case& c : std::vector<Case>{
           {absl::InvalidArgumentError("query.text: required"), 400, "invalid_request_error",
            "invalid_argument", false},
           {absl::NotFoundError("unknown model 'x'"), 404, "invalid_request_error", "not_found",
            false},
           {absl::ResourceExhaustedError("budget"), 429, "rate_limit_error", "resource_exhausted",
            true},
           {absl::UnavailableError("queue full"), 503, "server_error", "unavailable", true},
           {absl::DeadlineExceededError("late"), 504, "server_error", "deadline_exceeded",
            false}}) {
    SCOPED_TRACE(c.status.ToString());
    HttpErrorResponse r = ErrorResponseFor(c.status);
    EXPECT_EQ(r.http_status, c.http);
    EXPECT_EQ(r.retryable, c.retryable);
    const Json e = ErrorOf(r);
    EXPECT_EQ(e.at("message"), std::string(c.status.message()));
    EXPECT_EQ(e.at("type"), c.type);
    EXPECT_EQ(e.at("code"), c.code);
    EXPECT_TRUE(e.at("param").is_null());
  }
  // Internal details stay in the operator's log.
  HttpErrorResponse r = ErrorResponseFor(absl::InternalError("ledger at 0x1234 broke"));
  EXPECT_EQ(r.http_status, 500);
  EXPECT_EQ(ErrorOf(r).at("message"), "internal error in the model router");
  EXPECT_EQ(ErrorOf(r).at("code"), "internal_error");
  EXPECT_THAT(r.body, ::testing::Not(HasSubstr("0x1234")));
}

TEST(OpenAiErrorBodyTest, IsValidJsonEvenForBadBytes) {
  const std::string body = OpenAiErrorBody("bad \xff byte \"q\"", "t", "c", std::nullopt);
  const Json e = Json::parse(body).at("error");
  EXPECT_EQ(e.at("message"), "bad \xef\xbf\xbd byte \"q\"");
}

TEST(RetryAfterValueTest, WholeSecondsRoundedUp) {
  EXPECT_THAT(RetryAfterValue(absl::ZeroDuration()), IsOkAndHolds("0"));
  EXPECT_THAT(RetryAfterValue(absl::Seconds(-5)), IsOkAndHolds("0"));
  EXPECT_THAT(RetryAfterValue(absl::Nanoseconds(1)), IsOkAndHolds("1"));
  EXPECT_THAT(RetryAfterValue(absl::Seconds(1)), IsOkAndHolds("1"));
  EXPECT_THAT(RetryAfterValue(absl::Milliseconds(1500)), IsOkAndHolds("2"));
  EXPECT_THAT(RetryAfterValue(absl::Minutes(2)), IsOkAndHolds("120"));
  EXPECT_THAT(RetryAfterValue(absl::InfiniteDuration()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("infinite")));
}

}  // namespace
}  // namespace router::server::gateway
