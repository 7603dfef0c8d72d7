// Inline decision benchmark: the cost of one InlineRouter::Route call in process, with
// the ledger commit, on a stream of random queries shaped like routing data
// (tests/router_core/testing), windows of 100 arrivals capped at 20% of the dearest spend,
// forecast horizon H. Arguments: M models, H, and whether a quarter of the models are self-hosted
// with binding slots (assignments complete 50 arrivals after their decision, so slots recycle).
// Counters: median and p99 wall time per decision in microseconds, the share of decisions the
// guard changed, and the share served. Target: p99 <= 100 us at M = 20, H = 100.

#include <algorithm>
#include <chrono>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "bench/bench_stats.h"
#include "bench/pending_queries.h"
#include "benchmark/benchmark.h"
#include "router_core/serving/inline_router.h"
#include "router_core/serving/local_ledger.h"
#include "tests/router_core/testing/random_instance.h"

namespace router::core {
namespace {

using ::router::bench::Percentile;

void BM_InlineDecision(benchmark::State& state) {
  const int m = static_cast<int>(state.range(0));
  const bool slots = state.range(2) != 0;
  testing::RandomInstanceOptions o;
  o.seed = 7;
  o.num_queries = 2000;
  o.num_models = m;
  o.num_limited = slots ? m / 4 : 0;
  o.slot_fraction = 0.004;  // 8 slots each: binding at 100 arrivals per window
  o.budget_fraction = 0.2;
  const BatchProblem stream = testing::RandomProblem(o);

  auto names = std::make_shared<std::vector<std::string>>();
  std::vector<DeployedModel> pool;
  std::vector<LedgerModel> ledger_models;
  for (const ModelSpec& spec : stream.models) {
    names->push_back(spec.name);
    pool.push_back({spec.name, spec.slots});
    ledger_models.push_back({spec.name, spec.slots});
  }
  const std::vector<PendingQuery> queries = bench::PendingQueries(stream, names);
  auto ledger = LocalLedger::Create(LedgerOptions(), ledger_models);
  InlineOptions options;
  options.window_arrivals = 100;
  options.forecast_horizon = static_cast<int>(state.range(1));
  auto router = InlineRouter::Create(options, ledger->get(), &Clock::Real());
  if (!ledger.ok() || !router.ok()) {
    state.SkipWithError("setup failed");
    return;
  }
  BatchPolicy policy;
  policy.avg_cost_cap_usd = *stream.budget / static_cast<double>(stream.queries.size());

  std::vector<double> us;
  std::deque<std::string> open;
  int64_t guarded = 0, served = 0;
  size_t k = 0;
  for (auto _ : state) {
    const PendingQuery& q = queries[k++ % queries.size()];
    const auto t0 = std::chrono::steady_clock::now();
    InlineDecision d = (*router)->Route(q, pool, policy);
    const auto t1 = std::chrono::steady_clock::now();
    us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    guarded += d.guarded;
    if (d.outcome.status.ok()) {
      ++served;
      open.push_back(std::move(d.outcome.assignment_id));
    }
    if (open.size() > 50) {
      (void)(*ledger)->Complete(open.front(), std::nullopt);
      open.pop_front();
    }
  }
  state.counters["p50_us"] = Percentile(us, 0.5);
  state.counters["p99_us"] = Percentile(us, 0.99);
  state.counters["guarded"] = static_cast<double>(guarded) / static_cast<double>(us.size());
  state.counters["served"] = static_cast<double>(served) / static_cast<double>(us.size());
}

// {M, H, slots binding}
BENCHMARK(BM_InlineDecision)
    ->Args({20, 100, 0})
    ->Args({20, 100, 1})
    ->Args({11, 100, 0})
    ->Args({32, 100, 0})
    ->Args({20, 300, 0})
    ->Iterations(5000)
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace router::core

BENCHMARK_MAIN();
