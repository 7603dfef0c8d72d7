#include "router_core/solve/cbc_model.h"

#include <cmath>
#include <vector>

#include "CoinPackedMatrix.hpp"
#include "OsiClpSolverInterface.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/router_core/testing/status_matchers.h"

namespace router::core {
namespace {

using ::testing::ElementsAre;

// max sum_k value_k x_k  s.t.  sum_k weight_k x_k <= capacity, x binary (and `min_items` <= sum x).
void LoadKnapsack(const std::vector<double>& value, const std::vector<double>& weight,
                  double capacity, double min_items, OsiClpSolverInterface& solver) {
  const int n = static_cast<int>(value.size());
  CoinPackedMatrix matrix(false, 0, 0);
  matrix.setDimensions(0, n);
  std::vector<int> columns(n);
  std::vector<double> ones(n, 1.0);
  for (int k = 0; k < n; ++k) columns[k] = k;
  matrix.appendRow(n, columns.data(), weight.data());
  matrix.appendRow(n, columns.data(), ones.data());
  const std::vector<double> col_lb(n, 0.0), col_ub(n, 1.0);
  const std::vector<double> row_lb = {-1e30, min_items}, row_ub = {capacity, 1e30};
  solver.loadProblem(matrix, col_lb.data(), col_ub.data(), value.data(), row_lb.data(),
                     row_ub.data());
  solver.setObjSense(-1.0);
  solver.setInteger(columns.data(), n);
  solver.messageHandler()->setLogLevel(0);
}

TEST(RunCbcTest, SolvesASmallKnapsackToOptimality) {
  OsiClpSolverInterface solver;
  LoadKnapsack({6, 5, 4}, {3, 2, 2}, 4, 0, solver);
  absl::StatusOr<CbcRun> run = RunCbc(solver, {.time_limit = absl::Seconds(10), .relative_gap = 0});
  ASSERT_THAT(run, IsOk());
  EXPECT_EQ(run->status, CbcRunStatus::kOptimal);
  // Items 1 and 2 (value 9) beat item 0 alone (6).
  ASSERT_EQ(run->solution.size(), 3u);
  EXPECT_NEAR(run->solution[0], 0.0, 1e-6);
  EXPECT_NEAR(run->solution[1], 1.0, 1e-6);
  EXPECT_NEAR(run->solution[2], 1.0, 1e-6);
  ASSERT_TRUE(run->best_bound.has_value());
  EXPECT_NEAR(*run->best_bound, 9.0, 1e-6);
  EXPECT_EQ(solver.getNumCols(), 3);  // `loaded` is left as it was
}

TEST(RunCbcTest, ReportsAProvenInfeasibleModel) {
  OsiClpSolverInterface solver;
  // Three items needed, but any two already exceed the capacity.
  LoadKnapsack({1, 1, 1}, {3, 3, 3}, 4, 3, solver);
  absl::StatusOr<CbcRun> run = RunCbc(solver, {});
  ASSERT_THAT(run, IsOk());
  EXPECT_EQ(run->status, CbcRunStatus::kInfeasible);
  EXPECT_TRUE(run->solution.empty());
}

TEST(RunCbcTest, StartsFromAnIncumbentAndKeepsTheOptimum) {
  OsiClpSolverInterface solver;
  LoadKnapsack({6, 5, 4}, {3, 2, 2}, 4, 0, solver);
  const std::vector<double> incumbent = {1, 0, 0};  // value 6, feasible
  absl::StatusOr<CbcRun> run =
      RunCbc(solver, {.relative_gap = 0, .incumbent = incumbent, .incumbent_objective = 6});
  ASSERT_THAT(run, IsOk());
  EXPECT_EQ(run->status, CbcRunStatus::kOptimal);
  ASSERT_EQ(run->solution.size(), 3u);
  EXPECT_NEAR(run->solution[1] + run->solution[2], 2.0, 1e-6);
}

TEST(RunCbcTest, AnOptimalIncumbentIsReturnedAsTheSolution) {
  OsiClpSolverInterface solver;
  LoadKnapsack({6, 5, 4}, {3, 2, 2}, 4, 0, solver);
  const std::vector<double> incumbent = {0, 1, 1};
  absl::StatusOr<CbcRun> run =
      RunCbc(solver, {.relative_gap = 0, .incumbent = incumbent, .incumbent_objective = 9});
  ASSERT_THAT(run, IsOk());
  EXPECT_EQ(run->status, CbcRunStatus::kOptimal);
  ASSERT_EQ(run->solution.size(), 3u);
  EXPECT_THAT(std::vector<long>({std::lround(run->solution[0]), std::lround(run->solution[1]),
                                 std::lround(run->solution[2])}),
              ElementsAre(0, 1, 1));
}

}  // namespace
}  // namespace router::core
