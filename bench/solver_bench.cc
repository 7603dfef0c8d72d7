// Solver benchmark: the orchestrated fast path (Lagrangian + transportation, CBC only if the
// certified gap is above 0.5%) against plain CBC (1% gap, no incumbent) on the same instances, in
// the same run. Instances: random batches shaped like routing data (tests/router_core/testing),
// a quarter of the models self-hosted with binding slots, budget at 20% of the dearest spend, half
// of them adversarial (hard, expensive queries first). Each iteration solves the next instance of
// a pool of 50; counters report the median and p99 wall time in ms and the mean and max certified
// relative gap (upper bound from the solver's own proof, never from a reference solution).
// BM_SmallBatch (and BM_SmallBatchGamma, for batch_gamma) compares, on the same small batches, the
// small-batch search before CBC (the default) with CBC straight after the fast solver
// (policy.small_batch_max_queries 0).

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "bench/bench_stats.h"
#include "benchmark/benchmark.h"
#include "router_core/solve/admission.h"
#include "router_core/solve/solve_batch.h"
#include "router_core/solve/cbc_solver.h"
#include "tests/router_core/testing/random_instance.h"

namespace router::core {
namespace {

constexpr int kPool = 50;

// Half of the pool adversarial, or all of it; seeds from first_seed on.
std::vector<BatchProblem> MakePool(int n, int m, int first_seed = 1000,
                                   bool all_adversarial = false) {
  std::vector<BatchProblem> pool;
  for (int s = 0; s < kPool; ++s) {
    testing::RandomInstanceOptions o;
    o.seed = first_seed + s;
    o.num_queries = n;
    o.num_models = m;
    o.num_limited = m / 4;
    o.slot_fraction = 0.5 / o.num_limited;  // self-hosted could take half the batch
    o.budget_fraction = 0.2;
    o.adversarial = all_adversarial || s % 2 == 1;
    pool.push_back(testing::RandomProblem(o));
  }
  return pool;
}

using ::router::bench::Percentile;

void Report(benchmark::State& state, const std::vector<double>& ms, const std::vector<double>& gap) {
  state.counters["p50_ms"] = Percentile(ms, 0.5);
  state.counters["p99_ms"] = Percentile(ms, 0.99);
  double sum = 0, worst = 0;
  for (double g : gap) {
    sum += g;
    worst = std::max(worst, g);
  }
  state.counters["gap_mean_pct"] = 100.0 * sum / static_cast<double>(gap.size());
  state.counters["gap_max_pct"] = 100.0 * worst;
}

// Solves the pool's instances with SolveBatch under `options`, each first adjusted by `configure`,
// reports wall time and certified gap, and returns the wall times in ms.
template <typename Configure>
std::vector<double> RunSolveBatchOn(benchmark::State& state, const std::vector<BatchProblem>& pool,
                     Configure configure, const SolveOptions& options) {
  std::vector<double> ms, gap;
  double objective = 0.0;
  size_t k = 0;
  for (auto _ : state) {
    BatchProblem p = pool[k++ % pool.size()];
    p.solve = options;
    p.solve.relative_gap = 0.005;
    configure(p);
    const auto t0 = std::chrono::steady_clock::now();
    absl::StatusOr<Solution> s = SolveBatch(p);
    const auto t1 = std::chrono::steady_clock::now();
    if (!s.ok()) {
      state.SkipWithError(std::string(s.status().message()).c_str());
      return {};
    }
    ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    gap.push_back(RelativeGap(*s));
    objective += s->objective;
  }
  Report(state, ms, gap);
  // Same pool, same order: comparable between configurations of one benchmark.
  state.counters["objective_mean"] = objective / static_cast<double>(ms.size());
  return ms;
}

// The same on a pool of random instances of state.range(0) queries and state.range(1) models.
template <typename Configure>
void RunSolveBatch(benchmark::State& state, Configure configure) {
  const auto pool = MakePool(static_cast<int>(state.range(0)), static_cast<int>(state.range(1)));
  RunSolveBatchOn(state, pool, configure, SolveOptions());
}

void BM_FastPath(benchmark::State& state) {
  RunSolveBatch(state, [](BatchProblem& p) { p.solve.time_limit = absl::Milliseconds(20); });
}

// The fast path's own certificate on fifty all-adversarial batches (other seeds than the pool of
// BM_FastPath), with no time pressure and no CBC: the gap it proves by itself.
void BM_FastPathAdversarial(benchmark::State& state) {
  const auto pool = MakePool(static_cast<int>(state.range(0)), static_cast<int>(state.range(1)),
                             5000, /*all_adversarial=*/true);
  SolveOptions options;
  options.use_cbc = false;
  options.time_limit = absl::Seconds(10);
  RunSolveBatchOn(state, pool, [](BatchProblem&) {}, options);
}

// batch_gamma (Bertsimas-Sim, gamma = 10% of the batch): the theta grid runs up to 40 nominal
// fast solves, then CBC on the robust model while time remains (time limit 50 ms).
void BM_FastPathGamma(benchmark::State& state) {
  RunSolveBatch(state, [](BatchProblem& p) {
    p.policy = PolicyKind::kBatchGamma;
    p.params.gamma = 0.1 * static_cast<double>(p.queries.size());
    p.solve.time_limit = absl::Milliseconds(50);
  });
}

// Small batches, as a lightly loaded unary Route forms them at a 1 ms delay (4-13 queries), and
// shaped like UniRoute's predictions: every query is one of `kinds` distinct rows (0 = all
// distinct). Args: queries, models, kinds, small-batch search on (1) or off (0).
template <typename Configure>
void RunSmallBatch(benchmark::State& state, Configure configure) {
  auto pool = MakePool(static_cast<int>(state.range(0)), static_cast<int>(state.range(1)));
  const size_t kinds = static_cast<size_t>(state.range(2));
  if (kinds > 0) {
    for (BatchProblem& p : pool) {
      for (size_t i = kinds; i < p.queries.size(); ++i) {
        p.queries[i] = p.queries[i % kinds];
        p.queries[i].id = std::to_string(i);
      }
    }
  }
  SolveOptions options;
  options.small_batch_max_queries = state.range(3) != 0 ? 32 : 0;
  RunSolveBatchOn(state, pool, configure, options);
}

void BM_SmallBatch(benchmark::State& state) {
  RunSmallBatch(state, [](BatchProblem& p) { p.solve.time_limit = absl::Milliseconds(20); });
}

// The same for batch_gamma, gamma = a quarter of the batch: the small-batch search per candidate
// theta (small_batch_gamma.h) after the theta grid, or straight to CBC.
void BM_SmallBatchGamma(benchmark::State& state) {
  RunSmallBatch(state, [](BatchProblem& p) {
    p.policy = PolicyKind::kBatchGamma;
    p.params.gamma = 0.25 * static_cast<double>(p.queries.size());
    p.solve.time_limit = absl::Milliseconds(20);
  });
}

void BM_PlainCbc(benchmark::State& state) {
  const auto pool = MakePool(static_cast<int>(state.range(0)), static_cast<int>(state.range(1)));
  std::vector<double> ms, gap;
  size_t k = 0;
  for (auto _ : state) {
    const Instance inst = BuildInstance(pool[k++ % pool.size()], ValueSource::kQuality);
    CbcOptions o;
    o.relative_gap = 0.01;
    o.time_limit = absl::Seconds(5);
    const auto t0 = std::chrono::steady_clock::now();
    absl::StatusOr<CbcResult> r = SolveWithCbc(inst, o);
    const auto t1 = std::chrono::steady_clock::now();
    if (!r.ok()) {
      state.SkipWithError(std::string(r.status().message()).c_str());
      return;
    }
    ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    gap.push_back(r->model_of_query.empty()
                      ? 1.0
                      : std::max(0.0, r->best_bound - r->objective) / std::abs(r->best_bound));
  }
  Report(state, ms, gap);
}

// Deadlines: every decision must leave by its time limit (plus 1 ms), whatever the gap or the
// policy. Args: queries, models, time limit in ms, relative gap in parts per million, policy (0
// batch, 1 batch_gamma with gamma = 10% of the batch), pool (0 the usual pool, half adversarial;
// 1 a pool of 50 other seeds, all adversarial). Reports the wall time of SolveBatch, its worst
// overrun of the limit and how many decisions overran it by more than 1 ms.
void BM_Deadline(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  const int m = static_cast<int>(state.range(1));
  const std::vector<BatchProblem> pool =
      state.range(5) == 0 ? MakePool(n, m) : MakePool(n, m, 5000, /*all_adversarial=*/true);
  const absl::Duration limit = absl::Milliseconds(state.range(2));
  const std::vector<double> ms = RunSolveBatchOn(
      state, pool,
      [&](BatchProblem& p) {
        p.solve.time_limit = limit;
        p.solve.relative_gap = static_cast<double>(state.range(3)) * 1e-6;
        if (state.range(4) == 1) {
          p.policy = PolicyKind::kBatchGamma;
          p.params.gamma = 0.1 * static_cast<double>(p.queries.size());
        }
      },
      SolveOptions());
  if (ms.empty()) return;
  const double worst = *std::max_element(ms.begin(), ms.end());
  state.counters["max_ms"] = worst;
  state.counters["worst_over_limit_ms"] = worst - absl::ToDoubleMilliseconds(limit);
  state.counters["over_limit_plus_1ms"] = static_cast<double>(
      std::count_if(ms.begin(), ms.end(),
                    [&](double t) { return t > absl::ToDoubleMilliseconds(limit) + 1.0; }));
}

// The floor under BM_Deadline's tail: how long this thread goes without running although it never
// blocks. A busy loop reads the clock for 20 s (about as long as all BM_Deadline rows) and counts
// the gaps between consecutive readings longer than 1 ms (the thread was descheduled: other
// threads, the kernel, or the hypervisor taking the virtual CPU away). Run it with BM_Deadline, at
// the same priority, so that both see the same machine.
void BM_PlatformStalls(benchmark::State& state) {
  const absl::Duration run = absl::Seconds(state.range(0));
  int gaps_over_1ms = 0;
  double worst_ms = 0.0;
  for (auto _ : state) {
    auto previous = std::chrono::steady_clock::now();
    const auto end = previous + absl::ToChronoNanoseconds(run);
    while (previous < end) {
      const auto now = std::chrono::steady_clock::now();
      const double gap_ms = std::chrono::duration<double, std::milli>(now - previous).count();
      if (gap_ms > 1.0) ++gaps_over_1ms;
      worst_ms = std::max(worst_ms, gap_ms);
      previous = now;
    }
  }
  state.counters["gaps_over_1ms"] = gaps_over_1ms;
  state.counters["max_gap_ms"] = worst_ms;
}

void Sizes(benchmark::internal::Benchmark* b) {
  for (int n : {100, 256, 1024}) {
    for (int m : {11, 20, 32}) b->Args({n, m});
  }
}

BENCHMARK(BM_FastPath)->Apply(Sizes)->Iterations(200)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_FastPathGamma)->Args({100, 20})->Args({256, 20})->Iterations(50)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_SmallBatch)
    ->ArgsProduct({{4, 8, 13, 24}, {11}, {0, 3}, {0, 1}})
    ->Iterations(200)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_SmallBatchGamma)
    ->ArgsProduct({{4, 8, 13, 24, 32}, {11, 32}, {0, 3}, {0, 1}})
    ->Iterations(200)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_FastPathAdversarial)->Apply(Sizes)->Iterations(50)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Deadline)
    ->ArgsProduct({{256}, {20}, {10, 20}, {0, 5000}, {0, 1}, {0, 1}})
    ->ArgsProduct({{1024}, {32}, {10, 20}, {0, 5000}, {0, 1}, {0, 1}})
    ->Iterations(50)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_PlatformStalls)->Arg(20)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_PlainCbc)->Apply(Sizes)->Iterations(10)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace router::core

BENCHMARK_MAIN();
