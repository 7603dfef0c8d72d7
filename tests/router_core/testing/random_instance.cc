#include "tests/router_core/testing/random_instance.h"

#include <algorithm>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"

namespace router::core::testing {

BatchProblem RandomProblem(const RandomInstanceOptions& o) {
  std::mt19937_64 rng(o.seed);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  BatchProblem p;
  std::vector<double> strength(o.num_models), price(o.num_models);
  for (int j = 0; j < o.num_models; ++j) {
    ModelSpec m;
    m.name = absl::StrCat("m", j);
    strength[j] = 0.35 + 0.6 * unit(rng);
    if (j < o.num_limited) {
      m.slots = static_cast<int64_t>(o.slot_fraction * o.num_queries);
      price[j] = 0.0;
    } else {
      price[j] = 1e-6 * (0.2 + 30.0 * strength[j] * strength[j] * unit(rng));
    }
    p.models.push_back(m);
  }
  struct Raw {
    double hardness, tokens;
  };
  std::vector<Raw> raw(o.num_queries);
  for (Raw& r : raw) r = {unit(rng), 100.0 + 3000.0 * unit(rng)};
  if (o.adversarial) {
    std::sort(raw.begin(), raw.end(), [](const Raw& a, const Raw& b) {
      return a.hardness * a.tokens > b.hardness * b.tokens;
    });
  }
  double dearest_total = 0.0;
  for (int i = 0; i < o.num_queries; ++i) {
    Query q;
    q.id = absl::StrCat("q", i);
    double dearest = 0.0;
    for (int j = 0; j < o.num_models; ++j) {
      const double a =
          std::clamp(strength[j] - 0.45 * raw[i].hardness + 0.25 * (unit(rng) - 0.5), 0.0, 1.0);
      q.quality.push_back(a);
      if (o.with_lower) q.quality_lower.push_back(a * (0.6 + 0.4 * unit(rng)));
      q.cost.push_back(price[j] * raw[i].tokens);
      dearest = std::max(dearest, q.cost.back());
    }
    dearest_total += dearest;
    if (o.disallow_probability > 0) {
      const int keep = static_cast<int>(unit(rng) * o.num_models) % o.num_models;
      for (int j = 0; j < o.num_models; ++j) {
        if (j == keep || unit(rng) >= o.disallow_probability) q.allowed.push_back(p.models[j].name);
      }
    }
    p.queries.push_back(std::move(q));
  }
  if (o.budget_fraction >= 0) p.budget = o.budget_fraction * dearest_total;
  return p;
}

RandomInstanceOptions SmallOptions(uint64_t seed) {
  RandomInstanceOptions o;
  o.seed = seed;
  o.num_queries = 1 + static_cast<int>(seed % 7);
  o.num_models = 1 + static_cast<int>((seed / 7) % 3);
  // At least one unlimited model, or nearly every instance is infeasible.
  o.num_limited = static_cast<int>(seed % o.num_models);
  o.slot_fraction = 0.25 + 0.2 * static_cast<double>(seed % 4);
  // The budget is a fraction of the dearest serving; with one model any fraction below 1 is
  // infeasible, so single-model instances run unbudgeted.
  const double budgets[] = {-1.0, 0.3, 0.5, 0.8};
  o.budget_fraction = o.num_models == 1 ? -1.0 : budgets[(seed / 3) % 4];
  o.disallow_probability = seed % 5 == 0 ? 0.4 : 0.0;
  o.adversarial = seed % 2 == 1;
  return o;
}

RandomInstanceOptions LongSearchOptions() {
  const RandomInstanceOptions o = {.num_queries = 32,
                                   .num_models = 8,
                                   .num_limited = 2,
                                   .slot_fraction = 0.2,
                                   .budget_fraction = 0.08,
                                   .seed = 5};
  return o;
}

}  // namespace router::core::testing
