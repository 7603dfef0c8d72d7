#include "router_core/solve/cbc_model.h"

#include <cmath>

#include "CbcEventHandler.hpp"
#include "ClpEventHandler.hpp"
#include "ClpSimplex.hpp"
#include "CbcHeuristic.hpp"
#include "CbcModel.hpp"
#include "CglClique.hpp"
#include "CglGomory.hpp"
#include "CglKnapsackCover.hpp"
#include "CglProbing.hpp"
#include "OsiClpSolverInterface.hpp"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace router::core {
namespace {

// CBC only looks for solutions better than the incumbent by this much (its default is 1e-5, which
// would let it stop short of the optimum on close objectives when relative_gap is 0).
constexpr double kCutoffIncrement = 1e-9;

// Asks CBC to stop at its next event once `stop` is notified. CBC clones the handler.
class StopHandler : public CbcEventHandler {
 public:
  explicit StopHandler(const absl::Notification* stop) : stop_(stop) {}
  CbcAction event(CbcEvent) override { return stop_->HasBeenNotified() ? stop : noAction; }
  CbcEventHandler* clone() const override { return new StopHandler(*this); }

 private:
  const absl::Notification* stop_;
};

// The same for Clp's simplex iterations (an LP solve inside CBC, which reports no CBC event):
// 0 ends the solve with status 5.
class LpStopHandler : public ClpEventHandler {
 public:
  explicit LpStopHandler(const absl::Notification* stop) : stop_(stop) {}
  int event(Event) override { return stop_->HasBeenNotified() ? 0 : -1; }
  ClpEventHandler* clone() const override { return new LpStopHandler(*this); }

 private:
  const absl::Notification* stop_;
};

}  // namespace

absl::StatusOr<CbcRun> RunCbc(const OsiClpSolverInterface& loaded, const CbcRunOptions& options) {
  CbcModel model(loaded);  // clones `loaded`; everything below acts on the clone
  model.setLogLevel(0);
  model.solver()->messageHandler()->setLogLevel(0);
  model.setUseElapsedTime(true);
  model.setMaximumSeconds(absl::ToDoubleSeconds(options.time_limit));
  model.setAllowableFractionGap(options.relative_gap);
  model.setCutoffIncrement(kCutoffIncrement);
  model.setNumberThreads(0);

  // The generators and the heuristic are copied by the model, so locals are fine. Clique reports
  // go to stdout whatever the log level unless switched off.
  CglProbing probing;
  probing.setUsingObjective(true);
  probing.setMaxPass(3);
  probing.setMaxProbe(100);
  CglGomory gomory;
  CglKnapsackCover knapsack;
  CglClique clique;
  clique.setStarCliqueReport(false);
  clique.setRowCliqueReport(false);
  model.addCutGenerator(&probing, -1, "Probing");
  model.addCutGenerator(&gomory, -1, "Gomory");
  model.addCutGenerator(&knapsack, -1, "KnapsackCover");
  model.addCutGenerator(&clique, -1, "Clique");
  CbcRounding rounding(model);
  model.addHeuristic(&rounding);

  if (options.stop != nullptr) {
    const StopHandler handler(options.stop);
    model.passInEventHandler(&handler);
    if (auto* clp = dynamic_cast<OsiClpSolverInterface*>(model.solver()); clp != nullptr) {
      const LpStopHandler lp_handler(options.stop);
      clp->getModelPtr()->passInEventHandler(&lp_handler);
    }
  }

  if (!options.incumbent.empty()) {
    // CBC minimizes internally: the objective is given in its (negated) sense. check=true
    // re-solves the LP with the integers fixed, so CBC stores its own consistent values.
    model.setBestSolution(options.incumbent.data(), static_cast<int>(options.incumbent.size()),
                          -options.incumbent_objective, /*check=*/true);
  }

  model.branchAndBound();

  CbcRun run;
  run.secondary_status = model.secondaryStatus();
  run.nodes = model.getNodeCount();
  // Order of the checks counts: with status 0, isProvenInfeasible() is also true when
  // isContinuousUnbounded() is.
  switch (model.status()) {
    case 0:
      if (model.isProvenOptimal()) {
        run.status = CbcRunStatus::kOptimal;
      } else if (model.isContinuousUnbounded()) {
        run.status = CbcRunStatus::kUnbounded;
      } else if (model.isProvenInfeasible()) {
        run.status = CbcRunStatus::kInfeasible;
      } else {
        run.status = CbcRunStatus::kUnproven;
      }
      break;
    case 1:  // a limit
    case 5:  // the stop handler
      run.status = CbcRunStatus::kStopped;
      break;
    default:
      return absl::InternalError(absl::StrCat("CBC ended with status ", model.status(),
                                              ", secondary status ", model.secondaryStatus()));
  }
  const double bound = model.getBestPossibleObjValue();
  // CBC keeps "no bound" as +-COIN_DBL_MAX or 1e50-like sentinels.
  if (std::abs(bound) < 1e30) run.best_bound = bound;
  if (const double* x = model.bestSolution(); x != nullptr) {
    run.solution.assign(x, x + model.getNumCols());
  }
  return run;
}

}  // namespace router::core
