// Prediction cost benchmark (bench/README.md, "Prediction cost"): what routerd pays per query
// before routing, on the real prompt texts of routerbench_subset (all 3,178, cycled in file order).
//
//   BM_Featurize        Featurizer::Featurize (text -> 256 floats) of the artifact's featurizer
//   BM_FeaturizeEvicted the same, with the L1 and L2 caches swept (2 MiB written, untimed) before
//                       each call, as under load, where gRPC's work between two queries on a thread
//                       evicts the featurizer's tables (bench/README.md, "Load benchmark")
//   BM_Estimator        QualityEstimator::Predict on features featurized before timing starts
//   BM_Predictor        Predictor::Predict on the text: featurize + estimate + cost model, as the
//                       gRPC handler calls it (server/query_intake.cc)
//
// Each runs on the embedded default artifact (UniRoute, deploy/models/routerbench_uniroute.cbor,
// path from CMake) and on a kNN artifact for comparison, read from $ROUTER_KNN_ARTIFACT (default
// /tmp/routerbench_knn.cbor; bench/README.md gives the router_train command); the kNN runs are
// skipped with an error when that file is missing. Every call is timed on its own
// (steady_clock, about 20 ns of overhead); counters p50_us / p99_us are per-call percentiles,
// mean_us their mean.

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "bench/bench_stats.h"
#include "benchmark/benchmark.h"
#include "nlohmann/json.hpp"
#include "router_core/estimate/artifact.h"
#include "router_core/estimate/predictor.h"

namespace router::core {
namespace {

constexpr char kPrompts[] = ROUTER_SOURCE_DIR "/../shared/data/routerbench_subset/derived/prompts.jsonl";

enum Kind : int64_t { kEmbedded = 0, kKnn = 1 };

absl::StatusOr<std::vector<std::string>> LoadTexts() {
  std::ifstream in(kPrompts);
  if (!in) return absl::NotFoundError(absl::StrCat(kPrompts, ": cannot be read"));
  std::vector<std::string> texts;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const nlohmann::json row = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!row.is_object() || !row.contains("text") || !row["text"].is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(kPrompts, ": a line has no string \"text\""));
    }
    texts.push_back(row["text"].get<std::string>());
  }
  if (texts.empty()) return absl::InvalidArgumentError(absl::StrCat(kPrompts, ": no prompts"));
  return texts;
}

std::string ArtifactPath(Kind kind) {
  if (kind == kEmbedded) return ROUTER_EMBEDDED_ARTIFACT;
  const char* env = std::getenv("ROUTER_KNN_ARTIFACT");
  return env != nullptr ? env : "/tmp/routerbench_knn.cbor";
}

// Everything a benchmark needs for one artifact, loaded once per process.
struct Fixture {
  std::vector<std::string> texts;
  std::unique_ptr<Predictor> predictor;
  std::vector<float> features;  // texts.size() x dim, featurized up front
};

absl::StatusOr<const Fixture*> GetFixture(Kind kind) {
  static std::map<Kind, absl::StatusOr<std::unique_ptr<Fixture>>>* cache =
      new std::map<Kind, absl::StatusOr<std::unique_ptr<Fixture>>>();
  auto it = cache->find(kind);
  if (it == cache->end()) {
    auto load = [kind]() -> absl::StatusOr<std::unique_ptr<Fixture>> {
      auto fixture = std::make_unique<Fixture>();
      absl::StatusOr<std::vector<std::string>> texts = LoadTexts();
      if (!texts.ok()) return texts.status();
      fixture->texts = *std::move(texts);
      absl::StatusOr<Artifact> artifact = ReadArtifactFile(ArtifactPath(kind));
      if (!artifact.ok()) return artifact.status();
      absl::StatusOr<Predictor> predictor = MakePredictor(*std::move(artifact));
      if (!predictor.ok()) return predictor.status();
      fixture->predictor = std::make_unique<Predictor>(*std::move(predictor));
      if (!fixture->predictor->featurizer().has_value()) {
        return absl::FailedPreconditionError("artifact has no featurizer");
      }
      const size_t dim = static_cast<size_t>(fixture->predictor->feature_dim());
      fixture->features.resize(fixture->texts.size() * dim);
      for (size_t i = 0; i < fixture->texts.size(); ++i) {
        absl::Status s = fixture->predictor->featurizer()->Featurize(
            fixture->texts[i], absl::MakeSpan(fixture->features.data() + i * dim, dim));
        if (!s.ok()) return s;
      }
      return fixture;
    };
    it = cache->emplace(kind, load()).first;
  }
  if (!it->second.ok()) return it->second.status();
  return it->second->get();
}

using ::router::bench::Mean;
using ::router::bench::Percentile;

// Runs `call(i)` for i = 0, 1, ... (the caller cycles its inputs), timing each call; `before(i)`
// runs first, untimed.
template <typename Call, typename Before>
void TimeCalls(benchmark::State& state, Call call, Before before) {
  std::vector<double> us;
  us.reserve(static_cast<size_t>(state.max_iterations));
  size_t i = 0;
  for (auto _ : state) {
    before(i);
    const auto t0 = std::chrono::steady_clock::now();
    const absl::Status s = call(i++);
    const auto t1 = std::chrono::steady_clock::now();
    if (!s.ok()) {
      state.SkipWithError(std::string(s.message()).c_str());
      return;
    }
    us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  state.counters["p50_us"] = Percentile(us, 0.5);
  state.counters["p99_us"] = Percentile(us, 0.99);
  state.counters["mean_us"] = Mean(us);
}

template <typename Call>
void TimeCalls(benchmark::State& state, Call call) {
  TimeCalls(state, call, [](size_t) {});
}

// Skips the benchmark (with the reason) unless the fixture loads.
const Fixture* FixtureOrSkip(benchmark::State& state) {
  absl::StatusOr<const Fixture*> fixture = GetFixture(static_cast<Kind>(state.range(0)));
  if (!fixture.ok()) {
    state.SkipWithError(
        absl::StrCat(ArtifactPath(static_cast<Kind>(state.range(0))), ": ", fixture.status().message())
            .c_str());
    return nullptr;
  }
  state.SetLabel(state.range(0) == kEmbedded ? "embedded uniroute" : "knn");
  return *fixture;
}

// Writes over 2 MiB, twice the 1 MiB L2 of this VM's cores (AMD family 26, Zen 5), so that what
// the next call reads comes from L3 or memory.
void EvictCaches() {
  static std::vector<uint64_t>* sweep = new std::vector<uint64_t>(size_t{2} << 20 >> 3);
  for (uint64_t& word : *sweep) word += 1;
  benchmark::ClobberMemory();
}

// Times the artifact's featurizer on each prompt in turn, running `before(i)` (untimed) first.
template <typename Before>
void TimeFeaturize(benchmark::State& state, Before before) {
  const Fixture* f = FixtureOrSkip(state);
  if (f == nullptr) return;
  const Featurizer& featurizer = *f->predictor->featurizer();
  std::vector<float> out(static_cast<size_t>(featurizer.dim()));
  TimeCalls(
      state,
      [&](size_t i) {
        const absl::Status s =
            featurizer.Featurize(f->texts[i % f->texts.size()], absl::MakeSpan(out));
        benchmark::DoNotOptimize(out.data());
        return s;
      },
      before);
}

void BM_Featurize(benchmark::State& state) {
  TimeFeaturize(state, [](size_t) {});
}

void BM_FeaturizeEvicted(benchmark::State& state) {
  TimeFeaturize(state, [](size_t) { EvictCaches(); });
}

void BM_Estimator(benchmark::State& state) {
  const Fixture* f = FixtureOrSkip(state);
  if (f == nullptr) return;
  const QualityEstimator& estimator = f->predictor->estimator();
  const size_t dim = static_cast<size_t>(estimator.feature_dim());
  std::vector<QualityEstimate> out(estimator.models().size());
  TimeCalls(state, [&](size_t i) {
    const float* x = f->features.data() + (i % f->texts.size()) * dim;
    const absl::Status s = estimator.Predict(absl::MakeConstSpan(x, dim), absl::MakeSpan(out));
    benchmark::DoNotOptimize(out.data());
    return s;
  });
}

void BM_Predictor(benchmark::State& state) {
  const Fixture* f = FixtureOrSkip(state);
  if (f == nullptr) return;
  TimeCalls(state, [&](size_t i) {
    PredictRequest request;
    request.text = f->texts[i % f->texts.size()];
    absl::StatusOr<Predictions> out = f->predictor->Predict(request);
    benchmark::DoNotOptimize(out);
    return out.status();
  });
}

// 2 x 3,178 calls: every prompt twice, so the percentiles cover the whole text-length range.
constexpr int kIterations = 6356;

BENCHMARK(BM_Featurize)->Arg(kEmbedded)->Arg(kKnn)->Iterations(kIterations)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_FeaturizeEvicted)
    ->Arg(kEmbedded)
    ->Arg(kKnn)
    ->Iterations(kIterations)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Estimator)->Arg(kEmbedded)->Arg(kKnn)->Iterations(kIterations)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Predictor)->Arg(kEmbedded)->Arg(kKnn)->Iterations(kIterations)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace router::core

BENCHMARK_MAIN();
