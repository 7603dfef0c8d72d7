#include "router_core/serving/pool_query.h"

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"

namespace router::core {

ColumnMap MapPredictionColumns(const std::vector<std::string>& predicted,
                               absl::Span<const DeployedModel> pool) {
  absl::flat_hash_map<absl::string_view, int> index;
  for (size_t k = 0; k < predicted.size(); ++k) index.emplace(predicted[k], static_cast<int>(k));
  ColumnMap columns(pool.size(), -1);
  for (size_t j = 0; j < pool.size(); ++j) {
    if (auto it = index.find(pool[j].name); it != index.end()) columns[j] = it->second;
  }
  return columns;
}

absl::Status ToPoolQuery(const PendingQuery& pending, const ColumnMap& columns,
                         absl::Span<const DeployedModel> pool, Query& query,
                         std::vector<char>& allowed) {
  const size_t m = pool.size();
  query.id = pending.query_id;
  query.quality.assign(m, 0.0);
  query.quality_lower.assign(m, 0.0);
  query.cost.assign(m, 0.0);
  query.allowed.clear();
  allowed.assign(m, pending.allowed.empty() ? 1 : 0);
  for (size_t k = 0; k < pending.allowed.size(); ++k) {
    auto it = std::find_if(pool.begin(), pool.end(),
                           [&](const DeployedModel& d) { return d.name == pending.allowed[k]; });
    if (it == pool.end()) {
      return absl::InvalidArgumentError(absl::StrCat("query.allowed_models[", k, "]: unknown model '",
                                                     pending.allowed[k], "'"));
    }
    allowed[it - pool.begin()] = 1;
  }
  for (size_t j = 0; j < m; ++j) {
    if (columns[j] < 0) {
      allowed[j] = 0;  // joined the pool after this query was predicted
      continue;
    }
    query.quality[j] = pending.quality[columns[j]];
    query.quality_lower[j] = pending.quality_lower[columns[j]];
    query.cost[j] = pending.cost_usd[columns[j]];
  }
  const size_t num_allowed = static_cast<size_t>(std::count(allowed.begin(), allowed.end(), 1));
  if (num_allowed == 0) {
    return absl::InvalidArgumentError(
        "query.allowed_models: no model of the current pool is allowed and predicted");
  }
  if (num_allowed < m) {
    for (size_t j = 0; j < m; ++j) {
      if (allowed[j]) query.allowed.push_back(pool[j].name);
    }
  }
  return absl::OkStatus();
}

std::vector<std::string> FallbackModels(const Query& query, const std::vector<char>& allowed,
                                        int chosen, int max_fallbacks,
                                        absl::Span<const DeployedModel> pool) {
  std::vector<int> order;
  for (size_t j = 0; j < pool.size(); ++j) {
    if (static_cast<int>(j) != chosen && allowed[j]) order.push_back(static_cast<int>(j));
  }
  // Only the first max_fallbacks are kept, and pool order breaks ties, so a partial sort gives
  // what a stable sort by quality would, without the stable sort's buffer (a twelfth of a batch
  // decision's time with 11 models, batch_engine_bench).
  const size_t kept = std::min(order.size(), static_cast<size_t>(std::max(0, max_fallbacks)));
  std::partial_sort(
      order.begin(), order.begin() + static_cast<std::ptrdiff_t>(kept), order.end(),
      [&](int a, int b) {
        return query.quality[a] != query.quality[b] ? query.quality[a] > query.quality[b] : a < b;
      });
  std::vector<std::string> names;
  names.reserve(kept);
  for (size_t k = 0; k < kept; ++k) names.push_back(pool[order[k]].name);
  return names;
}

}  // namespace router::core
