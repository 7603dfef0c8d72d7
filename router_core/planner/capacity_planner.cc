#include "router_core/planner/capacity_planner.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ClpSimplex.hpp"
#include "CoinFinite.hpp"
#include "CoinPackedMatrix.hpp"
#include "OsiClpSolverInterface.hpp"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "router_core/planner/allocation.h"
#include "router_core/solve/admission.h"
#include "router_core/solve/cbc_model.h"
#include "router_core/solve/lagrangian_solver.h"

namespace router::core {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Whether model j can take queries in some plan: API models unless pinned off, self-hosted models
// that can get an instance.
bool Usable(const PlanProblem& problem, const InstanceBounds& bounds, size_t j) {
  const PlanModel& m = problem.models[j];
  if (m.pin == ModelPin::kOff) return false;
  return !m.self_hosted() || bounds.hi[j] > 0;
}

// The joint MIP of plan_problem.h in column-ordered arrays. Columns: I_j of every usable
// self-hosted model, then x_bij of every allowed, usable cell, batch by batch. Rows: the GPU row,
// then per batch its query rows (= 1), its budget row and its slot rows (sum_i x_bij - l_j I_j <= 0,
// only where l_j lo_j < |b|, i.e. where the row can bind). Row indices increase within a column.
struct JointModel {
  std::vector<int> instance_col;  // per model: column of I_j, or -1
  int first_x = 0;
  std::vector<int> x_batch, x_query, x_model;  // per x column (index c - first_x)
  int num_cols = 0;
  int num_rows = 0;
  std::vector<CoinBigIndex> starts;
  std::vector<int> lengths, indices;
  std::vector<double> elements;
  std::vector<double> col_lb, col_ub, objective, row_lb, row_ub;

  int64_t num_x() const { return num_cols - first_x; }
};

JointModel BuildJointModel(const PlanProblem& problem, const InstanceBounds& bounds,
                           const std::vector<Instance>& batches) {
  const int m = static_cast<int>(problem.models.size());
  const int num_batches = static_cast<int>(batches.size());
  JointModel jm;
  jm.instance_col.assign(m, -1);
  for (int j = 0; j < m; ++j) {
    if (problem.models[j].self_hosted() && Usable(problem, bounds, j)) {
      jm.instance_col[j] = jm.num_cols++;
    }
  }
  jm.first_x = jm.num_cols;

  // Rows.
  auto add_row = [&jm](double lb, double ub) {
    jm.row_lb.push_back(lb);
    jm.row_ub.push_back(ub);
    return jm.num_rows++;
  };
  const int gpu_row =
      jm.first_x > 0 ? add_row(-COIN_DBL_MAX, static_cast<double>(problem.gpu_budget)) : -1;
  std::vector<int> query_row(num_batches), budget_row(num_batches, -1);
  std::vector<std::vector<int>> slot_row(num_batches, std::vector<int>(m, -1));
  for (int b = 0; b < num_batches; ++b) {
    const Instance& inst = batches[b];
    query_row[b] = jm.num_rows;
    for (int i = 0; i < inst.num_queries; ++i) add_row(1.0, 1.0);
    if (inst.has_budget()) budget_row[b] = add_row(-COIN_DBL_MAX, inst.budget);
    for (int j = 0; j < m; ++j) {
      if (jm.instance_col[j] < 0) continue;
      if (*problem.models[j].slots_per_instance * bounds.lo[j] >= inst.num_queries) continue;
      slot_row[b][j] = add_row(-COIN_DBL_MAX, 0.0);
    }
  }

  // Columns.
  auto begin_col = [&jm](double lb, double ub, double obj) {
    jm.starts.push_back(static_cast<CoinBigIndex>(jm.indices.size()));
    jm.col_lb.push_back(lb);
    jm.col_ub.push_back(ub);
    jm.objective.push_back(obj);
  };
  auto add = [&jm](int row, double coef) {
    jm.indices.push_back(row);
    jm.elements.push_back(coef);
  };
  auto end_col = [&jm]() {
    jm.lengths.push_back(static_cast<int>(jm.indices.size()) - jm.starts.back());
  };
  for (int j = 0; j < m; ++j) {
    if (jm.instance_col[j] < 0) continue;
    const PlanModel& model = problem.models[j];
    begin_col(static_cast<double>(bounds.lo[j]), static_cast<double>(bounds.hi[j]), 0.0);
    add(gpu_row, static_cast<double>(*model.gpus_per_instance));
    for (int b = 0; b < num_batches; ++b) {
      if (slot_row[b][j] >= 0) add(slot_row[b][j], -static_cast<double>(*model.slots_per_instance));
    }
    end_col();
  }
  for (int b = 0; b < num_batches; ++b) {
    const Instance& inst = batches[b];
    for (int i = 0; i < inst.num_queries; ++i) {
      for (int j = 0; j < m; ++j) {
        if (!inst.is_allowed(i, j) || !Usable(problem, bounds, j)) continue;
        const int cell = inst.index(i, j);
        begin_col(0.0, 1.0, inst.value[cell]);
        add(query_row[b] + i, 1.0);
        if (budget_row[b] >= 0 && inst.cost[cell] != 0.0) add(budget_row[b], inst.cost[cell]);
        if (slot_row[b][j] >= 0) add(slot_row[b][j], 1.0);
        end_col();
        jm.x_batch.push_back(b);
        jm.x_query.push_back(i);
        jm.x_model.push_back(j);
        ++jm.num_cols;
      }
    }
  }
  jm.starts.push_back(static_cast<CoinBigIndex>(jm.indices.size()));
  return jm;
}

void LoadJointModel(const JointModel& jm, OsiClpSolverInterface& solver) {
  const CoinPackedMatrix matrix(/*colordered=*/true, /*minor=*/jm.num_rows, /*major=*/jm.num_cols,
                                static_cast<CoinBigIndex>(jm.elements.size()),
                                jm.elements.data(), jm.indices.data(), jm.starts.data(),
                                jm.lengths.data());
  solver.loadProblem(matrix, jm.col_lb.data(), jm.col_ub.data(), jm.objective.data(),
                     jm.row_lb.data(), jm.row_ub.data());
  std::vector<int> integers(jm.num_cols);
  for (int c = 0; c < jm.num_cols; ++c) integers[c] = c;
  if (!integers.empty()) solver.setInteger(integers.data(), jm.num_cols);
  solver.setObjSense(-1.0);  // maximize
}

// U(y) of the file comment, with y clipped to its sign constraints.
double DualBound(const JointModel& jm, std::vector<double> y) {
  double bound = 0.0;
  for (int r = 0; r < jm.num_rows; ++r) {
    if (jm.row_lb[r] == -COIN_DBL_MAX) y[r] = std::max(0.0, y[r]);  // <= row
    bound += y[r] * jm.row_ub[r];
  }
  for (int c = 0; c < jm.num_cols; ++c) {
    double d = jm.objective[c];
    for (CoinBigIndex k = jm.starts[c]; k < jm.starts[c] + jm.lengths[c]; ++k) {
      d -= jm.elements[k] * y[jm.indices[k]];
    }
    bound += std::max(jm.col_lb[c] * d, jm.col_ub[c] * d);
  }
  return bound;
}

// The certified bound at Clp's row prices. Osi's sign convention for the duals of a maximization
// is solver-specific; both signs give valid bounds after clipping, and the right one is tight.
double CertifiedLpBound(const JointModel& jm, const double* row_price) {
  std::vector<double> y(row_price, row_price + jm.num_rows);
  const double plus = DualBound(jm, y);
  for (double& v : y) v = -v;
  return std::min(plus, DualBound(jm, y));
}

// sum_b sum_i max_j value_bij over allowed, usable models: the bound when there is no LP.
double TrivialBound(const PlanProblem& problem, const InstanceBounds& bounds,
                    const std::vector<Instance>& batches) {
  double bound = 0.0;
  for (const Instance& inst : batches) {
    for (int i = 0; i < inst.num_queries; ++i) {
      double best = 0.0;
      for (int j = 0; j < inst.num_models; ++j) {
        if (inst.is_allowed(i, j) && Usable(problem, bounds, j)) {
          best = std::max(best, inst.value[inst.index(i, j)]);
        }
      }
      bound += best;
    }
  }
  return bound;
}

struct Candidate {
  std::vector<int64_t> instances;
  std::vector<std::vector<int>> model_of_query;
  double objective = 0.0;
};

// OK if `plan` meets every guarantee of the header; INTERNAL naming the broken one otherwise.
// `batches` get the plan's slots.
absl::Status VerifyPlan(const PlanProblem& problem, const InstanceBounds& bounds,
                        std::vector<Instance>& batches, const Candidate& plan) {
  if (GpusUsed(problem, plan.instances) > problem.gpu_budget) {
    return absl::InternalError(absl::StrCat("plan uses ", GpusUsed(problem, plan.instances),
                                            " GPUs, gpu_budget is ", problem.gpu_budget));
  }
  for (size_t j = 0; j < problem.models.size(); ++j) {
    if (plan.instances[j] < bounds.lo[j] || plan.instances[j] > bounds.hi[j]) {
      return absl::InternalError(absl::StrCat("plan gives model '", problem.models[j].name, "' ",
                                              plan.instances[j], " instances, outside [",
                                              bounds.lo[j], ", ", bounds.hi[j], "]"));
    }
  }
  SetSlots(problem, plan.instances, batches);
  for (size_t b = 0; b < batches.size(); ++b) {
    const std::vector<int>& x = plan.model_of_query[b];
    if (static_cast<int>(x.size()) != batches[b].num_queries ||
        std::find(x.begin(), x.end(), kUnserved) != x.end()) {
      return absl::InternalError(absl::StrCat("plan leaves a query of batch ", b, " unserved"));
    }
    if (absl::Status s = CheckFeasible(batches[b], x); !s.ok()) {
      return absl::InternalError(absl::StrCat("batch ", b, ": ", s.message()));
    }
  }
  return absl::OkStatus();
}

double PlanValue(const std::vector<Instance>& batches,
                 const std::vector<std::vector<int>>& model_of_query) {
  double value = 0.0;
  for (size_t b = 0; b < batches.size(); ++b) value += AssignmentValue(batches[b], model_of_query[b]);
  return value;
}

// Step 2: instance vectors evaluated by routing every batch with the fast solver.
class LocalSearch {
 public:
  struct Score {
    int64_t unserved = 0;
    double objective = 0.0;
  };

  LocalSearch(const PlanProblem& problem, const InstanceBounds& bounds,
              std::vector<Instance> batches, absl::Time deadline, int64_t max_evaluations)
      : problem_(problem),
        bounds_(bounds),
        batches_(std::move(batches)),
        deadline_(deadline),
        max_evaluations_(max_evaluations) {}

  // Best-improvement descent from the best of `starts` (each within bounds and budget). Returns
  // the best vector seen.
  std::vector<int64_t> Run(const std::vector<std::vector<int64_t>>& starts) {
    std::vector<int64_t> current = starts.front();
    Score current_score = Evaluate(current);
    for (size_t k = 1; k < starts.size(); ++k) {
      const Score s = Evaluate(starts[k]);
      if (Better(s, current_score)) {
        current = starts[k];
        current_score = s;
      }
    }
    while (!Exhausted()) {
      std::optional<std::vector<int64_t>> best;
      Score best_score = current_score;
      for (const std::vector<int64_t>& next : Neighbors(current)) {
        if (Exhausted()) break;
        const Score s = Evaluate(next);
        if (Better(s, best_score)) {
          best = next;
          best_score = s;
        }
      }
      if (!best.has_value()) break;
      current = *std::move(best);
      current_score = best_score;
    }
    return current;
  }

  // The fast solver's assignment of every batch under `instances` (kUnserved where admission
  // leaves a query out).
  std::vector<std::vector<int>> Route(const std::vector<int64_t>& instances) {
    std::vector<std::vector<int>> out;
    Score score;
    RouteAll(instances, &out, score);
    return out;
  }

  Score Evaluate(const std::vector<int64_t>& instances) {
    if (const auto it = cache_.find(instances); it != cache_.end()) return it->second;
    Score score;
    RouteAll(instances, nullptr, score);
    cache_.emplace(instances, score);
    return score;
  }

  int64_t evaluations() const { return static_cast<int64_t>(cache_.size()); }
  const std::vector<Instance>& batches() const { return batches_; }

 private:
  static bool Better(const Score& a, const Score& b) {
    if (a.unserved != b.unserved) return a.unserved < b.unserved;
    return a.objective > b.objective + 1e-9 * std::max(1.0, std::abs(b.objective));
  }

  bool Exhausted() const {
    return evaluations() >= max_evaluations_ || absl::Now() >= deadline_;
  }

  void RouteAll(const std::vector<int64_t>& instances, std::vector<std::vector<int>>* out,
                Score& score) {
    SetSlots(problem_, instances, batches_);
    for (const Instance& inst : batches_) {
      const Admission admission = AdmitQueries(inst);
      std::vector<int> x;
      if (static_cast<int>(admission.served.size()) < inst.num_queries) {
        score.unserved += inst.num_queries - static_cast<int64_t>(admission.served.size());
        x = admission.fallback;
      } else {
        x = SolveLagrangian(inst, admission.fallback).model_of_query;
      }
      score.objective += AssignmentValue(inst, x);
      if (out != nullptr) out->push_back(std::move(x));
    }
  }

  // One more instance of k; if that breaks the budget, remove instances of one other model j
  // until it fits, then fill the freed GPUs with more of k.
  std::vector<std::vector<int64_t>> Neighbors(const std::vector<int64_t>& current) const {
    std::vector<std::vector<int64_t>> out;
    const int m = static_cast<int>(current.size());
    const int64_t used = GpusUsed(problem_, current);
    for (int k = 0; k < m; ++k) {
      if (current[k] >= bounds_.hi[k]) continue;
      const int64_t gk = *problem_.models[k].gpus_per_instance;
      if (used + gk <= problem_.gpu_budget) {
        std::vector<int64_t> next = current;
        ++next[k];
        out.push_back(std::move(next));
        continue;
      }
      for (int j = 0; j < m; ++j) {
        if (j == k || current[j] <= bounds_.lo[j]) continue;
        const int64_t gj = *problem_.models[j].gpus_per_instance;
        std::vector<int64_t> next = current;
        ++next[k];
        int64_t next_used = used + gk;
        while (next_used > problem_.gpu_budget && next[j] > bounds_.lo[j]) {
          --next[j];
          next_used -= gj;
        }
        if (next_used > problem_.gpu_budget) continue;
        while (next[k] < bounds_.hi[k] && next_used + gk <= problem_.gpu_budget) {
          ++next[k];
          next_used += gk;
        }
        out.push_back(std::move(next));
      }
    }
    return out;
  }

  const PlanProblem& problem_;
  const InstanceBounds& bounds_;
  std::vector<Instance> batches_;
  const absl::Time deadline_;
  const int64_t max_evaluations_;
  absl::flat_hash_map<std::vector<int64_t>, Score> cache_;
};

struct ExactResult {
  bool infeasible = false;
  std::optional<Candidate> plan;
  double bound = kInf;
  int64_t nodes = 0;
};

// Step 3: CBC on the joint model from `incumbent` (if any), stopped by `time_limit`.
absl::StatusOr<ExactResult> SolveExact(const PlanProblem& problem, const InstanceBounds& bounds,
                                       const JointModel& jm, std::vector<Instance>& batches,
                                       const std::optional<Candidate>& incumbent,
                                       absl::Duration time_limit) {
  OsiClpSolverInterface solver;
  solver.messageHandler()->setLogLevel(0);
  LoadJointModel(jm, solver);

  CbcRunOptions run_options;
  run_options.time_limit = time_limit;
  run_options.relative_gap = problem.relative_gap;
  std::vector<double> values;
  if (incumbent.has_value()) {
    values.assign(jm.num_cols, 0.0);
    for (size_t j = 0; j < jm.instance_col.size(); ++j) {
      if (jm.instance_col[j] >= 0) {
        values[jm.instance_col[j]] = static_cast<double>(incumbent->instances[j]);
      }
    }
    for (int c = jm.first_x; c < jm.num_cols; ++c) {
      const int k = c - jm.first_x;
      if (incumbent->model_of_query[jm.x_batch[k]][jm.x_query[k]] == jm.x_model[k]) {
        values[c] = 1.0;
      }
    }
    run_options.incumbent = values;
    run_options.incumbent_objective = incumbent->objective;
  }
  absl::StatusOr<CbcRun> run = RunCbc(solver, run_options);
  if (!run.ok()) return run.status();

  ExactResult result;
  result.nodes = run->nodes;
  switch (run->status) {
    case CbcRunStatus::kUnbounded:
      return absl::InternalError("CBC reports the plan LP as unbounded");
    case CbcRunStatus::kInfeasible:
      result.infeasible = true;
      return result;
    case CbcRunStatus::kOptimal:
    case CbcRunStatus::kUnproven:
    case CbcRunStatus::kStopped:
      break;
  }
  if (run->best_bound.has_value()) result.bound = *run->best_bound;
  if (run->solution.empty()) return result;
  const double* x = run->solution.data();

  Candidate plan;
  plan.instances.assign(problem.models.size(), 0);
  for (size_t j = 0; j < jm.instance_col.size(); ++j) {
    if (jm.instance_col[j] >= 0) plan.instances[j] = std::llround(x[jm.instance_col[j]]);
  }
  plan.model_of_query.resize(batches.size());
  for (size_t b = 0; b < batches.size(); ++b) {
    plan.model_of_query[b].assign(batches[b].num_queries, kUnserved);
  }
  for (int c = jm.first_x; c < jm.num_cols; ++c) {
    const int k = c - jm.first_x;
    if (x[c] > 0.5) plan.model_of_query[jm.x_batch[k]][jm.x_query[k]] = jm.x_model[k];
  }
  // Within CBC's tolerances but not ours (e.g. over a cap by 1e-9): not an answer.
  if (VerifyPlan(problem, bounds, batches, plan).ok()) {
    plan.objective = PlanValue(batches, plan.model_of_query);
    result.plan = std::move(plan);
  }
  return result;
}

// INVALID_ARGUMENT naming the first query of a batch that no plan can serve, checked with every
// self-hosted model at hi_j (a relaxation of every plan). `batches` get those slots.
absl::Status CheckBatchesServable(const PlanProblem& problem, const InstanceBounds& bounds,
                                  std::vector<Instance>& batches) {
  SetSlots(problem, bounds.hi, batches);
  for (size_t b = 0; b < batches.size(); ++b) {
    const Admission admission = AdmitQueries(batches[b]);
    for (int i = 0; i < batches[b].num_queries; ++i) {
      if (admission.fallback[i] != kUnserved) continue;
      const std::string where =
          absl::StrCat("batches[", b, "][", i, "] ('", problem.batches[b][i].id, "')");
      if (admission.reason[i] == UnservedReason::kNoSlot) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, ": no plan can serve it: its allowed models have no free slot even with every "
                   "self-hosted model at its maximum instances (or they are pinned off)"));
      }
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": no plan can serve it: avg_cost_cap x ", batches[b].num_queries, " = ",
          batches[b].budget, " USD cannot pay for batch ", b,
          " even with every self-hosted model at its maximum instances"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CapacityPlanner> CapacityPlanner::Create(const PlannerOptions& options) {
  if (options.max_exact_columns <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_exact_columns: must be > 0, got ", options.max_exact_columns));
  }
  if (options.min_exact_time < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "min_exact_time: must be >= 0, got ", absl::FormatDuration(options.min_exact_time)));
  }
  if (options.max_evaluations <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_evaluations: must be > 0, got ", options.max_evaluations));
  }
  return CapacityPlanner(options);
}

absl::StatusOr<CapacityPlan> CapacityPlanner::Plan(const PlanProblem& problem) const {
  const absl::Time start = absl::Now();
  const absl::Time deadline = start + problem.time_limit;
  if (absl::Status s = ValidatePlanProblem(problem); !s.ok()) return s;
  if (absl::Status s = CheckMinimumsFit(problem); !s.ok()) return s;
  const InstanceBounds bounds = ComputeInstanceBounds(problem);
  std::vector<Instance> batches = BuildBatchInstances(problem, bounds.hi);
  if (absl::Status s = CheckBatchesServable(problem, bounds, batches); !s.ok()) return s;
  const JointModel jm = BuildJointModel(problem, bounds, batches);

  CapacityPlan out;
  // Step 1: the LP relaxation.
  std::vector<int64_t> lp_start = bounds.lo;
  {
    OsiClpSolverInterface lp;
    lp.messageHandler()->setLogLevel(0);
    LoadJointModel(jm, lp);
    lp.getModelPtr()->setMaximumWallSeconds(
        std::max(1e-3, absl::ToDoubleSeconds(deadline - absl::Now())));
    lp.initialSolve();
    if (lp.isProvenOptimal()) {
      out.lp_bound = CertifiedLpBound(jm, lp.getRowPrice());
      const double* x = lp.getColSolution();
      for (size_t j = 0; j < jm.instance_col.size(); ++j) {
        if (jm.instance_col[j] < 0) continue;
        const auto floor = static_cast<int64_t>(std::floor(x[jm.instance_col[j]] + 1e-6));
        lp_start[j] = std::clamp(floor, bounds.lo[j], bounds.hi[j]);
      }
    } else if (lp.isProvenPrimalInfeasible()) {
      return absl::InvalidArgumentError(
          "no plan exists: no instance vector within gpu_budget gives every sampled batch enough "
          "slots within its cost cap (the LP relaxation is infeasible)");
    }
  }
  const double fallback_bound = TrivialBound(problem, bounds, batches);

  // Step 2: local search.
  absl::StatusOr<std::vector<int64_t>> uniform = UniformAllocation(problem);
  if (!uniform.ok()) return uniform.status();
  absl::StatusOr<std::vector<int64_t>> proportional = ProportionalAllocation(problem);
  if (!proportional.ok()) return proportional.status();
  std::vector<std::vector<int64_t>> starts = {*uniform, *proportional};
  if (GpusUsed(problem, lp_start) <= problem.gpu_budget) starts.insert(starts.begin(), lp_start);
  LocalSearch search(problem, bounds, batches, deadline, options_.max_evaluations);
  const std::vector<int64_t> searched = search.Run(starts);
  out.evaluations = search.evaluations();
  std::optional<Candidate> best;
  if (search.Evaluate(searched).unserved == 0) {
    Candidate c;
    c.instances = searched;
    c.model_of_query = search.Route(searched);
    c.objective = PlanValue(search.batches(), c.model_of_query);
    best = std::move(c);
    out.method = "local_search";
  }

  // Step 3: CBC from the local search's plan.
  double bound = std::min(out.lp_bound, fallback_bound);
  const absl::Duration left = deadline - absl::Now();
  // CBC needs a positive limit even when min_exact_time is 0.
  if (options_.use_exact && jm.num_x() <= options_.max_exact_columns &&
      left >= std::max(options_.min_exact_time, absl::Nanoseconds(1))) {
    absl::StatusOr<ExactResult> exact = SolveExact(problem, bounds, jm, batches, best, left);
    if (!exact.ok()) return exact.status();
    out.nodes = exact->nodes;
    if (exact->infeasible && !best.has_value()) {
      return absl::InvalidArgumentError(
          "no plan exists: no instance vector within gpu_budget lets every sampled batch be "
          "served within its slots and cost cap (proven by CBC)");
    }
    if (!exact->infeasible) bound = std::min(bound, exact->bound);
    if (exact->plan.has_value() &&
        (!best.has_value() || exact->plan->objective > best->objective)) {
      best = std::move(exact->plan);
      out.method = "cbc";
    }
  }
  if (!best.has_value()) {
    return absl::DeadlineExceededError(absl::StrCat(
        "no plan serving every sampled query was found within time_limit ",
        absl::FormatDuration(problem.time_limit), " (", out.evaluations,
        " instance vectors tried; none is proven impossible)"));
  }
  if (absl::Status s = VerifyPlan(problem, bounds, batches, *best); !s.ok()) {
    return absl::InternalError(absl::StrCat("the plan failed its final check: ", s.message()));
  }
  out.instances = best->instances;
  out.gpus_used = GpusUsed(problem, out.instances);
  out.model_of_query = std::move(best->model_of_query);
  out.objective = PlanValue(batches, out.model_of_query);
  // A feasible objective is a lower bound on the optimum; CBC's bound can sit a rounding error
  // below it.
  out.upper_bound = std::max(out.objective, bound);
  const double gap =
      (out.upper_bound - out.objective) / std::max(std::abs(out.upper_bound), 1e-12);
  // The 1e-9 absorbs floating-point noise between the bounds and the recomputed objective.
  out.status = gap <= problem.relative_gap + 1e-9 ? SolveStatus::kOptimal : SolveStatus::kFeasible;
  out.solve_time = absl::Now() - start;
  return out;
}

}  // namespace router::core
