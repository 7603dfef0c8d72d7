// Batch decision benchmark: the cost of one RouteBatch call (batch_engine.h) in process, the work
// routerd's batch thread does per batch besides answering: the ledger snapshot (with lease
// expiry), the pool mapping, the solve, the commit and the per-query outcomes. Queries are shaped
// like routing data (tests/router_core/testing), with predictions as Predictor makes them; the
// pool has 11 models (2 self-hosted with 8 and 4 slots), like deploy/routerd.yaml's, with names as
// long as real ones (longer than std::string's inline buffer); the per-batch cap is 20% of what
// sending every query to its dearest model would cost. Leases run out 2 s after their commit on a
// fake ledger clock advanced 10 ms per batch, so in the measured steady state every batch expires
// as many leases as it commits (load_bench's --lease_timeout_s 2 without Complete calls).
// Arguments: batch size N. Counters: median and p99 wall time per batch divided by N, in us.

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "bench/bench_stats.h"
#include "bench/pending_queries.h"
#include "benchmark/benchmark.h"
#include "router_core/serving/batch_engine.h"
#include "router_core/serving/local_ledger.h"
#include "tests/router_core/testing/fake_clock.h"
#include "tests/router_core/testing/random_instance.h"

namespace router::core {
namespace {

using ::router::bench::Percentile;

void BM_RouteBatch(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  constexpr int kModels = 11;
  testing::RandomInstanceOptions o;
  o.seed = 11;
  o.num_queries = 4096;
  o.num_models = kModels;
  o.num_limited = 0;  // every model priced; models 0 and 1 get their slots below
  o.budget_fraction = 0.2;
  const BatchProblem stream = testing::RandomProblem(o);

  auto names = std::make_shared<std::vector<std::string>>();
  std::vector<DeployedModel> pool;
  std::vector<LedgerModel> ledger_models;
  for (int j = 0; j < kModels; ++j) {
    names->push_back(absl::StrCat("provider-", j, "/model-name-", j));
    const std::optional<int64_t> slots = j == 0   ? std::optional<int64_t>(8)
                                         : j == 1 ? std::optional<int64_t>(4)
                                                  : std::nullopt;
    pool.push_back({names->back(), slots});
    ledger_models.push_back({names->back(), slots});
  }
  const std::vector<PendingQuery> queries = bench::PendingQueries(stream, names);
  testing::FakeClock ledger_clock;
  LedgerOptions ledger_options;
  ledger_options.lease_timeout = absl::Seconds(2);
  auto ledger = LocalLedger::Create(ledger_options, ledger_models, &ledger_clock);
  if (!ledger.ok()) {
    state.SkipWithError("ledger setup failed");
    return;
  }
  BatchPolicy policy;
  policy.avg_cost_cap_usd = *stream.budget / static_cast<double>(stream.queries.size());

  size_t next = 0;
  int64_t batch = 0;
  auto decide = [&] {
    if (next + n > queries.size()) next = 0;
    const BatchOutcome out = RouteBatch(absl::MakeConstSpan(queries).subspan(next, n), pool, policy,
                                        **ledger, Clock::Real(), absl::StrCat("b", batch++));
    next += n;
    ledger_clock.Advance(absl::Milliseconds(10));
    return out.queries.size();
  };
  // Fill the ledger to its steady state: 2 s of leases at 10 ms per batch.
  for (int k = 0; k < 250; ++k) decide();

  std::vector<double> us_per_query;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(decide());
    const auto t1 = std::chrono::steady_clock::now();
    us_per_query.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count() /
                           static_cast<double>(n));
  }
  state.counters["p50_us_per_query"] = Percentile(us_per_query, 0.5);
  state.counters["p99_us_per_query"] = Percentile(us_per_query, 0.99);
}

BENCHMARK(BM_RouteBatch)->Arg(256)->Arg(64)->Iterations(2000)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace router::core

BENCHMARK_MAIN();
