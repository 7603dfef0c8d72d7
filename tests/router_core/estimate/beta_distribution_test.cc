#include "router_core/estimate/beta_distribution.h"

#include <cmath>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::core {
namespace {


double Quantile(double p, double a, double b) {
  absl::StatusOr<double> q = BetaQuantile(p, a, b);
  EXPECT_TRUE(q.ok()) << q.status();
  return q.value_or(NAN);
}

double Cdf(double x, double a, double b) {
  absl::StatusOr<double> c = BetaCdf(x, a, b);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.value_or(NAN);
}

TEST(BetaDistributionTest, MatchesClosedForms) {
  for (double p : {0.01, 0.1, 0.5, 0.9, 0.99}) {
    EXPECT_NEAR(Quantile(p, 1, 1), p, 1e-13);                                 // uniform
    EXPECT_NEAR(Quantile(p, 3, 1), std::pow(p, 1.0 / 3), 1e-13);              // CDF x^a
    EXPECT_NEAR(Quantile(p, 1, 2.5), 1 - std::pow(1 - p, 1.0 / 2.5), 1e-13);  // 1-(1-x)^b
  }
  for (double x : {0.0, 0.2, 0.5, 0.7, 1.0}) {
    EXPECT_NEAR(Cdf(x, 2, 2), 3 * x * x - 2 * x * x * x, 1e-13);
  }
}

TEST(BetaDistributionTest, QuantileInvertsCdfAcrossShapes) {
  // Unbounded densities (shapes < 1), skewed and concentrated posteriors.
  for (auto [a, b] : {std::pair{0.05, 0.3}, std::pair{0.5, 0.5}, std::pair{2.0, 9.0},
                      std::pair{200.0, 50.0}, std::pair{500.5, 499.5}, std::pair{3.2, 0.8}}) {
    double previous = 0.0;
    for (double p : {0.001, 0.1, 0.5, 0.9, 0.999}) {
      const double q = Quantile(p, a, b);
      EXPECT_NEAR(Cdf(q, a, b), p, 1e-9) << "a=" << a << " b=" << b << " p=" << p;
      EXPECT_GE(q, previous);
      previous = q;
    }
  }
  // A symmetric Beta has its median at 1/2.
  EXPECT_NEAR(Quantile(0.5, 700, 700), 0.5, 1e-12);
}

TEST(BetaDistributionTest, EndpointsAreExact) {
  EXPECT_EQ(Quantile(0.0, 2, 3), 0.0);
  EXPECT_EQ(Quantile(1.0, 2, 3), 1.0);
  EXPECT_EQ(Cdf(0.0, 2, 3), 0.0);
  EXPECT_EQ(Cdf(1.0, 2, 3), 1.0);
}

TEST(BetaDistributionTest, RejectsBadArguments) {
  EXPECT_THAT(BetaQuantile(0.5, 0.0, 1.0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("shape a")));
  EXPECT_THAT(BetaQuantile(0.5, 1.0, -2.0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("shape b")));
  EXPECT_THAT(BetaQuantile(0.5, NAN, 1.0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("shape a")));
  EXPECT_THAT(BetaQuantile(1.5, 1.0, 1.0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("level")));
  EXPECT_THAT(BetaQuantile(NAN, 1.0, 1.0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("level")));
  EXPECT_THAT(BetaCdf(-0.1, 1.0, 1.0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("argument")));
}

}  // namespace
}  // namespace router::core
