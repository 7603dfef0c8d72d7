#include "router_core/estimate/knn_estimator.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "router_core/estimate/binary_blob.h"
#include "router_core/estimate/splitmix.h"

namespace router::core {
namespace {

// Bootstrap multiplicities are stored as uint16; k beyond this would not fit.
constexpr int kMaxK = 65535;

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

// Type-7 (linear interpolation) quantile of sorted values.
double Quantile(const std::vector<double>& sorted, double q) {
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (pos - static_cast<double>(lo)) * (sorted[hi] - sorted[lo]);
}

}  // namespace

KnnEstimator::KnnEstimator(int dim, const KnnOptions& options)
    : dim_(dim), options_(options), full_patterns_(Patterns(options.k)) {}

std::vector<uint16_t> KnnEstimator::Patterns(int n) const {
  const size_t size = static_cast<size_t>(n);
  std::vector<uint16_t> counts(static_cast<size_t>(options_.bootstrap_samples) * size, 0);
  SplitMix64 rng(Mix64(options_.seed) ^ Mix64(static_cast<uint64_t>(n)));
  for (int b = 0; b < options_.bootstrap_samples; ++b) {
    uint16_t* row = counts.data() + static_cast<size_t>(b) * size;
    for (int draw = 0; draw < n; ++draw) ++row[rng.Below(size)];
  }
  return counts;
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
    if (std::find(estimator->names_.begin(), estimator->names_.end(), name) !=
        estimator->names_.end()) {
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
    estimator->names_.push_back(name);
    estimator->model_points_.push_back(std::move(mp));
  }
  return estimator;
}

double KnnEstimator::Estimate(absl::Span<const double> weights, absl::Span<const float> scores,
                              const uint16_t* counts, double prior_mean) const {
  double weighted = 0.0, weight_sum = 0.0, plain = 0.0, n = 0.0;
  for (size_t i = 0; i < scores.size(); ++i) {
    const double c = counts == nullptr ? 1.0 : counts[i];
    weighted += c * weights[i] * scores[i];
    weight_sum += c * weights[i];
    plain += c * scores[i];
    n += c;
  }
  const double mean = weight_sum > 0.0 ? weighted / weight_sum : plain / n;
  return (n * mean + options_.prior_strength * prior_mean) / (n + options_.prior_strength);
}

absl::Status KnnEstimator::Predict(absl::Span<const float> features,
                                   absl::Span<QualityEstimate> out) const {
  if (features.size() != static_cast<size_t>(dim_)) {
    return absl::InvalidArgumentError(
        absl::StrCat("features: expected ", dim_, " values, got ", features.size()));
  }
  if (out.size() != names_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("out: expected ", names_.size(), " entries, got ", out.size()));
  }
  if (absl::Status s = CheckFinite(features, "features"); !s.ok()) return s;
  std::vector<float> query(features.begin(), features.end());
  Normalize(absl::MakeSpan(query));
  const bool zero = std::all_of(query.begin(), query.end(), [](float v) { return v == 0.0f; });

  const int64_t num = num_points();
  std::vector<double> sim(static_cast<size_t>(num), 0.0);
  if (!zero) {
    for (int64_t p = 0; p < num; ++p) {
      const float* row = points_.data() + p * dim_;
      double dot = 0.0;
      for (int d = 0; d < dim_; ++d) dot += static_cast<double>(row[d]) * query[d];
      sim[static_cast<size_t>(p)] = dot;
    }
  }

  std::vector<uint32_t> order;
  std::vector<double> weights;
  std::vector<float> scores;
  std::vector<double> boot(static_cast<size_t>(options_.bootstrap_samples));
  for (size_t j = 0; j < names_.size(); ++j) {
    const ModelPoints& mp = model_points_[j];
    if (zero) {
      const double q = std::clamp(mp.mean, 0.0, 1.0);
      out[j] = QualityEstimate{q, q};
      continue;
    }
    // Positions into mp.points of the top k by similarity; ties go to the lower point index,
    // which is the lower position because mp.points is ascending.
    order.resize(mp.points.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<uint32_t>(i);
    const size_t n = std::min(order.size(), static_cast<size_t>(options_.k));
    auto better = [&](uint32_t a, uint32_t b) {
      const double sa = sim[mp.points[a]], sb = sim[mp.points[b]];
      return sa != sb ? sa > sb : a < b;
    };
    std::partial_sort(order.begin(), order.begin() + static_cast<ptrdiff_t>(n), order.end(),
                      better);
    weights.resize(n);
    scores.resize(n);
    for (size_t i = 0; i < n; ++i) {
      weights[i] = options_.similarity_weighted ? std::max(sim[mp.points[order[i]]], 0.0) : 1.0;
      scores[i] = mp.scores[order[i]];
    }
    const double quality = std::clamp(Estimate(weights, scores, nullptr, mp.mean), 0.0, 1.0);
    const std::vector<uint16_t> local = n == static_cast<size_t>(options_.k)
                                            ? std::vector<uint16_t>()
                                            : Patterns(static_cast<int>(n));
    const uint16_t* patterns =
        n == static_cast<size_t>(options_.k) ? full_patterns_.data() : local.data();
    for (size_t b = 0; b < boot.size(); ++b) {
      boot[b] = Estimate(weights, scores, patterns + b * n, mp.mean);
    }
    std::sort(boot.begin(), boot.end());
    const double lower = std::clamp(Quantile(boot, options_.lower_quantile), 0.0, quality);
    out[j] = QualityEstimate{quality, lower};
  }
  return absl::OkStatus();
}

absl::Status KnnEstimator::AddModel(absl::string_view name, const ModelValidation& validation) {
  if (name.empty()) return absl::InvalidArgumentError("name: empty");
  if (std::find(names_.begin(), names_.end(), name) != names_.end()) {
    return absl::AlreadyExistsError(absl::StrCat("model '", name, "' is already in the pool"));
  }
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
  names_.emplace_back(name);
  model_points_.push_back(std::move(mp));
  return absl::OkStatus();
}

absl::Status KnnEstimator::RemoveModel(absl::string_view name) {
  const auto it = std::find(names_.begin(), names_.end(), name);
  if (it == names_.end()) {
    return absl::NotFoundError(absl::StrCat("model '", name, "' is not in the pool"));
  }
  const size_t j = static_cast<size_t>(it - names_.begin());
  names_.erase(names_.begin() + static_cast<ptrdiff_t>(j));
  model_points_.erase(model_points_.begin() + static_cast<ptrdiff_t>(j));

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
  return absl::OkStatus();
}

nlohmann::json KnnEstimator::Save() const {
  nlohmann::json models = nlohmann::json::array();
  for (size_t j = 0; j < names_.size(); ++j) {
    models.push_back({{"name", names_[j]},
                      {"mean", model_points_[j].mean},
                      {"points", Uint32sToBlob(model_points_[j].points)},
                      {"scores", FloatsToBlob(model_points_[j].scores)}});
  }
  return {{"kind", "knn"},
          {"dim", dim_},
          {"options",
           {{"k", options_.k},
            {"prior_strength", options_.prior_strength},
            {"similarity_weighted", options_.similarity_weighted},
            {"bootstrap_samples", options_.bootstrap_samples},
            {"lower_quantile", options_.lower_quantile},
            {"seed", options_.seed}}},
          {"points", FloatsToBlob(points_)},
          {"models", std::move(models)}};
}

std::unique_ptr<QualityEstimator> KnnEstimator::Clone() const {
  return std::unique_ptr<QualityEstimator>(new KnnEstimator(*this));
}

absl::StatusOr<std::unique_ptr<QualityEstimator>> LoadKnnEstimator(const nlohmann::json& state) {
  auto invalid = [](absl::string_view field, absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("knn.", field, ": ", what));
  };
  if (!state.is_object()) return invalid("state", "expected an object");
  const auto kind = state.find("kind");
  if (kind == state.end() || *kind != "knn") return invalid("kind", "expected \"knn\"");
  const auto dim = state.find("dim");
  if (dim == state.end() || !dim->is_number_integer() || dim->get<int64_t>() < 1 ||
      dim->get<int64_t>() > (1 << 20)) {
    return invalid("dim", "missing or not an integer in 1..2^20");
  }
  const auto opts = state.find("options");
  if (opts == state.end() || !opts->is_object()) return invalid("options", "missing");
  KnnOptions o;
  auto get_int = [&](const char* key, auto* target) -> absl::Status {
    const auto it = opts->find(key);
    if (it == opts->end() || !it->is_number_integer()) {
      return invalid(absl::StrCat("options.", key), "missing or not an integer");
    }
    *target = it->get<std::remove_pointer_t<decltype(target)>>();
    return absl::OkStatus();
  };
  auto get_double = [&](const char* key, double* target) -> absl::Status {
    const auto it = opts->find(key);
    if (it == opts->end() || !it->is_number()) {
      return invalid(absl::StrCat("options.", key), "missing or not a number");
    }
    *target = it->get<double>();
    return absl::OkStatus();
  };
  for (absl::Status s : {get_int("k", &o.k), get_int("bootstrap_samples", &o.bootstrap_samples),
                         get_int("seed", &o.seed), get_double("prior_strength", &o.prior_strength),
                         get_double("lower_quantile", &o.lower_quantile)}) {
    if (!s.ok()) return s;
  }
  const auto weighted = opts->find("similarity_weighted");
  if (weighted == opts->end() || !weighted->is_boolean()) {
    return invalid("options.similarity_weighted", "missing or not a boolean");
  }
  o.similarity_weighted = weighted->get<bool>();
  if (absl::Status s = ValidateOptions(o); !s.ok()) return invalid("options", s.message());

  auto estimator = std::unique_ptr<KnnEstimator>(new KnnEstimator(dim->get<int>(), o));
  const auto points = state.find("points");
  if (points == state.end()) return invalid("points", "missing");
  absl::StatusOr<std::vector<float>> values = BlobToFloats(*points, "knn.points");
  if (!values.ok()) return values.status();
  if (values->size() % static_cast<size_t>(estimator->dim_) != 0) {
    return invalid("points", "size is not a multiple of dim");
  }
  estimator->points_ = *std::move(values);
  const uint64_t num = static_cast<uint64_t>(estimator->num_points());

  const auto models = state.find("models");
  if (models == state.end() || !models->is_array() || models->empty()) {
    return invalid("models", "missing or empty");
  }
  for (size_t j = 0; j < models->size(); ++j) {
    const nlohmann::json& m = (*models)[j];
    const std::string field = absl::StrCat("models[", j, "]");
    if (!m.is_object()) return invalid(field, "expected an object");
    const auto name = m.find("name");
    if (name == m.end() || !name->is_string() || name->get<std::string>().empty()) {
      return invalid(field + ".name", "missing or empty");
    }
    if (std::find(estimator->names_.begin(), estimator->names_.end(), name->get<std::string>()) !=
        estimator->names_.end()) {
      return invalid(field + ".name", "duplicate");
    }
    const auto mean = m.find("mean");
    if (mean == m.end() || !mean->is_number() || !(mean->get<double>() >= 0) ||
        !(mean->get<double>() <= 1)) {
      return invalid(field + ".mean", "missing or outside [0, 1]");
    }
    const auto p = m.find("points");
    const auto s = m.find("scores");
    if (p == m.end() || s == m.end()) return invalid(field, "missing points or scores");
    absl::StatusOr<std::vector<uint32_t>> idx = BlobToUint32s(*p, "knn." + field + ".points");
    if (!idx.ok()) return idx.status();
    absl::StatusOr<std::vector<float>> scores =
        BlobToFloats(*s, "knn." + field + ".scores", idx->size());
    if (!scores.ok()) return scores.status();
    if (idx->empty()) return invalid(field + ".points", "empty");
    for (size_t i = 0; i < idx->size(); ++i) {
      if ((*idx)[i] >= num || (i > 0 && (*idx)[i] <= (*idx)[i - 1])) {
        return invalid(field + ".points", "indices out of range or not ascending");
      }
      if (!((*scores)[i] >= 0 && (*scores)[i] <= 1)) {
        return invalid(field + ".scores", "a score is outside [0, 1]");
      }
    }
    estimator->names_.push_back(name->get<std::string>());
    estimator->model_points_.push_back(
        KnnEstimator::ModelPoints{*std::move(idx), *std::move(scores), mean->get<double>()});
  }
  return std::unique_ptr<QualityEstimator>(std::move(estimator));
}

}  // namespace router::core
