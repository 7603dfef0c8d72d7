// File: plan_problem.h
//
// The offline instance-allocation problem (BRIEF 2.1, "Offline instance allocation"), as an operator
// describes it: the model pool with GPU footprints, a GPU budget, an average cost cap per query, and
// a sample of historical batches with per-model predictions. A plan chooses integer instances I_j of
// every self-hosted model j and, for every sampled batch b, an assignment x_b of its queries:
//
//     maximize    sum_b sum_{i in b} sum_j quality_bij x_bij
//     subject to  sum_j g_j I_j <= G                                   GPU budget
//                 min_j <= I_j <= max_j                                 operator bounds (pins)
//                 sum_j x_bij = 1                       every query i of every batch b
//                 sum_{i in b} x_bij <= l_j I_j         every batch b, every self-hosted model j
//                 sum_{i in b, j} cost_bij x_bij <= avg_cost_cap * |b|   every batch b (if capped)
//                 x_bij in {0, 1},  I_j integer >= 0
//
// API models (no GPUs) have unlimited slots; a model pinned off takes no query.
//
// Thread-safety: plain values and pure functions.
//
// ValidatePlanProblem() is the one gate: INVALID_ARGUMENT naming the offending field (for example
// `models[2].slots_per_instance: 0 must be > 0` or `batches[1][3].quality[0]: NaN`); the planner
// and the baselines assume it passed.

#ifndef ROUTER_CORE_PLANNER_PLAN_PROBLEM_H_
#define ROUTER_CORE_PLANNER_PLAN_PROBLEM_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "router_core/solve/instance.h"
#include "router_core/solve/problem.h"

namespace router::core {

// Operator override of the allocation of one model.
enum class ModelPin {
  kFree,  // the planner decides within [min_instances, max_instances]
  kOn,    // self-hosted: at least one instance; API: no effect (always reachable)
  kOff,   // self-hosted: zero instances; API: takes no query
};

struct PlanModel {
  std::string name;
  // Self-hosted models set both (each > 0); API models set neither.
  std::optional<int64_t> gpus_per_instance;
  std::optional<int64_t> slots_per_instance;
  // Self-hosted only: bounds on I_j. min 0 and no max by default.
  int64_t min_instances = 0;
  std::optional<int64_t> max_instances;
  ModelPin pin = ModelPin::kFree;

  bool self_hosted() const { return gpus_per_instance.has_value(); }
};

struct PlanProblem {
  std::vector<PlanModel> models;
  // G, total GPUs available to self-hosted instances. >= 0.
  int64_t gpu_budget = 0;
  // Cap on the mean predicted cost per query of every sampled batch (USD): batch b may spend at
  // most avg_cost_cap * |b|. nullopt = no cap.
  std::optional<double> avg_cost_cap;
  // The historical sample. Query::quality and Query::cost are indexed like `models`;
  // Query::allowed restricts a query to the named models; Query::quality_lower is ignored (the plan
  // maximizes predicted quality). Query ids are unique within a batch.
  std::vector<std::vector<Query>> batches;
  // Wall-clock allowance of the whole plan (CBC is stopped by what remains). > 0.
  absl::Duration time_limit = absl::Seconds(10);
  // The plan is OPTIMAL once (upper_bound - objective) / |upper_bound| <= relative_gap. In [0, 1).
  double relative_gap = 1e-4;
};

// OK, or INVALID_ARGUMENT naming the first offending field. Checks: at least one model, names
// non-empty and unique; gpus_per_instance and slots_per_instance both set (each > 0) or both
// absent; min_instances >= 0, max_instances >= min_instances, both only on self-hosted models;
// gpu_budget >= 0; avg_cost_cap finite and >= 0; at least one batch, none empty; every query as in
// ValidateBatchProblem (ids non-empty and unique in the batch, one finite quality in [0, 1] and
// cost >= 0 per model, allowed names known and not repeated); time_limit > 0; relative_gap in
// [0, 1). Feasibility is not checked here (see capacity_planner.h).
absl::Status ValidatePlanProblem(const PlanProblem& problem);

// The instance bounds the planner searches within, after pins, operator bounds, the GPU budget and
// the largest batch are applied. For self-hosted j:
//     lo_j = 0 if pinned off, else max(min_instances, 1 if pinned on else 0)
//     hi_j = 0 if pinned off, else max(lo_j, min(max_instances, (G - sum_{k != j} g_k lo_k) / g_j,
//                                               ceil(max_b |b| / l_j)))
// (instances beyond ceil(max_b |b| / l_j) add slots no sampled batch can use, so capping there
// loses no plan value). API models have lo = hi = 0.
struct InstanceBounds {
  std::vector<int64_t> lo;
  std::vector<int64_t> hi;
};
InstanceBounds ComputeInstanceBounds(const PlanProblem& problem);

// sum_j g_j I_j.
int64_t GpusUsed(const PlanProblem& problem, const std::vector<int64_t>& instances);

// The batch problem of sampled batch b under `instances` (one entry per model; API entries are
// ignored): slots l_j I_j for self-hosted models, 0 for models pinned off, unlimited for the other
// API models; budget avg_cost_cap * |b|; policy kBatch solved with `solve`.
BatchProblem BatchAt(const PlanProblem& problem, int batch, const std::vector<int64_t>& instances,
                     const SolveOptions& solve = {});

// The dense form of every sampled batch under `instances` (slots and budget as in BatchAt).
std::vector<Instance> BuildBatchInstances(const PlanProblem& problem,
                                          const std::vector<int64_t>& instances);

// Overwrites the slots of `batch_instances` (from BuildBatchInstances) for `instances`.
void SetSlots(const PlanProblem& problem, const std::vector<int64_t>& instances,
              std::vector<Instance>& batch_instances);

}  // namespace router::core

#endif  // ROUTER_CORE_PLANNER_PLAN_PROBLEM_H_
