#include "router_core/solve/solve_batch.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "router_core/solve/admission.h"
#include "router_core/solve/cbc_solver.h"
#include "router_core/solve/heuristic_policies.h"
#include "router_core/solve/instance.h"
#include "router_core/solve/lagrangian_solver.h"
#include "router_core/solve/robust_gamma.h"
#include "router_core/solve/small_batch_gamma.h"
#include "router_core/solve/small_batch_solver.h"

namespace router::core {
namespace {

bool IsExact(PolicyKind policy) {
  return policy == PolicyKind::kBatch || policy == PolicyKind::kBatchRobust ||
         policy == PolicyKind::kBatchGamma;
}

// What the solving thread has found so far. The caller waits for `done` until the solve's end;
// if the end comes first it notifies `stop` and answers with `best`, and the solving thread ends
// at its next check, alone, since it owns everything it reads (shared pointers).
struct Progress {
  absl::Notification stop;
  absl::Mutex mu;
  bool done ABSL_GUARDED_BY(mu) = false;
  absl::Status error ABSL_GUARDED_BY(mu);
  // The best answer so far, on the solving thread's instance; empty until a stage ends.
  Solution best ABSL_GUARDED_BY(mu);
};

void Publish(const Solution& solution, Progress& progress) {
  absl::MutexLock lock(&progress.mu);
  progress.best = solution;
}

// Adopts a later stage's assignment when it is better than the one so far.
void TakeIfBetter(const std::vector<int>& model_of_query, double objective, const char* method,
                  Solution& s) {
  if (model_of_query.empty() || objective <= s.objective) return;
  s.model_of_query = model_of_query;
  s.objective = objective;
  s.method = method;
}

// Fast solver, then (small batches) the small-batch search, then CBC from the best assignment so
// far while time remains before `end` (real time: this runs on the solving thread, which must not
// read the caller's clock once the caller has gone). Works on the served queries only; publishes
// each stage's answer to `progress`.
absl::StatusOr<Solution> SolveExact(const Instance& served, PolicyKind policy,
                                    const PolicyParams& params, const std::vector<int>& fallback,
                                    absl::Time end, const SolveOptions& options,
                                    Progress& progress) {
  const Clock& clock = Clock::Real();
  const absl::Notification* stop = &progress.stop;
  const double gamma = policy == PolicyKind::kBatchGamma ? params.gamma : 0.0;
  const bool small = served.num_queries <= options.small_batch_max_queries;
  const SmallBatchOptions search = {.relative_gap = options.relative_gap,
                                    .max_nodes = options.small_batch_max_nodes,
                                    .deadline = end,
                                    .clock = &clock,
                                    .stop = stop};
  Solution s;
  if (policy == PolicyKind::kBatchGamma) {
    GammaResult g = SolveGammaRobust(served, gamma, fallback, options.relative_gap,
                                     kDefaultGammaEvaluations, stop);
    s.model_of_query = std::move(g.model_of_query);
    s.objective = g.objective;
    s.upper_bound = g.upper_bound;
    s.method = "lagrangian_gamma";
    Publish(s, progress);
    if (small && RelativeGap(s) > options.relative_gap && clock.Now() < end) {
      SmallBatchOptions gamma_search = search;
      gamma_search.max_nodes = options.small_batch_gamma_max_nodes;
      const SmallBatchGammaResult r =
          SolveSmallBatchGamma(served, gamma, s.model_of_query, gamma_search);
      s.nodes += r.nodes;
      TakeIfBetter(r.model_of_query, r.objective, "small_batch_gamma", s);
      // Proven whether or not the search finished.
      s.upper_bound = std::max(s.objective, std::min(s.upper_bound, r.upper_bound));
      Publish(s, progress);
    }
  } else {
    LagrangianResult l =
        SolveLagrangian(served, fallback, BoundToleranceFor(options.relative_gap), stop);
    s.model_of_query = std::move(l.model_of_query);
    s.objective = l.objective;
    s.upper_bound = l.upper_bound;
    s.method = "lagrangian";
    Publish(s, progress);
    if (small && RelativeGap(s) > options.relative_gap && clock.Now() < end) {
      const SmallBatchResult r =
          SolveSmallBatch(served, {s.model_of_query, l.budget_price, l.slot_price}, search);
      s.nodes += r.nodes;
      TakeIfBetter(r.model_of_query, r.objective, "small_batch", s);
      if (r.finished) s.upper_bound = std::max(s.objective, std::min(s.upper_bound, r.upper_bound));
      Publish(s, progress);
    }
  }
  const absl::Duration left = end - clock.Now();
  if (options.use_cbc && served.num_queries > 0 && RelativeGap(s) > options.relative_gap &&
      left >= options.min_cbc_time && left > absl::ZeroDuration() && !stop->HasBeenNotified()) {
    CbcOptions cbc_options;
    cbc_options.time_limit = left;
    cbc_options.relative_gap = options.relative_gap;
    cbc_options.gamma = gamma;
    cbc_options.incumbent = &s.model_of_query;
    cbc_options.stop = stop;
    absl::StatusOr<CbcResult> cbc = SolveWithCbc(served, cbc_options);
    if (!cbc.ok()) return cbc.status();
    s.nodes += cbc->nodes;
    TakeIfBetter(cbc->model_of_query, cbc->objective, "cbc", s);
    s.upper_bound = std::max(s.objective, std::min(s.upper_bound, cbc->best_bound));
  }
  // The 1e-9 absorbs floating-point noise between CBC's bound and our recomputed objective.
  s.status = RelativeGap(s) <= options.relative_gap + 1e-9 ? SolveStatus::kOptimal
                                                           : SolveStatus::kFeasible;
  return s;
}

absl::StatusOr<Solution> SolveHeuristic(const Instance& instance, const Admission& admission,
                                        PolicyKind policy, const PolicyParams& params) {
  switch (policy) {
    case PolicyKind::kPerQuery:
      return SolvePerQuery(instance, admission, params.lambda);
    case PolicyKind::kThreshold:
      return SolveThreshold(instance, admission, params.tau);
    case PolicyKind::kNdch:
      return SolveNdch(instance, admission, params.seed);
    case PolicyKind::kNdchP:
      return SolveNdchP(instance, admission);
    case PolicyKind::kBatch:
    case PolicyKind::kBatchRobust:
    case PolicyKind::kBatchGamma:
      break;
  }
  return absl::InternalError("exact policy reached the heuristic dispatch");
}

// The answer when no stage has ended by the solve's end: the admission's cheapest feasible
// assignment, with the trivial bound (every query at its best allowed value).
Solution FallbackAnswer(const Instance& solved, const std::vector<int>& fallback, bool exact,
                        double gamma) {
  Solution s;
  s.model_of_query = fallback;
  s.method = "admission";
  if (!exact) return s;  // a heuristic answer: status kHeuristic, no bound
  s.objective = RobustObjective(solved, fallback, gamma);
  double bound = 0.0;
  for (int i = 0; i < solved.num_queries; ++i) {
    double best = 0.0;
    for (int j = 0; j < solved.num_models; ++j) {
      if (solved.is_allowed(i, j)) best = std::max(best, solved.value[solved.index(i, j)]);
    }
    bound += best;
  }
  s.upper_bound = std::max(bound, s.objective);
  s.status = SolveStatus::kFeasible;
  return s;
}

}  // namespace

absl::StatusOr<Solution> SolveInstance(const Instance& instance, PolicyKind policy,
                                       const PolicyParams& params, const SolveOptions& options,
                                       const Clock& clock) {
  const absl::Time start = clock.Now();
  const absl::Time end = std::min(start + options.time_limit, options.deadline);
  const Admission admission = AdmitQueries(instance);
  const bool exact = IsExact(policy);
  const bool all_served = static_cast<int>(admission.served.size()) == instance.num_queries;

  // Exact policies solve the served queries only; heuristics see the whole batch.
  auto solved = std::make_shared<const Instance>(
      !exact || all_served ? instance : SelectQueries(instance, admission.served));
  std::vector<int> fallback;
  if (exact) {
    fallback.reserve(admission.served.size());
    for (int i : admission.served) fallback.push_back(admission.fallback[i]);
  } else {
    fallback = admission.fallback;
  }

  // The stages run on their own thread so that the answer leaves at `end` whatever they are
  // doing; the end is handed over in real time, since that thread may outlive `clock`.
  auto progress = std::make_shared<Progress>();
  if (end > start) {
    const absl::Time real_end = absl::Now() + (end - start);
    auto shared_admission = std::make_shared<const Admission>(admission);
    try {
      std::thread([solved, shared_admission, fallback, progress, policy, params, options, exact,
                   real_end] {
        absl::StatusOr<Solution> s =
            exact ? SolveExact(*solved, policy, params, fallback, real_end, options, *progress)
                  : SolveHeuristic(*solved, *shared_admission, policy, params);
        absl::MutexLock lock(&progress->mu);
        if (s.ok()) {
          progress->best = *std::move(s);
        } else {
          progress->error = s.status();
        }
        progress->done = true;
      }).detach();
    } catch (const std::system_error& e) {
      return absl::ResourceExhaustedError(
          absl::StrCat("could not start a solving thread: ", e.what()));
    }
  }

  Solution solution;
  {
    absl::MutexLock lock(&progress->mu);
    if (end > start) clock.AwaitWithDeadline(progress->mu, absl::Condition(&progress->done), end);
    if (!progress->done) progress->stop.Notify();
    if (!progress->error.ok()) return progress->error;
    solution = progress->done || !progress->best.model_of_query.empty()
                   ? std::move(progress->best)
                   : FallbackAnswer(*solved, fallback, exact,
                                    policy == PolicyKind::kBatchGamma ? params.gamma : 0.0);
  }
  if (exact) {
    if (!all_served) {
      std::vector<int> full(instance.num_queries, kUnserved);
      for (size_t k = 0; k < admission.served.size(); ++k) {
        full[admission.served[k]] = solution.model_of_query[k];
      }
      solution.model_of_query = std::move(full);
    }
  }
  if (exact || solution.unserved_reason.empty()) solution.unserved_reason = admission.reason;
  if (absl::Status s = CheckFeasible(instance, solution.model_of_query); !s.ok()) {
    return absl::InternalError(absl::StrCat("policy ", PolicyKindName(policy),
                                            " produced an infeasible answer: ", s.message()));
  }
  solution.total_cost = AssignmentCost(instance, solution.model_of_query);
  solution.solve_time = clock.Now() - start;
  return solution;
}

absl::StatusOr<Solution> SolveBatch(const BatchProblem& problem, const Clock& clock) {
  if (absl::Status s = ValidateBatchProblem(problem); !s.ok()) return s;
  return SolveInstance(BuildInstance(problem, ValueSourceFor(problem.policy)), problem.policy,
                       problem.params, problem.solve, clock);
}

}  // namespace router::core
