#include "router_core/estimate/calibrated_classifier.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <numeric>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

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

constexpr estimate_internal::StateLayout kLayout = {
    .kind = CalibratedClassifier::kKind, .version = 1, .models_key = "outputs"};
// Bucket prior centres are kept this far inside (0, 1) so that the Beta shapes stay > 0.
constexpr double kProbabilityFloor = 1e-6;

double Sigmoid(double z) {
  // Both branches avoid exp overflow.
  if (z >= 0) return 1.0 / (1.0 + std::exp(-z));
  const double e = std::exp(z);
  return e / (1.0 + e);
}

// Binary cross-entropy of logit z against target y in [0, 1], computed stably.
double LogLoss(double z, double y) {
  return std::max(z, 0.0) - z * y + std::log1p(std::exp(-std::fabs(z)));
}

// Adam on one parameter block.
struct AdamBlock {
  std::vector<double> m;
  std::vector<double> v;
  explicit AdamBlock(size_t size) : m(size, 0.0), v(size, 0.0) {}

  void Step(std::vector<double>& params, const std::vector<double>& grad, double lr, int step) {
    constexpr double kBeta1 = 0.9;
    constexpr double kBeta2 = 0.999;
    constexpr double kEps = 1e-8;
    const double c1 = 1.0 - std::pow(kBeta1, step);
    const double c2 = 1.0 - std::pow(kBeta2, step);
    for (size_t k = 0; k < params.size(); ++k) {
      m[k] = kBeta1 * m[k] + (1.0 - kBeta1) * grad[k];
      v[k] = kBeta2 * v[k] + (1.0 - kBeta2) * grad[k] * grad[k];
      params[k] -= lr * (m[k] / c1) / (std::sqrt(v[k] / c2) + kEps);
    }
  }
};

// The network's parameters while training; output weights are M x H row-major.
struct Network {
  int dim = 0;
  int hidden = 0;
  int outputs = 0;
  std::vector<double> w1, b1, w2, b2;
};

// Trains `net` on standardised rows `x` (n x dim) with labels `y` (n x outputs, NaN = missing).
void Train(Network& net, const std::vector<double>& x, const std::vector<double>& y, int64_t n,
           const ClassifierOptions& options, estimate_internal::SeededRandom& random) {
  const int d = net.dim;
  const int h = net.hidden;
  const int m = net.outputs;
  AdamBlock adam_w1(net.w1.size()), adam_b1(net.b1.size()), adam_w2(net.w2.size()),
      adam_b2(net.b2.size());
  std::vector<double> g_w1(net.w1.size()), g_b1(net.b1.size()), g_w2(net.w2.size()),
      g_b2(net.b2.size());
  std::vector<double> act(static_cast<size_t>(h)), delta_hidden(static_cast<size_t>(h)),
      delta_out(static_cast<size_t>(m));
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  int step = 0;
  for (int epoch = 0; epoch < options.epochs; ++epoch) {
    // Fisher-Yates with our own draws: std::shuffle's result is implementation-defined.
    for (int64_t i = n - 1; i > 0; --i) {
      std::swap(order[i], order[random.Below(static_cast<uint64_t>(i + 1))]);
    }
    for (int64_t start = 0; start < n; start += options.batch_size) {
      const int64_t end = std::min(n, start + options.batch_size);
      std::fill(g_w1.begin(), g_w1.end(), 0.0);
      std::fill(g_b1.begin(), g_b1.end(), 0.0);
      std::fill(g_w2.begin(), g_w2.end(), 0.0);
      std::fill(g_b2.begin(), g_b2.end(), 0.0);
      double labelled = 0.0;
      for (int64_t b = start; b < end; ++b) {
        const int64_t i = order[b];
        for (int j = 0; j < m; ++j) labelled += std::isnan(y[i * m + j]) ? 0.0 : 1.0;
      }
      if (labelled == 0.0) continue;
      // Mean loss over the labelled (prompt, model) cells of the batch.
      const double scale = 1.0 / labelled;
      for (int64_t b = start; b < end; ++b) {
        const int64_t i = order[b];
        const double* xi = x.data() + i * d;
        for (int u = 0; u < h; ++u) {
          double z = net.b1[u];
          const double* w = net.w1.data() + static_cast<size_t>(u) * d;
          for (int k = 0; k < d; ++k) z += w[k] * xi[k];
          act[u] = z > 0.0 ? z : 0.0;
        }
        std::fill(delta_hidden.begin(), delta_hidden.end(), 0.0);
        for (int j = 0; j < m; ++j) {
          const double target = y[i * m + j];
          if (std::isnan(target)) continue;
          const double* w = net.w2.data() + static_cast<size_t>(j) * h;
          double z = net.b2[j];
          for (int u = 0; u < h; ++u) z += w[u] * act[u];
          const double delta = (Sigmoid(z) - target) * scale;
          g_b2[j] += delta;
          double* gw = g_w2.data() + static_cast<size_t>(j) * h;
          for (int u = 0; u < h; ++u) {
            gw[u] += delta * act[u];
            delta_hidden[u] += delta * w[u];
          }
        }
        for (int u = 0; u < h; ++u) {
          if (act[u] <= 0.0 || delta_hidden[u] == 0.0) continue;
          g_b1[u] += delta_hidden[u];
          double* gw = g_w1.data() + static_cast<size_t>(u) * d;
          for (int k = 0; k < d; ++k) gw[k] += delta_hidden[u] * xi[k];
        }
      }
      for (size_t k = 0; k < g_w1.size(); ++k) g_w1[k] += options.weight_decay * net.w1[k];
      for (size_t k = 0; k < g_w2.size(); ++k) g_w2[k] += options.weight_decay * net.w2[k];
      ++step;
      adam_w1.Step(net.w1, g_w1, options.learning_rate, step);
      adam_b1.Step(net.b1, g_b1, options.learning_rate, step);
      adam_w2.Step(net.w2, g_w2, options.learning_rate, step);
      adam_b2.Step(net.b2, g_b2, options.learning_rate, step);
    }
  }
}

// The temperature minimising the log loss of sigmoid(z / T) over (logit, score) pairs. The loss is
// convex in beta = 1/T, so golden-section search on beta in [1e-3, 20] finds its minimum.
double FitTemperature(const std::vector<std::pair<double, double>>& pairs) {
  auto loss = [&](double beta) {
    double total = 0.0;
    for (const auto& [z, y] : pairs) total += LogLoss(beta * z, y);
    return total;
  };
  const double ratio = (std::sqrt(5.0) - 1.0) / 2.0;
  double lo = 1e-3;
  double hi = 20.0;
  double a = hi - ratio * (hi - lo);
  double b = lo + ratio * (hi - lo);
  double fa = loss(a);
  double fb = loss(b);
  for (int iteration = 0; iteration < 100; ++iteration) {
    if (fa <= fb) {
      hi = b;
      b = a;
      fb = fa;
      a = hi - ratio * (hi - lo);
      fa = loss(a);
    } else {
      lo = a;
      a = b;
      fa = fb;
      b = lo + ratio * (hi - lo);
      fb = loss(b);
    }
  }
  return 1.0 / (0.5 * (lo + hi));
}

absl::StatusOr<ClassifierOptions> ParseOptions(const JsonReader& value) {
  ClassifierOptions options;
  if (absl::Status s = estimate_internal::ReadOptions(value,
                                                      {{"hidden_units", &options.hidden_units},
                                                       {"epochs", &options.epochs},
                                                       {"batch_size", &options.batch_size},
                                                       {"num_bins", &options.num_bins}},
                                                      {{"learning_rate", &options.learning_rate},
                                                       {"weight_decay", &options.weight_decay},
                                                       {"prior_strength", &options.prior_strength},
                                                       {"lower_quantile", &options.lower_quantile}},
                                                      &options.seed);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = estimate_internal::OptionsError(value, ValidateClassifierOptions(options));
      !s.ok()) {
    return s;
  }
  return options;
}

}  // namespace

absl::Status ValidateClassifierOptions(const ClassifierOptions& options) {
  for (auto [name, value] :
       {std::pair{"hidden_units", options.hidden_units}, std::pair{"epochs", options.epochs},
        std::pair{"batch_size", options.batch_size}, std::pair{"num_bins", options.num_bins}}) {
    if (value < 1) return Invalid(name, absl::StrCat("must be >= 1, got ", value));
  }
  if (!(std::isfinite(options.learning_rate) && options.learning_rate > 0.0)) {
    return Invalid("learning_rate",
                   absl::StrCat("must be finite and > 0, got ", options.learning_rate));
  }
  if (!(std::isfinite(options.weight_decay) && options.weight_decay >= 0.0)) {
    return Invalid("weight_decay",
                   absl::StrCat("must be finite and >= 0, got ", options.weight_decay));
  }
  return estimate_internal::ValidatePosteriorOptions(options.prior_strength,
                                                     options.lower_quantile);
}

std::vector<double> CalibratedClassifier::Hidden(absl::Span<const float> features) const {
  const int h = static_cast<int>(hidden_bias_.size());
  std::vector<double> x(static_cast<size_t>(dim_));
  for (int k = 0; k < dim_; ++k) x[k] = (features[k] - input_mean_[k]) / input_scale_[k];
  std::vector<double> act(static_cast<size_t>(h));
  for (int u = 0; u < h; ++u) {
    double z = hidden_bias_[u];
    const double* w = hidden_weights_.data() + static_cast<size_t>(u) * dim_;
    for (int k = 0; k < dim_; ++k) z += w[k] * x[k];
    act[u] = z > 0.0 ? z : 0.0;
  }
  return act;
}

double CalibratedClassifier::Logit(const Output& output, const std::vector<double>& hidden) const {
  double z = output.bias;
  for (size_t u = 0; u < hidden.size(); ++u) z += output.weights[u] * hidden[u];
  return z;
}

absl::Status CalibratedClassifier::ComputeBuckets(Output& output) const {
  const size_t buckets = output.count.size();
  output.quality.assign(buckets, 0.0);
  output.lower.assign(buckets, 0.0);
  const double m = options_.prior_strength;
  for (size_t b = 0; b < buckets; ++b) {
    const double centre =
        std::clamp(output.mean_probability[b], kProbabilityFloor, 1.0 - kProbabilityFloor);
    const double a = output.success[b] + m * centre;
    const double fail = std::max(0.0, output.count[b] - output.success[b]) + m * (1.0 - centre);
    absl::StatusOr<double> q = BetaQuantile(options_.lower_quantile, a, fail);
    if (!q.ok()) return q.status();
    output.quality[b] = a / (a + fail);
    output.lower[b] = std::min(*q, output.quality[b]);
  }
  return absl::OkStatus();
}

absl::Status CalibratedClassifier::Predict(absl::Span<const float> features,
                                           absl::Span<QualityEstimate> out) const {
  if (absl::Status s =
          estimate_internal::CheckPredictArguments(features, dim_, out.size(), models_.size());
      !s.ok()) {
    return s;
  }
  const std::vector<double> hidden = Hidden(features);
  for (size_t j = 0; j < outputs_.size(); ++j) {
    const Output& output = outputs_[j];
    const double p = Sigmoid(Logit(output, hidden) / output.temperature);
    const size_t bucket =
        std::upper_bound(output.edges.begin(), output.edges.end(), p) - output.edges.begin();
    out[j] = {output.quality[bucket], output.lower[bucket]};
  }
  return absl::OkStatus();
}

absl::Status CalibratedClassifier::AddModel(absl::string_view name,
                                            const ModelValidation& /*validation*/) {
  return absl::UnimplementedError(absl::StrCat(
      "the calibrated classifier cannot add model '", name,
      "' without retraining its shared network; retrain with the model in the training set, or "
      "use the uniroute or knn estimator, which add models from validation results"));
}

absl::Status CalibratedClassifier::RemoveModel(absl::string_view name) {
  return estimate_internal::RemoveFromPool(name, models_, outputs_);
}

nlohmann::json CalibratedClassifier::Save() const {
  Json outputs = Json::array();
  for (size_t j = 0; j < outputs_.size(); ++j) {
    const Output& o = outputs_[j];
    outputs.push_back({{"name", models_[j]},
                       {"weights", o.weights},
                       {"bias", o.bias},
                       {"temperature", o.temperature},
                       {"edges", o.edges},
                       {"count", o.count},
                       {"success", o.success},
                       {"mean_probability", o.mean_probability}});
  }
  Json state = estimate_internal::StateEnvelope(kLayout, dim_,
                                                {{"hidden_units", options_.hidden_units},
                                                 {"epochs", options_.epochs},
                                                 {"batch_size", options_.batch_size},
                                                 {"learning_rate", options_.learning_rate},
                                                 {"weight_decay", options_.weight_decay},
                                                 {"seed", options_.seed},
                                                 {"num_bins", options_.num_bins},
                                                 {"prior_strength", options_.prior_strength},
                                                 {"lower_quantile", options_.lower_quantile}},
                                                std::move(outputs));
  state["input_mean"] = input_mean_;
  state["input_scale"] = input_scale_;
  state["hidden_weights"] = hidden_weights_;
  state["hidden_bias"] = hidden_bias_;
  return state;
}

absl::StatusOr<std::unique_ptr<CalibratedClassifier>> FitCalibratedClassifier(
    const TrainingSet& train, const TrainingSet& calibration, const ClassifierOptions& options) {
  if (absl::Status s = ValidateClassifierOptions(options); !s.ok()) return s;
  if (absl::Status s = estimate_internal::CheckTrainingSet(train, "train"); !s.ok()) return s;
  if (absl::Status s =
          estimate_internal::CheckTrainingSet(calibration, "calibration", train.features.dim);
      !s.ok()) {
    return s;
  }
  if (calibration.models != train.models) {
    return Invalid("calibration.models", "must list the same models as train.models, in order");
  }
  const int d = train.features.dim;
  const int h = options.hidden_units;
  const int m = static_cast<int>(train.models.size());
  const int64_t n = train.features.rows();
  std::unique_ptr<CalibratedClassifier> classifier(new CalibratedClassifier(d, options));

  // Standardisation from the training rows; constant columns keep scale 1.
  classifier->input_mean_.assign(static_cast<size_t>(d), 0.0);
  classifier->input_scale_.assign(static_cast<size_t>(d), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    for (int k = 0; k < d; ++k) classifier->input_mean_[k] += train.features.row(i)[k];
  }
  for (double& v : classifier->input_mean_) v /= static_cast<double>(n);
  for (int64_t i = 0; i < n; ++i) {
    for (int k = 0; k < d; ++k) {
      const double diff = train.features.row(i)[k] - classifier->input_mean_[k];
      classifier->input_scale_[k] += diff * diff;
    }
  }
  for (double& v : classifier->input_scale_) {
    v = std::sqrt(v / static_cast<double>(n));
    if (!(v > 1e-12)) v = 1.0;
  }
  std::vector<double> x(static_cast<size_t>(n) * d);
  for (int64_t i = 0; i < n; ++i) {
    for (int k = 0; k < d; ++k) {
      x[i * d + k] =
          (train.features.row(i)[k] - classifier->input_mean_[k]) / classifier->input_scale_[k];
    }
  }

  // He initialisation for the ReLU layer; each output bias starts at its model's training log-odds
  // so that early steps learn differences between prompts, not the base rates.
  estimate_internal::SeededRandom random(options.seed);
  Network net{d, h, m, {}, {}, {}, {}};
  net.w1.resize(static_cast<size_t>(h) * d);
  for (double& w : net.w1) w = random.Normal() * std::sqrt(2.0 / d);
  net.b1.assign(static_cast<size_t>(h), 0.0);
  net.w2.resize(static_cast<size_t>(m) * h);
  for (double& w : net.w2) w = random.Normal() * std::sqrt(1.0 / h);
  net.b2.assign(static_cast<size_t>(m), 0.0);
  for (int j = 0; j < m; ++j) {
    double sum = 0.0;
    double count = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      const double y = train.label(i, j);
      if (std::isnan(y)) continue;
      sum += y;
      count += 1.0;
    }
    const double rate = (sum + 0.5) / (count + 1.0);
    net.b2[j] = std::log(rate / (1.0 - rate));
  }
  Train(net, x, train.labels, n, options, random);
  classifier->hidden_weights_ = std::move(net.w1);
  classifier->hidden_bias_ = std::move(net.b1);
  classifier->models_ = train.models;
  classifier->outputs_.resize(static_cast<size_t>(m));
  for (int j = 0; j < m; ++j) {
    CalibratedClassifier::Output& output = classifier->outputs_[j];
    output.weights.assign(net.w2.begin() + static_cast<int64_t>(j) * h,
                          net.w2.begin() + static_cast<int64_t>(j + 1) * h);
    output.bias = net.b2[j];
  }

  // Calibration: logits of every labelled calibration prompt, per model.
  const int64_t calibration_rows = calibration.features.rows();
  std::vector<std::vector<std::pair<double, double>>> pairs(static_cast<size_t>(m));
  for (int64_t i = 0; i < calibration_rows; ++i) {
    const std::vector<double> hidden = classifier->Hidden(calibration.features.row(i));
    for (int j = 0; j < m; ++j) {
      const double y = calibration.label(i, j);
      if (std::isnan(y)) continue;
      pairs[j].emplace_back(classifier->Logit(classifier->outputs_[j], hidden), y);
    }
  }
  for (int j = 0; j < m; ++j) {
    if (pairs[j].empty()) {
      return Invalid(Element("calibration.models", j),
                     absl::StrCat("model '", train.models[j], "' has no labelled prompt"));
    }
    CalibratedClassifier::Output& output = classifier->outputs_[j];
    output.temperature = FitTemperature(pairs[j]);
    std::vector<std::pair<double, double>> scaled;  // (scaled probability, score), sorted
    scaled.reserve(pairs[j].size());
    for (const auto& [z, y] : pairs[j]) scaled.emplace_back(Sigmoid(z / output.temperature), y);
    std::sort(scaled.begin(), scaled.end());
    // Equal-mass cuts; a cut between equal probabilities is dropped (its buckets merge).
    const size_t total = scaled.size();
    const size_t bins = static_cast<size_t>(options.num_bins);
    size_t bucket_start = 0;
    for (size_t b = 1; b <= bins; ++b) {
      const size_t cut = b == bins ? total : b * total / bins;
      if (cut < total && (cut <= bucket_start || scaled[cut - 1].first == scaled[cut].first)) {
        continue;
      }
      if (cut < total) {
        output.edges.push_back(0.5 * (scaled[cut - 1].first + scaled[cut].first));
      }
      double success = 0.0;
      double probability = 0.0;
      for (size_t k = bucket_start; k < cut; ++k) {
        probability += scaled[k].first;
        success += scaled[k].second;
      }
      const double count = static_cast<double>(cut - bucket_start);
      output.count.push_back(count);
      output.success.push_back(success);
      output.mean_probability.push_back(probability / count);
      bucket_start = cut;
    }
    if (absl::Status s = classifier->ComputeBuckets(output); !s.ok()) return s;
  }
  return classifier;
}

absl::StatusOr<std::unique_ptr<CalibratedClassifier>> CalibratedClassifier::FromState(
    const Json& state) {
  absl::StatusOr<estimate_internal::StateReader> reader =
      estimate_internal::StateReader::Open(state, kLayout);
  if (!reader.ok()) return reader.status();
  absl::StatusOr<ClassifierOptions> options = ParseOptions(reader->options());
  if (!options.ok()) return options.status();
  const size_t dim = static_cast<size_t>(reader->dim());
  const size_t h = static_cast<size_t>(options->hidden_units);
  const JsonReader& root = reader->root();

  std::unique_ptr<CalibratedClassifier> classifier(
      new CalibratedClassifier(reader->dim(), *options));
  for (auto [key, target, size] :
       {std::tuple{"input_mean", &classifier->input_mean_, dim},
        std::tuple{"input_scale", &classifier->input_scale_, dim},
        std::tuple{"hidden_weights", &classifier->hidden_weights_, h * dim},
        std::tuple{"hidden_bias", &classifier->hidden_bias_, h}}) {
    absl::StatusOr<std::vector<double>> values =
        root.Get(&JsonReader::NumberArray, key, NumberArraySpec{.size = size, .finite = true});
    if (!values.ok()) return values.status();
    *target = *std::move(values);
  }
  for (size_t k = 0; k < classifier->input_scale_.size(); ++k) {
    if (!(classifier->input_scale_[k] > 0.0)) {
      return Invalid(Element(root.ChildPath("input_scale"), k), "must be > 0");
    }
  }

  absl::Status read = reader->ForEachModel([&](const JsonReader& value, std::string name) {
    Output output;
    for (auto [key, target] :
         {std::pair{"bias", &output.bias}, std::pair{"temperature", &output.temperature}}) {
      absl::StatusOr<double> v = value.Get(&JsonReader::FiniteNumber, key);
      if (!v.ok()) return v.status();
      *target = *v;
    }
    if (!(output.temperature > 0.0)) return Invalid(value.ChildPath("temperature"), "must be > 0");
    absl::StatusOr<std::vector<double>> edges =
        value.Get(&JsonReader::NumberArray, "edges", NumberArraySpec{.finite = true});
    if (!edges.ok()) return edges.status();
    output.edges = *std::move(edges);
    for (size_t b = 0; b < output.edges.size(); ++b) {
      if (!(output.edges[b] >= 0.0 && output.edges[b] <= 1.0 &&
            (b == 0 || output.edges[b] > output.edges[b - 1]))) {
        return Invalid(Element(value.ChildPath("edges"), b),
                       "edges must lie in [0, 1] and increase strictly");
      }
    }
    const size_t buckets = output.edges.size() + 1;
    for (auto [key, target, size] :
         {std::tuple{"weights", &output.weights, h}, std::tuple{"count", &output.count, buckets},
          std::tuple{"success", &output.success, buckets},
          std::tuple{"mean_probability", &output.mean_probability, buckets}}) {
      absl::StatusOr<std::vector<double>> values =
          value.Get(&JsonReader::NumberArray, key, NumberArraySpec{.size = size, .finite = true});
      if (!values.ok()) return values.status();
      *target = *std::move(values);
    }
    if (absl::Status s = estimate_internal::CheckSuccessCounts(value.ChildPath("success"),
                                                               output.count, output.success);
        !s.ok()) {
      return s;
    }
    for (size_t b = 0; b < buckets; ++b) {
      if (!(output.mean_probability[b] >= 0.0 && output.mean_probability[b] <= 1.0)) {
        return Invalid(Element(value.ChildPath("mean_probability"), b), "must be in [0, 1]");
      }
    }
    if (absl::Status s = classifier->ComputeBuckets(output); !s.ok()) {
      return value.Error(s.message());
    }
    classifier->models_.push_back(std::move(name));
    classifier->outputs_.push_back(std::move(output));
    return absl::OkStatus();
  });
  if (!read.ok()) return read;
  return classifier;
}

absl::StatusOr<std::unique_ptr<QualityEstimator>> LoadCalibratedClassifier(
    const nlohmann::json& state) {
  return estimate_internal::CatchMalformed(kLayout.kind,
                                           [&] { return CalibratedClassifier::FromState(state); });
}

}  // namespace router::core
