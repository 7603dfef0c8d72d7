#include "router_core/solve/instance.h"

#include <cstring>
#include <string>

#include "absl/container/flat_hash_map.h"

namespace router::core {

Instance BuildInstance(const BatchProblem& problem, ValueSource source) {
  Instance inst;
  inst.num_queries = static_cast<int>(problem.queries.size());
  inst.num_models = static_cast<int>(problem.models.size());
  const size_t cells = static_cast<size_t>(inst.num_queries) * inst.num_models;
  inst.value.resize(cells);
  inst.deviation.assign(cells, 0.0);
  inst.cost.resize(cells);
  inst.allowed.assign(cells, 0);
  absl::flat_hash_map<std::string, int> model_index;
  for (int j = 0; j < inst.num_models; ++j) {
    model_index[problem.models[j].name] = j;
    inst.slots.push_back(problem.models[j].slots.value_or(kUnlimited));
  }
  if (problem.budget.has_value()) inst.budget = *problem.budget;
  for (int i = 0; i < inst.num_queries; ++i) {
    const Query& q = problem.queries[i];
    for (int j = 0; j < inst.num_models; ++j) {
      const int k = inst.index(i, j);
      const double lower = q.quality_lower.empty() ? q.quality[j] : q.quality_lower[j];
      inst.value[k] = source == ValueSource::kQuality ? q.quality[j] : lower;
      if (source == ValueSource::kQuality) inst.deviation[k] = q.quality[j] - lower;
      inst.cost[k] = q.cost[j];
      if (q.allowed.empty()) inst.allowed[k] = 1;
    }
    for (const std::string& name : q.allowed) inst.allowed[inst.index(i, model_index[name])] = 1;
  }
  return inst;
}

Instance SelectQueries(const Instance& instance, const std::vector<int>& rows) {
  Instance out;
  out.num_queries = static_cast<int>(rows.size());
  out.num_models = instance.num_models;
  out.slots = instance.slots;
  out.budget = instance.budget;
  const int m = instance.num_models;
  for (int row : rows) {
    const auto begin = static_cast<std::ptrdiff_t>(row) * m;
    out.value.insert(out.value.end(), instance.value.begin() + begin,
                     instance.value.begin() + begin + m);
    out.deviation.insert(out.deviation.end(), instance.deviation.begin() + begin,
                         instance.deviation.begin() + begin + m);
    out.cost.insert(out.cost.end(), instance.cost.begin() + begin, instance.cost.begin() + begin + m);
    out.allowed.insert(out.allowed.end(), instance.allowed.begin() + begin,
                       instance.allowed.begin() + begin + m);
  }
  return out;
}

std::vector<std::vector<int>> GroupIdenticalQueries(const Instance& instance) {
  std::vector<std::vector<int>> groups;
  const size_t m = static_cast<size_t>(instance.num_models);
  const size_t doubles = m * sizeof(double);
  absl::flat_hash_map<std::string, int> group_of_row;
  std::string key(2 * doubles + m, '\0');
  for (int i = 0; i < instance.num_queries; ++i) {
    const size_t cell = static_cast<size_t>(instance.index(i, 0));
    std::memcpy(key.data(), instance.value.data() + cell, doubles);
    std::memcpy(key.data() + doubles, instance.cost.data() + cell, doubles);
    std::memcpy(key.data() + 2 * doubles, instance.allowed.data() + cell, m);
    const auto [it, inserted] = group_of_row.try_emplace(key, static_cast<int>(groups.size()));
    if (inserted) groups.emplace_back();
    groups[it->second].push_back(i);
  }
  return groups;
}

}  // namespace router::core
