#include "server/config.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::server {
namespace {

using ::testing::HasSubstr;
using core::testing::IsOk;
using core::testing::IsOkAndHolds;
using core::testing::StatusIs;

TEST(ConfigTest, EmptyDocumentGivesTheDocumentedDefaults) {
  absl::StatusOr<RouterConfig> c = ParseConfigYaml("");
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->listen, "127.0.0.1:50051");
  EXPECT_EQ(c->batching.max_batch_size, 64);
  EXPECT_EQ(c->batching.max_batch_delay, absl::Milliseconds(5));
  EXPECT_EQ(c->policy.policy, core::PolicyKind::kBatch);
  EXPECT_FALSE(c->policy.avg_cost_cap_usd.has_value());
  EXPECT_EQ(c->ledger.spend_rate_usd_per_second, 0.0);
  EXPECT_TRUE(c->models.empty());
  EXPECT_EQ(c->routing.default_mode, RoutingMode::kBatch);
  EXPECT_TRUE(c->routing.tenant_modes.empty());
  const core::InlineOptions defaults;
  EXPECT_EQ(c->inline_options.window_arrivals, defaults.window_arrivals);
  EXPECT_EQ(c->inline_options.window_duration, absl::InfiniteDuration());
  EXPECT_EQ(c->inline_options.forecast_horizon, defaults.forecast_horizon);
  EXPECT_EQ(c->inline_options.slot_price_rounds, defaults.slot_price_rounds);
}

TEST(ConfigTest, ParsesRoutingModesAndInlineOptionsAndRoundTrips) {
  const char* yaml = R"(
routing:
  default_mode: auto
  tenant_modes: {gateway-a: inline, "team b": batch, c: auto}
inline: {window_arrivals: 50, window_duration_ms: 1000, forecast_horizon: 200, slot_price_rounds: 0}
)";
  absl::StatusOr<RouterConfig> c = ParseConfigYaml(yaml);
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->routing.default_mode, RoutingMode::kAuto);
  ASSERT_EQ(c->routing.tenant_modes.size(), 3u);
  EXPECT_EQ(c->routing.tenant_modes.at("gateway-a"), RoutingMode::kInline);
  EXPECT_EQ(c->routing.tenant_modes.at("team b"), RoutingMode::kBatch);
  EXPECT_EQ(c->routing.tenant_modes.at("c"), RoutingMode::kAuto);
  EXPECT_EQ(c->inline_options.window_arrivals, 50);
  EXPECT_EQ(c->inline_options.window_duration, absl::Seconds(1));
  EXPECT_EQ(c->inline_options.forecast_horizon, 200);
  EXPECT_EQ(c->inline_options.slot_price_rounds, 0);
  absl::StatusOr<RouterConfig> again = ParseConfigYaml(ConfigToYaml(*c));
  ASSERT_THAT(again, IsOk()) << ConfigToYaml(*c);
  EXPECT_EQ(ConfigToYaml(*again), ConfigToYaml(*c));
  EXPECT_EQ(again->routing.tenant_modes, c->routing.tenant_modes);
  EXPECT_EQ(again->inline_options.window_duration, absl::Seconds(1));
  // The defaults round-trip too: no window duration stays "count only".
  absl::StatusOr<RouterConfig> defaults = ParseConfigYaml(ConfigToYaml(*ParseConfigYaml("")));
  ASSERT_THAT(defaults, IsOk());
  EXPECT_EQ(defaults->inline_options.window_duration, absl::InfiniteDuration());
  EXPECT_TRUE(defaults->routing.tenant_modes.empty());
}

TEST(ConfigTest, RoutingAndInlineAreRuntimeChangeable) {
  RouterConfig a = *ParseConfigYaml("");
  absl::StatusOr<RouterConfig> b =
      ParseConfigUpdateYaml("routing: {default_mode: inline}\ninline: {window_arrivals: 10}", a);
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(b->routing.default_mode, RoutingMode::kInline);
  EXPECT_EQ(b->inline_options.window_arrivals, 10);
  EXPECT_THAT(CheckRuntimeChange(a, *b), IsOk());
}

TEST(ConfigTest, ParsesEveryFieldAndRoundTrips) {
  const char* yaml = R"(
listen: 0.0.0.0:7000
metrics_listen: ""
estimator: /tmp/e.cbor
reflection: false
batching: {max_batch_size: 128, max_batch_delay_ms: 2.5, max_queued: 500, solve_margin_ms: 1}
policy: {name: batch_gamma, gamma: 3, time_limit_ms: 40, relative_gap: 0.01, small_batch_max_queries: 8, max_fallbacks: 1}
budget: {avg_cost_cap_usd: 0.002, spend_usd_per_minute: 6, spend_burst_usd: 2, lease_timeout_s: 30}
limits: {max_text_bytes: 1000, max_batch_request_queries: 10}
shutdown: {grace_s: 3}
models:
  - {name: a, instances: 2, slots_per_instance: 4}
  - {name: b}
)";
  absl::StatusOr<RouterConfig> c = ParseConfigYaml(yaml);
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->batching.max_batch_delay, absl::Microseconds(2500));
  EXPECT_EQ(c->policy.policy, core::PolicyKind::kBatchGamma);
  EXPECT_EQ(c->policy.solve.small_batch_max_queries, 8);
  EXPECT_DOUBLE_EQ(c->ledger.spend_rate_usd_per_second, 0.1);
  EXPECT_EQ(c->ledger.lease_timeout, absl::Seconds(30));
  ASSERT_EQ(c->models.size(), 2u);
  EXPECT_TRUE(c->models[0].self_hosted());
  EXPECT_FALSE(c->models[1].self_hosted());
  absl::StatusOr<RouterConfig> again = ParseConfigYaml(ConfigToYaml(*c));
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(ConfigToYaml(*again), ConfigToYaml(*c));
  EXPECT_EQ(again->policy.avg_cost_cap_usd, 0.002);
}

TEST(ConfigTest, ErrorsNameTheField) {
  struct Case {
    const char* yaml;
    const char* message;
  } cases[] = {
      {"batching: {max_batch_size: 0}", "batching.max_batch_size"},
      {"batching: {max_batch_size: many}", "batching.max_batch_size: cannot read 'many'"},
      {"policy: {name: best}", "policy.name"},
      {"policy: {tau: 2}", "policy.tau"},
      {"policy: {small_batch_max_queries: 65}",
       "policy.small_batch_max_queries: must be in [0, 64]"},
      {"budget: {avg_cost_cap_usd: -1}", "budget.avg_cost_cap_usd"},
      {"budget: {spend_usd_per_minute: 1, spend_burst_usd: 0}", "budget.spend_burst_usd"},
      {"budget: {spend_burst_usd: -1}", "budget.spend_burst_usd: must be a finite number >= 0"},
      {"budget: {max_actual_cost_usd: 0}", "budget.max_actual_cost_usd: must be a finite number > 0"},
      {"policy: {time_limit_ms: 0}", "policy.time_limit_ms: must be > 0"},
      {"models: [{name: a, instances: 2}]", "models[0]: instances and slots_per_instance"},
      {"models: [{name: a}, {name: a}]", "models[1].name: duplicate"},
      {"modles: []", "modles: unknown key"},
      {"batching: [1, 2]", "batching: must be a mapping"},
      {"listen: [", "YAML syntax error at line"},
      {"routing: {default_mode: fast}", "routing.default_mode: unknown routing mode 'fast'"},
      {"routing: {tenant_modes: {a: inline, b: quick}}",
       "routing.tenant_modes.b: unknown routing mode 'quick'"},
      {"routing: {tenant_modes: [a, b]}", "routing.tenant_modes: must be a mapping"},
      {"routing: {tenant_modes: {a: [inline]}}", "routing.tenant_modes.a: must be a scalar"},
      {"routing: {default: inline}", "routing.default: unknown key"},
      {"inline: {window_arrivals: 0}", "inline.window_arrivals: must be >= 1"},
      {"inline: {window_arrivals: many}", "inline.window_arrivals: cannot read 'many'"},
      {"inline: {window_duration_ms: 0}", "inline.window_duration_ms: must be > 0"},
      {"inline: {window_duration_ms: -5}", "inline.window_duration_ms: must be > 0"},
      {"inline: {forecast_horizon: 0}", "inline.forecast_horizon: must be in [1, 10000]"},
      {"inline: {forecast_horizon: 10001}", "inline.forecast_horizon: must be in [1, 10000]"},
      {"inline: {bisection_steps: 24}", "inline.bisection_steps: unknown key"},
      {"inline: {slot_price_rounds: -1}", "inline.slot_price_rounds: must be in [0, 20]"},
      {"inline: {slot_price_rounds: 21}", "inline.slot_price_rounds: must be in [0, 20]"},
      {"inline: {window_duration: 5}", "inline.window_duration: unknown key"},
      {"inline: 3", "inline: must be a mapping"},
      // A model name leaves in every answer as a protobuf string, which must be UTF-8 (Latin-1
      // here); the error points at the byte.
      {"batching: {max_batch_size: 8}\nmodels: [{name: caf\xe9}]",
       "config: not valid UTF-8 at line 2, column 20 (byte 49)"},
      {"routing: {tenant_modes: {\xed\xa0\x80: inline}}", "not valid UTF-8 at line 1, column 26"},
      {"routing: {tenant_modes: {a: inline, a: batch}}", "routing.tenant_modes.a: listed twice"},
      {"logging: {format: xml}", "logging.format: unknown log format 'xml'"},
      {"logging: {decisions: maybe}", "logging.decisions: cannot read 'maybe'"},
      {"logging: {level: debug}", "logging.level: unknown key"},
      // 2^32 x 2^32 overflows an int64 to 0 slots.
      {"models: [{name: a, instances: 4294967296, slots_per_instance: 4294967296}]",
       "models[0]: instances x slots_per_instance is above 1000000000 slots"},
      {"models: [{name: a, instances: 100000, slots_per_instance: 100000}]",
       "models[0]: instances x slots_per_instance is above"},
      {"gateway: {model_header: X-Model}", "gateway.model_header: \"X-Model\" is not a lower-case"},
      {"gateway: {model_header: content-length}", "gateway.model_header: \"content-length\""},
      {"gateway: {request: {max_body_bytes: 0}}", "gateway.request.max_body_bytes: must be in [1,"},
      {"gateway: {request: {max_body_bytes: 67108864}}",
       "gateway.request.max_body_bytes: must be at most 67043328"},
      {"gateway: {request: {routing_aliases: []}}", "gateway.request.routing_aliases: at least one"},
      {"gateway: {request: {routing_aliases: [auto, auto]}}",
       "gateway.request.routing_aliases[1]: 'auto' listed twice"},
      {"gateway: {request: {routing_aliases: [\"\"]}}",
       "gateway.request.routing_aliases[0]: must not be empty"},
      {"gateway: {usage: {max_sse_event_bytes: -1}}", "gateway.usage.max_sse_event_bytes"},
      {"gateway: {usage: {max_json_body: 5}}", "gateway.usage.max_json_body: unknown key"},
      {"gateway: {decision_timeout_ms: 0}", "gateway.decision_timeout_ms: must be in (0, 60000]"},
      {"gateway: {retry_after_s: -1}", "gateway.retry_after_s: must be in [0, 86400]"},
      {"gateway: {tenant_header: \"X Tenant\"}", "gateway.tenant_header: 'X Tenant' is not"},
      {"gateway: {skip_header: Skip}", "gateway.skip_header: 'Skip' is not"},
      {"gateway: {models: [a, a]}", "gateway.models[1]: 'a' listed twice"},
      {"gateway: {models: a}", "gateway.models: must be a list"},
      {"gateway: {route_all: maybe}", "gateway.route_all: cannot read 'maybe'"},
      {"gateway: {listen_port: 9002}", "gateway.listen_port: unknown key"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(ParseConfigYaml(c.yaml), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)))
        << c.yaml;
  }
  EXPECT_THAT(LoadConfigFile("/nonexistent/routerd.yaml"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent")));
}

// A large tenant table parses (in one pass over its entries: it used to be quadratic), and text
// over the size limit is refused before it is parsed.
TEST(ConfigTest, ManyTenantsParseAndOversizedTextIsRefused) {
  std::string yaml = "routing:\n  tenant_modes:\n";
  for (int k = 0; k < 20000; ++k) absl::StrAppend(&yaml, "    tenant-", k, ": inline\n");
  absl::StatusOr<RouterConfig> c = ParseConfigYaml(yaml);
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->routing.tenant_modes.size(), 20000u);
  EXPECT_EQ(c->routing.tenant_modes.at("tenant-19999"), RoutingMode::kInline);
  const std::string huge = absl::StrCat("# ", std::string(kMaxConfigBytes, 'x'), "\n");
  EXPECT_THAT(ParseConfigYaml(huge),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("over the limit of 1048576")));
}

// What an editor leaves mid-save must not apply as "every default": an empty file is refused; a
// file without end is refused once it passes the size limit, not read forever.
TEST(ConfigTest, EmptyAndEndlessFilesAreRefused) {
  const std::string path = absl::StrCat(::testing::TempDir(), "/empty_", getpid(), ".yaml");
  {
    std::ofstream out(path);
    out << "\n   \n";
  }
  EXPECT_THAT(LoadConfigFile(path),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("the file is empty")));
  std::remove(path.c_str());
  EXPECT_THAT(LoadConfigFile("/dev/zero"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("over the limit")));
}

TEST(ConfigTest, RemovedLimitsNamesEachLimitAChangeRemoves) {
  const RouterConfig before = *ParseConfigYaml(R"(
budget: {avg_cost_cap_usd: 0.002, spend_usd_per_minute: 6, spend_burst_usd: 1}
models: [{name: a, instances: 2, slots_per_instance: 3}, {name: b, instances: 1, slots_per_instance: 1}, {name: c}]
)");
  EXPECT_TRUE(RemovedLimits(before, before).empty());
  const RouterConfig after = *ParseConfigYaml("models: [{name: a}, {name: c}]");
  EXPECT_THAT(RemovedLimits(before, after),
              ::testing::ElementsAre(HasSubstr("budget.avg_cost_cap_usd (was 0.002"),
                                     HasSubstr("budget.spend_usd_per_minute (was 6)"),
                                     HasSubstr("the slot limit of a (was 6)")));
  // With no models listed, every estimator model becomes an API model: every slot limit goes.
  EXPECT_THAT(RemovedLimits(before, *ParseConfigYaml("")),
              ::testing::Contains(HasSubstr("the slot limit of b (was 1; with no models listed")));
}

TEST(ConfigTest, AnUpdateKeepsAbsentStartupFieldsAndResetsAbsentRuntimeFields) {
  RouterConfig current = *ParseConfigYaml("listen: 0.0.0.0:7000\nbatching: {max_batch_size: 8}");
  absl::StatusOr<RouterConfig> next = ParseConfigUpdateYaml("batching: {max_queued: 500}", current);
  ASSERT_THAT(next, IsOk());
  EXPECT_EQ(next->listen, "0.0.0.0:7000");
  EXPECT_EQ(next->batching.max_queued, 500);
  EXPECT_EQ(next->batching.max_batch_size, 64);
  EXPECT_THAT(CheckRuntimeChange(current, *next), IsOk());
}

TEST(ConfigTest, ReplacePortKeepsTheHostAndNamesTheFlagOnErrors) {
  EXPECT_THAT(ReplacePort("127.0.0.1:50051", "8080", "--port"), IsOkAndHolds("127.0.0.1:8080"));
  EXPECT_THAT(ReplacePort("[::]:50051", "0", "--port"), IsOkAndHolds("[::]:0"));
  EXPECT_THAT(ReplacePort("localhost:9464", "65535", "--metrics_port"),
              IsOkAndHolds("localhost:65535"));
  for (const char* bad : {"", "x", "-1", "65536", "+80", "80 ", "1e3"}) {
    EXPECT_THAT(ReplacePort("127.0.0.1:50051", bad, "--port"),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr(absl::StrCat("--port: expected a port number 0..65535, got '",
                                                bad, "'"))));
  }
  for (const char* no_port : {"unix:/run/routerd.sock", "[::1]", "localhost", ""}) {
    EXPECT_THAT(ReplacePort(no_port, "80", "--metrics_port"),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("--metrics_port: the configured address")));
  }
}

TEST(ConfigTest, TheGatewaySectionHasDocumentedDefaultsAndRoundTrips) {
  const RouterConfig d = *ParseConfigYaml("");
  EXPECT_EQ(d.gateway.listen, "");
  EXPECT_EQ(d.gateway.options.model_header, "x-gateway-model-name");
  EXPECT_EQ(d.gateway.options.request.routing_aliases, std::vector<std::string>{"auto"});
  EXPECT_EQ(d.gateway.options.request.max_body_bytes, 4 << 20);
  EXPECT_EQ(d.gateway.options.usage.max_json_body_bytes, 4 << 20);
  EXPECT_EQ(d.gateway.options.usage.max_sse_event_bytes, 256 << 10);
  EXPECT_FALSE(d.gateway.route_all);
  EXPECT_EQ(d.gateway.decision_timeout, absl::Milliseconds(500));
  EXPECT_EQ(d.gateway.retry_after, absl::Seconds(1));
  EXPECT_TRUE(d.gateway.ensure_stream_usage);
  EXPECT_TRUE(d.gateway.remove_accept_encoding);
  EXPECT_TRUE(d.gateway.models.empty());
  absl::StatusOr<RouterConfig> c = ParseConfigYaml(R"(
gateway:
  listen: 127.0.0.1:9002
  model_header: x-ai-eg-model
  route_all: true
  tenant_header: x-tenant
  skip_header: x-skip
  models: [a, b]
  decision_timeout_ms: 250
  retry_after_s: 2.5
  ensure_stream_usage: false
  remove_accept_encoding: false
  request: {max_body_bytes: 1000, routing_aliases: [auto, router]}
  usage: {max_json_body_bytes: 2000, max_sse_event_bytes: 300}
)");
  ASSERT_THAT(c, IsOk());
  const GatewayConfig& g = c->gateway;
  EXPECT_EQ(g.listen, "127.0.0.1:9002");
  EXPECT_EQ(g.options.model_header, "x-ai-eg-model");
  EXPECT_TRUE(g.route_all);
  EXPECT_EQ(g.tenant_header, "x-tenant");
  EXPECT_EQ(g.skip_header, "x-skip");
  EXPECT_EQ(g.models, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(g.decision_timeout, absl::Milliseconds(250));
  EXPECT_EQ(g.retry_after, absl::Milliseconds(2500));
  EXPECT_FALSE(g.ensure_stream_usage);
  EXPECT_FALSE(g.remove_accept_encoding);
  EXPECT_EQ(g.options.request.max_body_bytes, 1000);
  EXPECT_EQ(g.options.request.routing_aliases, (std::vector<std::string>{"auto", "router"}));
  EXPECT_EQ(g.options.usage.max_json_body_bytes, 2000);
  EXPECT_EQ(g.options.usage.max_sse_event_bytes, 300);
  absl::StatusOr<RouterConfig> again = ParseConfigYaml(ConfigToYaml(*c));
  ASSERT_THAT(again, IsOk()) << ConfigToYaml(*c);
  EXPECT_EQ(ConfigToYaml(*again), ConfigToYaml(*c));
  EXPECT_EQ(ConfigToYaml(*ParseConfigYaml(ConfigToYaml(d))), ConfigToYaml(d));
  // gateway.listen is startup-only; the rest of the section changes at runtime.
  RouterConfig next = *c;
  next.gateway.models = {"a"};
  next.gateway.route_all = false;
  EXPECT_THAT(CheckRuntimeChange(*c, next), IsOk());
  next.gateway.listen = "127.0.0.1:9003";
  EXPECT_THAT(CheckRuntimeChange(*c, next),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("gateway.listen")));
  // An update that leaves gateway.listen out keeps it.
  absl::StatusOr<RouterConfig> update = ParseConfigUpdateYaml("gateway: {route_all: true}", *c);
  ASSERT_THAT(update, IsOk());
  EXPECT_EQ(update->gateway.listen, "127.0.0.1:9002");
}

TEST(ConfigTest, StartupOnlyFieldsCannotChangeAtRuntime) {
  RouterConfig a = *ParseConfigYaml("");
  RouterConfig b = a;
  b.batching.max_batch_size = 8;
  EXPECT_THAT(CheckRuntimeChange(a, b), IsOk());
  b.listen = "0.0.0.0:1";
  EXPECT_THAT(CheckRuntimeChange(a, b), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("listen")));
}

TEST(ConfigTest, SecurityAndServerLimitsHaveDocumentedDefaults) {
  absl::StatusOr<RouterConfig> c = ParseConfigYaml("");
  ASSERT_THAT(c, IsOk());
  EXPECT_FALSE(c->tls.enabled());
  EXPECT_TRUE(c->admin.listen.empty());
  EXPECT_TRUE(c->admin.token_file.empty());
  EXPECT_TRUE(c->admin.allowed_identities.empty());
  EXPECT_FALSE(c->admin.allow_unauthenticated);
  EXPECT_TRUE(c->api_token_file.empty());
  EXPECT_EQ(c->credentials_reload, absl::Seconds(10));
  EXPECT_EQ(c->grpc.max_concurrent_streams, 1000);
  EXPECT_EQ(c->grpc.max_receive_message_bytes, 64 << 20);
  EXPECT_EQ(c->grpc.max_send_message_bytes, 64 << 20);
  EXPECT_EQ(c->grpc.min_ping_interval, absl::Seconds(10));
  EXPECT_EQ(c->grpc.max_ping_strikes, 2);
  EXPECT_EQ(c->grpc.max_connection_idle, absl::ZeroDuration());
  EXPECT_EQ(c->grpc.max_connection_age, absl::ZeroDuration());
  EXPECT_EQ(c->max_queued_per_tenant, 0);
  EXPECT_EQ(c->max_queries_per_connection, 0);
}

TEST(ConfigTest, ParsesSecuritySectionsAndRoundTripsWithoutSecrets) {
  const char* yaml = R"(
listen: 0.0.0.0:50051
credentials_reload_s: 2.5
tls: {cert_file: /etc/r/server.pem, key_file: /etc/r/server.key, client_ca_file: /etc/r/ca.pem}
admin:
  listen: 127.0.0.1:50052
  token_file: /etc/r/admin.token
  allowed_identities: [ops.example, "CN with spaces"]
api: {token_file: /etc/r/api.token}
gateway: {request: {max_body_bytes: 65536}}
grpc: {max_concurrent_streams: 64, max_receive_message_bytes: 1048576, max_send_message_bytes: 131072,
       min_ping_interval_ms: 20000, max_ping_strikes: 0, max_connection_idle_s: 300,
       max_connection_age_s: 3600}
limits: {max_queued_per_tenant: 500, max_queries_per_connection: 2000}
)";
  absl::StatusOr<RouterConfig> c = ParseConfigYaml(yaml);
  ASSERT_THAT(c, IsOk());
  EXPECT_TRUE(c->tls.enabled());
  EXPECT_EQ(c->tls.client_ca_file, "/etc/r/ca.pem");
  EXPECT_EQ(c->admin.listen, "127.0.0.1:50052");
  EXPECT_THAT(c->admin.allowed_identities, ::testing::ElementsAre("ops.example", "CN with spaces"));
  EXPECT_EQ(c->api_token_file, "/etc/r/api.token");
  EXPECT_EQ(c->credentials_reload, absl::Milliseconds(2500));
  EXPECT_EQ(c->grpc.max_concurrent_streams, 64);
  EXPECT_EQ(c->grpc.max_ping_strikes, 0);
  EXPECT_EQ(c->grpc.max_connection_age, absl::Hours(1));
  EXPECT_EQ(c->max_queued_per_tenant, 500);
  EXPECT_EQ(c->max_queries_per_connection, 2000);
  const std::string dumped = ConfigToYaml(*c);
  absl::StatusOr<RouterConfig> again = ParseConfigYaml(dumped);
  ASSERT_THAT(again, IsOk()) << dumped;
  EXPECT_EQ(ConfigToYaml(*again), dumped);
  EXPECT_FALSE(ChangedStartupKey(*c, *again).has_value());
}

TEST(ConfigTest, SecurityErrorsNameTheKey) {
  const std::pair<const char*, const char*> cases[] = {
      {"tls: {cert_file: a.pem}", "tls.key_file: tls.cert_file and tls.key_file go together"},
      {"tls: {key_file: a.key}", "tls.cert_file: tls.cert_file and tls.key_file go together"},
      {"tls: {client_ca_file: ca.pem}", "tls.client_ca_file: needs tls.cert_file"},
      {"tls: {cert_file: a, key_file: b, bogus: 1}", "tls.bogus: unknown key"},
      {"admin: {allowed_identities: [x]}", "admin.allowed_identities: needs tls.client_ca_file"},
      {"admin: {allowed_identities: x}", "admin.allowed_identities: must be a list"},
      {"admin: {allowed_identities: [a, a]}", "admin.allowed_identities[1]: 'a' listed twice"},
      {"admin: {allowed_identities: ['']}", "admin.allowed_identities[0]: must be a non-empty"},
      {"admin: {allow_unauthenticated: true, token_file: t}",
       "admin.allow_unauthenticated: cannot be true with admin.token_file"},
      {"listen: 127.0.0.1:5\nadmin: {listen: 127.0.0.1:5}", "admin.listen: must differ from listen"},
      {"listen: 0.0.0.0:5\nadmin: {allow_unauthenticated: true}",
       "admin.allow_unauthenticated: RouterAdmin would be open to anyone who reaches '0.0.0.0:5'"},
      {"admin: {listen: '[::]:7', allow_unauthenticated: true}",
       "allowed only on a loopback address"},
      {"api: {token: x}", "api.token: unknown key"},
      {"grpc: {max_concurrent_streams: 0}", "grpc.max_concurrent_streams: must be in [1, 2147483647]"},
      {"grpc: {max_receive_message_bytes: 4294967296}", "grpc.max_receive_message_bytes: must be in"},
      {"grpc: {max_ping_strikes: -1}", "grpc.max_ping_strikes: must be in [0,"},
      // The default 4 MiB ext_proc body does not fit a 1 MiB message, nor 65536 bytes a 128 KiB one.
      {"grpc: {max_send_message_bytes: 1048576}",
       "gateway.request.max_body_bytes: must be at most 983040 (a body is one gRPC message"},
      {"grpc: {max_receive_message_bytes: 131072}\ngateway: {request: {max_body_bytes: 65537}}",
       "gateway.request.max_body_bytes: must be at most 65536"},
      {"grpc: {max_connection_age_s: -1}", "grpc.max_connection_age_s: must be a finite number >= 0"},
      {"grpc: {min_ping_interval_ms: 1e12}", "grpc.min_ping_interval_ms: must be in [0, 2147483647] milliseconds"},
      {"credentials_reload_s: -1", "credentials_reload_s: must be a finite number >= 0"},
      {"limits: {max_queued_per_tenant: -1}", "limits.max_queued_per_tenant: must be >= 0"},
      {"limits: {max_queries_per_connection: -2}", "limits.max_queries_per_connection: must be >= 0"},
  };
  for (const auto& [yaml, error] : cases) {
    EXPECT_THAT(ParseConfigYaml(yaml), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(error)))
        << yaml;
  }
}

TEST(ConfigTest, AnOpenRouterAdminIsAllowedOnLoopbackOnly) {
  EXPECT_THAT(ParseConfigYaml("admin: {allow_unauthenticated: true}"), IsOk());
  EXPECT_THAT(ParseConfigYaml("listen: 0.0.0.0:1\nadmin: {listen: 127.0.0.1:2, "
                              "allow_unauthenticated: true}"),
              IsOk());
  EXPECT_THAT(ParseConfigYaml("listen: 0.0.0.0:1\nadmin: {listen: unix:/run/r.sock, "
                              "allow_unauthenticated: true}"),
              IsOk());
  for (const char* address : {"127.0.0.1:1", "[::1]:1", "localhost:1", "unix:/x"}) {
    EXPECT_TRUE(IsLoopbackAddress(address)) << address;
  }
  for (const char* address : {"0.0.0.0:1", "[::]:1", "10.0.0.1:1", "routerd:1", "128.0.0.1:1"}) {
    EXPECT_FALSE(IsLoopbackAddress(address)) << address;
  }
}

TEST(ConfigTest, SecurityAndServerLimitKeysAreStartupOnlyAndKeptByUpdates) {
  const RouterConfig current = *ParseConfigYaml(R"(
tls: {cert_file: s.pem, key_file: s.key, client_ca_file: ca.pem}
admin: {listen: 127.0.0.1:9, token_file: t, allowed_identities: [ops]}
api: {token_file: a}
grpc: {max_concurrent_streams: 7}
credentials_reload_s: 1
)");
  // An update that leaves them out keeps them.
  absl::StatusOr<RouterConfig> next = ParseConfigUpdateYaml("limits: {max_queued_per_tenant: 3}", current);
  ASSERT_THAT(next, IsOk());
  EXPECT_THAT(CheckRuntimeChange(current, *next), IsOk());
  EXPECT_EQ(next->admin.token_file, "t");
  EXPECT_EQ(next->grpc.max_concurrent_streams, 7);
  EXPECT_EQ(next->max_queued_per_tenant, 3);
  // Changing one is refused, naming it.
  for (const auto& [yaml, key] : std::vector<std::pair<std::string, std::string>>{
           {"tls: {cert_file: other.pem}", "tls.cert_file"},
           {"tls: {client_ca_file: other.pem}", "tls.client_ca_file"},
           {"admin: {listen: 127.0.0.1:10}", "admin.listen"},
           {"admin: {token_file: u}", "admin.token_file"},
           {"admin: {allowed_identities: [ops, more]}", "admin.allowed_identities"},
           {"api: {token_file: b}", "api.token_file"},
           {"grpc: {max_concurrent_streams: 8}", "grpc.max_concurrent_streams"},
           {"grpc: {max_ping_strikes: 5}", "grpc.max_ping_strikes"},
           {"credentials_reload_s: 2", "credentials_reload_s"}}) {
    absl::StatusOr<RouterConfig> changed = ParseConfigUpdateYaml(yaml, current);
    ASSERT_THAT(changed, IsOk()) << yaml;
    EXPECT_THAT(CheckRuntimeChange(current, *changed),
                StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr(key + ":")))
        << yaml;
    EXPECT_EQ(ChangedStartupKey(current, *changed), key) << yaml;
  }
}

TEST(ConfigTest, TheLedgerSectionChoosesTheBackendAndRoundTrips) {
  EXPECT_FALSE(ParseConfigYaml("")->ledger_backend.redis);
  absl::StatusOr<RouterConfig> c = ParseConfigYaml(R"(
ledger:
  backend: redis
  health_requires_ledger: true
  redis:
    address: "10.0.0.7:6380"
    domain: prod-eu.1
    password_file: /etc/routerd/redis.pass
    connect_timeout_ms: 300
    call_timeout_ms: 40
    retry_after_ms: 750
    max_connections: 4
    refresh_snapshot_ms: 250
    escrow: {spend_usd: 0.25, slots: 2, validity_ms: 20000, renew_every_ms: 5000,
             skew_margin_ms: 1500}
)");
  ASSERT_THAT(c, IsOk());
  const LedgerBackendConfig& l = c->ledger_backend;
  EXPECT_EQ(l.redis_options.escrow.spend_usd, 0.25);
  EXPECT_EQ(l.redis_options.escrow.slots, 2);
  EXPECT_EQ(l.redis_options.escrow.validity, absl::Seconds(20));
  EXPECT_EQ(l.redis_options.escrow.renew_every, absl::Seconds(5));
  EXPECT_EQ(l.redis_options.escrow.skew_margin, absl::Milliseconds(1500));
  // Off by default.
  EXPECT_EQ(ParseConfigYaml("ledger: {backend: redis}")->ledger_backend.redis_options.escrow.slots,
            0);
  EXPECT_EQ(
      ParseConfigYaml("ledger: {backend: redis}")->ledger_backend.redis_options.escrow.spend_usd,
      0.0);
  EXPECT_TRUE(l.redis);
  EXPECT_TRUE(l.health_requires_ledger);
  EXPECT_EQ(l.redis_options.address, "10.0.0.7:6380");
  EXPECT_EQ(l.redis_options.domain, "prod-eu.1");
  EXPECT_EQ(l.password_file, "/etc/routerd/redis.pass");
  EXPECT_EQ(l.redis_options.connect_timeout, absl::Milliseconds(300));
  EXPECT_EQ(l.redis_options.call_timeout, absl::Milliseconds(40));
  EXPECT_EQ(l.redis_options.retry_after, absl::Milliseconds(750));
  EXPECT_EQ(l.redis_options.max_connections, 4);
  EXPECT_EQ(l.redis_options.refresh_snapshot_for, absl::Milliseconds(250));
  EXPECT_EQ(
      ParseConfigYaml("ledger: {backend: redis}")->ledger_backend.redis_options.refresh_snapshot_for,
      absl::Seconds(1));
  EXPECT_TRUE(l.redis_options.password.empty());  // read from the file at start, never stored
  absl::StatusOr<RouterConfig> again = ParseConfigYaml(ConfigToYaml(*c));
  ASSERT_THAT(again, IsOk()) << ConfigToYaml(*c);
  EXPECT_EQ(ConfigToYaml(*again), ConfigToYaml(*c));

  // Startup-only: an update without the section keeps it; one that changes it is refused.
  absl::StatusOr<RouterConfig> update = ParseConfigUpdateYaml("batching: {max_batch_size: 8}", *c);
  ASSERT_THAT(update, IsOk());
  EXPECT_THAT(CheckRuntimeChange(*c, *update), IsOk());
  update = ParseConfigUpdateYaml("ledger: {backend: local}", *c);
  ASSERT_THAT(update, IsOk());
  EXPECT_THAT(CheckRuntimeChange(*c, *update),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("ledger.backend:")));
  update = ParseConfigUpdateYaml(
      "ledger: {backend: redis, redis: {address: '10.0.0.8:6380', domain: prod-eu.1}}", *c);
  ASSERT_THAT(update, IsOk());
  EXPECT_EQ(ChangedStartupKey(*c, *update), "ledger.health_requires_ledger");

  for (const auto& [yaml, field] : std::vector<std::pair<std::string, std::string>>{
           {"ledger: {backend: etcd}", "ledger.backend"},
           {"ledger: {redis: {address: 'a:1'}}", "ledger.redis: only with backend: redis"},
           {"ledger: {health_requires_ledger: true}", "ledger.health_requires_ledger"},
           {"ledger: {backend: redis, redis: {address: nohost}}", "ledger.redis.address"},
           {"ledger: {backend: redis, redis: {domain: 'a{b'}}", "ledger.redis.domain"},
           {"ledger: {backend: redis, redis: {call_timeout_ms: 0}}", "ledger.redis.call_timeout_ms"},
           {"ledger: {backend: redis, redis: {max_connections: 0}}", "ledger.redis.max_connections"},
           {"ledger: {backend: redis, redis: {refresh_snapshot_ms: -1}}",
            "ledger.redis.refresh_snapshot_ms"},
           {"ledger: {backend: redis, redis: {pasword_file: x}}", "ledger.redis.pasword_file"},
           {"ledger: {backend: redis, redis: {escrow: {spend_usd: -1}}}",
            "ledger.redis.escrow.spend_usd"},
           {"ledger: {backend: redis, redis: {escrow: {slots: -2}}}", "ledger.redis.escrow.slots"},
           {"ledger: {backend: redis, redis: {escrow: {validity_ms: 1000}}}",
            "ledger.redis.escrow.validity_ms"},
           {"ledger: {backend: redis, redis: {escrow: {renew_every_ms: 0}}}",
            "ledger.redis.escrow.renew_every_ms"},
           {"ledger: {backend: redis, redis: {escrow: {slot: 1}}}", "ledger.redis.escrow.slot"},
       }) {
    EXPECT_THAT(ParseConfigYaml(yaml), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(field)))
        << yaml;
  }
}

TEST(ConfigTest, TheLearningSectionIsOffByDefaultWithTheLearnersDefaults) {
  absl::StatusOr<RouterConfig> c = ParseConfigYaml("");
  ASSERT_THAT(c, IsOk());
  const core::OutcomeLearnerOptions defaults;
  const LearningConfig& l = c->learning;
  EXPECT_FALSE(l.enabled);
  EXPECT_EQ(l.snapshot_file, "");
  EXPECT_EQ(l.snapshot_interval, absl::Seconds(60));
  EXPECT_EQ(l.options.half_life_outcomes, defaults.half_life_outcomes);
  EXPECT_EQ(l.options.prior_strength, defaults.prior_strength);
  EXPECT_EQ(l.options.cold_start_quality, defaults.cold_start_quality);
  EXPECT_EQ(l.options.cold_start_strength, defaults.cold_start_strength);
  EXPECT_EQ(l.options.lower_quantile, defaults.lower_quantile);
  EXPECT_EQ(l.options.exploration, defaults.exploration);
  EXPECT_EQ(l.options.max_cells, defaults.max_cells);
  EXPECT_FALSE(l.shared);  // the local ledger: nothing to share through
  // With the fleet's ledger, the replicas learn together by default.
  absl::StatusOr<RouterConfig> fleet = ParseConfigYaml("ledger: {backend: redis}");
  ASSERT_THAT(fleet, IsOk());
  EXPECT_TRUE(fleet->learning.shared);
  EXPECT_EQ(fleet->learning.shared_poll_interval, absl::Milliseconds(200));
  EXPECT_EQ(fleet->learning.shared_queue_max, 100000);
  EXPECT_EQ(fleet->learning.shared_stream_max_entries, 100000);
  absl::StatusOr<RouterConfig> alone = ParseConfigYaml(
      "ledger: {backend: redis}\nlearning: {shared: false, shared_poll_interval_ms: 50, "
      "shared_queue_max: 10, shared_stream_max_entries: 1000}");
  ASSERT_THAT(alone, IsOk());
  EXPECT_FALSE(alone->learning.shared);
  EXPECT_EQ(alone->learning.shared_poll_interval, absl::Milliseconds(50));
  EXPECT_EQ(alone->learning.shared_queue_max, 10);
  EXPECT_EQ(alone->learning.shared_stream_max_entries, 1000);
  absl::StatusOr<RouterConfig> again = ParseConfigYaml(ConfigToYaml(*alone));
  ASSERT_THAT(again, IsOk()) << ConfigToYaml(*alone);
  EXPECT_EQ(ConfigToYaml(*again), ConfigToYaml(*alone));
}

// docs/configuration.md states the learner's defaults as numbers: they must be the core's.
TEST(ConfigTest, TheDocumentedLearningDefaultsAreTheLearners) {
  std::ifstream in(std::string(ROUTER_SOURCE_DIR) + "/docs/configuration.md");
  ASSERT_TRUE(in) << "docs/configuration.md";
  std::map<std::string, std::string> documented;
  for (std::string line; std::getline(in, line);) {
    // | `learning.key` | default | meaning |
    if (!absl::StartsWith(line, "| `learning.")) continue;
    const std::vector<std::string> cells = absl::StrSplit(line, '|');
    ASSERT_GE(cells.size(), 4u) << line;
    std::string key(absl::StripAsciiWhitespace(cells[1]));
    key = key.substr(1, key.size() - 2);  // the backquotes
    documented[key] = std::string(absl::StripAsciiWhitespace(cells[2]));
  }
  const core::OutcomeLearnerOptions d;
  for (const auto& [key, value] :
       std::vector<std::pair<std::string, double>>{
           {"learning.half_life_outcomes", d.half_life_outcomes},
           {"learning.prior_strength", d.prior_strength},
           {"learning.cold_start_quality", d.cold_start_quality},
           {"learning.cold_start_strength", d.cold_start_strength},
           {"learning.lower_quantile", d.lower_quantile},
           {"learning.exploration", d.exploration},
           {"learning.max_cells", static_cast<double>(d.max_cells)},
           {"learning.snapshot_interval_s", 60.0},
           {"learning.shared_poll_interval_ms",
            absl::ToDoubleMilliseconds(LearningConfig().shared_poll_interval)},
           {"learning.shared_queue_max", static_cast<double>(LearningConfig().shared_queue_max)},
           {"learning.shared_stream_max_entries",
            static_cast<double>(LearningConfig().shared_stream_max_entries)}}) {
    ASSERT_TRUE(documented.contains(key)) << key << " is not in docs/configuration.md's table";
    double number = 0;
    ASSERT_TRUE(absl::SimpleAtod(absl::StrReplaceAll(documented[key], {{",", ""}}), &number))
        << key << ": '" << documented[key] << "'";
    EXPECT_EQ(number, value) << key;
  }
  EXPECT_THAT(documented["learning.enabled"], HasSubstr("false"));
}

TEST(ConfigTest, ParsesTheLearningSectionAndRoundTrips) {
  const char* yaml = R"(
learning:
  enabled: true
  snapshot_file: /var/lib/routerd/learning.json
  snapshot_interval_s: 30
  half_life_outcomes: 50
  prior_strength: 4
  cold_start_quality: 0.4
  cold_start_strength: 3
  lower_quantile: 0.2
  exploration: 0.1
  max_cells: 1000
)";
  absl::StatusOr<RouterConfig> c = ParseConfigYaml(yaml);
  ASSERT_THAT(c, IsOk());
  const LearningConfig& l = c->learning;
  EXPECT_TRUE(l.enabled);
  EXPECT_EQ(l.snapshot_file, "/var/lib/routerd/learning.json");
  EXPECT_EQ(l.snapshot_interval, absl::Seconds(30));
  EXPECT_EQ(l.options.half_life_outcomes, 50);
  EXPECT_EQ(l.options.prior_strength, 4);
  EXPECT_EQ(l.options.cold_start_quality, 0.4);
  EXPECT_EQ(l.options.cold_start_strength, 3);
  EXPECT_EQ(l.options.lower_quantile, 0.2);
  EXPECT_EQ(l.options.exploration, 0.1);
  EXPECT_EQ(l.options.max_cells, 1000);
  absl::StatusOr<RouterConfig> again = ParseConfigYaml(ConfigToYaml(*c));
  ASSERT_THAT(again, IsOk()) << ConfigToYaml(*c);
  EXPECT_EQ(ConfigToYaml(*again), ConfigToYaml(*c));
  EXPECT_EQ(again->learning.options.exploration, 0.1);
  EXPECT_TRUE(again->learning.enabled);
}

TEST(ConfigTest, LearningErrorsNameTheKey) {
  for (const auto& [yaml, key] : std::vector<std::pair<std::string, std::string>>{
           {"learning: {exploration: 1.5}", "learning.exploration"},
           {"learning: {half_life_outcomes: 0}", "learning.half_life_outcomes"},
           {"learning: {prior_strength: -1}", "learning.prior_strength"},
           {"learning: {lower_quantile: 0.7}", "learning.lower_quantile"},
           {"learning: {max_cells: 0}", "learning.max_cells"},
           {"learning: {cold_start_quality: 2}", "learning.cold_start_quality"},
           {"learning: {snapshot_interval_s: 0}", "learning.snapshot_interval_s"},
           {"learning: {enabled: maybe}", "learning.enabled"},
           {"learning: {explore: 0.1}", "learning.explore"},
           {"learning: {shared: true}", "learning.shared"},  // with the local ledger
           {"learning: {shared_poll_interval_ms: 5}", "learning.shared_poll_interval_ms"},
           {"learning: {shared_queue_max: 0}", "learning.shared_queue_max"},
           {"learning: {shared_stream_max_entries: 10}", "learning.shared_stream_max_entries"},
           {"ledger: {backend: redis}\nlearning: {shared_queue_max: 20000000}",
            "learning.shared_queue_max"},
           {"learning: [1]", "learning"},
       }) {
    EXPECT_THAT(ParseConfigYaml(yaml),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(key)))
        << yaml;
  }
}

TEST(ConfigTest, LearningEnabledAndIntervalReloadTheLearnersOptionsAndFileDoNot) {
  RouterConfig current =
      *ParseConfigYaml("learning: {enabled: true, snapshot_file: /tmp/l.json, exploration: 0.2}");
  // An update without the section turns learning off (a runtime key's default) and keeps the
  // startup-only keys.
  absl::StatusOr<RouterConfig> next = ParseConfigUpdateYaml("batching: {max_queued: 500}", current);
  ASSERT_THAT(next, IsOk());
  EXPECT_FALSE(next->learning.enabled);
  EXPECT_EQ(next->learning.snapshot_file, "/tmp/l.json");
  EXPECT_EQ(next->learning.options.exploration, 0.2);
  EXPECT_THAT(CheckRuntimeChange(current, *next), IsOk());
  // A section with only runtime keys keeps the startup-only ones too.
  next = ParseConfigUpdateYaml("learning: {enabled: true, snapshot_interval_s: 5}", current);
  ASSERT_THAT(next, IsOk());
  EXPECT_EQ(next->learning.snapshot_interval, absl::Seconds(5));
  EXPECT_EQ(next->learning.options.exploration, 0.2);
  EXPECT_THAT(CheckRuntimeChange(current, *next), IsOk());
  for (const auto& [yaml, key] : std::vector<std::pair<std::string, std::string>>{
           {"learning: {exploration: 0.3}", "learning.exploration"},
           {"learning: {snapshot_file: /tmp/other.json}", "learning.snapshot_file"},
           {"learning: {half_life_outcomes: 7}", "learning.half_life_outcomes"},
           {"learning: {max_cells: 7}", "learning.max_cells"},
           {"learning: {shared_poll_interval_ms: 70}", "learning.shared_poll_interval_ms"},
           {"learning: {shared_queue_max: 7}", "learning.shared_queue_max"},
           {"learning: {shared_stream_max_entries: 700}", "learning.shared_stream_max_entries"},
       }) {
    next = ParseConfigUpdateYaml(yaml, current);
    ASSERT_THAT(next, IsOk()) << yaml;
    EXPECT_THAT(CheckRuntimeChange(current, *next),
                StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr(key)))
        << yaml;
    EXPECT_EQ(ChangedStartupKey(current, *next), key);
  }
}

}  // namespace
}  // namespace router::server
