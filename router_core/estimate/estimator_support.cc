#include "router_core/estimate/estimator_support.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace router::core::estimate_internal {

absl::Status CheckFeatureMatrix(const FeatureMatrix& matrix, absl::string_view what,
                                int expected_dim) {
  if (matrix.dim <= 0) {
    return Invalid(Child(what, "dim"), absl::StrCat("must be > 0, got ", matrix.dim));
  }
  if (expected_dim > 0 && matrix.dim != expected_dim) {
    return Invalid(Child(what, "dim"),
                   absl::StrCat("expected feature dimension ", expected_dim, ", got ", matrix.dim));
  }
  if (matrix.values.size() % static_cast<size_t>(matrix.dim) != 0) {
    return Invalid(Child(what, "values"),
                   absl::StrCat(matrix.values.size(), " values are not a whole number of rows of ",
                                matrix.dim));
  }
  for (size_t k = 0; k < matrix.values.size(); ++k) {
    if (!std::isfinite(matrix.values[k])) {
      return Invalid(Child(what, "features"),
                     absl::StrCat("row ", k / static_cast<size_t>(matrix.dim), " column ",
                                  k % static_cast<size_t>(matrix.dim), " is not finite (",
                                  matrix.values[k], ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckFeatureVector(absl::Span<const float> features, int dim) {
  if (features.size() != static_cast<size_t>(dim)) {
    return Invalid("features", absl::StrCat("expected dimension ", dim, ", got ", features.size()));
  }
  for (size_t k = 0; k < features.size(); ++k) {
    if (!std::isfinite(features[k])) {
      return Invalid(Element("features", k), absl::StrCat("not finite (", features[k], ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckPredictArguments(absl::Span<const float> features, int dim, size_t out_size,
                                   size_t num_models) {
  if (absl::Status s = CheckFeatureVector(features, dim); !s.ok()) return s;
  if (out_size != num_models) {
    return Invalid(
        "out", absl::StrCat("expected ", num_models, " entries (one per model), got ", out_size));
  }
  return absl::OkStatus();
}

absl::Status ValidatePosteriorOptions(double prior_strength, double lower_quantile) {
  if (!(std::isfinite(prior_strength) && prior_strength > 0.0)) {
    return Invalid("prior_strength", absl::StrCat("must be finite and > 0, got ", prior_strength));
  }
  if (!(lower_quantile > 0.0 && lower_quantile <= 0.5)) {
    return Invalid("lower_quantile", absl::StrCat("must be in (0, 0.5], got ", lower_quantile));
  }
  return absl::OkStatus();
}

absl::Status CheckTrainingSet(const TrainingSet& set, absl::string_view what, int expected_dim) {
  if (absl::Status s = CheckFeatureMatrix(set.features, what, expected_dim); !s.ok()) return s;
  if (set.features.rows() == 0) return Invalid(what, "no prompts");
  if (set.models.empty()) return Invalid(Child(what, "models"), "no models");
  absl::flat_hash_set<std::string> seen;
  for (size_t j = 0; j < set.models.size(); ++j) {
    if (set.models[j].empty()) return Invalid(Element(Child(what, "models"), j), "empty name");
    if (!seen.insert(set.models[j]).second) {
      return Invalid(Element(Child(what, "models"), j),
                     absl::StrCat("duplicate model '", set.models[j], "'"));
    }
  }
  const size_t expected = static_cast<size_t>(set.features.rows()) * set.models.size();
  if (set.labels.size() != expected) {
    return Invalid(
        Child(what, "labels"),
        absl::StrCat("expected ", expected, " (prompts x models), got ", set.labels.size()));
  }
  for (size_t k = 0; k < set.labels.size(); ++k) {
    const double y = set.labels[k];
    if (!std::isnan(y) && !(y >= 0.0 && y <= 1.0)) {
      return Invalid(Element(Child(what, "labels"), k),
                     absl::StrCat("must be in [0, 1] or NaN (missing), got ", y));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckModelValidation(absl::string_view name, const ModelValidation& validation,
                                  int dim) {
  if (name.empty()) return Invalid("name", "empty model name");
  const std::string what = absl::StrCat("validation of '", name, "'");
  if (absl::Status s = CheckFeatureMatrix(validation.features, what, dim); !s.ok()) return s;
  if (validation.scores.size() != static_cast<size_t>(validation.features.rows())) {
    return Invalid(Child(what, "scores"),
                   absl::StrCat("expected one per feature row (", validation.features.rows(),
                                "), got ", validation.scores.size()));
  }
  if (validation.scores.empty()) return Invalid(what, "no validation prompts");
  for (size_t k = 0; k < validation.scores.size(); ++k) {
    const double y = validation.scores[k];
    if (!(y >= 0.0 && y <= 1.0)) {
      return Invalid(Element(Child(what, "scores"), k), absl::StrCat("must be in [0, 1], got ", y));
    }
  }
  return absl::OkStatus();
}

void NormalizeRowInto(absl::Span<const float> features, absl::Span<double> out) {
  std::copy(features.begin(), features.end(), out.begin());
  double norm2 = 0.0;
  for (double v : out) norm2 += v * v;
  if (norm2 > 0.0) {
    const double inv = 1.0 / std::sqrt(norm2);
    for (double& v : out) v *= inv;
  }
}

std::vector<double> NormalizedRow(absl::Span<const float> features) {
  std::vector<double> out(features.size());
  NormalizeRowInto(features, absl::MakeSpan(out));
  return out;
}

double SeededRandom::Normal() {
  constexpr double kTwoPi = 6.28318530717958647692;
  // 1 - Uniform() is in (0, 1], so the log is finite.
  const double u1 = 1.0 - Uniform();
  const double u2 = Uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(kTwoPi * u2);
}

absl::Status ModelNotInPool(absl::string_view name) {
  return absl::NotFoundError(absl::StrCat("model '", name, "' is not in the pool"));
}

absl::Status CheckNotInPool(absl::string_view name, const std::vector<std::string>& models) {
  if (std::find(models.begin(), models.end(), name) == models.end()) return absl::OkStatus();
  return absl::AlreadyExistsError(absl::StrCat("model '", name, "' is already in the pool"));
}

absl::Status Invalid(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

std::string Child(absl::string_view path, absl::string_view key) {
  return path.empty() ? std::string(key) : absl::StrCat(path, ".", key);
}

std::string Element(absl::string_view path, size_t index) {
  return absl::StrCat(path, "[", index, "]");
}

}  // namespace router::core::estimate_internal
