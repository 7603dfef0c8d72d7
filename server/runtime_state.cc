#include "server/runtime_state.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace router::server {

std::vector<core::LedgerModel> RuntimeState::LedgerModels() const {
  std::vector<core::LedgerModel> models;
  for (const core::DeployedModel& d : pool) models.push_back({d.name, d.slots});
  return models;
}

absl::StatusOr<std::shared_ptr<const RuntimeState>> BuildRuntimeState(
    RouterConfig config, std::shared_ptr<const core::Predictor> predictor, uint64_t generation,
    const core::OutcomeLearner* learner) {
  auto state = std::make_shared<RuntimeState>();
  const std::vector<std::string>& known = predictor->models();
  if (config.models.empty()) {
    for (const std::string& name : known) state->pool.push_back({name, std::nullopt});
  }
  for (size_t k = 0; k < config.models.size(); ++k) {
    const ModelDeploymentConfig& m = config.models[k];
    if (std::find(known.begin(), known.end(), m.name) == known.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "models[", k, "].name: '", m.name,
          "' is not in the estimator's pool (add it with RouterAdmin.UpsertModel and its "
          "validation results)"));
    }
    core::DeployedModel d{m.name, std::nullopt};
    if (m.self_hosted()) d.slots = m.instances * m.slots_per_instance;
    state->pool.push_back(std::move(d));
  }
  const std::vector<std::string>& gateway_models = config.gateway.models;
  for (size_t k = 0; k < gateway_models.size(); ++k) {
    if (std::none_of(state->pool.begin(), state->pool.end(),
                     [&](const core::DeployedModel& d) { return d.name == gateway_models[k]; })) {
      return absl::InvalidArgumentError(absl::StrCat("gateway.models[", k, "]: '",
                                                     gateway_models[k], "' is not in the pool"));
    }
  }
  if (config.learning.enabled && learner != nullptr) {
    state->learner = learner;
    for (size_t j = 0; j < known.size(); ++j) {
      if (learner->IsColdStart(known[j])) state->cold_columns.push_back(static_cast<int>(j));
    }
  }
  state->config = std::move(config);
  state->generation = generation;
  state->predictor = std::move(predictor);
  state->predicted_models = std::make_shared<const std::vector<std::string>>(known);
  return std::shared_ptr<const RuntimeState>(std::move(state));
}

}  // namespace router::server
