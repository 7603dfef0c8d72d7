// File: router_train_main.cc
//
// router_train --dataset DIR --out FILE [--estimator knn|uniroute|classifier] [options]
// router_train --dataset DIR --evaluate [--estimator ...] [options]
// router_train --upgrade OLD --out NEW
//
// Reads a `derived/` dataset folder (dataset.h), splits it by prompt (seeded, identical texts kept
// together), fits the featurizer's IDF on the train part, fits the estimator, and measures it on
// the held-out test part: per model Brier, ECE, ROC AUC and lower-bound coverage, and per-query
// lambda routing (estimator_eval.h). Then it writes the artifact (artifact.h) with those metrics
// and its provenance. Training labels are the `correct` column.
//
//   knn       fitted on the train part (its neighbour sets).
//   uniroute  clusters fitted on the train part, per-cluster model statistics on the calibration
//             part (the paper's validation set).
//   classifier network trained on the train part, temperatures and histogram buckets fitted on the
//             calibration part (Dria's held-out calibration split), every option at its default
//             except the seed, which follows --seed so one flag makes a run reproducible.
//
// --evaluate prints one quality-table row per method instead (the estimator, the task-prior
// baseline that knows each test prompt's task, and the best single model) and writes no artifact
// unless --out is also given.
//
// Cost used for routing: the cost model (cost_model.h) with the prompt's task as a hint. Realized
// cost: the dataset's per-call cost (routerbench_subset); for datasets with prices but no per-call
// cost (llmrouter_nim9) the same price x estimated-token figure; none otherwise (routerdc_7model:
// the cost figures are then null).
//
// Output: progress on stderr; the last stdout line is one JSON object with the held-out metrics.
// Exit status: 0 done; 1 bad data or failure; 2 usage error. Errors are one line on stderr.
// The artifact's creation time is SOURCE_DATE_EPOCH when set (reproducible builds), else now.
//
// --upgrade rewrites a version-1 artifact (no checksum) as the current version with the same
// content (UpgradeArtifact, artifact.h) and needs no dataset.

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "router_core/estimate/artifact.h"
#include "router_core/estimate/calibrated_classifier.h"
#include "router_core/estimate/cost_model.h"
#include "router_core/estimate/dataset.h"
#include "router_core/estimate/estimator_eval.h"
#include "router_core/estimate/featurizer.h"
#include "router_core/estimate/knn_estimator.h"
#include "router_core/estimate/training_data.h"
#include "router_core/estimate/uniroute_estimator.h"
#include "router_core/tools/cli_flags.h"
#include "router_core/tools/cli_input.h"

namespace {

using router::core::Dataset;
using router::core::QualityEstimator;

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

constexpr char kUsage[] =
    "usage: router_train --dataset DIR (--out FILE | --evaluate) [options]\n"
    "       router_train --upgrade OLD --out NEW\n"
    "\n"
    "Trains a quality estimator on a derived/ dataset folder and writes the artifact.\n"
    "\n"
    "  --dataset DIR            derived/ folder (prompts.jsonl, labels.csv, models.csv)\n"
    "  --out FILE               artifact to write (CBOR)\n"
    "  --evaluate               print quality-table rows (markdown) for the estimator and "
    "baselines\n"
    "  --estimator NAME         knn (default), uniroute or classifier\n"
    "  --seed N                 split seed (default 1)\n"
    "  --train F --calibration F --test F   split fractions (default 0.6 0.2 0.2)\n"
    "  --dim D                  featurizer dimension (default 256)\n"
    "  --idf-bits B             log2 of the featurizer's IDF bins, 8-20 (default 16)\n"
    "  --char-ngrams MIN-MAX    character n-gram lengths in bytes, or off (default 3-5)\n"
    "  --word-bigrams BOOL      word bigrams as terms: true or false (default true)\n"
    "  --max-text-bytes N       bytes of each text the featurizer reads, its first and last half,\n"
    "                           16-1048576 (default 16384)\n"
    "  --k K                    kNN neighbours (default 100)\n"
    "  --prior-strength A       kNN pull toward the model mean (default 2)\n"
    "  --bootstrap B            kNN bootstrap resamples (default 50)\n"
    "  --clusters K             UniRoute clusters (default 20)\n"
    "  --upgrade OLD            rewrite the version-1 artifact OLD (no checksum) as the current\n"
    "                           version into --out, content unchanged; no training\n"
    "  --help                   this text\n"
    "\n"
    "Exit status: 0 done, 1 bad data or failure, 2 usage error.\n";

constexpr absl::string_view kTool = "router_train";
using router::core::ToolError;

void Progress(absl::string_view message) { router::core::ToolMessage(kTool, message); }

struct Flags {
  std::string dataset;
  std::string out;
  std::string upgrade;  // --upgrade: the version-1 artifact to rewrite
  bool evaluate = false;
  std::string estimator = "knn";
  router::core::SplitOptions split;
  router::core::FeaturizerOptions featurizer;
  router::core::KnnOptions knn;
  router::core::UniRouteOptions uniroute;
  router::core::ClassifierOptions classifier;
  // The whole command line, for the artifact's provenance.
  std::string command;
};

template <typename T>
absl::Status ParseNumber(absl::string_view flag, absl::string_view text, T* out) {
  bool ok = false;
  if constexpr (std::is_same_v<T, double>) {
    ok = absl::SimpleAtod(text, out) && std::isfinite(*out);
  } else {
    ok = absl::SimpleAtoi(text, out);
  }
  if (!ok) return absl::InvalidArgumentError(absl::StrCat(flag, ": not a number: '", text, "'"));
  return absl::OkStatus();
}

// "MIN-MAX" (byte lengths) or "off"; the featurizer validates the range.
absl::Status ParseCharNgrams(absl::string_view text, router::core::FeaturizerOptions* out) {
  if (text == "off") {
    out->char_ngram_max = 0;
    return absl::OkStatus();
  }
  const std::vector<absl::string_view> parts = absl::StrSplit(text, '-');
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &out->char_ngram_min) ||
      !absl::SimpleAtoi(parts[1], &out->char_ngram_max)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--char-ngrams: expected MIN-MAX or off, got '", text, "'"));
  }
  return absl::OkStatus();
}

// Parses argv; INVALID_ARGUMENT with the message to show for a usage error.
absl::StatusOr<Flags> ParseFlags(int argc, char** argv) {
  Flags f;
  f.command = absl::StrJoin(argv, argv + argc, " ");
  const absl::string_view switches[] = {"--evaluate"};
  absl::StatusOr<std::vector<router::core::CliFlag>> flags =
      router::core::SplitFlags(argc, argv, switches);
  if (!flags.ok()) return flags.status();
  for (const auto& [arg, value] : *flags) {
    if (arg == "--evaluate") {
      f.evaluate = true;
      continue;
    }
    absl::Status s;
    if (arg == "--dataset") {
      f.dataset = value;
    } else if (arg == "--out") {
      f.out = value;
    } else if (arg == "--upgrade") {
      f.upgrade = value;
    } else if (arg == "--estimator") {
      f.estimator = value;
    } else if (arg == "--seed") {
      s = ParseNumber(arg, value, &f.split.seed);
      f.knn.seed = f.split.seed;
      f.uniroute.seed = f.split.seed;
      f.classifier.seed = f.split.seed;
    } else if (arg == "--train") {
      s = ParseNumber(arg, value, &f.split.train);
    } else if (arg == "--calibration") {
      s = ParseNumber(arg, value, &f.split.calibration);
    } else if (arg == "--test") {
      s = ParseNumber(arg, value, &f.split.test);
    } else if (arg == "--dim") {
      s = ParseNumber(arg, value, &f.featurizer.dim);
    } else if (arg == "--idf-bits") {
      s = ParseNumber(arg, value, &f.featurizer.idf_bits);
    } else if (arg == "--char-ngrams") {
      s = ParseCharNgrams(value, &f.featurizer);
    } else if (arg == "--max-text-bytes") {
      s = ParseNumber(arg, value, &f.featurizer.max_text_bytes);
    } else if (arg == "--word-bigrams") {
      if (value != "true" && value != "false") {
        s = absl::InvalidArgumentError(
            absl::StrCat("--word-bigrams: expected true or false, got '", value, "'"));
      }
      f.featurizer.word_bigrams = value == "true";
    } else if (arg == "--k") {
      s = ParseNumber(arg, value, &f.knn.k);
    } else if (arg == "--prior-strength") {
      s = ParseNumber(arg, value, &f.knn.prior_strength);
    } else if (arg == "--bootstrap") {
      s = ParseNumber(arg, value, &f.knn.bootstrap_samples);
    } else if (arg == "--clusters") {
      s = ParseNumber(arg, value, &f.uniroute.num_clusters);
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag '", arg, "'"));
    }
    if (!s.ok()) return s;
  }
  if (!f.upgrade.empty()) {
    if (f.out.empty()) return absl::InvalidArgumentError("--upgrade needs --out NEW");
    if (!f.dataset.empty() || f.evaluate) {
      return absl::InvalidArgumentError("--upgrade takes no --dataset or --evaluate");
    }
    return f;
  }
  if (f.dataset.empty()) return absl::InvalidArgumentError("missing --dataset DIR");
  if (f.out.empty() && !f.evaluate) {
    return absl::InvalidArgumentError("missing --out FILE (or --evaluate)");
  }
  if (f.estimator != "knn" && f.estimator != "uniroute" && f.estimator != "classifier") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--estimator: expected knn, uniroute or classifier, got '", f.estimator, "'"));
  }
  return f;
}

std::string Cell(double v, int digits) {
  return std::isfinite(v) ? absl::StrFormat("%.*f", digits, v) : std::string("n/a");
}

std::string TableRow(absl::string_view dataset, absl::string_view method,
                     const router::core::RoutingEvaluation& r,
                     const std::vector<router::core::ModelCalibration>& calibration) {
  double ece = 0.0, brier = 0.0;
  for (const auto& c : calibration) {
    ece += c.ece / static_cast<double>(calibration.size());
    brier += c.brier / static_cast<double>(calibration.size());
  }
  return absl::StrCat(
      "| ", dataset, " | ", method, " | ", r.prompts, " | ", r.best_model, " ",
      Cell(r.best_accuracy, 3), " | ", Cell(r.argmax_accuracy, 3), " | ",
      Cell(r.relative_accuracy_at_20, 3), " | ", Cell(r.relative_accuracy_at_50, 3), " | ",
      Cell(r.relative_accuracy_at_100, 3), " | ",
      std::isnan(r.qnc) && std::isfinite(r.best_cost) ? std::string("never") : Cell(r.qnc, 3),
      " | ", Cell(r.deferral_auc, 3), " | ", Cell(brier, 3), " | ", Cell(ece, 3), " |");
}

std::string CreatedTime() {
  absl::Time now = absl::Now();
  if (const char* epoch = std::getenv("SOURCE_DATE_EPOCH"); epoch != nullptr) {
    int64_t seconds = 0;
    if (absl::SimpleAtoi(epoch, &seconds)) now = absl::FromUnixSeconds(seconds);
  }
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", now, absl::UTCTimeZone());
}

// --upgrade OLD --out NEW.
int Upgrade(const Flags& flags) {
  absl::StatusOr<std::string> old = router::core::ReadInputFile(flags.upgrade);
  if (!old.ok()) return ToolError(kTool, kExitFailure, old.status().ToString());
  absl::StatusOr<std::string> upgraded = router::core::UpgradeArtifact(*old);
  if (!upgraded.ok()) {
    return ToolError(kTool, kExitFailure,
                     absl::StrCat(flags.upgrade, ": ", upgraded.status().message()));
  }
  if (absl::Status s = router::core::WriteArtifactFile(flags.out, *upgraded); !s.ok()) {
    return ToolError(kTool, kExitFailure, s.ToString());
  }
  Progress(absl::StrCat("wrote ", flags.out, " (", upgraded->size(), " bytes, version ",
                        router::core::kArtifactVersion, ")"));
  return 0;
}

// The tool once its flags are parsed.
int Run(const Flags& flags) {
  if (!flags.upgrade.empty()) return Upgrade(flags);
  // Validate every option before the slow steps, so a typo fails at once.
  if (absl::Status s = router::core::Featurizer::Create(flags.featurizer).status(); !s.ok()) {
    return ToolError(kTool, kExitUsage, absl::StrCat("featurizer ", s.message()));
  }

  Progress(absl::StrCat("reading ", flags.dataset));
  absl::StatusOr<Dataset> data = router::core::ReadDataset(flags.dataset);
  if (!data.ok()) return ToolError(kTool, kExitFailure, data.status().ToString());
  absl::StatusOr<router::core::DatasetSplit> split = router::core::SplitDataset(*data, flags.split);
  if (!split.ok()) return ToolError(kTool, kExitUsage, split.status().message());
  Progress(absl::StrCat(data->name, ": ", data->prompts.size(), " prompts, ", data->models.size(),
                        " models; split train ", split->train.size(), ", calibration ",
                        split->calibration.size(), ", test ", split->test.size()));
  if (split->test.empty()) return ToolError(kTool, kExitUsage, "the test part is empty");

  std::vector<std::string> train_texts;
  for (const int64_t p : split->train) train_texts.push_back(data->prompts[p].text);
  Progress("fitting the featurizer's IDF on the train part");
  absl::StatusOr<router::core::Featurizer> featurizer =
      router::core::Featurizer::Fit(flags.featurizer, train_texts);
  if (!featurizer.ok()) return ToolError(kTool, kExitFailure, featurizer.status().ToString());
  Progress("featurizing");
  router::core::FeatureMatrix train_features =
      router::core::FeaturizeRows(*data, split->train, *featurizer);
  router::core::FeatureMatrix test_features =
      router::core::FeaturizeRows(*data, split->test, *featurizer);

  Progress(absl::StrCat("fitting ", flags.estimator));
  std::unique_ptr<QualityEstimator> estimator;
  if (flags.estimator == "knn") {
    absl::StatusOr<std::unique_ptr<router::core::KnnEstimator>> knn =
        router::core::KnnEstimator::Fit(
            router::core::TrainingRows(*data, split->train, train_features), flags.knn);
    if (!knn.ok()) return ToolError(kTool, kExitFailure, knn.status().ToString());
    estimator = *std::move(knn);
  } else {
    // Both remaining estimators fit their calibration statistics on prompts the first stage never
    // saw, so an empty calibration part is a usage error rather than a fit failure.
    if (split->calibration.empty()) {
      return ToolError(kTool, kExitUsage,
                       absl::StrCat(flags.estimator, " needs a calibration part"));
    }
    router::core::TrainingSet validation = router::core::TrainingRows(
        *data, split->calibration,
        router::core::FeaturizeRows(*data, split->calibration, *featurizer));
    if (flags.estimator == "uniroute") {
      absl::StatusOr<std::unique_ptr<router::core::UniRouteEstimator>> uniroute =
          router::core::FitUniRoute(train_features, validation, flags.uniroute);
      if (!uniroute.ok()) return ToolError(kTool, kExitFailure, uniroute.status().ToString());
      estimator = *std::move(uniroute);
    } else {
      absl::StatusOr<std::unique_ptr<router::core::CalibratedClassifier>> classifier =
          router::core::FitCalibratedClassifier(
              router::core::TrainingRows(*data, split->train, train_features), validation,
              flags.classifier);
      if (!classifier.ok()) return ToolError(kTool, kExitFailure, classifier.status().ToString());
      estimator = *std::move(classifier);
    }
  }
  absl::StatusOr<router::core::CostModel> cost =
      router::core::CostModel::Fit(*data, split->train, router::core::CostModelOptions());
  if (!cost.ok()) return ToolError(kTool, kExitFailure, cost.status().ToString());

  Progress(absl::StrCat("predicting ", split->test.size(), " held-out prompts"));
  const int dim = featurizer->dim();
  absl::StatusOr<router::core::HeldOutPredictions> held = router::core::PredictHeldOut(
      *data, split->test, *cost,
      [&](size_t r, int64_t, absl::Span<router::core::QualityEstimate> out) {
        return estimator->Predict(
            absl::MakeConstSpan(test_features.values.data() + r * static_cast<size_t>(dim),
                                static_cast<size_t>(dim)),
            out);
      });
  if (!held.ok()) return ToolError(kTool, kExitFailure, held.status().ToString());
  absl::StatusOr<std::vector<router::core::ModelCalibration>> calibration =
      router::core::CalibrationMetrics(*held);
  absl::StatusOr<router::core::RoutingEvaluation> routing = router::core::EvaluateRouting(*held);
  if (!calibration.ok()) return ToolError(kTool, kExitFailure, calibration.status().ToString());
  if (!routing.ok()) return ToolError(kTool, kExitFailure, routing.status().ToString());

  nlohmann::json result = {
      {"dataset", data->name},
      {"estimator", flags.estimator},
      {"split",
       {{"seed", flags.split.seed},
        {"fractions", {flags.split.train, flags.split.calibration, flags.split.test}},
        {"train", split->train.size()},
        {"calibration", split->calibration.size()},
        {"test", split->test.size()}}},
      {"models", router::core::CalibrationToJson(*calibration)},
      {"routing", router::core::RoutingToJson(*routing)}};

  if (flags.evaluate) {
    // Baseline: the training success rate of each model on the prompt's task (the task is known).
    std::map<std::string, std::vector<std::pair<double, double>>> task_rates;
    const size_t m = data->models.size();
    for (const int64_t p : split->train) {
      auto& rates = task_rates[data->prompts[p].task];
      rates.resize(m);
      for (size_t j = 0; j < m; ++j) {
        const double y = data->correct[data->at(p, static_cast<int>(j))];
        if (std::isnan(y)) continue;
        rates[j].first += y;
        rates[j].second += 1;
      }
    }
    absl::StatusOr<router::core::HeldOutPredictions> prior =
        router::core::PredictHeldOut(*data, split->test, *cost,
                [&](size_t, int64_t p, absl::Span<router::core::QualityEstimate> out) {
                  const auto it = task_rates.find(data->prompts[p].task);
                  for (size_t j = 0; j < m; ++j) {
                    const double rate = it == task_rates.end() || it->second[j].second == 0
                                            ? 0.5
                                            : it->second[j].first / it->second[j].second;
                    out[j] = {rate, rate};
                  }
                  return absl::OkStatus();
                });
    if (!prior.ok()) return ToolError(kTool, kExitFailure, prior.status().ToString());
    absl::StatusOr<router::core::RoutingEvaluation> prior_routing =
        router::core::EvaluateRouting(*prior);
    absl::StatusOr<std::vector<router::core::ModelCalibration>> prior_calibration =
        router::core::CalibrationMetrics(*prior);
    if (!prior_routing.ok() || !prior_calibration.ok()) {
      return ToolError(kTool, kExitFailure, "task-prior baseline failed");
    }
    std::string method = flags.estimator;
    if (flags.estimator == "knn") {
      absl::StrAppend(&method, "-", flags.knn.k, " (D=", dim, ")");
    } else if (flags.estimator == "uniroute") {
      absl::StrAppend(&method, " K=", flags.uniroute.num_clusters, " (D=", dim, ")");
    } else {
      absl::StrAppend(&method, " H=", flags.classifier.hidden_units, " (D=", dim, ")");
    }
    std::cout << TableRow(data->name, method, *routing, *calibration) << '\n';
    std::cout << TableRow(data->name, "task prior (knows the task)", *prior_routing,
                          *prior_calibration)
              << '\n';
    result["task_prior_routing"] = router::core::RoutingToJson(*prior_routing);
  }

  if (!flags.out.empty()) {
    nlohmann::json provenance = result;
    provenance["command"] = flags.command;
    provenance["created"] = CreatedTime();
    provenance["label"] = "correct";
    absl::StatusOr<std::string> bytes =
        router::core::SerializeArtifact(*featurizer, *estimator, *cost, provenance);
    if (!bytes.ok()) return ToolError(kTool, kExitFailure, bytes.status().ToString());
    if (absl::Status s = router::core::WriteArtifactFile(flags.out, *bytes); !s.ok()) {
      return ToolError(kTool, kExitFailure, s.ToString());
    }
    Progress(absl::StrCat("wrote ", flags.out, " (", bytes->size(), " bytes)"));
    result["artifact"] = {{"path", flags.out}, {"bytes", bytes->size()}};
  }
  std::cout << result.dump() << '\n';
  std::cout.flush();
  if (!std::cout) return ToolError(kTool, kExitFailure, "cannot write to stdout");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return router::core::RunFlagTool<Flags>(kTool, kUsage, argc, argv, ParseFlags, Run);
}
