// File: runtime_state.h
//
// Everything a request is handled with, as one immutable snapshot: the configuration, the predictor
// (estimator + featurizer + cost model) and the deployed pool. The admin path builds a new snapshot,
// validates it as a whole and swaps it in (router_runtime.h); requests and batches in flight keep the
// snapshot they started with.
//
// Thread-safety: immutable after BuildRuntimeState.
//
// Errors: INVALID_ARGUMENT naming the config field, e.g. `models[2].name: 'x' is not in the
// estimator's pool`.

#ifndef ROUTER_SERVER_RUNTIME_STATE_H_
#define ROUTER_SERVER_RUNTIME_STATE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "router_core/estimate/predictor.h"
#include "router_core/learn/outcome_learner.h"
#include "router_core/serving/ledger.h"
#include "router_core/serving/pool_view.h"
#include "server/config.h"

namespace router::server {

struct RuntimeState {
  RouterConfig config;
  uint64_t generation = 0;
  std::shared_ptr<const core::Predictor> predictor;
  // predictor->models(), shared with every PendingQuery predicted under this snapshot.
  std::shared_ptr<const std::vector<std::string>> predicted_models;
  // The deployed pool: config.models resolved (or every estimator model, as API models).
  std::vector<core::DeployedModel> pool;
  // What was learned from outcomes, while config.learning.enabled (else null): intake adjusts each
  // query's predictions with it (query_intake.h). Not owned; thread-safe; outlives the snapshot
  // (the runtime owns it, outcome_learning.h).
  const core::OutcomeLearner* learner = nullptr;
  // With `learner`: the predicted models it holds as cold starts (added without validation
  // results), by index into *predicted_models. Their columns carry the query's baseline
  // (OutcomeLearner::ColdStartBaseline) instead of the estimator's placeholder prediction.
  std::vector<int> cold_columns;

  // The ledger's view of the pool.
  std::vector<core::LedgerModel> LedgerModels() const;
};

// `learner` is used only when config.learning.enabled.
absl::StatusOr<std::shared_ptr<const RuntimeState>> BuildRuntimeState(
    RouterConfig config, std::shared_ptr<const core::Predictor> predictor, uint64_t generation,
    const core::OutcomeLearner* learner = nullptr);

}  // namespace router::server

#endif  // ROUTER_SERVER_RUNTIME_STATE_H_
