#include "server/log.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/router_core/testing/status_matchers.h"

namespace router::server {
namespace {


TEST(LogTest, TextLinesAreTheMessage) {
  EXPECT_EQ(FormatLogLine(LogFormat::kText, "2026-12-06T01:02:03.000004Z", "info", "reload",
                          "reload applied", {{"code", std::string("OK")}}),
            "routerd: reload applied");
}

TEST(LogTest, JsonLinesHaveStableFieldsAndEscapeWhatTheyCarry) {
  const std::string line =
      FormatLogLine(LogFormat::kJson, "2026-12-06T01:02:03.000004Z", "info", "decision",
                    "query \"q\n1\" routed",
                    {{"query_id", std::string("q\n1\"}")},
                     {"cost_usd", 0.25},
                     {"port", int64_t{50051}},
                     {"bad_utf8", std::string("caf\xe9")}});
  EXPECT_EQ(line.find('\n'), std::string::npos);
  const nlohmann::json j = nlohmann::json::parse(line);
  EXPECT_EQ(j["ts"], "2026-12-06T01:02:03.000004Z");
  EXPECT_EQ(j["level"], "info");
  EXPECT_EQ(j["event"], "decision");
  EXPECT_EQ(j["msg"], "query \"q\n1\" routed");
  EXPECT_EQ(j["query_id"], "q\n1\"}");
  EXPECT_EQ(j["cost_usd"], 0.25);
  EXPECT_EQ(j["port"], 50051);
  EXPECT_EQ(j["bad_utf8"], "caf\xef\xbf\xbd");  // replaced, never a broken line
  // The fields keep their order: ts, level, event, msg, then the event's own.
  EXPECT_LT(line.find("\"ts\""), line.find("\"level\""));
  EXPECT_LT(line.find("\"msg\""), line.find("\"query_id\""));
}

TEST(LogTest, FormatsParseByName) {
  EXPECT_THAT(ParseLogFormat("json"), IsOkAndHolds(LogFormat::kJson));
  EXPECT_THAT(ParseLogFormat("text"), IsOkAndHolds(LogFormat::kText));
  EXPECT_THAT(ParseLogFormat("xml"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown log format 'xml'")));
}

}  // namespace
}  // namespace router::server
