#include "router_core/estimate/calibration_metrics.h"

#include <cmath>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::core {
namespace {

using ::testing::Not;

MATCHER_P(EceIs, expected, "") {
  if (!arg.ok()) {
    *result_listener << "status is " << arg.status();
    return false;
  }
  *result_listener << "ECE is " << *arg;
  return std::fabs(*arg - expected) < 1e-12;
}

TEST(ExpectedCalibrationErrorTest, ZeroWhenEveryBinMatchesItsRate) {
  const std::vector<double> p = {0.25, 0.25, 0.25, 0.25, 0.75, 0.75, 0.75, 0.75};
  const std::vector<double> y = {1, 0, 0, 0, 1, 1, 1, 0};
  EXPECT_THAT(ExpectedCalibrationError(p, y, 10), EceIs(0.0));
}

TEST(ExpectedCalibrationErrorTest, WeighsBinsByTheirShare) {
  // Bin [0.0, 0.1): |0.05 - 0| ; bin [0.9, 1.0]: |0.95 - 0|; each half of the mass.
  EXPECT_THAT(ExpectedCalibrationError({0.05, 0.95}, {0, 0}, 10), EceIs(0.5));
  // One bin: the gap between the means.
  EXPECT_THAT(ExpectedCalibrationError({0.2, 0.6}, {1, 1}, 1), EceIs(0.6));
  // Fractional labels count as scores.
  EXPECT_THAT(ExpectedCalibrationError({0.4}, {0.5}, 10), EceIs(0.1));
}

TEST(ExpectedCalibrationErrorTest, PutsOneInTheLastBin) {
  // Same bin [0.9, 1.0]: |1.95 - 1| / 2. Separate bins would give (1 + 0.05) / 2.
  EXPECT_THAT(ExpectedCalibrationError({1.0, 0.95}, {0, 1}, 10), EceIs(0.475));
}

TEST(ExpectedCalibrationErrorTest, SkipsMissingLabels) {
  EXPECT_THAT(ExpectedCalibrationError({0.3, 0.9}, {NAN, 1}, 10), EceIs(0.1));
}

TEST(ExpectedCalibrationErrorTest, RejectsBadInput) {
  EXPECT_THAT(ExpectedCalibrationError({0.5}, {1, 0}, 10),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("differ in length")));
  EXPECT_THAT(ExpectedCalibrationError({0.5}, {1}, 0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bins")));
  EXPECT_THAT(ExpectedCalibrationError({0.5, 1.2}, {1, 1}, 10),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("predictions[1]")));
  EXPECT_THAT(ExpectedCalibrationError({0.5, NAN}, {1, 1}, 10),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("predictions[1]")));
  EXPECT_THAT(ExpectedCalibrationError({0.5, 0.5}, {1, 2}, 10),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("labels[1]")));
  EXPECT_THAT(ExpectedCalibrationError({0.5}, {NAN}, 10),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no labelled")));
  EXPECT_THAT(ExpectedCalibrationError({}, {}, 10), Not(IsOk()));
}

}  // namespace
}  // namespace router::core
