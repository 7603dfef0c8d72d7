#include "router_core/estimate/knn_estimator.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "router_core/estimate/binary_blob.h"
#include "router_core/estimate/estimator_state.h"
#include "router_core/estimate/estimator_support.h"
#include "router_core/estimate/splitmix.h"
#include "router_core/json/json_reader.h"

namespace router::core {
namespace {

// Upper bound on k, part of the saved options' contract (artifacts with larger k are refused).
constexpr int kMaxK = 65535;

// The saved state: no version, the dimension under "dim" (up to 2^20), at least one model.
constexpr estimate_internal::StateLayout kLayout = {
    .kind = KnnEstimator::kKind, .dim_key = "dim", .max_dim = 1 << 20, .models_required = true};

absl::Status ValidateOptions(const KnnOptions& o) {
  if (o.k < 1 || o.k > kMaxK) {
    return absl::InvalidArgumentError(absl::StrCat("k: expected 1..", kMaxK, ", got ", o.k));
  }
  if (!std::isfinite(o.prior_strength) || o.prior_strength < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("prior_strength: expected a finite value >= 0, got ", o.prior_strength));
  }
  if (o.bootstrap_samples < 1 || o.bootstrap_samples > 100000) {
    return absl::InvalidArgumentError(
        absl::StrCat("bootstrap_samples: expected 1..100000, got ", o.bootstrap_samples));
  }
  if (!(o.lower_quantile >= 0 && o.lower_quantile <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("lower_quantile: expected a value in [0, 1], got ", o.lower_quantile));
  }
  return absl::OkStatus();
}

// Normalizes `row` in place; a zero row stays zero.
void Normalize(absl::Span<float> row) {
  double norm = 0.0;
  for (const float v : row) norm += static_cast<double>(v) * v;
  if (norm <= 0.0) return;
  const double scale = 1.0 / std::sqrt(norm);
  for (float& v : row) v = static_cast<float>(v * scale);
}

absl::Status CheckFinite(absl::Span<const float> values, absl::string_view field) {
  for (size_t k = 0; k < values.size(); ++k) {
    if (!std::isfinite(values[k])) {
      return absl::InvalidArgumentError(absl::StrCat(field, "[", k, "]: not finite"));
    }
  }
  return absl::OkStatus();
}

double MeanOf(absl::Span<const float> scores) {
  double sum = 0.0;
  for (const float s : scores) sum += s;
  return scores.empty() ? 0.0 : sum / static_cast<double>(scores.size());
}

// Type-7 (linear interpolation) quantile of `values` (reordered): the same value as on the sorted
// values, found with two O(n) selections instead of a sort.
double Quantile(absl::Span<double> values, double q) {
  const double pos = q * static_cast<double>(values.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  std::nth_element(values.begin(), values.begin() + static_cast<ptrdiff_t>(lo), values.end());
  const double at_lo = values[lo];
  const double at_hi = lo + 1 < values.size()
                           ? *std::min_element(values.begin() + static_cast<ptrdiff_t>(lo) + 1,
                                               values.end())
                           : at_lo;
  return at_lo + (pos - static_cast<double>(lo)) * (at_hi - at_lo);
}

// Dot product of two float vectors. kLanes independent partial sums are what lets gcc vectorize
// without -ffast-math (a single running sum may not be reassociated); they are combined in a fixed
// tree order, so the result does not depend on the compiler's choices. Always inlined, so that it
// is compiled for the instruction set of its caller (Similarities below).
[[gnu::always_inline]] inline float Dot(const float* a, const float* b, int dim) {
  constexpr int kLanes = 16;  // the reduction below is written for 16
  float lanes[kLanes] = {};
  int d = 0;
  for (; d + kLanes <= dim; d += kLanes) {
    for (int l = 0; l < kLanes; ++l) lanes[l] += a[d + l] * b[d + l];
  }
  for (int l = 0; d < dim; ++d, ++l) lanes[l] += a[d] * b[d];
  // Spelled out: a loop over the widths made gcc spill the lanes to memory for every point.
  for (int l = 0; l < 8; ++l) lanes[l] += lanes[l + 8];
  for (int l = 0; l < 4; ++l) lanes[l] += lanes[l + 4];
  for (int l = 0; l < 2; ++l) lanes[l] += lanes[l + 2];
  return lanes[0] + lanes[1];
}

// sims[p] = similarity of the unit query to stored row p (P rows of dim floats), +0 for -0.
[[gnu::always_inline]] inline void SimilaritiesBody(const float* points, size_t num,
                                                    const float* query, int dim, float* sims) {
  for (size_t p = 0; p < num; ++p) {
    sims[p] = Dot(points + p * static_cast<size_t>(dim), query, dim) + 0.0f;
  }
}

#if defined(__x86_64__) || defined(__i386__)
// The same code compiled for AVX, chosen at run time where the CPU has it: 8 float lanes per
// instruction instead of SSE2's 4 halve the scan, which is bound by multiply and add throughput.
// Results are bit-identical: the lanes and the order of every operation are the same, and AVX does
// not include FMA, so no multiply can be fused with its add (checked: router_train writes the same
// artifact either way).
[[gnu::target("avx")]] void SimilaritiesAvx(const float* points, size_t num, const float* query,
                                             int dim, float* sims) {
  SimilaritiesBody(points, num, query, dim, sims);
}
#endif

void Similarities(const float* points, size_t num, const float* query, int dim, float* sims) {
#if defined(__x86_64__) || defined(__i386__)
  static const bool has_avx = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx") != 0;
  }();
  if (has_avx) return SimilaritiesAvx(points, num, query, dim, sims);
#endif
  SimilaritiesBody(points, num, query, dim, sims);
}

// Sort key of point p with similarity sim: ascending keys = descending similarity, then ascending
// point index (the neighbour order). The float's bits are mapped to an order-preserving unsigned
// integer and inverted; sim must not be NaN or -0 (callers add +0.0f, which turns -0 into +0).
uint64_t NeighbourKey(float sim, uint32_t p) {
  uint32_t bits;
  std::memcpy(&bits, &sim, sizeof(bits));
  const uint32_t ascending = (bits & 0x80000000U) != 0 ? ~bits : bits | 0x80000000U;
  return (uint64_t{~ascending} << 32) | p;
}

uint32_t KeyPoint(uint64_t key) { return static_cast<uint32_t>(key); }

// Puts the `n` smallest keys, sorted, at the front of `keys`.
void SelectSmallest(std::vector<uint64_t>& keys, size_t n) {
  const auto nth = keys.begin() + static_cast<ptrdiff_t>(n);
  if (n < keys.size()) std::nth_element(keys.begin(), nth, keys.end());
  std::sort(keys.begin(), nth);
}

// Per-thread scratch of Predict, reused so a call allocates nothing in the steady state.
struct PredictScratch {
  std::vector<float> query;
  std::vector<float> sims;            // per stored point
  std::vector<uint64_t> shared_keys;  // NeighbourKey of every point; the best D sorted in front
  std::vector<uint64_t> own_keys;     // the same over one model's points
  std::vector<uint32_t> neighbours;   // point indices of one model's neighbours, best first
  std::vector<double> weights;        // per neighbour
  std::vector<float> scores;          // per neighbour
  // The neighbour list the next three were computed for: models with the same neighbours (the
  // usual case: they share the training prompts) share them.
  std::vector<uint32_t> resampled;
  std::vector<double> local_patterns;  // Patterns(n) when n < k
  std::vector<double> weight_counts;   // n x B: multiplicity * weight of neighbour i in resample b
  std::vector<double> weight_sums;     // B: per resample, the sum of weight_counts over i
  std::vector<double> plain;           // B: BootstrapEstimates' unweighted sums
  std::vector<double> boot;            // per resample
};

PredictScratch& ThreadScratch() {
  static thread_local PredictScratch scratch;
  return scratch;
}

}  // namespace

KnnEstimator::KnnEstimator(int dim, const KnnOptions& options)
    : EstimatorBase(dim), options_(options), full_patterns_(Patterns(options.k)) {}

std::vector<double> KnnEstimator::Patterns(int n) const {
  const size_t size = static_cast<size_t>(n);
  const size_t samples = static_cast<size_t>(options_.bootstrap_samples);
  std::vector<double> counts(samples * size, 0.0);
  SplitMix64 rng(Mix64(options_.seed) ^ Mix64(static_cast<uint64_t>(n)));
  for (size_t b = 0; b < samples; ++b) {
    for (int draw = 0; draw < n; ++draw) counts[rng.Below(size) * samples + b] += 1.0;
  }
  return counts;
}

void KnnEstimator::Reindex() {
  const size_t num = static_cast<size_t>(num_points());
  const size_t k = static_cast<size_t>(options_.k);
  score_at_.assign(model_points_.size() * num, std::numeric_limits<float>::quiet_NaN());
  shared_.assign(model_points_.size(), false);
  shared_depth_ = 0;
  for (size_t j = 0; j < model_points_.size(); ++j) {
    const ModelPoints& mp = model_points_[j];
    float* row = score_at_.data() + j * num;
    for (size_t i = 0; i < mp.points.size(); ++i) row[mp.points[i]] = mp.scores[i];
    // The k best of j's points are among the best k + (points j lacks) of all points. Worth
    // walking the shared list only while j has most of the points; a model added with its own
    // validation prompts selects among those instead.
    const size_t missing = num - mp.points.size();
    if (missing <= mp.points.size()) {
      shared_[j] = true;
      shared_depth_ = std::max(shared_depth_, static_cast<int64_t>(std::min(num, k + missing)));
    }
  }
}

absl::StatusOr<std::unique_ptr<KnnEstimator>> KnnEstimator::Fit(const TrainingSet& training,
                                                                const KnnOptions& options) {
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  const FeatureMatrix& f = training.features;
  if (f.dim < 1) return absl::InvalidArgumentError("features.dim: must be >= 1");
  if (f.values.size() % static_cast<size_t>(f.dim) != 0) {
    return absl::InvalidArgumentError("features.values: size is not a multiple of dim");
  }
  const int64_t rows = f.rows();
  if (rows < 1) return absl::InvalidArgumentError("features: no rows");
  if (rows > UINT32_MAX) return absl::InvalidArgumentError("features: too many rows");
  if (training.models.empty()) return absl::InvalidArgumentError("models: empty");
  if (training.labels.size() != static_cast<size_t>(rows) * training.models.size()) {
    return absl::InvalidArgumentError(absl::StrCat("labels: expected ", rows, " x ",
                                                   training.models.size(), " values, got ",
                                                   training.labels.size()));
  }
  if (absl::Status s = CheckFinite(f.values, "features.values"); !s.ok()) return s;

  auto estimator = std::unique_ptr<KnnEstimator>(new KnnEstimator(f.dim, options));
  estimator->points_ = f.values;
  for (int64_t r = 0; r < rows; ++r) {
    Normalize(absl::MakeSpan(estimator->points_.data() + r * f.dim, static_cast<size_t>(f.dim)));
  }
  for (size_t m = 0; m < training.models.size(); ++m) {
    const std::string& name = training.models[m];
    if (name.empty()) return absl::InvalidArgumentError(absl::StrCat("models[", m, "]: empty"));
    if (std::find(estimator->models_.begin(), estimator->models_.end(), name) !=
        estimator->models_.end()) {
      return absl::InvalidArgumentError(absl::StrCat("models[", m, "]: duplicate '", name, "'"));
    }
    ModelPoints mp;
    for (int64_t r = 0; r < rows; ++r) {
      const double label = training.label(r, static_cast<int>(m));
      if (std::isnan(label)) continue;
      if (!(label >= 0 && label <= 1)) {
        return absl::InvalidArgumentError(
            absl::StrCat("labels[", r, "][", m, "]: expected a value in [0, 1], got ", label));
      }
      mp.points.push_back(static_cast<uint32_t>(r));
      mp.scores.push_back(static_cast<float>(label));
    }
    if (mp.points.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("labels: model '", name, "' has no labels"));
    }
    mp.mean = MeanOf(mp.scores);
    estimator->models_.push_back(name);
    estimator->model_points_.push_back(std::move(mp));
  }
  estimator->Reindex();
  return estimator;
}

double KnnEstimator::Estimate(absl::Span<const double> weights, absl::Span<const float> scores,
                              double prior_mean) const {
  double weighted = 0.0, weight_sum = 0.0, plain = 0.0;
  for (size_t i = 0; i < scores.size(); ++i) {
    weighted += weights[i] * scores[i];
    weight_sum += weights[i];
    plain += scores[i];
  }
  const double n = static_cast<double>(scores.size());
  const double mean = weight_sum > 0.0 ? weighted / weight_sum : plain / n;
  return (n * mean + options_.prior_strength * prior_mean) / (n + options_.prior_strength);
}

void KnnEstimator::ResampleWeights(absl::Span<const double> weights, const double* patterns,
                                   double* weight_counts, double* weight_sums) const {
  const size_t samples = static_cast<size_t>(options_.bootstrap_samples);
  std::fill(weight_sums, weight_sums + samples, 0.0);
  for (size_t i = 0; i < weights.size(); ++i) {
    const double w = weights[i];
    const double* c = patterns + i * samples;
    double* cw = weight_counts + i * samples;
    for (size_t b = 0; b < samples; ++b) {
      cw[b] = c[b] * w;
      weight_sums[b] += cw[b];
    }
  }
}

void KnnEstimator::BootstrapEstimates(absl::Span<const float> scores, const double* patterns,
                                      const double* weight_counts, const double* weight_sums,
                                      double prior_mean, double* plain, double* out) const {
  // The accumulators of all resamples side by side, summed over the neighbours in order: the same
  // operations in the same order per resample as a loop over resamples, but vectorizable. A zero
  // score adds exactly +0 to both sums, so skipping it changes nothing.
  const size_t samples = static_cast<size_t>(options_.bootstrap_samples);
  double* const weighted = out;  // reused: out[b] is only written after its sums are final
  std::fill(weighted, weighted + samples, 0.0);
  std::fill(plain, plain + samples, 0.0);
  for (size_t i = 0; i < scores.size(); ++i) {
    const double s = scores[i];
    if (s == 0.0) continue;
    const double* c = patterns + i * samples;
    const double* cw = weight_counts + i * samples;
    for (size_t b = 0; b < samples; ++b) {
      weighted[b] += cw[b] * s;
      plain[b] += c[b] * s;
    }
  }
  // Every resample draws n times, so its total multiplicity is n.
  const double n = static_cast<double>(scores.size());
  for (size_t b = 0; b < samples; ++b) {
    const double mean = weight_sums[b] > 0.0 ? weighted[b] / weight_sums[b] : plain[b] / n;
    out[b] = (n * mean + options_.prior_strength * prior_mean) / (n + options_.prior_strength);
  }
}

absl::Status KnnEstimator::Predict(absl::Span<const float> features,
                                   absl::Span<QualityEstimate> out) const {
  if (features.size() != static_cast<size_t>(dim_)) {
    return absl::InvalidArgumentError(
        absl::StrCat("features: expected ", dim_, " values, got ", features.size()));
  }
  if (out.size() != models_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("out: expected ", models_.size(), " entries, got ", out.size()));
  }
  if (absl::Status s = CheckFinite(features, "features"); !s.ok()) return s;
  PredictScratch& scratch = ThreadScratch();
  std::vector<float>& query = scratch.query;
  query.assign(features.begin(), features.end());
  Normalize(absl::MakeSpan(query));
  if (std::all_of(query.begin(), query.end(), [](float v) { return v == 0.0f; })) {
    for (size_t j = 0; j < models_.size(); ++j) {
      const double q = std::clamp(model_points_[j].mean, 0.0, 1.0);
      out[j] = QualityEstimate{q, q};
    }
    return absl::OkStatus();
  }

  const size_t num = static_cast<size_t>(num_points());
  std::vector<float>& sims = scratch.sims;
  sims.resize(num);
  Similarities(points_.data(), num, query.data(), dim_, sims.data());
  std::vector<uint64_t>& shared_keys = scratch.shared_keys;
  if (shared_depth_ > 0) {
    shared_keys.resize(num);
    for (size_t p = 0; p < num; ++p) shared_keys[p] = NeighbourKey(sims[p], static_cast<uint32_t>(p));
    SelectSmallest(shared_keys, static_cast<size_t>(shared_depth_));
  }

  const size_t k = static_cast<size_t>(options_.k);
  const size_t samples = static_cast<size_t>(options_.bootstrap_samples);
  std::vector<uint32_t>& neighbours = scratch.neighbours;
  std::vector<double>& weights = scratch.weights;
  std::vector<float>& scores = scratch.scores;
  std::vector<uint32_t>& resampled = scratch.resampled;
  resampled.clear();
  size_t local_n = 0;  // the n of scratch.local_patterns in this call (scratch outlives estimators)
  std::vector<double>& boot = scratch.boot;
  boot.resize(samples);
  scratch.plain.resize(samples);
  for (size_t j = 0; j < models_.size(); ++j) {
    const ModelPoints& mp = model_points_[j];
    const size_t n = std::min(mp.points.size(), k);
    const float* score_at = score_at_.data() + j * num;
    neighbours.clear();
    if (shared_[j]) {
      for (size_t r = 0; neighbours.size() < n; ++r) {
        const uint32_t p = KeyPoint(shared_keys[r]);
        if (!std::isnan(score_at[p])) neighbours.push_back(p);
      }
    } else {
      std::vector<uint64_t>& own_keys = scratch.own_keys;
      own_keys.clear();
      for (const uint32_t p : mp.points) own_keys.push_back(NeighbourKey(sims[p], p));
      SelectSmallest(own_keys, n);
      for (size_t r = 0; r < n; ++r) neighbours.push_back(KeyPoint(own_keys[r]));
    }
    weights.clear();
    scores.clear();
    for (const uint32_t p : neighbours) {
      weights.push_back(options_.similarity_weighted ? std::max<double>(sims[p], 0.0) : 1.0);
      scores.push_back(score_at[p]);
    }
    const double quality = std::clamp(Estimate(weights, scores, mp.mean), 0.0, 1.0);
    if (n != k && n != local_n) {
      scratch.local_patterns = Patterns(static_cast<int>(n));
      local_n = n;
    }
    const double* patterns = n == k ? full_patterns_.data() : scratch.local_patterns.data();
    if (neighbours != resampled) {
      resampled = neighbours;
      scratch.weight_counts.resize(n * samples);
      scratch.weight_sums.resize(samples);
      ResampleWeights(weights, patterns, scratch.weight_counts.data(),
                      scratch.weight_sums.data());
    }
    BootstrapEstimates(scores, patterns, scratch.weight_counts.data(), scratch.weight_sums.data(),
                       mp.mean, scratch.plain.data(), boot.data());
    const double lower =
        std::clamp(Quantile(absl::MakeSpan(boot), options_.lower_quantile), 0.0, quality);
    out[j] = QualityEstimate{quality, lower};
  }
  return absl::OkStatus();
}

absl::Status KnnEstimator::AddModel(absl::string_view name, const ModelValidation& validation) {
  if (name.empty()) return absl::InvalidArgumentError("name: empty");
  if (absl::Status s = estimate_internal::CheckNotInPool(name, models_); !s.ok()) return s;
  const FeatureMatrix& f = validation.features;
  if (f.dim != dim_) {
    return absl::InvalidArgumentError(
        absl::StrCat("validation.features.dim: expected ", dim_, ", got ", f.dim));
  }
  if (f.values.size() % static_cast<size_t>(dim_) != 0) {
    return absl::InvalidArgumentError("validation.features.values: size is not a multiple of dim");
  }
  const int64_t rows = f.rows();
  if (rows < 1) return absl::InvalidArgumentError("validation.features: no rows");
  if (validation.scores.size() != static_cast<size_t>(rows)) {
    return absl::InvalidArgumentError(absl::StrCat("validation.scores: expected ", rows,
                                                   " values, got ", validation.scores.size()));
  }
  if (num_points() + rows > UINT32_MAX) {
    return absl::InvalidArgumentError("validation.features: too many points");
  }
  if (absl::Status s = CheckFinite(f.values, "validation.features.values"); !s.ok()) return s;
  ModelPoints mp;
  for (int64_t r = 0; r < rows; ++r) {
    const double score = validation.scores[static_cast<size_t>(r)];
    if (!(score >= 0 && score <= 1)) {
      return absl::InvalidArgumentError(
          absl::StrCat("validation.scores[", r, "]: expected a value in [0, 1], got ", score));
    }
    mp.points.push_back(static_cast<uint32_t>(num_points() + r));
    mp.scores.push_back(static_cast<float>(score));
  }
  const size_t first = points_.size();
  points_.insert(points_.end(), f.values.begin(), f.values.end());
  for (int64_t r = 0; r < rows; ++r) {
    Normalize(absl::MakeSpan(points_.data() + first + static_cast<size_t>(r * dim_),
                             static_cast<size_t>(dim_)));
  }
  mp.mean = MeanOf(mp.scores);
  models_.emplace_back(name);
  model_points_.push_back(std::move(mp));
  Reindex();
  return absl::OkStatus();
}

absl::Status KnnEstimator::RemoveModel(absl::string_view name) {
  if (absl::Status s = estimate_internal::RemoveFromPool(name, models_, model_points_); !s.ok()) {
    return s;
  }

  // Compact: keep referenced points in their order, so tie-breaking by index is unchanged.
  const int64_t num = num_points();
  std::vector<uint32_t> remap(static_cast<size_t>(num), UINT32_MAX);
  for (const ModelPoints& mp : model_points_) {
    for (const uint32_t p : mp.points) remap[p] = 0;
  }
  uint32_t next = 0;
  for (int64_t p = 0; p < num; ++p) {
    if (remap[static_cast<size_t>(p)] == UINT32_MAX) continue;
    if (next != p) {
      std::copy_n(points_.begin() + p * dim_, dim_, points_.begin() + int64_t{next} * dim_);
    }
    remap[static_cast<size_t>(p)] = next++;
  }
  points_.resize(static_cast<size_t>(next) * static_cast<size_t>(dim_));
  for (ModelPoints& mp : model_points_) {
    for (uint32_t& p : mp.points) p = remap[p];
  }
  Reindex();
  return absl::OkStatus();
}

nlohmann::json KnnEstimator::Save() const {
  nlohmann::json models = nlohmann::json::array();
  for (size_t j = 0; j < models_.size(); ++j) {
    models.push_back({{"name", models_[j]},
                      {"mean", model_points_[j].mean},
                      {"points", Uint32sToBlob(model_points_[j].points)},
                      {"scores", FloatsToBlob(model_points_[j].scores)}});
  }
  nlohmann::json state =
      estimate_internal::StateEnvelope(kLayout, dim_,
                                       {{"k", options_.k},
                                        {"prior_strength", options_.prior_strength},
                                        {"similarity_weighted", options_.similarity_weighted},
                                        {"bootstrap_samples", options_.bootstrap_samples},
                                        {"lower_quantile", options_.lower_quantile},
                                        {"seed", options_.seed}},
                                       std::move(models));
  state["points"] = FloatsToBlob(points_);
  return state;
}

absl::StatusOr<std::unique_ptr<QualityEstimator>> LoadKnnEstimator(const nlohmann::json& state) {
  absl::StatusOr<estimate_internal::StateReader> reader =
      estimate_internal::StateReader::Open(state, kLayout);
  if (!reader.ok()) return reader.status();
  const JsonReader& opts = reader->options();
  KnnOptions o;
  if (absl::Status s = estimate_internal::ReadOptions(
          opts, {{"k", &o.k}, {"bootstrap_samples", &o.bootstrap_samples}},
          {{"prior_strength", &o.prior_strength}, {"lower_quantile", &o.lower_quantile}}, &o.seed);
      !s.ok()) {
    return s;
  }
  absl::StatusOr<bool> weighted = opts.Get(&JsonReader::Bool, "similarity_weighted");
  if (!weighted.ok()) return weighted.status();
  o.similarity_weighted = *weighted;
  if (absl::Status s = estimate_internal::OptionsError(opts, ValidateOptions(o)); !s.ok()) return s;

  auto estimator = std::unique_ptr<KnnEstimator>(new KnnEstimator(reader->dim(), o));
  const JsonReader& root = reader->root();
  absl::StatusOr<JsonReader> points = root.Member("points");
  if (!points.ok()) return points.status();
  absl::StatusOr<std::vector<float>> values = BlobToFloats(points->json(), points->path());
  if (!values.ok()) return values.status();
  if (values->size() % static_cast<size_t>(estimator->dim_) != 0) {
    return points->Error("size is not a multiple of dim");
  }
  estimator->points_ = *std::move(values);
  const uint64_t num = static_cast<uint64_t>(estimator->num_points());

  absl::Status read = reader->ForEachModel([&](const JsonReader& m, std::string name) {
    absl::StatusOr<double> mean = m.Get(&JsonReader::Number, "mean");
    if (!mean.ok()) return mean.status();
    if (!(*mean >= 0 && *mean <= 1)) {
      return estimate_internal::Invalid(m.ChildPath("mean"),
                                        absl::StrCat("must be in [0, 1], got ", *mean));
    }
    absl::StatusOr<JsonReader> p = m.Member("points");
    if (!p.ok()) return p.status();
    absl::StatusOr<JsonReader> s = m.Member("scores");
    if (!s.ok()) return s.status();
    absl::StatusOr<std::vector<uint32_t>> idx = BlobToUint32s(p->json(), p->path());
    if (!idx.ok()) return idx.status();
    absl::StatusOr<std::vector<float>> scores = BlobToFloats(s->json(), s->path(), idx->size());
    if (!scores.ok()) return scores.status();
    if (idx->empty()) return p->Error("empty");
    for (size_t i = 0; i < idx->size(); ++i) {
      if ((*idx)[i] >= num || (i > 0 && (*idx)[i] <= (*idx)[i - 1])) {
        return p->Error("indices out of range or not ascending");
      }
      if (!((*scores)[i] >= 0 && (*scores)[i] <= 1)) {
        return s->Error("a score is outside [0, 1]");
      }
    }
    estimator->models_.push_back(std::move(name));
    estimator->model_points_.push_back(
        KnnEstimator::ModelPoints{*std::move(idx), *std::move(scores), *mean});
    return absl::OkStatus();
  });
  if (!read.ok()) return read;
  estimator->Reindex();
  return std::unique_ptr<QualityEstimator>(std::move(estimator));
}

}  // namespace router::core
