// Mode resolution (server/routing_mode.h): query mode over tenant mode over the default, and AUTO
// choosing inline exactly when the deadline leaves no room for a batch.

#include "server/routing_mode.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::server {
namespace {


constexpr absl::Duration kNoDeadline = absl::InfiniteDuration();
const absl::Duration kBatchLatency = BatchLatency(absl::Milliseconds(5), absl::Milliseconds(20));

RoutingConfig Config(RoutingMode default_mode) {
  RoutingConfig c;
  c.default_mode = default_mode;
  c.tenant_modes["fast"] = RoutingMode::kInline;
  c.tenant_modes["slow"] = RoutingMode::kBatch;
  c.tenant_modes["either"] = RoutingMode::kAuto;
  return c;
}

TEST(RoutingModeTest, NamesParseBackAndUnknownNamesAreRefused) {
  for (RoutingMode m : {RoutingMode::kBatch, RoutingMode::kInline, RoutingMode::kAuto}) {
    absl::StatusOr<RoutingMode> parsed = ParseRoutingMode(RoutingModeName(m));
    ASSERT_THAT(parsed, IsOk());
    EXPECT_EQ(*parsed, m);
  }
  EXPECT_THAT(ParseRoutingMode("Inline"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("batch, inline or auto")));
  EXPECT_THAT(ParseRoutingMode(""), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("''")));
}

TEST(RoutingModeTest, BatchLatencyIsTheDelayPlusTheSolveLimit) {
  EXPECT_EQ(kBatchLatency, absl::Milliseconds(25));
}

TEST(ResolveRoutingModeTest, QueryModeWinsOverTenantAndDefault) {
  const RoutingConfig c = Config(RoutingMode::kInline);
  EXPECT_EQ(ResolveRoutingMode(RoutingMode::kBatch, "fast", c, kNoDeadline, kBatchLatency),
            RoutingMode::kBatch);
  EXPECT_EQ(ResolveRoutingMode(RoutingMode::kInline, "slow", c, kNoDeadline, kBatchLatency),
            RoutingMode::kInline);
  EXPECT_EQ(ResolveRoutingMode(RoutingMode::kBatch, "", c, kNoDeadline, kBatchLatency),
            RoutingMode::kBatch);
}

TEST(ResolveRoutingModeTest, TenantModeWinsOverTheDefault) {
  const RoutingConfig c = Config(RoutingMode::kBatch);
  EXPECT_EQ(ResolveRoutingMode(std::nullopt, "fast", c, kNoDeadline, kBatchLatency),
            RoutingMode::kInline);
  EXPECT_EQ(ResolveRoutingMode(std::nullopt, "slow", Config(RoutingMode::kInline), kNoDeadline,
                               kBatchLatency),
            RoutingMode::kBatch);
}

TEST(ResolveRoutingModeTest, UnknownOrEmptyTenantGetsTheDefault) {
  EXPECT_EQ(ResolveRoutingMode(std::nullopt, "other", Config(RoutingMode::kBatch), kNoDeadline,
                               kBatchLatency),
            RoutingMode::kBatch);
  EXPECT_EQ(ResolveRoutingMode(std::nullopt, "", Config(RoutingMode::kInline), kNoDeadline,
                               kBatchLatency),
            RoutingMode::kInline);
  // Tenant names match exactly.
  EXPECT_EQ(ResolveRoutingMode(std::nullopt, "FAST", Config(RoutingMode::kBatch), kNoDeadline,
                               kBatchLatency),
            RoutingMode::kBatch);
}

TEST(ResolveRoutingModeTest, AutoIsInlineExactlyWhenTheDeadlineLeavesNoRoomForABatch) {
  const RoutingConfig c = Config(RoutingMode::kAuto);
  const auto resolve = [&](std::optional<RoutingMode> q, absl::string_view tenant,
                           absl::Duration left) {
    return ResolveRoutingMode(q, tenant, c, left, kBatchLatency);
  };
  // AUTO from the query, the tenant and the default alike.
  for (auto [q, tenant] : {std::pair<std::optional<RoutingMode>, const char*>{RoutingMode::kAuto, "slow"},
                           {std::nullopt, "either"},
                           {std::nullopt, "other"}}) {
    EXPECT_EQ(resolve(q, tenant, kNoDeadline), RoutingMode::kBatch) << tenant;
    EXPECT_EQ(resolve(q, tenant, absl::Seconds(10)), RoutingMode::kBatch) << tenant;
    EXPECT_EQ(resolve(q, tenant, kBatchLatency), RoutingMode::kBatch) << tenant;  // just room
    EXPECT_EQ(resolve(q, tenant, kBatchLatency - absl::Nanoseconds(1)), RoutingMode::kInline)
        << tenant;
    EXPECT_EQ(resolve(q, tenant, absl::ZeroDuration()), RoutingMode::kInline) << tenant;
    EXPECT_EQ(resolve(q, tenant, -absl::Seconds(1)), RoutingMode::kInline) << tenant;  // passed
  }
}

TEST(ResolveRoutingModeTest, NeverReturnsAuto) {
  for (RoutingMode d : {RoutingMode::kBatch, RoutingMode::kInline, RoutingMode::kAuto}) {
    for (absl::Duration left : {absl::ZeroDuration(), absl::Seconds(1), kNoDeadline}) {
      EXPECT_NE(ResolveRoutingMode(std::nullopt, "either", Config(d), left, kBatchLatency),
                RoutingMode::kAuto);
      EXPECT_NE(ResolveRoutingMode(RoutingMode::kAuto, "", Config(d), left, kBatchLatency),
                RoutingMode::kAuto);
    }
  }
}

}  // namespace
}  // namespace router::server
