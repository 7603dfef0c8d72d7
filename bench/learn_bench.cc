// Outcome learner benchmark (bench/README.md, "Learning from outcomes"): what learning from
// outcomes adds per call to routerd, on a learner holding a realistic state.
//
//   BM_Record   OutcomeLearner::Record: what each Complete with an outcome pays
//   BM_Adjust   OutcomeLearner::Adjust of one query's M predictions: what each prediction pays on
//               top of Predictor::Predict; arg 1 is the exploration share in percent (0, 5, 100:
//               100 = every query Thompson-sampled, the cost of an explored query)
//
// Arg 0 is the pool shape: 0 = the embedded artifact's (11 models x 20 clusters, every cell
// populated); 1 = a large fleet at the default memory bound (100 models x 1,000 clusters = 100,000
// cells), so the look-ups miss the caches. The learner is first fed 20 outcomes per cell; the
// timed calls then cycle through 65,536 pre-drawn (model, cluster, prior, score) tuples. Each call
// is timed on its own (steady_clock, about 20 ns of overhead): p50_us / p99_us are per-call
// percentiles, mean_us their mean.

#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/bench_stats.h"
#include "benchmark/benchmark.h"
#include "router_core/learn/outcome_learner.h"

namespace router::core {
namespace {

using ::router::bench::Mean;
using ::router::bench::Percentile;

struct Shape {
  int models;
  int clusters;
};
constexpr Shape kShapes[] = {{11, 20}, {100, 1000}};
constexpr size_t kDraws = 65536;

struct Draw {
  int model;
  int cluster;
  double prior;
  double score;
};

struct Fixture {
  std::vector<std::string> names;
  std::unique_ptr<OutcomeLearner> learner;
  std::vector<Draw> draws;
};

std::unique_ptr<Fixture> MakeFixture(Shape shape, double exploration) {
  auto f = std::make_unique<Fixture>();
  for (int j = 0; j < shape.models; ++j) f->names.push_back(absl::StrCat("provider/model-", j));
  OutcomeLearnerOptions options;
  options.exploration = exploration;
  absl::StatusOr<std::unique_ptr<OutcomeLearner>> learner = OutcomeLearner::Create(options);
  if (!learner.ok()) return nullptr;
  f->learner = *std::move(learner);
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  for (int round = 0; round < 20; ++round) {
    for (int j = 0; j < shape.models; ++j) {
      for (int c = 0; c < shape.clusters; ++c) {
        const double prior = unit(rng);
        if (!f->learner->Record(f->names[j], c, prior, unit(rng) < prior ? 1.0 : 0.0).ok()) {
          return nullptr;
        }
      }
    }
  }
  for (size_t i = 0; i < kDraws; ++i) {
    const double prior = unit(rng);
    f->draws.push_back({static_cast<int>(rng() % static_cast<uint64_t>(shape.models)),
                        static_cast<int>(rng() % static_cast<uint64_t>(shape.clusters)), prior,
                        unit(rng) < prior ? 1.0 : 0.0});
  }
  return f;
}

template <typename Call>
void TimeCalls(benchmark::State& state, Call call) {
  std::vector<double> us;
  us.reserve(static_cast<size_t>(state.max_iterations));
  size_t i = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    call(i++);
    const auto t1 = std::chrono::steady_clock::now();
    us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  state.counters["p50_us"] = Percentile(us, 0.5);
  state.counters["p99_us"] = Percentile(us, 0.99);
  state.counters["mean_us"] = Mean(us);
}

void BM_Record(benchmark::State& state) {
  const Shape shape = kShapes[state.range(0)];
  std::unique_ptr<Fixture> f = MakeFixture(shape, 0.0);
  if (f == nullptr) {
    state.SkipWithError("cannot build the learner");
    return;
  }
  state.SetLabel(absl::StrCat(shape.models, " models x ", shape.clusters, " clusters"));
  bool ok = true;
  TimeCalls(state, [&](size_t i) {
    const Draw& d = f->draws[i % kDraws];
    ok &= f->learner->Record(f->names[static_cast<size_t>(d.model)], d.cluster, d.prior, d.score)
              .ok();
  });
  if (!ok) state.SkipWithError("Record failed");
}

void BM_Adjust(benchmark::State& state) {
  const Shape shape = kShapes[state.range(0)];
  std::unique_ptr<Fixture> f = MakeFixture(shape, static_cast<double>(state.range(1)) / 100.0);
  if (f == nullptr) {
    state.SkipWithError("cannot build the learner");
    return;
  }
  // One query's predictions cover the first 11 models (the embedded artifact's pool size).
  const size_t m = 11;
  const std::vector<std::string> models(f->names.begin(), f->names.begin() + m);
  std::vector<double> quality(m), lower(m);
  std::mt19937_64 rng(2);
  int64_t explored = 0;
  state.SetLabel(absl::StrCat(shape.models, " models x ", shape.clusters, " clusters, ", m,
                              " predicted, exploration ", state.range(1), "%"));
  TimeCalls(state, [&](size_t i) {
    const Draw& d = f->draws[i % kDraws];
    for (size_t j = 0; j < m; ++j) {
      quality[j] = d.prior;
      lower[j] = 0.8 * d.prior;
    }
    explored += f->learner->Adjust(models, d.cluster, absl::MakeSpan(quality),
                                   absl::MakeSpan(lower), rng);
    benchmark::DoNotOptimize(quality.data());
  });
  state.counters["explored_share"] =
      static_cast<double>(explored) / static_cast<double>(state.iterations());
}

BENCHMARK(BM_Record)->Arg(0)->Arg(1)->Iterations(200000);
BENCHMARK(BM_Adjust)
    ->Args({0, 0})
    ->Args({0, 5})
    ->Args({0, 100})
    ->Args({1, 0})
    ->Args({1, 5})
    ->Iterations(200000);

}  // namespace
}  // namespace router::core

BENCHMARK_MAIN();
