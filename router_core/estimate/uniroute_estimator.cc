#include "router_core/estimate/uniroute_estimator.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "router_core/estimate/beta_distribution.h"
#include "router_core/estimate/estimator_state.h"
#include "router_core/estimate/estimator_support.h"
#include "router_core/json/json_reader.h"

namespace router::core {
namespace {

using Json = nlohmann::json;
using estimate_internal::Element;
using estimate_internal::Invalid;

constexpr estimate_internal::StateLayout kLayout = {.kind = UniRouteEstimator::kKind, .version = 1};

// Dot products and distances keep kLanes independent partial sums: a single running sum may not be
// reassociated without -ffast-math, so it runs at one add latency per dimension, while the lanes
// vectorize. The lanes are combined in a fixed tree order, so the result does not depend on the
// compiler's choices.
constexpr int kLanes = 8;

double CombineLanes(double (&lanes)[kLanes]) {
  for (int l = 0; l < 4; ++l) lanes[l] += lanes[l + 4];
  for (int l = 0; l < 2; ++l) lanes[l] += lanes[l + 2];
  return lanes[0] + lanes[1];
}

double SquaredDistance(const double* a, const double* b, int dim) {
  double lanes[kLanes] = {};
  int k = 0;
  for (; k + kLanes <= dim; k += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const double diff = a[k + l] - b[k + l];
      lanes[l] += diff * diff;
    }
  }
  for (int l = 0; k < dim; ++k, ++l) {
    const double diff = a[k] - b[k];
    lanes[l] += diff * diff;
  }
  return CombineLanes(lanes);
}

// Always inlined, so that it is compiled for the instruction set of its caller (CosineSimilarities).
[[gnu::always_inline]] inline double Dot(const double* a, const double* b, int dim) {
  double lanes[kLanes] = {};
  int k = 0;
  for (; k + kLanes <= dim; k += kLanes) {
    for (int l = 0; l < kLanes; ++l) lanes[l] += a[k + l] * b[k + l];
  }
  for (int l = 0; k < dim; ++k, ++l) lanes[l] += a[k] * b[k];
  return CombineLanes(lanes);
}

// sims[c] = Dot(unit, centroids[c]) for every centroid.
[[gnu::always_inline]] inline void CosineSimilaritiesBody(
    const double* unit, const std::vector<std::vector<double>>& centroids, int dim, double* sims) {
  for (size_t c = 0; c < centroids.size(); ++c) sims[c] = Dot(unit, centroids[c].data(), dim);
}

#if defined(__x86_64__) || defined(__i386__)
// The same code compiled for AVX, chosen at run time where the CPU has it: 4 double lanes per
// instruction instead of SSE2's 2 halve the dot products. Results are bit-identical: the lanes and
// the order of every operation are the same, and AVX does not include FMA, so no multiply can be
// fused with its add (as in knn_estimator.cc; checked: router_train writes the same artifact).
[[gnu::target("avx")]] void CosineSimilaritiesAvx(
    const double* unit, const std::vector<std::vector<double>>& centroids, int dim, double* sims) {
  CosineSimilaritiesBody(unit, centroids, dim, sims);
}
#endif

void CosineSimilarities(const double* unit, const std::vector<std::vector<double>>& centroids,
                        int dim, double* sims) {
#if defined(__x86_64__) || defined(__i386__)
  static const bool has_avx = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx") != 0;
  }();
  if (has_avx) return CosineSimilaritiesAvx(unit, centroids, dim, sims);
#endif
  CosineSimilaritiesBody(unit, centroids, dim, sims);
}

int ArgMax(absl::Span<const double> values) {
  // Ties go to the lowest index, so the assignment is deterministic.
  return static_cast<int>(std::max_element(values.begin(), values.end()) - values.begin());
}

absl::string_view MetricName(ClusterMetric metric) {
  return metric == ClusterMetric::kCosine ? "cosine" : "euclidean";
}

// Row-major unit-normalised copy of the features.
std::vector<double> NormalizedRows(const FeatureMatrix& matrix) {
  std::vector<double> out;
  out.reserve(matrix.values.size());
  for (int64_t i = 0; i < matrix.rows(); ++i) {
    const std::vector<double> row = estimate_internal::NormalizedRow(matrix.row(i));
    out.insert(out.end(), row.begin(), row.end());
  }
  return out;
}

// k-means++ seeding followed by Lloyd iterations on unit-normalised rows `x` (n x dim).
absl::StatusOr<std::vector<std::vector<double>>> KMeans(const std::vector<double>& x, int64_t n,
                                                        int dim, const UniRouteOptions& options) {
  const int k_count = options.num_clusters;
  estimate_internal::SeededRandom random(options.seed);
  auto point = [&](int64_t i) { return x.data() + i * dim; };

  // k-means++: each next centre is drawn with probability proportional to the squared distance to
  // the nearest centre chosen so far (Arthur and Vassilvitskii 2007), for both metrics.
  std::vector<std::vector<double>> centroids;
  centroids.reserve(static_cast<size_t>(k_count));
  const int64_t first = static_cast<int64_t>(random.Below(static_cast<uint64_t>(n)));
  centroids.emplace_back(point(first), point(first) + dim);
  std::vector<double> nearest2(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) nearest2[i] = SquaredDistance(point(i), point(first), dim);
  while (static_cast<int>(centroids.size()) < k_count) {
    double total = 0.0;
    for (double d : nearest2) total += d;
    if (!(total > 0.0)) {
      return Invalid("num_clusters",
                     absl::StrCat(k_count, " exceeds the number of distinct training prompts (",
                                  centroids.size(), ")"));
    }
    const double target = random.Uniform() * total;
    double cumulative = 0.0;
    int64_t chosen = -1;
    for (int64_t i = 0; i < n; ++i) {
      if (nearest2[i] <= 0.0) continue;
      chosen = i;  // the last candidate absorbs rounding at the top of the range
      cumulative += nearest2[i];
      if (cumulative > target) break;
    }
    centroids.emplace_back(point(chosen), point(chosen) + dim);
    for (int64_t i = 0; i < n; ++i) {
      nearest2[i] = std::min(nearest2[i], SquaredDistance(point(i), point(chosen), dim));
    }
  }

  // Lloyd iterations.
  std::vector<int> assignment(static_cast<size_t>(n), -1);
  for (int iteration = 0; iteration < options.max_iterations; ++iteration) {
    bool changed = false;
    for (int64_t i = 0; i < n; ++i) {
      int best = 0;
      double best_sim = -INFINITY;
      for (int c = 0; c < k_count; ++c) {
        const double sim = options.metric == ClusterMetric::kCosine
                               ? Dot(point(i), centroids[c].data(), dim)
                               : -0.5 * SquaredDistance(point(i), centroids[c].data(), dim);
        if (sim > best_sim) {
          best_sim = sim;
          best = c;
        }
      }
      if (assignment[i] != best) {
        assignment[i] = best;
        changed = true;
      }
    }
    if (!changed) break;

    std::vector<int64_t> size(static_cast<size_t>(k_count), 0);
    for (int64_t i = 0; i < n; ++i) ++size[assignment[i]];
    // An emptied cluster takes the point farthest from its own centroid (from a cluster that can
    // spare it), so K clusters survive and the choice stays deterministic.
    for (int c = 0; c < k_count; ++c) {
      if (size[c] > 0) continue;
      int64_t farthest = -1;
      double farthest2 = -1.0;
      for (int64_t i = 0; i < n; ++i) {
        if (size[assignment[i]] < 2) continue;
        const double d2 = SquaredDistance(point(i), centroids[assignment[i]].data(), dim);
        if (d2 > farthest2) {
          farthest2 = d2;
          farthest = i;
        }
      }
      --size[assignment[farthest]];
      assignment[farthest] = c;
      size[c] = 1;
    }
    for (auto& centroid : centroids) std::fill(centroid.begin(), centroid.end(), 0.0);
    for (int64_t i = 0; i < n; ++i) {
      double* centroid = centroids[assignment[i]].data();
      for (int k = 0; k < dim; ++k) centroid[k] += point(i)[k];
    }
    for (int c = 0; c < k_count; ++c) {
      const double inv = 1.0 / static_cast<double>(size[c]);
      for (double& v : centroids[c]) v *= inv;
      if (options.metric == ClusterMetric::kCosine) {
        const double norm = std::sqrt(Dot(centroids[c].data(), centroids[c].data(), dim));
        // A zero mean (only all-zero rows) stays zero: every unit vector is then equally near.
        if (norm > 0.0) {
          for (double& v : centroids[c]) v /= norm;
        }
      }
    }
  }
  return centroids;
}

absl::StatusOr<UniRouteOptions> ParseOptions(const JsonReader& value) {
  UniRouteOptions options;
  if (absl::Status s = estimate_internal::ReadOptions(
          value,
          {{"num_clusters", &options.num_clusters}, {"max_iterations", &options.max_iterations}},
          {{"temperature", &options.temperature},
           {"prior_strength", &options.prior_strength},
           {"lower_quantile", &options.lower_quantile}},
          &options.seed);
      !s.ok()) {
    return s;
  }
  absl::StatusOr<std::string> metric = value.Get(&JsonReader::String, "metric");
  if (!metric.ok()) return metric.status();
  if (*metric == "cosine") {
    options.metric = ClusterMetric::kCosine;
  } else if (*metric == "euclidean") {
    options.metric = ClusterMetric::kEuclidean;
  } else {
    return Invalid(value.ChildPath("metric"),
                   absl::StrCat("expected \"cosine\" or \"euclidean\", got \"", *metric, "\""));
  }
  if (absl::Status s = estimate_internal::OptionsError(value, ValidateUniRouteOptions(options));
      !s.ok()) {
    return s;
  }
  return options;
}

}  // namespace

absl::Status ValidateUniRouteOptions(const UniRouteOptions& options) {
  if (options.num_clusters < 1) {
    return Invalid("num_clusters", absl::StrCat("must be >= 1, got ", options.num_clusters));
  }
  if (options.max_iterations < 1) {
    return Invalid("max_iterations", absl::StrCat("must be >= 1, got ", options.max_iterations));
  }
  if (!(std::isfinite(options.temperature) && options.temperature >= 0.0)) {
    return Invalid("temperature",
                   absl::StrCat("must be finite and >= 0, got ", options.temperature));
  }
  return estimate_internal::ValidatePosteriorOptions(options.prior_strength,
                                                     options.lower_quantile);
}

std::vector<double> UniRouteEstimator::Similarities(const std::vector<double>& unit) const {
  std::vector<double> sims(centroids_.size());
  SimilaritiesInto(unit.data(), sims.data());
  return sims;
}

void UniRouteEstimator::SimilaritiesInto(const double* unit, double* sims) const {
  if (options_.metric == ClusterMetric::kCosine) {
    CosineSimilarities(unit, centroids_, dim_, sims);
    return;
  }
  for (size_t c = 0; c < centroids_.size(); ++c) {
    sims[c] = -0.5 * SquaredDistance(unit, centroids_[c].data(), dim_);
  }
}

absl::StatusOr<int> UniRouteEstimator::NearestCluster(absl::Span<const float> features) const {
  if (absl::Status s = estimate_internal::CheckFeatureVector(features, dim_); !s.ok()) return s;
  return ArgMax(Similarities(estimate_internal::NormalizedRow(features)));
}

absl::Status UniRouteEstimator::ComputePosterior(ModelStats& stats) const {
  double total_count = 0.0;
  double total_success = 0.0;
  for (size_t c = 0; c < stats.count.size(); ++c) {
    total_count += stats.count[c];
    total_success += stats.success[c];
  }
  // Smoothed (+1/2, +1/2) so that a model perfect or hopeless on every validation prompt still
  // gives a proper Beta prior.
  const double global = (total_success + 0.5) / (total_count + 1.0);
  const double m = options_.prior_strength;
  stats.mean.assign(stats.count.size(), 0.0);
  stats.lower.assign(stats.count.size(), 0.0);
  for (size_t c = 0; c < stats.count.size(); ++c) {
    const double a = stats.success[c] + m * global;
    const double b = std::max(0.0, stats.count[c] - stats.success[c]) + m * (1.0 - global);
    absl::StatusOr<double> q = BetaQuantile(options_.lower_quantile, a, b);
    if (!q.ok()) return q.status();
    stats.mean[c] = a / (a + b);
    stats.lower[c] = std::min(*q, stats.mean[c]);
  }
  return absl::OkStatus();
}

absl::Status UniRouteEstimator::AppendModel(std::string name, ModelStats stats) {
  if (absl::Status s = ComputePosterior(stats); !s.ok()) return s;
  models_.push_back(std::move(name));
  stats_.push_back(std::move(stats));
  return absl::OkStatus();
}

absl::Status UniRouteEstimator::Predict(absl::Span<const float> features,
                                        absl::Span<QualityEstimate> out) const {
  int cluster = 0;
  return PredictWithCluster(features, out, &cluster);
}

absl::Status UniRouteEstimator::PredictWithCluster(absl::Span<const float> features,
                                                   absl::Span<QualityEstimate> out,
                                                   int* cluster) const {
  if (absl::Status s =
          estimate_internal::CheckPredictArguments(features, dim_, out.size(), models_.size());
      !s.ok()) {
    return s;
  }
  // On the stack for the usual sizes (the embedded artifact: 256 features, 20 clusters): a
  // prediction allocates nothing.
  absl::InlinedVector<double, 256> unit(features.size());
  estimate_internal::NormalizeRowInto(features, absl::MakeSpan(unit));
  absl::InlinedVector<double, 32> sims(centroids_.size());
  SimilaritiesInto(unit.data(), sims.data());
  absl::InlinedVector<double, 32> weight(sims.size(), 0.0);
  const int nearest = ArgMax(sims);
  *cluster = nearest;
  if (options_.temperature == 0.0) {
    weight[nearest] = 1.0;
  } else {
    const double best = sims[nearest];
    double total = 0.0;
    for (size_t c = 0; c < sims.size(); ++c) {
      weight[c] = std::exp((sims[c] - best) / options_.temperature);
      total += weight[c];
    }
    for (double& w : weight) w /= total;  // total >= 1: the best cluster contributes exp(0)
  }
  for (size_t j = 0; j < models_.size(); ++j) {
    double quality = 0.0;
    double lower = 0.0;
    for (size_t c = 0; c < weight.size(); ++c) {
      quality += weight[c] * stats_[j].mean[c];
      lower += weight[c] * stats_[j].lower[c];
    }
    // Rounding in the weighted sums can step outside the per-cluster order by an ulp.
    quality = std::clamp(quality, 0.0, 1.0);
    out[j] = {quality, std::clamp(lower, 0.0, quality)};
  }
  return absl::OkStatus();
}

absl::Status UniRouteEstimator::AddModel(absl::string_view name,
                                         const ModelValidation& validation) {
  if (absl::Status s = estimate_internal::CheckNotInPool(name, models_); !s.ok()) return s;
  if (absl::Status s = estimate_internal::CheckModelValidation(name, validation, dim_); !s.ok()) {
    return s;
  }
  ModelStats stats;
  stats.count.assign(centroids_.size(), 0.0);
  stats.success.assign(centroids_.size(), 0.0);
  for (int64_t i = 0; i < validation.features.rows(); ++i) {
    const int c =
        ArgMax(Similarities(estimate_internal::NormalizedRow(validation.features.row(i))));
    stats.count[c] += 1.0;
    stats.success[c] += validation.scores[i];
  }
  return AppendModel(std::string(name), std::move(stats));
}

absl::Status UniRouteEstimator::RemoveModel(absl::string_view name) {
  return estimate_internal::RemoveFromPool(name, models_, stats_);
}

nlohmann::json UniRouteEstimator::Save() const {
  Json models = Json::array();
  for (size_t j = 0; j < models_.size(); ++j) {
    models.push_back(
        {{"name", models_[j]}, {"count", stats_[j].count}, {"success", stats_[j].success}});
  }
  Json state = estimate_internal::StateEnvelope(kLayout, dim_,
                                                {{"num_clusters", options_.num_clusters},
                                                 {"metric", MetricName(options_.metric)},
                                                 {"seed", options_.seed},
                                                 {"max_iterations", options_.max_iterations},
                                                 {"temperature", options_.temperature},
                                                 {"prior_strength", options_.prior_strength},
                                                 {"lower_quantile", options_.lower_quantile}},
                                                std::move(models));
  state["centroids"] = centroids_;
  return state;
}

absl::StatusOr<std::unique_ptr<UniRouteEstimator>> FitUniRoute(const FeatureMatrix& cluster_train,
                                                               const TrainingSet& validation,
                                                               const UniRouteOptions& options) {
  if (absl::Status s = ValidateUniRouteOptions(options); !s.ok()) return s;
  if (absl::Status s = estimate_internal::CheckFeatureMatrix(cluster_train, "cluster_train");
      !s.ok()) {
    return s;
  }
  const int64_t n = cluster_train.rows();
  if (options.num_clusters > n) {
    return Invalid(
        "num_clusters",
        absl::StrCat(options.num_clusters, " exceeds the number of training prompts (", n, ")"));
  }
  if (absl::Status s =
          estimate_internal::CheckTrainingSet(validation, "validation", cluster_train.dim);
      !s.ok()) {
    return s;
  }
  const int dim = cluster_train.dim;
  absl::StatusOr<std::vector<std::vector<double>>> centroids =
      KMeans(NormalizedRows(cluster_train), n, dim, options);
  if (!centroids.ok()) return centroids.status();
  std::unique_ptr<UniRouteEstimator> estimator(
      new UniRouteEstimator(dim, options, *std::move(centroids)));

  const int64_t rows = validation.features.rows();
  std::vector<int> cluster(static_cast<size_t>(rows));
  for (int64_t i = 0; i < rows; ++i) {
    cluster[i] = ArgMax(
        estimator->Similarities(estimate_internal::NormalizedRow(validation.features.row(i))));
  }
  for (size_t j = 0; j < validation.models.size(); ++j) {
    UniRouteEstimator::ModelStats stats;
    stats.count.assign(static_cast<size_t>(options.num_clusters), 0.0);
    stats.success.assign(static_cast<size_t>(options.num_clusters), 0.0);
    for (int64_t i = 0; i < rows; ++i) {
      const double y = validation.label(i, static_cast<int>(j));
      if (std::isnan(y)) continue;
      stats.count[cluster[i]] += 1.0;
      stats.success[cluster[i]] += y;
    }
    if (std::all_of(stats.count.begin(), stats.count.end(), [](double c) { return c == 0.0; })) {
      return Invalid(Element("validation.models", j),
                     absl::StrCat("model '", validation.models[j], "' has no labelled prompt"));
    }
    if (absl::Status s = estimator->AppendModel(validation.models[j], std::move(stats)); !s.ok()) {
      return s;
    }
  }
  return estimator;
}

absl::StatusOr<std::unique_ptr<UniRouteEstimator>> UniRouteEstimator::FromState(const Json& state) {
  absl::StatusOr<estimate_internal::StateReader> reader =
      estimate_internal::StateReader::Open(state, kLayout);
  if (!reader.ok()) return reader.status();
  absl::StatusOr<UniRouteOptions> options = ParseOptions(reader->options());
  if (!options.ok()) return options.status();
  const int dim = reader->dim();

  absl::StatusOr<JsonReader> centroids_json = reader->root().Member("centroids");
  if (!centroids_json.ok()) return centroids_json.status();
  if (!centroids_json->json().is_array() ||
      centroids_json->size() != static_cast<size_t>(options->num_clusters)) {
    return centroids_json->Error(absl::StrCat("expected an array of options.num_clusters (",
                                              options->num_clusters, ") centroids"));
  }
  std::vector<std::vector<double>> centroids;
  for (size_t c = 0; c < centroids_json->size(); ++c) {
    absl::StatusOr<std::vector<double>> centroid =
        centroids_json->Element(c).NumberArray({.size = static_cast<size_t>(dim), .finite = true});
    if (!centroid.ok()) return centroid.status();
    centroids.push_back(*std::move(centroid));
  }
  std::unique_ptr<UniRouteEstimator> estimator(
      new UniRouteEstimator(dim, *options, std::move(centroids)));

  const NumberArraySpec per_cluster = {.size = static_cast<size_t>(options->num_clusters),
                                       .finite = true};
  absl::Status read = reader->ForEachModel([&](const JsonReader& model, std::string name) {
    absl::StatusOr<std::vector<double>> count =
        model.Get(&JsonReader::NumberArray, "count", per_cluster);
    if (!count.ok()) return count.status();
    absl::StatusOr<std::vector<double>> success =
        model.Get(&JsonReader::NumberArray, "success", per_cluster);
    if (!success.ok()) return success.status();
    if (absl::Status s =
            estimate_internal::CheckSuccessCounts(model.ChildPath("success"), *count, *success);
        !s.ok()) {
      return s;
    }
    if (absl::Status s = estimator->AppendModel(std::move(name),
                                                {*std::move(count), *std::move(success), {}, {}});
        !s.ok()) {
      return model.Error(s.message());
    }
    return absl::OkStatus();
  });
  if (!read.ok()) return read;
  return estimator;
}

absl::StatusOr<std::unique_ptr<QualityEstimator>> LoadUniRouteEstimator(
    const nlohmann::json& state) {
  return estimate_internal::CatchMalformed(kLayout.kind,
                                           [&] { return UniRouteEstimator::FromState(state); });
}

}  // namespace router::core
