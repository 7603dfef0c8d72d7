#include "server/log_limiter.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/router_core/testing/fake_clock.h"

namespace router::server {
namespace {

using core::testing::FakeClock;
using ::testing::Optional;

TEST(LogLimiterTest, PassesABurstPerPeriodAndCountsWhatItSuppressed) {
  FakeClock clock;
  LogLimiter limiter(3, absl::Minutes(1), &clock);
  for (int k = 0; k < 3; ++k) EXPECT_THAT(limiter.Admit("bad utf-8"), Optional(std::string("bad utf-8")));
  for (int k = 0; k < 1000; ++k) EXPECT_EQ(limiter.Admit("bad utf-8"), std::nullopt);
  clock.Advance(absl::Seconds(59));
  EXPECT_EQ(limiter.Admit("bad utf-8"), std::nullopt);
  clock.Advance(absl::Seconds(1));
  EXPECT_THAT(limiter.Admit("bad utf-8"),
              Optional(std::string("bad utf-8 (1001 similar lines suppressed)")));
  EXPECT_THAT(limiter.Admit("again"), Optional(std::string("again")));
}

}  // namespace
}  // namespace router::server
