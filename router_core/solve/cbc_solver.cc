#include "router_core/solve/cbc_solver.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "CoinFinite.hpp"
#include "CoinPackedMatrix.hpp"
#include "OsiClpSolverInterface.hpp"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "router_core/solve/cbc_model.h"
#include "router_core/solve/solution.h"

namespace router::core {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// The per-query deviations of an assignment (served queries only), largest first.
std::vector<double> SortedDeviations(const Instance& instance,
                                     const std::vector<int>& model_of_query) {
  std::vector<double> deviations;
  deviations.reserve(instance.num_queries);
  for (int i = 0; i < instance.num_queries; ++i) {
    const int j = model_of_query[i];
    if (j != kUnserved) deviations.push_back(instance.deviation[instance.index(i, j)]);
  }
  std::sort(deviations.begin(), deviations.end(), std::greater<double>());
  return deviations;
}

// The optimal theta of the dualized inner problem min gamma*theta + sum_i max(0, d_i - theta):
// the (floor(gamma) + 1)-th largest deviation, or 0 when there are not that many.
double OptimalTheta(const std::vector<double>& sorted_deviations, double gamma) {
  const double k = std::floor(gamma);
  if (k >= static_cast<double>(sorted_deviations.size())) return 0.0;
  return sorted_deviations[static_cast<size_t>(k)];
}

absl::Status ValidateOptions(const Instance& instance, const CbcOptions& options) {
  if (options.time_limit <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("time_limit must be > 0, got ", absl::FormatDuration(options.time_limit)));
  }
  if (!(options.relative_gap >= 0.0 && options.relative_gap < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("relative_gap must be in [0, 1), got ", options.relative_gap));
  }
  if (!(options.gamma >= 0.0) || !std::isfinite(options.gamma)) {
    return absl::InvalidArgumentError(
        absl::StrCat("gamma must be finite and >= 0, got ", options.gamma));
  }
  if (options.incumbent != nullptr) {
    const std::vector<int>& incumbent = *options.incumbent;
    if (static_cast<int>(incumbent.size()) != instance.num_queries) {
      return absl::InvalidArgumentError(absl::StrCat("incumbent has ", incumbent.size(),
                                                     " entries for ", instance.num_queries,
                                                     " queries"));
    }
    for (int i = 0; i < instance.num_queries; ++i) {
      if (incumbent[i] == kUnserved) {
        return absl::InvalidArgumentError(
            absl::StrCat("incumbent leaves query ", i, " unserved"));
      }
    }
    if (absl::Status s = CheckFeasible(instance, incumbent); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("incumbent is infeasible: ", s.message()));
    }
  }
  return absl::OkStatus();
}

// The interchangeable queries of the ILP (why: the file comment of cbc_solver.h), per group its
// queries in increasing order: GroupIdenticalQueries without the robust objective; with it, every
// query alone, since each has its own deviation row.
using Groups = std::vector<std::vector<int>>;

Groups GroupQueries(const Instance& instance, bool robust) {
  if (!robust) return GroupIdenticalQueries(instance);
  Groups groups(instance.num_queries);
  for (int i = 0; i < instance.num_queries; ++i) groups[i] = {i};
  return groups;
}

// Column layout of the ILP: the x columns (how many of group g go to model j) of allowed cells
// group by group, then (robust only, where groups are single queries) theta and one p per query.
struct Layout {
  std::vector<int> x_group;  // per x column
  std::vector<int> x_model;  // per x column
  int num_x = 0;
  int theta = -1;
  int first_p = -1;
  int num_cols = 0;
};

Layout MakeLayout(const Instance& instance, const Groups& groups, bool robust) {
  Layout layout;
  for (int g = 0; g < static_cast<int>(groups.size()); ++g) {
    const int representative = groups[g].front();
    for (int j = 0; j < instance.num_models; ++j) {
      if (!instance.is_allowed(representative, j)) continue;
      layout.x_group.push_back(g);
      layout.x_model.push_back(j);
    }
  }
  layout.num_x = static_cast<int>(layout.x_group.size());
  layout.num_cols = layout.num_x;
  if (robust) {
    layout.theta = layout.num_cols++;
    layout.first_p = layout.num_cols;
    layout.num_cols += instance.num_queries;
  }
  return layout;
}

// Loads the ILP into `solver`, building the column-ordered matrix from arrays in one go (appending
// rows or columns one by one re-packs the matrix each time and is very slow at N*M columns).
void LoadProblem(const Instance& instance, const Groups& groups, const Layout& layout, double gamma,
                 OsiClpSolverInterface& solver) {
  const int n = instance.num_queries;
  const int num_groups = static_cast<int>(groups.size());
  const bool robust = layout.theta >= 0;

  // Rows: one per group (= its size), the budget, one per slot-limited model that can bind, and
  // one robust row per query.
  std::vector<double> row_lb(num_groups), row_ub(num_groups);
  for (int g = 0; g < num_groups; ++g) {
    row_lb[g] = row_ub[g] = static_cast<double>(groups[g].size());
  }
  int budget_row = -1;
  if (instance.has_budget()) {
    budget_row = static_cast<int>(row_lb.size());
    row_lb.push_back(-COIN_DBL_MAX);
    row_ub.push_back(instance.budget);
  }
  std::vector<int> slot_row(instance.num_models, -1);
  for (int j = 0; j < instance.num_models; ++j) {
    // A limit of at least N cannot bind: leave the row out.
    if (!instance.is_limited(j) || instance.slots[j] >= n) continue;
    slot_row[j] = static_cast<int>(row_lb.size());
    row_lb.push_back(-COIN_DBL_MAX);
    row_ub.push_back(static_cast<double>(instance.slots[j]));
  }
  int first_robust_row = -1;
  if (robust) {
    first_robust_row = static_cast<int>(row_lb.size());
    for (int i = 0; i < n; ++i) {
      row_lb.push_back(0.0);
      row_ub.push_back(COIN_DBL_MAX);
    }
  }
  const int num_rows = static_cast<int>(row_lb.size());

  std::vector<CoinBigIndex> starts;
  std::vector<int> lengths, indices;
  std::vector<double> elements;
  starts.reserve(layout.num_cols + 1);
  lengths.reserve(layout.num_cols);
  std::vector<double> col_lb(layout.num_cols, 0.0), col_ub(layout.num_cols, 1.0);
  std::vector<double> objective(layout.num_cols, 0.0);
  auto add = [&](int row, double coef) {
    indices.push_back(row);
    elements.push_back(coef);
  };
  for (int c = 0; c < layout.num_x; ++c) {
    const int g = layout.x_group[c];
    const int i = groups[g].front();  // the group's queries share this column's data
    const int j = layout.x_model[c];
    const int cell = instance.index(i, j);
    starts.push_back(static_cast<CoinBigIndex>(indices.size()));
    col_ub[c] = static_cast<double>(groups[g].size());
    // Row indices must be increasing within a column: group, budget, slots, robust.
    add(g, 1.0);
    if (budget_row >= 0 && instance.cost[cell] != 0.0) add(budget_row, instance.cost[cell]);
    if (slot_row[j] >= 0) add(slot_row[j], 1.0);
    if (robust && instance.deviation[cell] != 0.0) {
      add(first_robust_row + i, -instance.deviation[cell]);
    }
    lengths.push_back(static_cast<int>(indices.size()) - starts.back());
    objective[c] = instance.value[cell];
  }
  if (robust) {
    starts.push_back(static_cast<CoinBigIndex>(indices.size()));
    for (int i = 0; i < n; ++i) add(first_robust_row + i, 1.0);
    lengths.push_back(n);
    col_ub[layout.theta] = COIN_DBL_MAX;
    objective[layout.theta] = -gamma;
    for (int i = 0; i < n; ++i) {
      starts.push_back(static_cast<CoinBigIndex>(indices.size()));
      add(first_robust_row + i, 1.0);
      lengths.push_back(1);
      col_ub[layout.first_p + i] = COIN_DBL_MAX;
      objective[layout.first_p + i] = -1.0;
    }
  }
  starts.push_back(static_cast<CoinBigIndex>(indices.size()));

  const CoinPackedMatrix matrix(/*colordered=*/true, /*minor=*/num_rows,
                                /*major=*/layout.num_cols,
                                static_cast<CoinBigIndex>(elements.size()), elements.data(),
                                indices.data(), starts.data(), lengths.data());
  solver.loadProblem(matrix, col_lb.data(), col_ub.data(), objective.data(), row_lb.data(),
                     row_ub.data());
  std::vector<int> integers(layout.num_x);
  for (int c = 0; c < layout.num_x; ++c) integers[c] = c;
  if (!integers.empty()) solver.setInteger(integers.data(), layout.num_x);
  solver.setObjSense(-1.0);  // maximize
}

// The full column vector of a complete assignment, with theta and p at their optimal values.
std::vector<double> ColumnValues(const Instance& instance, const Groups& groups,
                                 const Layout& layout, double gamma,
                                 const std::vector<int>& model_of_query) {
  std::vector<double> values(layout.num_cols, 0.0);
  for (int c = 0; c < layout.num_x; ++c) {
    for (const int i : groups[layout.x_group[c]]) {
      if (model_of_query[i] == layout.x_model[c]) values[c] += 1.0;
    }
  }
  if (layout.theta >= 0) {
    const double theta = OptimalTheta(SortedDeviations(instance, model_of_query), gamma);
    values[layout.theta] = theta;
    for (int i = 0; i < instance.num_queries; ++i) {
      const double d = instance.deviation[instance.index(i, model_of_query[i])];
      values[layout.first_p + i] = std::max(0.0, d - theta);
    }
  }
  return values;
}

// Reads the assignment off CBC's best solution: each x column, rounded, sends that many of its
// group's queries (the next ones in order) to its model. Counts that do not add up to a group's
// size leave queries unserved or are cut short, and the caller rejects the answer.
std::vector<int> ReadAssignment(const Instance& instance, const Groups& groups,
                                const Layout& layout, const double* solution) {
  std::vector<int> model_of_query(instance.num_queries, kUnserved);
  std::vector<size_t> next(groups.size(), 0);
  for (int c = 0; c < layout.num_x; ++c) {
    const std::vector<int>& members = groups[layout.x_group[c]];
    size_t& k = next[layout.x_group[c]];
    for (int64_t count = std::llround(solution[c]); count > 0 && k < members.size(); --count) {
      model_of_query[members[k++]] = layout.x_model[c];
    }
  }
  return model_of_query;
}

}  // namespace

const char* CbcOutcomeName(CbcOutcome outcome) {
  switch (outcome) {
    case CbcOutcome::kOptimal:
      return "OPTIMAL";
    case CbcOutcome::kFeasible:
      return "FEASIBLE";
    case CbcOutcome::kNoSolution:
      return "NO_SOLUTION";
    case CbcOutcome::kInfeasible:
      return "INFEASIBLE";
  }
  return "UNKNOWN";
}

absl::StatusOr<CbcResult> SolveWithCbc(const Instance& instance, const CbcOptions& options) {
  const absl::Time start = absl::Now();
  if (absl::Status s = ValidateOptions(instance, options); !s.ok()) return s;
  const double gamma = options.gamma;

  CbcResult result;
  if (instance.num_queries == 0) {
    // CBC cannot handle an empty model by itself; the empty assignment is trivially optimal.
    result.outcome = CbcOutcome::kOptimal;
    result.objective = 0.0;
    result.best_bound = 0.0;
    result.elapsed = absl::Now() - start;
    return result;
  }

  const Groups groups = GroupQueries(instance, gamma > 0.0);
  const Layout layout = MakeLayout(instance, groups, gamma > 0.0);
  OsiClpSolverInterface solver;
  solver.messageHandler()->setLogLevel(0);
  LoadProblem(instance, groups, layout, gamma, solver);

  CbcRunOptions run_options;
  run_options.time_limit = options.time_limit;
  run_options.relative_gap = options.relative_gap;
  run_options.stop = options.stop;
  double incumbent_objective = -kInf;
  std::vector<double> incumbent_values;
  if (options.incumbent != nullptr) {
    incumbent_objective = RobustObjective(instance, *options.incumbent, gamma);
    incumbent_values = ColumnValues(instance, groups, layout, gamma, *options.incumbent);
    run_options.incumbent = incumbent_values;
    run_options.incumbent_objective = incumbent_objective;
  }
  absl::StatusOr<CbcRun> run = RunCbc(solver, run_options);
  if (!run.ok()) return run.status();

  bool has_solution = false;
  switch (run->status) {
    case CbcRunStatus::kOptimal:
      result.outcome = CbcOutcome::kOptimal;
      has_solution = true;
      break;
    case CbcRunStatus::kUnbounded:
      // Every column is bounded or penalized, so this means a bug in the model.
      return absl::InternalError("CBC reports the LP relaxation as unbounded");
    case CbcRunStatus::kInfeasible:
      result.outcome = CbcOutcome::kInfeasible;
      break;
    case CbcRunStatus::kUnproven:
      return absl::InternalError(
          absl::StrCat("CBC finished with secondary status ", run->secondary_status));
    case CbcRunStatus::kStopped:
      has_solution = !run->solution.empty();
      result.outcome = has_solution ? CbcOutcome::kFeasible : CbcOutcome::kNoSolution;
      break;
  }
  result.nodes = run->nodes;
  if (result.outcome == CbcOutcome::kInfeasible) {
    result.best_bound = -kInf;
  } else if (run->best_bound.has_value()) {
    result.best_bound = *run->best_bound;
  }

  if (has_solution && run->solution.empty()) {
    return absl::InternalError("CBC reports a solution but holds none");
  }
  if (has_solution) {
    std::vector<int> assignment = ReadAssignment(instance, groups, layout, run->solution.data());
    const bool serves_all =
        std::find(assignment.begin(), assignment.end(), kUnserved) == assignment.end();
    if (serves_all && CheckFeasible(instance, assignment).ok()) {
      result.model_of_query = std::move(assignment);
      result.objective = RobustObjective(instance, result.model_of_query, gamma);
    } else {
      // Within CBC's tolerances but not ours (for example over the budget by 1e-9): not an answer.
      has_solution = false;
    }
  }
  if (options.incumbent != nullptr &&
      (!has_solution || incumbent_objective > result.objective)) {
    // The incumbent is feasible by validation. CBC should never return worse; if its answer was
    // rejected or rounds to worse, the incumbent stands (kFeasible when CBC's own answer was
    // rejected: nothing proves the incumbent optimal).
    result.model_of_query = *options.incumbent;
    result.objective = incumbent_objective;
    if (result.outcome == CbcOutcome::kInfeasible) {
      // CBC contradicts a validated assignment (tolerances): its bound means nothing either.
      result.best_bound = kInf;
    }
    if (!has_solution) result.outcome = CbcOutcome::kFeasible;
    has_solution = true;
  }
  if (!has_solution) {
    result.model_of_query.clear();
    result.objective = 0.0;
    if (result.outcome == CbcOutcome::kOptimal || result.outcome == CbcOutcome::kFeasible) {
      result.outcome = CbcOutcome::kNoSolution;
    }
  } else if (result.best_bound < result.objective) {
    // A feasible objective is a lower bound on the optimum; CBC's bound can sit a rounding error
    // below our recomputed objective.
    result.best_bound = result.objective;
  }
  result.elapsed = absl::Now() - start;
  return result;
}

}  // namespace router::core
