#include "tests/router_core/planner/plan_testing.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "router_core/solve/instance.h"
#include "tests/router_core/testing/brute_force.h"
#include "tests/router_core/testing/random_instance.h"

namespace router::core::testing {
namespace {

// Instances of self-hosted model j the scenario's own rules allow: [lo, hi].
std::pair<int64_t, int64_t> RawBounds(const PlanProblem& problem, size_t j) {
  const PlanModel& m = problem.models[j];
  if (!m.self_hosted() || m.pin == ModelPin::kOff) return {0, 0};
  const int64_t lo = std::max<int64_t>(m.min_instances, m.pin == ModelPin::kOn ? 1 : 0);
  int64_t hi = problem.gpu_budget / *m.gpus_per_instance;
  if (m.max_instances.has_value()) hi = std::min(hi, *m.max_instances);
  return {lo, hi};
}

// Batch b as a routed batch with the slots of `instances`, built independently of BatchAt.
Instance BatchInstance(const PlanProblem& problem, size_t b, const std::vector<int64_t>& instances) {
  BatchProblem batch;
  for (size_t j = 0; j < problem.models.size(); ++j) {
    const PlanModel& m = problem.models[j];
    std::optional<int64_t> slots;
    if (m.pin == ModelPin::kOff) {
      slots = 0;
    } else if (m.self_hosted()) {
      slots = *m.slots_per_instance * instances[j];
    }
    batch.models.push_back({m.name, slots});
  }
  batch.queries = problem.batches[b];
  if (problem.avg_cost_cap.has_value()) {
    batch.budget = *problem.avg_cost_cap * static_cast<double>(problem.batches[b].size());
  }
  return BuildInstance(batch, ValueSource::kQuality);
}

}  // namespace

PlanModel SelfHosted(const std::string& name, int64_t gpus_per_instance,
                     int64_t slots_per_instance) {
  PlanModel m;
  m.name = name;
  m.gpus_per_instance = gpus_per_instance;
  m.slots_per_instance = slots_per_instance;
  return m;
}

PlanModel Api(const std::string& name) {
  PlanModel m;
  m.name = name;
  return m;
}

Query MakeQuery(const std::string& id, std::vector<double> quality, std::vector<double> cost) {
  Query q;
  q.id = id;
  q.quality = std::move(quality);
  q.cost = std::move(cost);
  return q;
}

PlanProblem RandomScenario(const RandomScenarioOptions& o) {
  const RandomInstanceOptions r = {.num_queries = o.num_batches * o.queries_per_batch,
                                   .num_models = o.num_models,
                                   .num_limited = o.num_self_hosted,
                                   .budget_fraction = -1.0,
                                   .disallow_probability = o.disallow_probability,
                                   .with_lower = false,
                                   .seed = o.seed};
  const BatchProblem pool = RandomProblem(r);

  std::mt19937_64 rng(o.seed * 7919 + 13);
  auto pick = [&rng](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  PlanProblem p;
  for (int j = 0; j < o.num_models; ++j) {
    PlanModel m;
    m.name = pool.models[j].name;
    if (j < o.num_self_hosted) {
      m.gpus_per_instance = pick(1, 3);
      m.slots_per_instance = pick(1, 2);
      if (o.operator_bounds) {
        switch (pick(0, 4)) {
          case 0:
            m.min_instances = 1;
            break;
          case 1:
            m.max_instances = pick(0, 2);
            break;
          case 2:
            m.pin = ModelPin::kOn;
            break;
          case 3:
            m.pin = ModelPin::kOff;
            break;
          default:
            break;
        }
      }
    } else if (o.operator_bounds && j == o.num_models - 1 && pick(0, 3) == 0) {
      m.pin = ModelPin::kOff;
    }
    p.models.push_back(std::move(m));
  }
  p.gpu_budget = o.gpu_budget;
  double dearest_total = 0.0;
  for (const Query& q : pool.queries) dearest_total += *std::max_element(q.cost.begin(), q.cost.end());
  if (o.cap_fraction >= 0) {
    p.avg_cost_cap = o.cap_fraction * dearest_total / static_cast<double>(pool.queries.size());
  }
  p.batches.resize(o.num_batches);
  for (size_t i = 0; i < pool.queries.size(); ++i) {
    p.batches[i / o.queries_per_batch].push_back(pool.queries[i]);
  }
  p.time_limit = absl::Seconds(30);
  return p;
}

std::optional<EnumeratedOptimum> EnumerateOptimum(const PlanProblem& problem) {
  const size_t m = problem.models.size();
  std::optional<EnumeratedOptimum> best;
  std::vector<int64_t> instances(m, 0);
  std::function<void(size_t, int64_t)> recurse = [&](size_t j, int64_t gpus) {
    if (j == m) {
      double objective = 0.0;
      for (size_t b = 0; b < problem.batches.size(); ++b) {
        const std::optional<BruteForceResult> r = BruteForce(BatchInstance(problem, b, instances));
        if (!r.has_value()) return;
        objective += r->objective;
      }
      if (!best.has_value() || objective > best->objective) best = {instances, objective};
      return;
    }
    const auto [lo, hi] = RawBounds(problem, j);
    const int64_t g = problem.models[j].gpus_per_instance.value_or(0);
    for (int64_t k = lo; k <= hi && gpus + g * k <= problem.gpu_budget; ++k) {
      instances[j] = k;
      recurse(j + 1, gpus + g * k);
    }
    instances[j] = 0;
  };
  recurse(0, 0);
  return best;
}

absl::Status CheckPlan(const PlanProblem& problem, const CapacityPlan& plan) {
  const size_t m = problem.models.size();
  if (plan.instances.size() != m) return absl::InternalError("instances: wrong length");
  int64_t gpus = 0;
  for (size_t j = 0; j < m; ++j) {
    const auto [lo, hi] = RawBounds(problem, j);
    if (plan.instances[j] < lo || plan.instances[j] > hi) {
      return absl::InternalError(absl::StrCat("model ", j, ": ", plan.instances[j],
                                              " instances outside [", lo, ", ", hi, "]"));
    }
    gpus += problem.models[j].gpus_per_instance.value_or(0) * plan.instances[j];
  }
  if (gpus > problem.gpu_budget) {
    return absl::InternalError(absl::StrCat(gpus, " GPUs over budget ", problem.gpu_budget));
  }
  if (gpus != plan.gpus_used) return absl::InternalError("gpus_used is wrong");
  if (plan.model_of_query.size() != problem.batches.size()) {
    return absl::InternalError("model_of_query: wrong number of batches");
  }
  double objective = 0.0;
  for (size_t b = 0; b < problem.batches.size(); ++b) {
    const std::vector<Query>& batch = problem.batches[b];
    const std::vector<int>& x = plan.model_of_query[b];
    if (x.size() != batch.size()) return absl::InternalError("model_of_query: wrong batch size");
    std::vector<int64_t> load(m, 0);
    double cost = 0.0;
    for (size_t i = 0; i < batch.size(); ++i) {
      if (x[i] < 0 || static_cast<size_t>(x[i]) >= m) {
        return absl::InternalError(absl::StrCat("batch ", b, " query ", i, " unserved"));
      }
      const PlanModel& model = problem.models[x[i]];
      if (!batch[i].allowed.empty() &&
          std::find(batch[i].allowed.begin(), batch[i].allowed.end(), model.name) ==
              batch[i].allowed.end()) {
        return absl::InternalError(absl::StrCat("batch ", b, " query ", i, " not allowed"));
      }
      if (model.pin == ModelPin::kOff) {
        return absl::InternalError(absl::StrCat("batch ", b, " query ", i, " on a pinned-off model"));
      }
      ++load[x[i]];
      cost += batch[i].cost[x[i]];
      objective += batch[i].quality[x[i]];
    }
    for (size_t j = 0; j < m; ++j) {
      const PlanModel& model = problem.models[j];
      if (model.self_hosted() && load[j] > *model.slots_per_instance * plan.instances[j]) {
        return absl::InternalError(absl::StrCat("batch ", b, " model ", j, ": ", load[j],
                                                " queries on ", plan.instances[j], " instances"));
      }
    }
    if (problem.avg_cost_cap.has_value()) {
      const double cap = *problem.avg_cost_cap * static_cast<double>(batch.size());
      if (cost > cap + 1e-9 * std::max(1.0, cap)) {
        return absl::InternalError(absl::StrCat("batch ", b, " costs ", cost, " over cap ", cap));
      }
    }
  }
  if (std::abs(objective - plan.objective) > 1e-9 * std::max(1.0, objective)) {
    return absl::InternalError(
        absl::StrCat("objective ", plan.objective, " but the assignment is worth ", objective));
  }
  return absl::OkStatus();
}

}  // namespace router::core::testing
