#include "router_core/learn/beta_lower_table.h"

#include <cmath>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "router_core/estimate/beta_distribution.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::core {
namespace {

TEST(BetaLowerTableTest, RefusesLevelsOutsideTheRange) {
  EXPECT_THAT(BetaLowerTable::ForLevel(0.0), InvalidNaming("lower_quantile"));
  EXPECT_THAT(BetaLowerTable::ForLevel(0.51), InvalidNaming("lower_quantile"));
  EXPECT_THAT(BetaLowerTable::ForLevel(NAN), InvalidNaming("lower_quantile"));
}

TEST(BetaLowerTableTest, OneTablePerLevel) {
  absl::StatusOr<const BetaLowerTable*> a = BetaLowerTable::ForLevel(0.1);
  absl::StatusOr<const BetaLowerTable*> b = BetaLowerTable::ForLevel(0.1);
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(*a, *b);
  EXPECT_EQ((*a)->level(), 0.1);
}

// The interpolated bound against the exact quantile on random (q, n): n log-uniform over the grid
// and beyond it on both sides.
TEST(BetaLowerTableTest, CloseToTheExactQuantileAndWithinZeroAndQ) {
  for (const double level : {0.1, 0.025, 0.5}) {
    absl::StatusOr<const BetaLowerTable*> table = BetaLowerTable::ForLevel(level);
    ASSERT_THAT(table, IsOk());
    std::mt19937_64 rng(17);
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    double worst = 0.0;
    for (int i = 0; i < 1000; ++i) {
      const double q = unit(rng);
      const double n = std::exp2(-4.0 + 25.0 * unit(rng));
      const double lower = (*table)->Lower(q, n);
      ASSERT_GE(lower, 0.0);
      ASSERT_LE(lower, q);
      absl::StatusOr<double> exact = BetaQuantile(level, q * n, (1 - q) * n);
      ASSERT_THAT(exact, IsOk());
      worst = std::max(worst, std::fabs(lower - std::min(*exact, q)));
    }
    EXPECT_LT(worst, 0.005) << "level " << level;
  }
}

TEST(BetaLowerTableTest, EdgesAndMonotonicity) {
  absl::StatusOr<const BetaLowerTable*> table = BetaLowerTable::ForLevel(0.1);
  ASSERT_THAT(table, IsOk());
  EXPECT_EQ((*table)->Lower(0.0, 5.0), 0.0);
  EXPECT_EQ((*table)->Lower(1.0, 5.0), 1.0);
  EXPECT_EQ((*table)->Lower(-0.5, 5.0), 0.0);
  // More evidence, a tighter bound; a higher mean, a higher bound.
  double previous = 0.0;
  for (double n = 0.5; n < 1e7; n *= 3) {
    const double lower = (*table)->Lower(0.7, n);
    EXPECT_GT(lower, previous) << n;
    previous = lower;
  }
  EXPECT_NEAR(previous, 0.7, 1e-3);
  previous = -1.0;
  for (double q = 0.01; q < 1.0; q += 0.01) {
    const double lower = (*table)->Lower(q, 12.0);
    EXPECT_GE(lower, previous) << q;
    previous = lower;
  }
}

}  // namespace
}  // namespace router::core
