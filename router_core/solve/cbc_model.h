// File: cbc_model.h
//
// The one CBC set-up of router_core: branch and bound on a mixed-integer model that the caller has
// already loaded into an OsiClpSolverInterface, under a time limit and a relative gap, with the
// cut generators (probing, Gomory, knapsack cover, clique) and the rounding heuristic that both
// the batch solver (cbc_solver.h) and the capacity planner (planner/capacity_planner.h) use.
//
// Contract:
//   - `loaded` holds the model with its objective to be MAXIMIZED (Osi objective sense -1) and
//     its integer columns marked; RunCbc copies it (CbcModel clones its solver) and leaves it
//     unchanged.
//   - CBC's own output is silenced (model, solver and the clique generator's reports).
//   - time_limit is wall-clock (elapsed) time; relative_gap is CBC's allowable fraction gap; CBC
//     runs single-threaded and only accepts solutions better than the incumbent by 1e-9 (its
//     default 1e-5 could stop it short of the optimum when the gap is 0).
//   - `stop`, when given and notified, ends the search at CBC's next event (a node, a solution, a
//     round of cuts), as the time limit would: the status is kStopped.
//   - `incumbent`, when non-empty, is a feasible solution in column space (num_cols values) with
//     objective `incumbent_objective` (maximization sense); CBC re-solves the LP with its integers
//     fixed and starts from it.
//
// Result: how the run ended (CbcRunStatus), the best solution CBC holds (a copy; empty if none),
// its best bound when CBC has a finite one, and the nodes explored. The solution is CBC's, within
// CBC's tolerances: callers check it against their own.
//
// Errors: INTERNAL "CBC ended with status S, secondary status T" when CBC stops for any reason
// other than finishing, hitting a limit or being stopped (status 0, 1 or 5).
//
// Thread-safety: each call builds its own CbcModel; concurrent calls on different `loaded`
// objects are safe. Cost: CBC's (exponential in the worst case), bounded by time_limit.

#ifndef ROUTER_CORE_SOLVE_CBC_MODEL_H_
#define ROUTER_CORE_SOLVE_CBC_MODEL_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/synchronization/notification.h"
#include "absl/types/span.h"

class OsiClpSolverInterface;

namespace router::core {

struct CbcRunOptions {
  // Wall-clock limit, > 0.
  absl::Duration time_limit = absl::Seconds(10);
  // CBC stops once (bound - best) / |best| <= relative_gap.
  double relative_gap = 1e-4;
  // A feasible starting solution (num_cols values) and its objective, or empty.
  absl::Span<const double> incumbent = {};
  double incumbent_objective = 0.0;
  // Ends the search early when notified (not owned; must outlive the call), or nullptr.
  const absl::Notification* stop = nullptr;
};

enum class CbcRunStatus {
  kOptimal,     // finished, proven optimal within the gap
  kInfeasible,  // finished, proven infeasible
  kUnbounded,   // finished, the LP relaxation is unbounded (a modelling error in router_core)
  kUnproven,    // finished without either proof (CBC's secondary status says why)
  kStopped,     // a limit (time) stopped the search; `solution` may still hold one
};

struct CbcRun {
  CbcRunStatus status = CbcRunStatus::kStopped;
  int secondary_status = 0;          // CBC's, for messages
  std::vector<double> solution;      // best solution in column space, empty if none
  std::optional<double> best_bound;  // maximization sense; nullopt when CBC has no finite bound
  int64_t nodes = 0;
};

absl::StatusOr<CbcRun> RunCbc(const OsiClpSolverInterface& loaded, const CbcRunOptions& options);

}  // namespace router::core

#endif  // ROUTER_CORE_SOLVE_CBC_MODEL_H_
