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
// far while time remains. Works on the served queries only.
absl::StatusOr<Solution> SolveExact(const BatchProblem& problem, const Instance& served,
                                    const std::vector<int>& fallback, absl::Time start,
                                    const BatchRouterOptions& options) {
  const double gamma = problem.policy == PolicyKind::kBatchGamma ? problem.params.gamma : 0.0;
  const bool small = served.num_queries <= options.small_batch_max_queries;
  const SmallBatchOptions search = {.relative_gap = problem.relative_gap,
                                    .max_nodes = options.small_batch_max_nodes,
                                    .deadline = start + problem.time_limit,
                                    .clock = options.clock};
  Solution s;
  if (problem.policy == PolicyKind::kBatchGamma) {
    GammaResult g = SolveGammaRobust(served, gamma, fallback, problem.relative_gap);
    s.model_of_query = std::move(g.model_of_query);
    s.objective = g.objective;
    s.upper_bound = g.upper_bound;
    s.method = "lagrangian_gamma";
    if (small && RelativeGap(s) > problem.relative_gap) {
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
        SolveLagrangian(served, fallback, BoundToleranceFor(problem.relative_gap));
    s.model_of_query = std::move(l.model_of_query);
    s.objective = l.objective;
    s.upper_bound = l.upper_bound;
    s.method = "lagrangian";
    if (small && RelativeGap(s) > problem.relative_gap) {
      const SmallBatchResult r =
          SolveSmallBatch(served, {s.model_of_query, l.budget_price, l.slot_price}, search);
      s.nodes += r.nodes;
      TakeIfBetter(r.model_of_query, r.objective, "small_batch", s);
      if (r.finished) s.upper_bound = std::max(s.objective, std::min(s.upper_bound, r.upper_bound));
    }
  }
  const absl::Duration left = problem.time_limit - (options.clock->Now() - start);
  if (options.use_cbc && served.num_queries > 0 && RelativeGap(s) > problem.relative_gap &&
      left >= options.min_cbc_time) {
    CbcOptions cbc_options;
    cbc_options.time_limit = left;
    cbc_options.relative_gap = problem.relative_gap;
    cbc_options.gamma = gamma;
    cbc_options.incumbent = &s.model_of_query;
    absl::StatusOr<CbcResult> cbc = SolveWithCbc(served, cbc_options);
    if (!cbc.ok()) return cbc.status();
    s.nodes += cbc->nodes;
    TakeIfBetter(cbc->model_of_query, cbc->objective, "cbc", s);
    s.upper_bound = std::max(s.objective, std::min(s.upper_bound, cbc->best_bound));
  }
  // The 1e-9 absorbs floating-point noise between CBC's bound and our recomputed objective.
  s.status = RelativeGap(s) <= problem.relative_gap + 1e-9 ? SolveStatus::kOptimal
                                                            : SolveStatus::kFeasible;
  return s;
}

}  // namespace

absl::StatusOr<Solution> SolveBatch(const BatchProblem& problem, const BatchRouterOptions& options) {
  const absl::Time start = options.clock->Now();
  if (absl::Status s = ValidateBatchProblem(problem); !s.ok()) return s;
  const Instance instance = BuildInstance(problem, problem.policy == PolicyKind::kBatchRobust
                                                       ? ValueSource::kQualityLower
                                                       : ValueSource::kQuality);
  const Admission admission = AdmitQueries(instance);

  Solution solution;
  if (IsExact(problem.policy)) {
    const Instance served = SelectQueries(instance, admission.served);
    std::vector<int> fallback;
    for (int i : admission.served) fallback.push_back(admission.fallback[i]);
    absl::StatusOr<Solution> exact = SolveExact(problem, served, fallback, start, options);
    if (!exact.ok()) return exact.status();
    solution = *std::move(exact);
    std::vector<int> full(instance.num_queries, kUnserved);
    for (size_t k = 0; k < admission.served.size(); ++k) {
      full[admission.served[k]] = solution.model_of_query[k];
    }
    solution.model_of_query = std::move(full);
    solution.unserved_reason = admission.reason;
  } else {
    switch (problem.policy) {
      case PolicyKind::kPerQuery:
        solution = SolvePerQuery(instance, admission, problem.params.lambda);
        break;
      case PolicyKind::kThreshold:
        solution = SolveThreshold(instance, admission, problem.params.tau);
        break;
      case PolicyKind::kNdch:
        solution = SolveNdch(instance, admission, problem.params.seed);
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
    return absl::InternalError(absl::StrCat("policy ", PolicyKindName(problem.policy),
                                            " produced an infeasible answer: ", s.message()));
  }
  solution.total_cost = AssignmentCost(instance, solution.model_of_query);
  solution.solve_time = options.clock->Now() - start;
  return solution;
}

}  // namespace router::core
