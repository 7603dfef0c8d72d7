#include "router_core/solve/solve_batch.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
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

// Adopts a later stage's assignment when it is better than the one so far.
void TakeIfBetter(const std::vector<int>& model_of_query, double objective, const char* method,
                  Solution& s) {
  if (model_of_query.empty() || objective <= s.objective) return;
  s.model_of_query = model_of_query;
  s.objective = objective;
  s.method = method;
}

// Fast solver, then (small batches) the small-batch search, then CBC from the best assignment so
// far while time remains before `end`. Works on the served queries only.
absl::StatusOr<Solution> SolveExact(const Instance& served, PolicyKind policy,
                                    const PolicyParams& params, const std::vector<int>& fallback,
                                    absl::Time end, const SolveOptions& options,
                                    const Clock& clock) {
  const double gamma = policy == PolicyKind::kBatchGamma ? params.gamma : 0.0;
  const bool small = served.num_queries <= options.small_batch_max_queries;
  const SmallBatchOptions search = {.relative_gap = options.relative_gap,
                                    .max_nodes = options.small_batch_max_nodes,
                                    .deadline = end,
                                    .clock = &clock};
  Solution s;
  if (policy == PolicyKind::kBatchGamma) {
    GammaResult g = SolveGammaRobust(served, gamma, fallback, options.relative_gap);
    s.model_of_query = std::move(g.model_of_query);
    s.objective = g.objective;
    s.upper_bound = g.upper_bound;
    s.method = "lagrangian_gamma";
    if (small && RelativeGap(s) > options.relative_gap && clock.Now() < end) {
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
        SolveLagrangian(served, fallback, BoundToleranceFor(options.relative_gap));
    s.model_of_query = std::move(l.model_of_query);
    s.objective = l.objective;
    s.upper_bound = l.upper_bound;
    s.method = "lagrangian";
    if (small && RelativeGap(s) > options.relative_gap && clock.Now() < end) {
      const SmallBatchResult r =
          SolveSmallBatch(served, {s.model_of_query, l.budget_price, l.slot_price}, search);
      s.nodes += r.nodes;
      TakeIfBetter(r.model_of_query, r.objective, "small_batch", s);
      if (r.finished) s.upper_bound = std::max(s.objective, std::min(s.upper_bound, r.upper_bound));
    }
  }
  const absl::Duration left = end - clock.Now();
  if (options.use_cbc && served.num_queries > 0 && RelativeGap(s) > options.relative_gap &&
      left >= options.min_cbc_time && left > absl::ZeroDuration()) {
    CbcOptions cbc_options;
    cbc_options.time_limit = left;
    cbc_options.relative_gap = options.relative_gap;
    cbc_options.gamma = gamma;
    cbc_options.incumbent = &s.model_of_query;
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

}  // namespace

absl::StatusOr<Solution> SolveInstance(const Instance& instance, PolicyKind policy,
                                       const PolicyParams& params, const SolveOptions& options,
                                       const Clock& clock) {
  const absl::Time start = clock.Now();
  const absl::Time end = std::min(start + options.time_limit, options.deadline);
  const Admission admission = AdmitQueries(instance);

  Solution solution;
  if (IsExact(policy)) {
    const bool all_served = static_cast<int>(admission.served.size()) == instance.num_queries;
    // The usual batch serves every query: solve the instance itself, without a copy.
    const Instance selected = all_served ? Instance() : SelectQueries(instance, admission.served);
    const Instance& served = all_served ? instance : selected;
    std::vector<int> fallback;
    fallback.reserve(admission.served.size());
    for (int i : admission.served) fallback.push_back(admission.fallback[i]);
    absl::StatusOr<Solution> exact =
        SolveExact(served, policy, params, fallback, end, options, clock);
    if (!exact.ok()) return exact.status();
    solution = *std::move(exact);
    if (!all_served) {
      std::vector<int> full(instance.num_queries, kUnserved);
      for (size_t k = 0; k < admission.served.size(); ++k) {
        full[admission.served[k]] = solution.model_of_query[k];
      }
      solution.model_of_query = std::move(full);
    }
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
  if (absl::Status s = ValidateBatchProblem(problem); !s.ok()) return s;
  return SolveInstance(BuildInstance(problem, ValueSourceFor(problem.policy)), problem.policy,
                       problem.params, problem.solve, clock);
}

}  // namespace router::core
