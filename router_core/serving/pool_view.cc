#include "router_core/serving/pool_view.h"

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"

namespace router::core {

std::vector<int64_t> FreeSlots(absl::Span<const DeployedModel> pool,
                               const LedgerSnapshot& snapshot) {
  std::vector<int64_t> out;
  out.reserve(pool.size());
  for (const DeployedModel& d : pool) {
    if (!d.slots.has_value()) {
      out.push_back(kUnlimited);
      continue;
    }
    auto it = std::find(snapshot.models.begin(), snapshot.models.end(), d.name);
    const std::optional<int64_t> free = it == snapshot.models.end()
                                            ? std::optional<int64_t>(0)
                                            : snapshot.free_slots[it - snapshot.models.begin()];
    out.push_back(std::min(*d.slots, free.value_or(*d.slots)));
  }
  return out;
}

absl::StatusOr<PoolQuery> PoolView::Resolve(const PendingQuery& query,
                                            absl::Span<uint8_t> allowed) {
  const std::vector<std::string>* predicted = query.predicted_models.get();
  auto cached = std::find_if(columns_.begin(), columns_.end(),
                             [&](const auto& entry) { return entry.first == predicted; });
  if (cached == columns_.end()) {
    absl::flat_hash_map<absl::string_view, int> index;
    for (size_t k = 0; k < predicted->size(); ++k) {
      index.emplace((*predicted)[k], static_cast<int>(k));
    }
    std::vector<int> columns(pool_.size(), -1);
    for (size_t j = 0; j < pool_.size(); ++j) {
      if (auto it = index.find(pool_[j].name); it != index.end()) columns[j] = it->second;
    }
    columns_.emplace_back(predicted, std::move(columns));
    cached = columns_.end() - 1;
  }
  const std::vector<int>& columns = cached->second;
  std::fill(allowed.begin(), allowed.end(), query.allowed.empty() ? 1 : 0);
  for (size_t k = 0; k < query.allowed.size(); ++k) {
    auto it = std::find_if(pool_.begin(), pool_.end(),
                           [&](const DeployedModel& d) { return d.name == query.allowed[k]; });
    if (it == pool_.end()) {
      return absl::InvalidArgumentError(absl::StrCat("query.allowed_models[", k,
                                                     "]: unknown model '", query.allowed[k], "'"));
    }
    allowed[it - pool_.begin()] = 1;
  }
  bool any = false;
  for (size_t j = 0; j < pool_.size(); ++j) {
    if (columns[j] < 0) allowed[j] = 0;  // joined the pool after this query was predicted
    any |= allowed[j] != 0;
  }
  if (!any) {
    return absl::InvalidArgumentError(
        "query.allowed_models: no model of the current pool is allowed and predicted");
  }
  return PoolQuery(&query, &columns);
}

absl::StatusOr<PoolQuery> PoolView::AppendRow(const PendingQuery& query, ValueSource source,
                                              Instance& instance) {
  const size_t m = pool_.size();
  const size_t begin = instance.allowed.size();
  instance.allowed.resize(begin + m);
  absl::StatusOr<PoolQuery> row =
      Resolve(query, absl::MakeSpan(instance.allowed).subspan(begin, m));
  if (!row.ok()) {
    instance.allowed.resize(begin);
    return row.status();
  }
  instance.value.resize(begin + m, 0.0);
  instance.deviation.resize(begin + m, 0.0);
  instance.cost.resize(begin + m, 0.0);
  for (size_t j = 0; j < m; ++j) {
    if (!row->predicted(static_cast<int>(j))) continue;
    const int jj = static_cast<int>(j);
    instance.value[begin + j] = row->value(jj, source);
    if (source == ValueSource::kQuality) {
      instance.deviation[begin + j] = row->quality(jj) - row->quality_lower(jj);
    }
    instance.cost[begin + j] = row->cost(jj);
  }
  ++instance.num_queries;
  return row;
}

Instance PoolView::EmptyInstance(std::vector<int64_t> slots, double budget,
                                 int num_queries) const {
  Instance instance;
  instance.num_models = num_models();
  instance.slots = std::move(slots);
  instance.budget = budget;
  const size_t cells = static_cast<size_t>(num_queries) * pool_.size();
  instance.value.reserve(cells);
  instance.deviation.reserve(cells);
  instance.cost.reserve(cells);
  instance.allowed.reserve(cells);
  return instance;
}

std::vector<std::string> FallbackModels(const PoolQuery& query, absl::Span<const uint8_t> allowed,
                                        int chosen, int max_fallbacks,
                                        absl::Span<const DeployedModel> pool) {
  std::vector<int> order;
  for (size_t j = 0; j < pool.size(); ++j) {
    if (static_cast<int>(j) != chosen && allowed[j]) order.push_back(static_cast<int>(j));
  }
  // Only the first max_fallbacks are kept, and pool order breaks ties, so a partial sort gives
  // what a stable sort by quality would, without the stable sort's buffer.
  const size_t kept = std::min(order.size(), static_cast<size_t>(std::max(0, max_fallbacks)));
  std::partial_sort(
      order.begin(), order.begin() + static_cast<std::ptrdiff_t>(kept), order.end(),
      [&](int a, int b) {
        const double qa = query.quality(a), qb = query.quality(b);
        return qa != qb ? qa > qb : a < b;
      });
  std::vector<std::string> names;
  names.reserve(kept);
  for (size_t k = 0; k < kept; ++k) names.push_back(pool[order[k]].name);
  return names;
}

}  // namespace router::core
