#include "server/gateway/gateway_options.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::server::gateway {
namespace {


TEST(GatewayOptionsTest, DefaultsAreValidAndDocumented) {
  const GatewayOptions o;
  EXPECT_THAT(ValidateGatewayOptions(o), IsOk());
  EXPECT_EQ(o.request.max_body_bytes, 4 << 20);
  EXPECT_EQ(o.request.routing_aliases, std::vector<std::string>{"auto"});
  EXPECT_EQ(o.usage.max_json_body_bytes, 4 << 20);
  EXPECT_EQ(o.usage.max_sse_event_bytes, 256 << 10);
  EXPECT_EQ(o.model_header, "x-gateway-model-name");
}

TEST(GatewayOptionsTest, EachBadFieldIsNamed) {
  auto bad = [](auto mutate) {
    GatewayOptions o;
    mutate(o);
    return ValidateGatewayOptions(o);
  };
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  EXPECT_THAT(bad([](GatewayOptions& o) { o.request.max_body_bytes = 0; }),
              StatusIs(kInvalid, "request.max_body_bytes: must be in [1, 1073741824], got 0"));
  EXPECT_THAT(
      bad([](GatewayOptions& o) { o.request.max_body_bytes = (int64_t{1} << 30) + 1; }),
      StatusIs(kInvalid, "request.max_body_bytes: must be in [1, 1073741824], got 1073741825"));
  EXPECT_THAT(
      bad([](GatewayOptions& o) { o.request.routing_aliases.clear(); }),
      StatusIs(kInvalid, "request.routing_aliases: at least one alias is needed (e.g. \"auto\")"));
  EXPECT_THAT(bad([](GatewayOptions& o) {
                o.request.routing_aliases = {"auto", ""};
              }),
              StatusIs(kInvalid, "request.routing_aliases[1]: must be 1 to 256 bytes, got 0"));
  EXPECT_THAT(bad([](GatewayOptions& o) { o.request.routing_aliases = {std::string(257, 'a')}; }),
              StatusIs(kInvalid, "request.routing_aliases[0]: must be 1 to 256 bytes, got 257"));
  EXPECT_THAT(bad([](GatewayOptions& o) {
                o.request.routing_aliases = {"auto", "r", "auto"};
              }),
              StatusIs(kInvalid, "request.routing_aliases[2]: duplicate alias \"auto\""));
  EXPECT_THAT(bad([](GatewayOptions& o) { o.usage.max_json_body_bytes = -1; }),
              StatusIs(kInvalid, "usage.max_json_body_bytes: must be in [1, 1073741824], got -1"));
  EXPECT_THAT(bad([](GatewayOptions& o) { o.usage.max_sse_event_bytes = 0; }),
              StatusIs(kInvalid, "usage.max_sse_event_bytes: must be in [1, 1073741824], got 0"));
  EXPECT_THAT(bad([](GatewayOptions& o) { o.model_header = ""; }),
              StatusIs(kInvalid, "model_header: required"));
  EXPECT_THAT(bad([](GatewayOptions& o) { o.model_header = "X-Model"; }),
              StatusIs(kInvalid, ::testing::HasSubstr(
                                     "model_header: \"X-Model\" is not a lower-case HTTP header")));
  EXPECT_THAT(bad([](GatewayOptions& o) { o.model_header = ":path"; }),
              StatusIs(kInvalid, ::testing::HasSubstr("not a lower-case HTTP header")));
  EXPECT_THAT(bad([](GatewayOptions& o) { o.model_header = "x model"; }),
              StatusIs(kInvalid, ::testing::HasSubstr("not a lower-case HTTP header")));
  EXPECT_THAT(bad([](GatewayOptions& o) { o.model_header = "x-envoy-model"; }),
              StatusIs(kInvalid,
                       "model_header: \"x-envoy-model\": Envoy ignores header "
                       "mutations of x-envoy- headers"));
  for (const char* reserved :
       {"host", "content-length", "content-type", "transfer-encoding", "te", "connection"}) {
    EXPECT_THAT(
        bad([&](GatewayOptions& o) { o.model_header = reserved; }),
        StatusIs(kInvalid, ::testing::HasSubstr("a header Envoy or HTTP itself relies on")));
  }
  for (const char* fine : {"x-ai-eg-model", "x-selected-model", "x_model.v1"}) {
    EXPECT_THAT(bad([&](GatewayOptions& o) { o.model_header = fine; }), IsOk());
  }
}

}  // namespace
}  // namespace router::server::gateway
