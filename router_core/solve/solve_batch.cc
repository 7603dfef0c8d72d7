#include "router_core/solve/solve_batch.h"

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <atomic>
#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "router_core/solve/admission.h"
#include "router_core/solve/cbc_solver.h"
#include "router_core/solve/deadline.h"
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

// Adopts a later stage's assignment when it is better than the one so far.
void TakeIfBetter(const std::vector<int>& model_of_query, double objective, const char* method,
                  Solution& s) {
  if (model_of_query.empty() || objective <= s.objective) return;
  s.model_of_query = model_of_query;
  s.objective = objective;
  s.method = method;
}

// A CBC run that the caller waits for until `end` only. CBC checks no clock of ours and can spend
// long stretches of its root processing (tens to hundreds of ms on a large batch) between its
// checks of its own time limit, so it runs on a thread of its own, on its own copy of the instance
// and incumbent. If `end` comes first, the caller stops waiting, notifies `stop` (CBC and its LP
// solver end at their next event) and goes on without it: the run is abandoned.
struct CbcRunInBackground {
  absl::Notification stop;
  absl::Mutex mu;
  bool done ABSL_GUARDED_BY(mu) = false;
  bool abandoned ABSL_GUARDED_BY(mu) = false;
  absl::StatusOr<CbcResult> result ABSL_GUARDED_BY(mu) = absl::UnknownError("not run");
};

// Abandoned CBC runs whose thread has not ended yet, process-wide. While one is still ending, no
// new CBC run starts (the batch keeps its fast-path answer and reports its gap), so abandoned runs
// never pile up and take the cores from the decisions that follow.
std::atomic<int> abandoned_cbc_runs{0};

// CBC only improves an answer the caller already has, so its thread yields the cores to the
// decisions and to the caller waking at its deadline: it leaves any real-time policy the process
// was given for SCHED_BATCH (no wake-up preemption) and runs kCbcNiceIncrement nice levels below
// the process. Lowering one's own priority needs no privilege; failing to is harmless.
constexpr int kCbcNiceIncrement = 10;
void LowerThisThreadsPriority() {
  const sched_param batch = {.sched_priority = 0};
  pthread_setschedparam(pthread_self(), SCHED_BATCH, &batch);
  const id_t tid = static_cast<id_t>(syscall(SYS_gettid));
  errno = 0;
  const int nice = getpriority(PRIO_PROCESS, tid);
  if (errno == 0) setpriority(PRIO_PROCESS, tid, std::min(nice + kCbcNiceIncrement, 19));
}

// CBC's result if it finished by `end`; nullopt if it did not (or its thread could not start).
absl::StatusOr<std::optional<CbcResult>> RunCbcUntil(const Instance& served, CbcOptions options,
                                                     absl::Time end, const Clock& clock) {
  auto run = std::make_shared<CbcRunInBackground>();
  auto instance = std::make_shared<const Instance>(served);
  auto incumbent = std::make_shared<const std::vector<int>>(*options.incumbent);
  options.incumbent = incumbent.get();
  options.stop = &run->stop;
  try {
    std::thread([run, instance, incumbent, options] {
      LowerThisThreadsPriority();
      absl::StatusOr<CbcResult> result = SolveWithCbc(*instance, options);
      absl::MutexLock lock(&run->mu);
      run->result = std::move(result);
      run->done = true;
      if (run->abandoned) abandoned_cbc_runs.fetch_sub(1);
    }).detach();
  } catch (const std::system_error& e) {
    return absl::ResourceExhaustedError(absl::StrCat("could not start CBC's thread: ", e.what()));
  }
  absl::MutexLock lock(&run->mu);
  if (!clock.AwaitWithDeadline(run->mu, absl::Condition(&run->done), end)) {
    run->abandoned = true;
    abandoned_cbc_runs.fetch_add(1);
    run->stop.Notify();
    return std::nullopt;
  }
  if (!run->result.ok()) return run->result.status();
  return *std::move(run->result);
}

// Fast solver, then (small batches) the small-batch search, then CBC from the best assignment so
// far while time remains before `end`. Works on the served queries only.
absl::StatusOr<Solution> SolveExact(const Instance& served, PolicyKind policy,
                                    const PolicyParams& params, const std::vector<int>& fallback,
                                    absl::Time end, const SolveOptions& options,
                                    const Clock& clock) {
  const double gamma = policy == PolicyKind::kBatchGamma ? params.gamma : 0.0;
  const bool small = served.num_queries <= options.small_batch_max_queries;
  const Deadline deadline(end, clock);
  const SmallBatchOptions search = {.relative_gap = options.relative_gap,
                                    .max_nodes = options.small_batch_max_nodes,
                                    .deadline = end,
                                    .clock = &clock};
  Solution s;
  if (policy == PolicyKind::kBatchGamma) {
    GammaResult g = SolveGammaRobust(served, gamma, fallback, options.relative_gap,
                                     kDefaultGammaEvaluations, deadline);
    s.model_of_query = std::move(g.model_of_query);
    s.objective = g.objective;
    s.upper_bound = g.upper_bound;
    s.method = "lagrangian_gamma";
    if (small && RelativeGap(s) > options.relative_gap && !deadline.Passed()) {
      SmallBatchOptions gamma_search = search;
      gamma_search.max_nodes = options.small_batch_gamma_max_nodes;
      const SmallBatchGammaResult r =
          SolveSmallBatchGamma(served, gamma, s.model_of_query, gamma_search);
      s.nodes += r.nodes;
      TakeIfBetter(r.model_of_query, r.objective, "small_batch_gamma", s);
      // Proven whether or not the search finished.
      s.upper_bound = std::max(s.objective, std::min(s.upper_bound, r.upper_bound));
    }
  } else {
    LagrangianResult l =
        SolveLagrangian(served, fallback, BoundToleranceFor(options.relative_gap), deadline);
    s.model_of_query = std::move(l.model_of_query);
    s.objective = l.objective;
    s.upper_bound = l.upper_bound;
    s.method = "lagrangian";
    if (small && RelativeGap(s) > options.relative_gap && !deadline.Passed()) {
      const SmallBatchResult r =
          SolveSmallBatch(served, {s.model_of_query, l.budget_price, l.slot_price}, search);
      s.nodes += r.nodes;
      TakeIfBetter(r.model_of_query, r.objective, "small_batch", s);
      if (r.finished) s.upper_bound = std::max(s.objective, std::min(s.upper_bound, r.upper_bound));
    }
  }
  const absl::Duration left = end - clock.Now();
  if (options.use_cbc && served.num_queries > 0 && RelativeGap(s) > options.relative_gap &&
      left >= options.min_cbc_time && left > absl::ZeroDuration() &&
      abandoned_cbc_runs.load() == 0) {
    CbcOptions cbc_options;
    cbc_options.time_limit = left;
    cbc_options.relative_gap = options.relative_gap;
    cbc_options.gamma = gamma;
    cbc_options.incumbent = &s.model_of_query;
    absl::StatusOr<std::optional<CbcResult>> cbc = RunCbcUntil(served, cbc_options, end, clock);
    if (!cbc.ok()) return cbc.status();
    if (cbc->has_value()) {
      const CbcResult& r = **cbc;
      s.nodes += r.nodes;
      TakeIfBetter(r.model_of_query, r.objective, "cbc", s);
      s.upper_bound = std::max(s.objective, std::min(s.upper_bound, r.best_bound));
    }
  }
  // The 1e-9 absorbs floating-point noise between CBC's bound and our recomputed objective.
  s.status = RelativeGap(s) <= options.relative_gap + 1e-9 ? SolveStatus::kOptimal
                                                           : SolveStatus::kFeasible;
  return s;
}

// The answer when no time is left at all: the admission's cheapest feasible assignment, with the
// trivial bound (every query at its best allowed value) for an exact policy.
Solution AdmissionAnswer(const Instance& served, const std::vector<int>& fallback, bool exact,
                         double gamma) {
  Solution s;
  s.model_of_query = fallback;
  s.method = "admission";
  if (!exact) return s;  // a heuristic answer: status kHeuristic, no bound
  s.objective = RobustObjective(served, fallback, gamma);
  double bound = 0.0;
  for (int i = 0; i < served.num_queries; ++i) {
    double best = 0.0;
    for (int j = 0; j < served.num_models; ++j) {
      if (served.is_allowed(i, j)) best = std::max(best, served.value[served.index(i, j)]);
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
  const bool no_time = end <= start;

  Solution solution;
  if (IsExact(policy)) {
    const bool all_served = static_cast<int>(admission.served.size()) == instance.num_queries;
    // The usual batch serves every query: solve the instance itself, without a copy.
    const Instance selected = all_served ? Instance() : SelectQueries(instance, admission.served);
    const Instance& served = all_served ? instance : selected;
    std::vector<int> fallback;
    fallback.reserve(admission.served.size());
    for (int i : admission.served) fallback.push_back(admission.fallback[i]);
    const double gamma = policy == PolicyKind::kBatchGamma ? params.gamma : 0.0;
    if (no_time) {
      solution = AdmissionAnswer(served, fallback, /*exact=*/true, gamma);
    } else {
      absl::StatusOr<Solution> exact =
          SolveExact(served, policy, params, fallback, end, options, clock);
      if (!exact.ok()) return exact.status();
      solution = *std::move(exact);
    }
    if (!all_served) {
      std::vector<int> full(instance.num_queries, kUnserved);
      for (size_t k = 0; k < admission.served.size(); ++k) {
        full[admission.served[k]] = solution.model_of_query[k];
      }
      solution.model_of_query = std::move(full);
    }
    solution.unserved_reason = admission.reason;
  } else if (no_time) {
    solution = AdmissionAnswer(instance, admission.fallback, /*exact=*/false, 0.0);
    solution.unserved_reason = admission.reason;
  } else {
    switch (policy) {
      case PolicyKind::kPerQuery:
        solution = SolvePerQuery(instance, admission, params.lambda);
        break;
      case PolicyKind::kThreshold:
        solution = SolveThreshold(instance, admission, params.tau);
        break;
      case PolicyKind::kNdch:
        solution = SolveNdch(instance, admission, params.seed);
        break;
      case PolicyKind::kNdchP:
        solution = SolveNdchP(instance, admission);
        break;
      case PolicyKind::kBatch:
      case PolicyKind::kBatchRobust:
      case PolicyKind::kBatchGamma:
        return absl::InternalError("exact policy reached the heuristic dispatch");
    }
  }
  if (absl::Status s = CheckFeasible(instance, solution.model_of_query); !s.ok()) {
    return absl::InternalError(absl::StrCat("policy ", PolicyKindName(policy),
                                            " produced an infeasible answer: ", s.message()));
  }
  solution.total_cost = AssignmentCost(instance, solution.model_of_query);
  solution.solve_time = clock.Now() - start;
  return solution;
}

absl::StatusOr<Solution> SolveBatch(const BatchProblem& problem, const Clock& clock) {
  // The time limit counts from here: checking and building the instance are part of the decision.
  SolveOptions options = problem.solve;
  options.deadline = std::min(options.deadline, clock.Now() + options.time_limit);
  if (absl::Status s = ValidateBatchProblem(problem); !s.ok()) return s;
  return SolveInstance(BuildInstance(problem, ValueSourceFor(problem.policy)), problem.policy,
                       problem.params, options, clock);
}

}  // namespace router::core
