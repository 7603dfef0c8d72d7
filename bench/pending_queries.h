// File: pending_queries.h
//
// What the serving benchmarks of bench/ share: the queries of a generated problem as the service
// holds them after prediction. Header-only, bench-only.

#ifndef ROUTER_BENCH_PENDING_QUERIES_H_
#define ROUTER_BENCH_PENDING_QUERIES_H_

#include <memory>
#include <string>
#include <vector>

#include "router_core/solve/problem.h"
#include "router_core/serving/pool_view.h"

namespace router::bench {

// One PendingQuery per query of `problem`, predicted for `predicted_models` (one name per model of
// the problem, in its order) with the query's quality, lower bound and cost.
inline std::vector<core::PendingQuery> PendingQueries(
    const core::BatchProblem& problem,
    const std::shared_ptr<const std::vector<std::string>>& predicted_models) {
  std::vector<core::PendingQuery> queries;
  for (const core::Query& q : problem.queries) {
    core::PendingQuery p;
    p.predicted_models = predicted_models;
    p.predictions.quality = q.quality;
    p.predictions.quality_lower = q.quality_lower;
    p.predictions.cost_usd = q.cost;
    queries.push_back(std::move(p));
  }
  return queries;
}

}  // namespace router::bench

#endif  // ROUTER_BENCH_PENDING_QUERIES_H_
