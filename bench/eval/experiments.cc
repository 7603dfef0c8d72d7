#include "bench/eval/experiments.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <set>
#include <utility>

#include "absl/functional/function_ref.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "router_core/estimate/cost_model.h"
#include "router_core/estimate/estimator_eval.h"
#include "router_core/estimate/training_data.h"
#include "bench/eval/curve.h"
#include "bench/eval/learning.h"
#include "bench/eval/report.h"
#include "router_core/planner/allocation.h"
#include "router_core/planner/capacity_planner.h"
#include "router_core/planner/plan_problem.h"

namespace router::core::eval {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
// Experiment 1's batch size and experiment 3's: the robust-routing paper's.
constexpr int kSweepBatch = 100;
// batch_gamma: at most this share of a batch's queries at their lower bound at once.
constexpr double kGammaShare = 0.1;

std::string Num(double v) { return std::isfinite(v) ? absl::StrFormat("%.6g", v) : "nan"; }

nlohmann::json SpreadJson(const std::vector<double>& values) {
  const Spread s = Summarize(values);
  auto n = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); };
  return {{"mean", n(s.mean)}, {"sd", n(s.sd)}, {"min", n(s.min)}, {"max", n(s.max)}, {"n", s.n}};
}

// Nearest-rank percentile q in (0, 1] of `values` (NaN when empty).
double Percentile(std::vector<double> values, double q) {
  if (values.empty()) return kNaN;
  std::sort(values.begin(), values.end());
  const auto rank = static_cast<size_t>(std::ceil(q * static_cast<double>(values.size())));
  return values[std::clamp<size_t>(rank, 1, values.size()) - 1];
}

nlohmann::json DiffJson(const std::vector<double>& diffs) {
  nlohmann::json j = SpreadJson(diffs);
  j["verdict"] = PairedVerdict(diffs);
  return j;
}

// What one split seed shares across experiments.
struct SeedData {
  uint64_t seed = 0;
  DatasetSplit split;
  std::unique_ptr<Featurizer> featurizer;
  FeatureMatrix train, calibration, test;
  std::unique_ptr<CostModel> cost;
};

FeatureMatrix SelectRows(const FeatureMatrix& m, const std::vector<size_t>& positions) {
  FeatureMatrix out;
  out.dim = m.dim;
  for (const size_t r : positions) {
    const auto row = m.row(static_cast<int64_t>(r));
    out.values.insert(out.values.end(), row.begin(), row.end());
  }
  return out;
}

// The first ceil(fraction * n) positions of a seeded shuffle of 0..n-1, ascending.
std::vector<size_t> Subsample(size_t n, double fraction, uint64_t seed) {
  std::vector<size_t> all(n);
  std::iota(all.begin(), all.end(), size_t{0});
  if (fraction >= 1.0) return all;
  std::mt19937_64 rng(seed);
  std::shuffle(all.begin(), all.end(), rng);
  all.resize(
      std::max<size_t>(1, static_cast<size_t>(std::ceil(fraction * static_cast<double>(n)))));
  std::sort(all.begin(), all.end());
  return all;
}

// Labels of the prompts `rows[positions]` for the dataset models `models`.
TrainingSet Labels(const Dataset& data, const std::vector<int64_t>& rows,
                   const std::vector<size_t>& positions, const std::vector<int>& models,
                   FeatureMatrix features) {
  TrainingSet t;
  t.features = std::move(features);
  for (const int j : models) t.models.push_back(data.models[static_cast<size_t>(j)].name);
  for (const size_t r : positions) {
    for (const int j : models) t.labels.push_back(data.correct[data.at(rows[r], j)]);
  }
  return t;
}

absl::StatusOr<SeedData> PrepareSeed(const Dataset& data, const EvalConfig& config, uint64_t seed) {
  SeedData s;
  s.seed = seed;
  SplitOptions split_options;
  split_options.seed = seed;
  absl::StatusOr<DatasetSplit> split = SplitDataset(data, split_options);
  if (!split.ok()) return split.status();
  s.split = *std::move(split);
  std::vector<std::string> texts;
  for (const int64_t p : s.split.train) texts.push_back(data.prompts[static_cast<size_t>(p)].text);
  absl::StatusOr<Featurizer> featurizer = Featurizer::Fit(config.featurizer, texts);
  if (!featurizer.ok()) return featurizer.status();
  s.featurizer = std::make_unique<Featurizer>(*std::move(featurizer));
  s.train = FeaturizeRows(data, s.split.train, *s.featurizer);
  s.calibration = FeaturizeRows(data, s.split.calibration, *s.featurizer);
  s.test = FeaturizeRows(data, s.split.test, *s.featurizer);
  absl::StatusOr<CostModel> cost = CostModel::Fit(data, s.split.train, CostModelOptions());
  if (!cost.ok()) return cost.status();
  s.cost = std::make_unique<CostModel>(*std::move(cost));
  return s;
}

std::vector<int> AllModels(const Dataset& data) {
  std::vector<int> all(data.models.size());
  std::iota(all.begin(), all.end(), 0);
  return all;
}

// Fits `kind` ("knn", "uniroute" or "classifier") on the given share of the train (and, for
// UniRoute's model statistics and the classifier's calibration, of the calibration) part, for the
// dataset models `models`.
absl::StatusOr<std::unique_ptr<QualityEstimator>> FitEstimator(
    const Dataset& data, const EvalConfig& config, const SeedData& s, absl::string_view kind,
    double fraction, const std::vector<int>& models) {
  const std::vector<size_t> train_pos = Subsample(s.split.train.size(), fraction, s.seed + 101);
  if (kind == "knn") {
    KnnOptions knn = config.knn;
    knn.seed = s.seed;
    absl::StatusOr<std::unique_ptr<KnnEstimator>> fitted = KnnEstimator::Fit(
        Labels(data, s.split.train, train_pos, models, SelectRows(s.train, train_pos)), knn);
    if (!fitted.ok()) return fitted.status();
    return std::unique_ptr<QualityEstimator>(*std::move(fitted));
  }
  const std::vector<size_t> cal_pos = Subsample(s.split.calibration.size(), fraction, s.seed + 202);
  if (kind == "classifier") {
    ClassifierOptions classifier = config.classifier;
    classifier.seed = s.seed;
    absl::StatusOr<std::unique_ptr<CalibratedClassifier>> fitted = FitCalibratedClassifier(
        Labels(data, s.split.train, train_pos, models, SelectRows(s.train, train_pos)),
        Labels(data, s.split.calibration, cal_pos, models, SelectRows(s.calibration, cal_pos)),
        classifier);
    if (!fitted.ok()) return fitted.status();
    return std::unique_ptr<QualityEstimator>(*std::move(fitted));
  }
  UniRouteOptions uniroute = config.uniroute;
  uniroute.seed = s.seed;
  // K-means needs at least K distinct prompts; a small share of a small dataset may have fewer.
  uniroute.num_clusters =
      std::min<int>(uniroute.num_clusters, static_cast<int>(train_pos.size()) / 4 + 1);
  absl::StatusOr<std::unique_ptr<UniRouteEstimator>> fitted = FitUniRoute(
      SelectRows(s.train, train_pos),
      Labels(data, s.split.calibration, cal_pos, models, SelectRows(s.calibration, cal_pos)),
      uniroute);
  if (!fitted.ok()) return fitted.status();
  return std::unique_ptr<QualityEstimator>(*std::move(fitted));
}

// Predictions of `estimator` for `rows` (featurized as `features`), in dataset model order
// (matched by name); with `clusters`, each row's cluster too (PredictWithCluster).
absl::StatusOr<HeldOutPredictions> PredictRows(const Dataset& data, const SeedData& s,
                                               const QualityEstimator& estimator,
                                               const std::vector<int64_t>& rows,
                                               const FeatureMatrix& features,
                                               std::vector<int>* clusters = nullptr) {
  if (clusters != nullptr) clusters->assign(rows.size(), 0);
  std::vector<size_t> index_of;  // dataset model -> estimator output
  for (const auto& model : data.models) {
    const auto& names = estimator.models();
    const auto it = std::find(names.begin(), names.end(), model.name);
    if (it == names.end()) {
      return absl::InternalError(absl::StrCat("estimator lacks model ", model.name));
    }
    index_of.push_back(static_cast<size_t>(it - names.begin()));
  }
  std::vector<QualityEstimate> raw(estimator.models().size());
  return PredictHeldOut(data, rows, *s.cost,
                        [&](size_t r, int64_t, absl::Span<QualityEstimate> out) -> absl::Status {
                          int cluster = 0;
                          if (absl::Status st = estimator.PredictWithCluster(
                                  features.row(static_cast<int64_t>(r)), absl::MakeSpan(raw),
                                  &cluster);
                              !st.ok()) {
                            return st;
                          }
                          if (clusters != nullptr) (*clusters)[r] = cluster;
                          for (size_t j = 0; j < out.size(); ++j) out[j] = raw[index_of[j]];
                          return absl::OkStatus();
                        });
}

absl::StatusOr<HeldOutPredictions> Predict(const Dataset& data, const SeedData& s,
                                           const QualityEstimator& estimator) {
  return PredictRows(data, s, estimator, s.split.test, s.test);
}

absl::StatusOr<HeldOutPredictions> FitAndPredict(const Dataset& data, const EvalConfig& config,
                                                 const SeedData& s, absl::string_view kind,
                                                 double fraction) {
  absl::StatusOr<std::unique_ptr<QualityEstimator>> estimator =
      FitEstimator(data, config, s, kind, fraction, AllModels(data));
  if (!estimator.ok()) return estimator.status();
  return Predict(data, s, **estimator);
}

// ---- experiment 1 ----------------------------------------------------------------------------

struct SweepPoint {
  std::string knob;
  double value;
  PolicyRun run;
};

std::vector<SweepPoint> SweepPoints(PolicyKind policy, const Reference& ref, bool quick) {
  std::vector<SweepPoint> points;
  if (policy == PolicyKind::kPerQuery) {
    // lambda = mu / (best model's predicted cost): mu is the quality a whole best-model call is
    // worth, swept geometrically from 1e-2 to 1e2, plus 0 (argmax quality).
    const int steps = quick ? 8 : 24;
    for (int k = -1; k <= steps; ++k) {
      const double mu = k < 0 ? 0.0 : std::pow(10.0, -2.0 + 4.0 * k / steps);
      PolicyRun run;
      run.policy = policy;
      run.params.lambda = mu / ref.predicted_cost;
      points.push_back({"mu", mu, run});
    }
    return points;
  }
  if (policy == PolicyKind::kThreshold) {
    const int steps = quick ? 5 : 20;
    for (int k = 0; k <= steps; ++k) {
      PolicyRun run;
      run.policy = policy;
      run.params.tau = static_cast<double>(k) / steps;
      points.push_back({"tau", run.params.tau, run});
    }
    return points;
  }
  const std::vector<double> fractions =
      quick ? std::vector<double>{0.1, 0.3, 0.5, 1.0}
            : std::vector<double>{0.03, 0.06, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.3};
  for (const double f : fractions) {
    PolicyRun run;
    run.policy = policy;
    run.budget_per_prompt = f * ref.predicted_cost;
    run.params.gamma = kGammaShare * kSweepBatch;
    points.push_back({"budget_fraction", f, run});
  }
  return points;
}

const std::vector<PolicyKind>& AllPolicies() {
  static const auto* policies = new std::vector<PolicyKind>{
      PolicyKind::kPerQuery, PolicyKind::kThreshold,   PolicyKind::kNdch,      PolicyKind::kNdchP,
      PolicyKind::kBatch,    PolicyKind::kBatchRobust, PolicyKind::kBatchGamma};
  return *policies;
}

struct Context {
  const Dataset& data;
  const EvalConfig& config;
  const ProgressFn& progress;
  std::vector<SeedData> seeds;
  // Per seed, per estimator: full-train test predictions.
  std::vector<std::map<std::string, HeldOutPredictions>> predictions;
  std::vector<Table> tables;
  nlohmann::json summary;
  std::string report;
};

const std::vector<std::string> kEstimators = {"knn", "uniroute", "classifier"};
// Experiment 4 adds models to a fitted estimator; the classifier's pool is fixed at training time.
const std::vector<std::string> kUnseenEstimators = {"knn", "uniroute"};

// Calls `run` for every seed (by its index k in c.seeds) and every estimator of kEstimators,
// seed-major, with the seed's held-out predictions of that estimator and their best single model;
// stops at the first error.
absl::Status ForEachSeedAndEstimator(
    const Context& c,
    absl::FunctionRef<absl::Status(size_t k, const std::string& est, const HeldOutPredictions& p,
                                   const Reference* ref)>
        run) {
  for (size_t k = 0; k < c.seeds.size(); ++k) {
    for (const std::string& est : kEstimators) {
      const HeldOutPredictions& p = c.predictions[k].at(est);
      absl::StatusOr<Reference> ref = BestSingleModel(p);
      if (!ref.ok()) return ref.status();
      if (absl::Status s = run(k, est, p, &*ref); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

absl::Status Experiment1(Context& c) {
  Table points{"exp1_budget_sweep",
               {"seed", "estimator", "policy", "knob", "value", "cost_rel", "accuracy", "acc_rel",
                "predicted_cost_rel", "unserved"},
               {}};
  Table metrics{"exp1_metrics",
                {"seed", "estimator", "policy", "qnc", "auc", "acc_rel_at_50", "acc_rel_at_100"},
                {}};
  // [estimator][policy][figure] -> per-seed values
  std::map<std::string, std::map<std::string, std::map<std::string, std::vector<double>>>> fig;
  auto run = [&](size_t k, const std::string& est, const HeldOutPredictions& p,
                 const Reference* ref) -> absl::Status {
    const uint64_t seed = c.seeds[k].seed;
    absl::StatusOr<Batches> batches = MakeBatches(p, Ordering::kRandom, kSweepBatch, seed);
    if (!batches.ok()) return batches.status();
    c.progress(absl::StrCat("exp1: seed ", seed, " ", est));
    for (const PolicyKind policy : AllPolicies()) {
      const std::string name(PolicyKindName(policy));
      CurvePoints curve;
      for (const SweepPoint& sp : SweepPoints(policy, *ref, c.config.quick)) {
        absl::StatusOr<RunResult> r = RunPolicy(p, *batches, sp.run, c.config.sim);
        if (!r.ok()) return r.status();
        const double cost_rel = r->realized_cost / ref->realized_cost;
        curve.emplace_back(cost_rel, r->accuracy);
        points.rows.push_back({Num(static_cast<double>(seed)), est, name, sp.knob, Num(sp.value),
                               Num(cost_rel), Num(r->accuracy), Num(r->accuracy / ref->accuracy),
                               Num(r->predicted_cost / ref->predicted_cost),
                               Num(static_cast<double>(r->unserved))});
      }
      const CurveMetrics m = ComputeCurveMetrics(curve, ref->accuracy);
      metrics.rows.push_back({Num(static_cast<double>(seed)), est, name, Num(m.qnc), Num(m.auc),
                              Num(m.acc_rel_at_50), Num(m.acc_rel_at_100)});
      fig[est][name]["qnc"].push_back(m.qnc);
      fig[est][name]["auc"].push_back(m.auc);
      fig[est][name]["acc_rel_at_50"].push_back(m.acc_rel_at_50);
    }
    // The estimator's own held-out lambda sweep (estimator_eval.h), one prompt at a time
    // without batches: the per-query policy must agree with it.
    absl::StatusOr<RoutingEvaluation> routing = EvaluateRouting(p);
    if (!routing.ok()) return routing.status();
    metrics.rows.push_back({Num(static_cast<double>(seed)), est, "estimator_eval_lambda_sweep",
                            Num(routing->qnc), Num(routing->deferral_auc),
                            Num(routing->relative_accuracy_at_50),
                            Num(routing->relative_accuracy_at_100)});
    return absl::OkStatus();
  };
  if (absl::Status s = ForEachSeedAndEstimator(c, run); !s.ok()) return s;
  nlohmann::json& out = c.summary["exp1_budget_sweep"];
  for (auto& [est, policies] : fig) {
    for (auto& [policy, figures] : policies) {
      for (auto& [figure, values] : figures) out[est][policy][figure] = SpreadJson(values);
      c.summary["qnc"][est][policy] = SpreadJson(figures["qnc"]);
      c.summary["acc_rel_at_50pct_cost"][est][policy] = SpreadJson(figures["acc_rel_at_50"]);
      c.summary["auc"][est][policy] = SpreadJson(figures["auc"]);
    }
  }
  c.tables.push_back(std::move(points));
  c.tables.push_back(std::move(metrics));
  return absl::OkStatus();
}

// ---- experiment 2 ----------------------------------------------------------------------------

absl::Status Experiment2(Context& c) {
  Table runs{"exp2_batching",
             {"seed", "estimator", "batch_size", "ordering", "cap_fraction", "arm", "lambda",
              "accuracy", "acc_rel", "cost_rel", "predicted_spend_rel", "batch_spend_sd_over_cap",
              "batch_spend_max_over_cap", "batches", "batches_over_cap"},
             {}};
  Table per_batch{"exp2_batches",
                  {"seed", "estimator", "batch_size", "ordering", "cap_fraction", "arm", "batch",
                   "spend_over_cap"},
                  {}};
  const std::vector<int> sizes =
      c.config.quick ? std::vector<int>{100} : std::vector<int>{100, 256};
  const std::vector<double> caps =
      c.config.quick ? std::vector<double>{0.5} : std::vector<double>{0.3, 0.5};
  // [config key][arm pair] -> per-seed accuracy differences in points; over-cap counts.
  std::map<std::string, std::map<std::string, std::vector<double>>> diffs;
  std::map<std::string, nlohmann::json> config_json;
  auto run = [&](size_t k, const std::string& est, const HeldOutPredictions& p,
                 const Reference* ref) -> absl::Status {
    const uint64_t seed = c.seeds[k].seed;
    for (const int size : sizes) {
      for (const Ordering ordering : {Ordering::kRandom, Ordering::kAdversarial}) {
        absl::StatusOr<Batches> batches = MakeBatches(p, ordering, size, seed);
        if (!batches.ok()) return batches.status();
        for (const double f : caps) {
          c.progress(absl::StrCat("exp2: seed ", seed, " ", est, " N=", size, " ",
                                  OrderingName(ordering), " cap ", f));
          const double cap = f * ref->predicted_cost;
          PolicyRun batch_run;
          batch_run.policy = PolicyKind::kBatch;
          batch_run.budget_per_prompt = cap;
          absl::StatusOr<RunResult> batch = RunPolicy(p, *batches, batch_run, c.config.sim);
          if (!batch.ok()) return batch.status();
          const double batch_total = batch->predicted_cost * static_cast<double>(batch->prompts);
          absl::StatusOr<LambdaTuning> matched =
              TuneLambdaToSpend(p, *batches, batch_total, c.config.sim);
          if (!matched.ok()) return matched.status();
          absl::StatusOr<LambdaTuning> safe = TuneLambdaUnderCap(p, *batches, cap, c.config.sim);
          if (!safe.ok()) return safe.status();
          struct Arm {
            std::string name;
            double lambda;
            RunResult result;
          };
          std::vector<Arm> arms;
          arms.push_back({"batch", kNaN, *batch});
          for (const auto& [name, lambda, guarded] :
               {std::tuple{"per_query_matched", matched->lambda, false},
                std::tuple{"per_query_safe", safe->lambda, false},
                std::tuple{"per_query_guarded", matched->lambda, true}}) {
            PolicyRun run;
            run.policy = PolicyKind::kPerQuery;
            run.params.lambda = lambda;
            if (guarded) run.budget_per_prompt = cap;
            absl::StatusOr<RunResult> r = RunPolicy(p, *batches, run, c.config.sim);
            if (!r.ok()) return r.status();
            arms.push_back({name, lambda, *std::move(r)});
          }
          // The inline router: one decision per arrival, windows = these batches.
          InlineRun inline_run;
          inline_run.budget_per_prompt = cap;
          absl::StatusOr<InlineReplay> inline_replay = RunInline(p, *batches, inline_run);
          if (!inline_replay.ok()) return inline_replay.status();
          arms.push_back({"inline", kNaN, inline_replay->result});
          const std::string key =
              absl::StrCat(est, "/N=", size, "/", OrderingName(ordering), "/cap=", Num(f));
          config_json[key] = {{"estimator", est},
                              {"batch_size", size},
                              {"ordering", OrderingName(ordering)},
                              {"cap_fraction", f}};
          for (const Arm& arm : arms) {
            std::vector<double> over_cap;
            for (size_t b = 0; b < arm.result.batch_spend.size(); ++b) {
              over_cap.push_back(arm.result.batch_spend[b] / (cap * arm.result.batch_size[b]));
            }
            const Spread spread = Summarize(over_cap);
            const int broken = BatchesOverCap(arm.result, cap);
            runs.rows.push_back(
                {Num(static_cast<double>(seed)), est, Num(size), OrderingName(ordering), Num(f),
                 arm.name, Num(arm.lambda), Num(arm.result.accuracy),
                 Num(arm.result.accuracy / ref->accuracy),
                 Num(arm.result.realized_cost / ref->realized_cost),
                 Num(arm.result.predicted_cost / ref->predicted_cost), Num(spread.sd),
                 Num(spread.max), Num(static_cast<double>(over_cap.size())), Num(broken)});
            if (k == 0) {
              for (size_t b = 0; b < over_cap.size(); ++b) {
                per_batch.rows.push_back({Num(static_cast<double>(seed)), est, Num(size),
                                          OrderingName(ordering), Num(f), arm.name,
                                          Num(static_cast<double>(b)), Num(over_cap[b])});
              }
            }
            diffs[key][absl::StrCat(arm.name, "_accuracy")].push_back(arm.result.accuracy);
            diffs[key][absl::StrCat(arm.name, "_batches_over_cap")].push_back(broken);
            diffs[key][absl::StrCat(arm.name, "_spend_sd_over_cap")].push_back(spread.sd);
            if (arm.name == "inline") {
              // The candidate replacing the batch arm: its gap to it, not batch's gain over it.
              diffs[key]["inline_minus_batch_points"].push_back(
                  100.0 * (arm.result.accuracy - arms[0].result.accuracy));
            } else if (arm.name != "batch") {
              diffs[key][absl::StrCat("batch_minus_", arm.name, "_points")].push_back(
                  100.0 * (arms[0].result.accuracy - arm.result.accuracy));
            }
          }
          diffs[key]["inline_decision_us_p99"].push_back(
              Percentile(inline_replay->decision_us, 0.99));
          diffs[key]["inline_guarded_share"].push_back(
              static_cast<double>(inline_replay->guarded) /
              static_cast<double>(inline_replay->result.prompts));
        }
      }
    }
    return absl::OkStatus();
  };
  if (absl::Status s = ForEachSeedAndEstimator(c, run); !s.ok()) return s;
  nlohmann::json& out = c.summary["exp2_batching"];
  for (auto& [key, figures] : diffs) {
    nlohmann::json entry = config_json[key];
    for (auto& [figure, values] : figures) {
      entry[figure] =
          figure.find("_minus_") != std::string::npos ? DiffJson(values) : SpreadJson(values);
    }
    out[key] = entry;
  }
  // Headline: the adversarial, hard-cap regime at the paper's batch size.
  for (const std::string& est : kEstimators) {
    for (const double f : caps) {
      const std::string key = absl::StrCat(est, "/N=100/adversarial/cap=", Num(f));
      if (!diffs.count(key)) continue;
      c.summary["batch_vs_perquery_safe_gain"][absl::StrCat(est, "/cap=", Num(f))] =
          DiffJson(diffs[key]["batch_minus_per_query_safe_points"]);
      c.summary["batch_vs_perquery_matched_gain"][absl::StrCat(est, "/cap=", Num(f))] =
          DiffJson(diffs[key]["batch_minus_per_query_matched_points"]);
      // The inline router against the batch ILP it replaces, same windows and caps.
      c.summary["inline_minus_batch_pts"][absl::StrCat(est, "/cap=", Num(f))] =
          DiffJson(diffs[key]["inline_minus_batch_points"]);
      c.summary["inline_decision_us_p99"][absl::StrCat(est, "/cap=", Num(f))] =
          SpreadJson(diffs[key]["inline_decision_us_p99"]);
      const std::string random_key = absl::StrCat(est, "/N=100/random/cap=", Num(f));
      if (diffs.count(random_key)) {
        c.summary["inline_minus_batch_pts_random"][absl::StrCat(est, "/cap=", Num(f))] =
            DiffJson(diffs[random_key]["inline_minus_batch_points"]);
      }
    }
  }
  // Every inline window over its cap, summed over the seeds and every adversarial configuration
  // (estimators, batch sizes, caps): the inline guard says 0.
  double inline_violations = 0.0;
  for (auto& [key, figures] : diffs) {
    if (config_json[key]["ordering"] != OrderingName(Ordering::kAdversarial)) continue;
    for (const double v : figures["inline_batches_over_cap"]) inline_violations += v;
  }
  c.summary["inline_cap_violations"] = static_cast<int64_t>(inline_violations);
  c.tables.push_back(std::move(runs));
  c.tables.push_back(std::move(per_batch));
  return absl::OkStatus();
}

// ---- experiment 3 ----------------------------------------------------------------------------

absl::Status Experiment3(Context& c) {
  Table rows{"exp3_robustness",
             {"seed", "estimator", "train_fraction", "budget_fraction", "policy", "accuracy",
              "acc_rel", "cost_rel"},
             {}};
  const std::vector<double> fractions =
      c.config.quick ? std::vector<double>{0.3, 1.0} : std::vector<double>{0.1, 0.3, 1.0};
  const std::vector<double> budgets =
      c.config.quick ? std::vector<double>{0.3} : std::vector<double>{0.2, 0.5};
  std::map<std::string, std::map<std::string, std::vector<double>>> figs;
  for (size_t k = 0; k < c.seeds.size(); ++k) {
    const uint64_t seed = c.seeds[k].seed;
    for (const std::string& est : kEstimators) {
      for (const double frac : fractions) {
        c.progress(absl::StrCat("exp3: seed ", seed, " ", est, " train ", frac));
        absl::StatusOr<HeldOutPredictions> fitted;
        if (frac >= 1.0) {
          fitted = c.predictions[k].at(est);
        } else {
          fitted = FitAndPredict(c.data, c.config, c.seeds[k], est, frac);
        }
        if (!fitted.ok()) return fitted.status();
        // The reference is the same for every fraction: it depends on outcomes, not predictions.
        absl::StatusOr<Reference> ref = BestSingleModel(*fitted);
        if (!ref.ok()) return ref.status();
        absl::StatusOr<Batches> batches =
            MakeBatches(*fitted, Ordering::kRandom, kSweepBatch, seed);
        if (!batches.ok()) return batches.status();
        for (const double b : budgets) {
          const std::string key = absl::StrCat(est, "/train=", Num(frac), "/budget=", Num(b));
          double plain = kNaN;
          for (const PolicyKind policy :
               {PolicyKind::kBatch, PolicyKind::kBatchRobust, PolicyKind::kBatchGamma}) {
            PolicyRun run;
            run.policy = policy;
            run.budget_per_prompt = b * ref->predicted_cost;
            run.params.gamma = kGammaShare * kSweepBatch;
            absl::StatusOr<RunResult> r = RunPolicy(*fitted, *batches, run, c.config.sim);
            if (!r.ok()) return r.status();
            const std::string name(PolicyKindName(policy));
            rows.rows.push_back({Num(static_cast<double>(seed)), est, Num(frac), Num(b), name,
                                 Num(r->accuracy), Num(r->accuracy / ref->accuracy),
                                 Num(r->realized_cost / ref->realized_cost)});
            figs[key][absl::StrCat(name, "_accuracy")].push_back(r->accuracy);
            if (policy == PolicyKind::kBatch) {
              plain = r->accuracy;
            } else {
              figs[key][absl::StrCat(name, "_minus_batch_points")].push_back(100.0 *
                                                                             (r->accuracy - plain));
            }
          }
        }
      }
    }
  }
  nlohmann::json& out = c.summary["exp3_robustness"];
  for (auto& [key, figures] : figs) {
    for (auto& [figure, values] : figures) {
      out[key][figure] =
          figure.find("_minus_") != std::string::npos ? DiffJson(values) : SpreadJson(values);
    }
  }
  c.tables.push_back(std::move(rows));
  return absl::OkStatus();
}

// ---- experiment 4 ----------------------------------------------------------------------------

absl::Status Experiment4(Context& c) {
  Table rows{"exp4_unseen_models",
             {"seed", "arm", "unseen_models", "auc", "qnc", "acc_rel_at_50", "argmax_accuracy"},
             {}};
  std::map<std::string, std::map<std::string, std::vector<double>>> figs;
  const size_t m = c.data.models.size();
  for (size_t k = 0; k < c.seeds.size(); ++k) {
    const SeedData& s = c.seeds[k];
    c.progress(absl::StrCat("exp4: seed ", s.seed));
    std::vector<int> order = AllModels(c.data);
    std::mt19937_64 rng(s.seed + 303);
    std::shuffle(order.begin(), order.end(), rng);
    const size_t seen_count = std::max<size_t>(1, (2 * m + 2) / 3);
    std::vector<int> seen(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(seen_count));
    std::vector<int> unseen(order.begin() + static_cast<std::ptrdiff_t>(seen_count), order.end());
    std::sort(seen.begin(), seen.end());
    std::vector<std::string> unseen_names;
    for (const int j : unseen) unseen_names.push_back(c.data.models[static_cast<size_t>(j)].name);

    for (const std::string& est : kUnseenEstimators) {
      absl::StatusOr<std::unique_ptr<QualityEstimator>> partial =
          FitEstimator(c.data, c.config, s, est, 1.0, seen);
      if (!partial.ok()) return partial.status();
      for (const int j : unseen) {
        ModelValidation validation;
        validation.features.dim = s.calibration.dim;
        for (size_t r = 0; r < s.split.calibration.size(); ++r) {
          const double y = c.data.correct[c.data.at(s.split.calibration[r], j)];
          if (std::isnan(y)) continue;
          const auto row = s.calibration.row(static_cast<int64_t>(r));
          validation.features.values.insert(validation.features.values.end(), row.begin(),
                                            row.end());
          validation.scores.push_back(y);
        }
        if (absl::Status st =
                (*partial)->AddModel(c.data.models[static_cast<size_t>(j)].name, validation);
            !st.ok()) {
          return st;
        }
      }
      for (const auto& [arm, predictions] :
           {std::pair{absl::StrCat(est, "_unseen"), Predict(c.data, s, **partial)},
            std::pair{absl::StrCat(est, "_all"),
                      absl::StatusOr<HeldOutPredictions>(c.predictions[k].at(est))}}) {
        if (!predictions.ok()) return predictions.status();
        absl::StatusOr<RoutingEvaluation> r = EvaluateRouting(*predictions);
        if (!r.ok()) return r.status();
        rows.rows.push_back({Num(static_cast<double>(s.seed)), arm,
                             absl::StrJoin(unseen_names, ";"), Num(r->deferral_auc), Num(r->qnc),
                             Num(r->relative_accuracy_at_50), Num(r->argmax_accuracy)});
        figs[arm]["auc"].push_back(r->deferral_auc);
        figs[arm]["qnc"].push_back(r->qnc);
        figs[arm]["acc_rel_at_50"].push_back(r->relative_accuracy_at_50);
        figs[arm]["argmax_accuracy"].push_back(r->argmax_accuracy);
      }
    }
  }
  nlohmann::json& out = c.summary["exp4_unseen_models"];
  for (auto& [arm, figures] : figs) {
    for (auto& [figure, values] : figures) out[arm][figure] = SpreadJson(values);
  }
  auto diff = [&](const std::string& a, const std::string& b, const std::string& figure) {
    std::vector<double> d;
    for (size_t k = 0; k < figs[a][figure].size(); ++k) {
      d.push_back(figs[a][figure][k] - figs[b][figure][k]);
    }
    return DiffJson(d);
  };
  const std::string fig =
      std::isfinite(Summarize(figs["uniroute_unseen"]["auc"]).mean) ? "auc" : "argmax_accuracy";
  out["figure_compared"] = fig;
  out["uniroute_unseen_minus_knn_unseen"] = diff("uniroute_unseen", "knn_unseen", fig);
  out["uniroute_unseen_minus_uniroute_all"] = diff("uniroute_unseen", "uniroute_all", fig);
  c.tables.push_back(std::move(rows));
  return absl::OkStatus();
}

// ---- experiments 5 and 6: self-hosted capacity ------------------------------------------------

// The paper's instance shapes (GPUs per instance, slots per instance), largest model first: bigger
// models need more GPUs and serve fewer requests at once.
constexpr int64_t kShapeGpus[] = {8, 4, 2, 1};
constexpr int64_t kShapeSlots[] = {2, 4, 8, 16};
constexpr size_t kSelfHosted = 4;
// Per-prompt spend cap of experiments 5 and 6, as a fraction of the best single model's mean
// predicted cost: tight enough that the priced API models cannot absorb every query.
constexpr double kCapacityCap = 0.3;

// The self-hosted models of one seed: the kSelfHosted most accurate on the train part (what an
// operator knows before deploying), best first, so the most accurate one gets the largest shape.
// Fewer when the dataset has fewer than kSelfHosted + 1 models (one API model must remain).
std::vector<int> SelfHostedModels(const Dataset& data, const SeedData& s) {
  const size_t m = data.models.size();
  std::vector<double> acc(m, 0.0), n(m, 0.0);
  for (const int64_t row : s.split.train) {
    for (size_t j = 0; j < m; ++j) {
      const double y = data.correct[data.at(row, static_cast<int>(j))];
      if (std::isnan(y)) continue;
      acc[j] += y;
      n[j] += 1.0;
    }
  }
  std::vector<int> order = AllModels(data);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    const auto mean = [&](int j) {
      return n[static_cast<size_t>(j)] > 0 ? acc[static_cast<size_t>(j)] / n[static_cast<size_t>(j)]
                                           : 0.0;
    };
    return mean(a) > mean(b);
  });
  order.resize(std::min(kSelfHosted, m > 0 ? m - 1 : 0));
  return order;
}

// Self-hosted models answer at zero per-query cost (their GPUs are paid for either way).
HeldOutPredictions ZeroCost(HeldOutPredictions p, const std::vector<int>& self_hosted) {
  const size_t m = p.models.size();
  for (int64_t i = 0; i < p.num_prompts; ++i) {
    for (const int j : self_hosted) {
      const size_t at = static_cast<size_t>(i) * m + static_cast<size_t>(j);
      p.predicted_cost[at] = 0.0;
      if (at < p.realized_cost.size() && !std::isnan(p.realized_cost[at])) p.realized_cost[at] = 0.0;
    }
  }
  return p;
}

// Per-model slots of every batch for `instances` of the self-hosted models (k-th gets shape k).
std::vector<std::optional<int64_t>> SlotsFor(size_t m, const std::vector<int>& self_hosted,
                                             const std::vector<int64_t>& instances) {
  std::vector<std::optional<int64_t>> slots(m);
  for (size_t k = 0; k < self_hosted.size(); ++k) {
    slots[static_cast<size_t>(self_hosted[k])] = instances[k] * kShapeSlots[k];
  }
  return slots;
}

absl::Status Experiment5(Context& c) {
  Table rows{"exp5_capacity",
             {"seed", "estimator", "scenario", "slots_per_batch", "arm", "lambda", "accuracy",
              "acc_rel", "realized_cost_usd", "cost_rel", "unserved", "batches",
              "batches_over_slots", "batches_over_cap"},
             {}};
  // [estimator][scenario][figure] -> per-seed values
  std::map<std::string, std::map<std::string, std::map<std::string, std::vector<double>>>> figs;
  // Threshold arm: the default acceptable quality of PolicyParams (no tuning in hindsight).
  const double tau = PolicyParams().tau;
  auto run = [&](size_t k, const std::string& est, const HeldOutPredictions& priced,
                 const Reference* ref) -> absl::Status {
    const uint64_t seed = c.seeds[k].seed;
    const std::vector<int> hosted = SelfHostedModels(c.data, c.seeds[k]);
    const HeldOutPredictions p = ZeroCost(priced, hosted);
    absl::StatusOr<Batches> batches = MakeBatches(p, Ordering::kRandom, kSweepBatch, seed);
    if (!batches.ok()) return batches.status();
    const double cap = kCapacityCap * ref->predicted_cost;
    // Binding: one instance each (2 + 4 + 8 + 16 = 30 slots for a batch of 100). Not binding:
    // enough instances that every self-hosted model alone could take a whole batch.
    std::vector<int64_t> one(hosted.size(), 1), many(hosted.size());
    for (size_t h = 0; h < hosted.size(); ++h) {
      many[h] = (kSweepBatch + kShapeSlots[h] - 1) / kShapeSlots[h];
    }
    for (const auto& [scenario, instances] :
         {std::pair{std::string("slots_binding"), one},
          std::pair{std::string("slots_not_binding"), many}}) {
      c.progress(absl::StrCat("exp5: seed ", seed, " ", est, " ", scenario));
      const auto slots = SlotsFor(p.models.size(), hosted, instances);
      int64_t total_slots = 0;
      for (size_t h = 0; h < hosted.size(); ++h) total_slots += instances[h] * kShapeSlots[h];
      PolicyRun batch_run;
      batch_run.policy = PolicyKind::kBatch;
      batch_run.budget_per_prompt = cap;
      batch_run.slots = slots;
      absl::StatusOr<RunResult> batch = RunPolicy(p, *batches, batch_run, c.config.sim);
      if (!batch.ok()) return batch.status();
      // The per-query router knows prices but not slots: its lambda is tuned (without slots) to
      // the batch arm's total predicted spend, then the feasibility guard enforces slots and cap.
      absl::StatusOr<LambdaTuning> matched = TuneLambdaToSpend(
          p, *batches, batch->predicted_cost * static_cast<double>(batch->prompts), c.config.sim);
      if (!matched.ok()) return matched.status();
      PolicyRun guarded;
      guarded.policy = PolicyKind::kPerQuery;
      guarded.params.lambda = matched->lambda;
      guarded.budget_per_prompt = cap;
      guarded.slots = slots;
      absl::StatusOr<RunResult> per_query = RunPolicy(p, *batches, guarded, c.config.sim);
      if (!per_query.ok()) return per_query.status();
      PolicyRun threshold = guarded;
      threshold.policy = PolicyKind::kThreshold;
      threshold.params.tau = tau;
      absl::StatusOr<RunResult> thr = RunPolicy(p, *batches, threshold, c.config.sim);
      if (!thr.ok()) return thr.status();
      for (const auto& [arm, lambda, r] :
           {std::tuple{std::string("batch"), kNaN, &*batch},
            std::tuple{std::string("per_query_guarded"), matched->lambda, &*per_query},
            std::tuple{std::string("threshold_guarded"), kNaN, &*thr}}) {
        rows.rows.push_back({Num(static_cast<double>(seed)), est, scenario,
                             Num(static_cast<double>(total_slots)), arm, Num(lambda),
                             Num(r->accuracy), Num(r->accuracy / ref->accuracy),
                             Num(r->realized_cost), Num(r->realized_cost / ref->realized_cost),
                             Num(static_cast<double>(r->unserved)),
                             Num(static_cast<double>(r->batch_spend.size())),
                             Num(r->batches_over_slots), Num(BatchesOverCap(*r, cap))});
        auto& fig = figs[est][scenario];
        fig[arm + "_accuracy"].push_back(r->accuracy);
        fig[arm + "_cost_rel"].push_back(r->realized_cost / ref->realized_cost);
        fig[arm + "_batches_over_slots"].push_back(r->batches_over_slots);
        if (arm != "batch") {
          fig["batch_minus_" + arm + "_points"].push_back(100.0 *
                                                          (batch->accuracy - r->accuracy));
        }
      }
    }
    return absl::OkStatus();
  };
  if (absl::Status s = ForEachSeedAndEstimator(c, run); !s.ok()) return s;
  nlohmann::json& out = c.summary["exp5_capacity"];
  out["cap_fraction"] = kCapacityCap;
  out["threshold_tau"] = tau;
  out["estimators"] = kEstimators;
  for (auto& [est, scenarios] : figs) {
    for (auto& [scenario, figures] : scenarios) {
      for (auto& [figure, values] : figures) {
        out[est][scenario][figure] =
            figure.find("_minus_") != std::string::npos ? DiffJson(values) : SpreadJson(values);
      }
    }
  }
  c.tables.push_back(std::move(rows));
  return absl::OkStatus();
}

// The allocation problem of experiment 6 on the historical batches `history` of predictions `p`
// (self-hosted models already at zero cost).
PlanProblem AllocationProblem(const HeldOutPredictions& p, const Batches& history,
                              const std::vector<int>& hosted, int64_t gpu_budget, double cap,
                              absl::Duration time_limit) {
  PlanProblem problem;
  const size_t m = p.models.size();
  for (size_t j = 0; j < m; ++j) {
    PlanModel model;
    model.name = p.models[j];
    problem.models.push_back(std::move(model));
  }
  for (size_t h = 0; h < hosted.size(); ++h) {
    problem.models[static_cast<size_t>(hosted[h])].gpus_per_instance = kShapeGpus[h];
    problem.models[static_cast<size_t>(hosted[h])].slots_per_instance = kShapeSlots[h];
  }
  problem.gpu_budget = gpu_budget;
  problem.avg_cost_cap = cap;
  problem.time_limit = time_limit;
  for (const auto& batch : history) {
    std::vector<Query> queries;
    for (const int64_t i : batch) queries.push_back(PredictionQuery(p, i));
    problem.batches.push_back(std::move(queries));
  }
  return problem;
}

absl::Status Experiment6(Context& c) {
  Table rows{"exp6_allocation",
             {"seed", "estimator", "gpu_budget", "plan", "instances", "gpus_used",
              "history_predicted_quality", "test_accuracy", "acc_rel", "realized_cost_usd",
              "unserved", "batches_over_slots"},
             {}};
  const std::vector<int64_t> budgets =
      c.config.quick ? std::vector<int64_t>{16} : std::vector<int64_t>{16, 32};
  const absl::Duration plan_time = c.config.quick ? absl::Seconds(1) : absl::Seconds(5);
  // [estimator][GPU budget][figure] -> per-seed values
  std::map<std::string, std::map<std::string, std::map<std::string, std::vector<double>>>> figs;
  absl::StatusOr<CapacityPlanner> planner = CapacityPlanner::Create();
  if (!planner.ok()) return planner.status();
  for (size_t k = 0; k < c.seeds.size(); ++k) {
    for (const std::string& est : kEstimators) {
      const SeedData& s = c.seeds[k];
      // History = the calibration part: the estimator never saw it, so its predictions there are as
      // (im)precise as in production (kNN's predictions on its own train rows would find the row
      // itself among the neighbours).
      absl::StatusOr<std::unique_ptr<QualityEstimator>> estimator =
          FitEstimator(c.data, c.config, s, est, 1.0, AllModels(c.data));
      if (!estimator.ok()) return estimator.status();
      absl::StatusOr<HeldOutPredictions> hist_priced =
          PredictRows(c.data, s, **estimator, s.split.calibration, s.calibration);
      if (!hist_priced.ok()) return hist_priced.status();
      const std::vector<int> hosted = SelfHostedModels(c.data, s);
      const HeldOutPredictions hist = ZeroCost(*hist_priced, hosted);
      const HeldOutPredictions test = ZeroCost(c.predictions[k].at(est), hosted);
      absl::StatusOr<Reference> hist_ref = BestSingleModel(*hist_priced);
      if (!hist_ref.ok()) return hist_ref.status();
      absl::StatusOr<Reference> test_ref = BestSingleModel(c.predictions[k].at(est));
      if (!test_ref.ok()) return test_ref.status();
      // The cap is set from history, as an operator would.
      const double cap = kCapacityCap * hist_ref->predicted_cost;
      absl::StatusOr<Batches> history = MakeBatches(hist, Ordering::kRandom, kSweepBatch, s.seed);
      if (!history.ok()) return history.status();
      absl::StatusOr<Batches> test_batches =
          MakeBatches(test, Ordering::kRandom, kSweepBatch, s.seed + 1);
      if (!test_batches.ok()) return test_batches.status();
      for (const int64_t gpus : budgets) {
        c.progress(absl::StrCat("exp6: seed ", s.seed, " ", est, " ", gpus, " GPUs"));
        const PlanProblem problem = AllocationProblem(hist, *history, hosted, gpus, cap, plan_time);
        absl::StatusOr<std::vector<int64_t>> uniform = UniformAllocation(problem);
        if (!uniform.ok()) return uniform.status();
        absl::StatusOr<std::vector<int64_t>> proportional = ProportionalAllocation(problem);
        if (!proportional.ok()) return proportional.status();
        absl::StatusOr<CapacityPlan> plan = planner->Plan(problem);
        if (!plan.ok()) return plan.status();
        const std::string key = absl::StrCat("gpus=", gpus);
        std::map<std::string, double> accuracy;
        for (const auto& [name, instances] :
             {std::pair{std::string("optimized"), plan->instances},
              std::pair{std::string("uniform"), *uniform},
              std::pair{std::string("proportional"), *proportional}}) {
          absl::StatusOr<AllocationEvaluation> predicted = EvaluateAllocation(problem, instances);
          if (!predicted.ok()) return predicted.status();
          std::vector<int64_t> hosted_instances;
          std::vector<std::string> shown;
          for (const int j : hosted) {
            hosted_instances.push_back(instances[static_cast<size_t>(j)]);
            shown.push_back(absl::StrCat(c.data.models[static_cast<size_t>(j)].name, "=",
                                         instances[static_cast<size_t>(j)]));
          }
          PolicyRun run;
          run.policy = PolicyKind::kBatch;
          run.budget_per_prompt = cap;
          run.slots = SlotsFor(test.models.size(), hosted, hosted_instances);
          absl::StatusOr<RunResult> r = RunPolicy(test, *test_batches, run, c.config.sim);
          if (!r.ok()) return r.status();
          const int64_t used = GpusUsed(problem, instances);
          rows.rows.push_back({Num(static_cast<double>(s.seed)), est,
                               Num(static_cast<double>(gpus)), name, absl::StrJoin(shown, ";"),
                               Num(static_cast<double>(used)), Num(predicted->mean_quality),
                               Num(r->accuracy), Num(r->accuracy / test_ref->accuracy),
                               Num(r->realized_cost), Num(static_cast<double>(r->unserved)),
                               Num(r->batches_over_slots)});
          accuracy[name] = r->accuracy;
          auto& fig = figs[est][key];
          fig[name + "_test_accuracy"].push_back(r->accuracy);
          fig[name + "_history_predicted_quality"].push_back(predicted->mean_quality);
          fig[name + "_gpus_used"].push_back(static_cast<double>(used));
        }
        for (const std::string base : {"uniform", "proportional"}) {
          figs[est][key]["optimized_minus_" + base + "_points"].push_back(
              100.0 * (accuracy["optimized"] - accuracy[base]));
          figs[est][key]["optimized_over_" + base + "_rel_gain"].push_back(
              accuracy["optimized"] / accuracy[base] - 1.0);
        }
      }
    }
  }
  nlohmann::json& out = c.summary["exp6_allocation"];
  out["cap_fraction"] = kCapacityCap;
  out["estimators"] = kEstimators;
  out["history"] = "calibration part, random batches of 100";
  for (auto& [est, budgets_of] : figs) {
    for (auto& [key, figures] : budgets_of) {
      for (auto& [figure, values] : figures) {
        out[est][key][figure] = figure.find("_minus_") != std::string::npos ||
                                        figure.find("_rel_gain") != std::string::npos
                                    ? DiffJson(values)
                                    : SpreadJson(values);
      }
    }
  }
  c.tables.push_back(std::move(rows));
  return absl::OkStatus();
}

// ---- experiment 7: learning from outcomes ----------------------------------------------------

// Budget cap of experiment 7, as a fraction of the best single model's mean predicted cost, and
// every model's slots per batch of kSweepBatch: both bind in some batches, so the replay's
// re-count of every batch's limits is a real test.
constexpr double kLearnCap = 0.5;
constexpr int64_t kLearnSlots = 40;
// Share of the degraded model's correct answers turned wrong, on the degraded tasks.
constexpr double kDriftFlip = 0.4;
// Windows of the accuracy curves and of the new model's traffic share, in stream queries.
constexpr int64_t kCurveWindow = 200;
// The new model "carries most of the task's traffic" in the first window where it serves more than
// half of the task's queries (a window with fewer than this many queries of the task is skipped).
constexpr int64_t kMinTaskQueriesPerWindow = 10;

// Test accuracy of each model on each task's usable rows: [task][model].
std::map<std::string, std::vector<double>> TaskAccuracy(const Dataset& data, const SeedData& s,
                                                        const HeldOutPredictions& p) {
  const size_t m = p.models.size();
  std::map<std::string, std::vector<double>> sum, count;
  for (const int64_t r : UsablePrompts(p)) {
    const std::string& task = data.prompts[static_cast<size_t>(s.split.test[r])].task;
    auto& su = sum[task];
    auto& co = count[task];
    su.resize(m, 0.0);
    co.resize(m, 0.0);
    for (size_t j = 0; j < m; ++j) {
      su[j] += p.correct[static_cast<size_t>(r) * m + j];
      co[j] += 1.0;
    }
  }
  for (auto& [task, v] : sum) {
    for (size_t j = 0; j < m; ++j) v[j] /= std::max(1.0, count[task][j]);
  }
  return sum;
}

absl::Status Experiment7(Context& c) {
  Table rows{"exp7_learning",
             {"seed", "scenario", "arm", "accuracy_all", "accuracy_after_switch",
              "accuracy_end_window", "predicted_cost_per_query", "realized_cost_per_query",
              "explored_share", "batches", "budget_binding", "slots_binding", "learner_cells"},
             {}};
  Table curve{"exp7_learning_curve",
              {"seed", "scenario", "arm", "metric", "window_start", "window_end", "value"},
              {}};
  Table newcomer{"exp7_new_model",
                 {"seed", "new_model", "task", "task_share_of_stream", "task_top_cluster_share",
                  "full_knowledge_share",
                  "online_share_last_quarter", "queries_to_majority"},
                 {}};
  // After the switch (the drift, half-way): the horizon, and the window at its end.
  const int64_t horizon = c.config.quick ? 200 : 2000;
  const int64_t length = 2 * horizon;
  const int64_t end_window = horizon / 4;
  OutcomeLearnerOptions learner = c.config.learner;
  std::map<std::string, std::vector<double>> figs;
  std::vector<double> to_majority;
  int reached = 0;
  std::map<std::string, int> degraded_names, new_names;
  for (size_t k = 0; k < c.seeds.size(); ++k) {
    const SeedData& s = c.seeds[k];
    c.progress(absl::StrCat("exp7: seed ", s.seed));
    absl::StatusOr<std::unique_ptr<QualityEstimator>> estimator =
        FitEstimator(c.data, c.config, s, "uniroute", 1.0, AllModels(c.data));
    if (!estimator.ok()) return estimator.status();
    std::vector<int> clusters;
    absl::StatusOr<HeldOutPredictions> p =
        PredictRows(c.data, s, **estimator, s.split.test, s.test, &clusters);
    if (!p.ok()) return p.status();
    const size_t m = p->models.size();
    absl::StatusOr<Reference> ref = BestSingleModel(*p);
    if (!ref.ok()) return ref.status();
    absl::StatusOr<std::vector<int64_t>> stream = MakeStream(UsablePrompts(*p), length, s.seed);
    if (!stream.ok()) return stream.status();
    auto task_of = [&](int64_t row) -> const std::string& {
      return c.data.prompts[static_cast<size_t>(s.split.test[static_cast<size_t>(row)])].task;
    };

    StreamSetup setup;
    setup.stream = *stream;
    setup.clusters = clusters;
    setup.truth_before = &p->correct;
    setup.switch_at = horizon;
    setup.batch_size = kSweepBatch;
    setup.cap_per_prompt = kLearnCap * ref->predicted_cost;
    setup.slots.assign(m, kLearnSlots);
    setup.solve = c.config.sim.solve;
    StreamArm static_arm;
    static_arm.before = &*p;
    StreamArm online_arm = static_arm;
    online_arm.learner = learner;
    online_arm.seed = s.seed * 7919 + 1;

    // Writes the arm's row and curve; returns (accuracy after the switch, at the end window).
    auto report = [&](const std::string& scenario, const std::string& arm,
                      const StreamRun& r) -> std::pair<double, double> {
      const double n = static_cast<double>(length);
      double explored = 0.0;
      for (const uint8_t e : r.explored) explored += e;
      const double after = MeanScore(r, horizon, length);
      const double end = MeanScore(r, length - end_window, length);
      rows.rows.push_back({Num(static_cast<double>(s.seed)), scenario, arm,
                           Num(MeanScore(r, 0, length)), Num(after), Num(end),
                           Num(r.predicted_spend / n), Num(r.realized_spend / n),
                           Num(explored / n), Num(static_cast<double>(r.batches)),
                           Num(static_cast<double>(r.budget_binding)),
                           Num(static_cast<double>(r.slots_binding)),
                           Num(static_cast<double>(r.cells.size()))});
      for (int64_t w = 0; w < length; w += kCurveWindow) {
        curve.rows.push_back({Num(static_cast<double>(s.seed)), scenario, arm, "accuracy",
                              Num(static_cast<double>(w)),
                              Num(static_cast<double>(std::min(length, w + kCurveWindow))),
                              Num(MeanScore(r, w, w + kCurveWindow))});
      }
      const std::string key = absl::StrCat(scenario, "/", arm);
      figs[key + "/accuracy_all"].push_back(MeanScore(r, 0, length));
      figs[key + "/accuracy_after_switch"].push_back(after);
      figs[key + "/accuracy_end_window"].push_back(end);
      figs[key + "/predicted_cost_per_query"].push_back(r.predicted_spend / n);
      figs[key + "/explored_share"].push_back(explored / n);
      figs[key + "/budget_binding_batches"].push_back(static_cast<double>(r.budget_binding));
      figs[key + "/slots_binding_batches"].push_back(static_cast<double>(r.slots_binding));
      return {after, end};
    };

    // No drift: the static router against the online one, same stream, cap and slots.
    absl::StatusOr<StreamRun> base = ReplayStream(setup, static_arm);
    if (!base.ok()) return base.status();
    absl::StatusOr<StreamRun> online = ReplayStream(setup, online_arm);
    if (!online.ok()) return online.status();
    report("no_drift", "static", *base);
    report("no_drift", "online", *online);
    figs["online_minus_static_pts_nodrift"].push_back(
        100.0 * (MeanScore(*online, 0, length) - MeanScore(*base, 0, length)));
    figs["nodrift_online_minus_static_spend_pct"].push_back(
        100.0 * (online->predicted_spend / base->predicted_spend - 1.0));

    // Drift: the model most accurate on the train part degrades, from the middle of the stream, on
    // the tasks where the static router used it most before (those covering half its traffic).
    const int degraded = SelfHostedModels(c.data, s).front();
    ++degraded_names[p->models[static_cast<size_t>(degraded)]];
    std::map<std::string, int64_t> used;
    int64_t used_total = 0;
    for (int64_t t = 0; t < horizon; ++t) {
      if (base->chosen[static_cast<size_t>(t)] != degraded) continue;
      ++used[task_of(setup.stream[static_cast<size_t>(t)])];
      ++used_total;
    }
    std::vector<std::pair<int64_t, std::string>> by_use;
    for (const auto& [task, count] : used) by_use.emplace_back(count, task);
    std::sort(by_use.rbegin(), by_use.rend());
    std::set<std::string> drift_tasks;
    int64_t covered = 0;
    for (const auto& [count, task] : by_use) {
      if (2 * covered >= used_total) break;
      drift_tasks.insert(task);
      covered += count;
    }
    if (drift_tasks.empty()) drift_tasks.insert(task_of(setup.stream.front()));
    std::vector<uint8_t> in_tasks(static_cast<size_t>(p->num_prompts), 0);
    for (int64_t r = 0; r < p->num_prompts; ++r) in_tasks[static_cast<size_t>(r)] = drift_tasks.count(task_of(r)) > 0;
    const std::vector<double> drifted =
        Degrade(p->correct, m, degraded, in_tasks, kDriftFlip, s.seed + 404);
    // The oracle: UniRoute refitted with the calibration part's outcomes under the same drift.
    Dataset drifted_data = c.data;
    {
      std::mt19937_64 rng(s.seed + 505);
      std::uniform_real_distribution<double> unit(0.0, 1.0);
      for (const int64_t row : s.split.calibration) {
        const double u = unit(rng);
        if (!drift_tasks.count(c.data.prompts[static_cast<size_t>(row)].task)) continue;
        double& y = drifted_data.correct[c.data.at(row, degraded)];
        if (y > 0.0 && u < kDriftFlip) y = 0.0;
      }
    }
    absl::StatusOr<std::unique_ptr<QualityEstimator>> refit =
        FitEstimator(drifted_data, c.config, s, "uniroute", 1.0, AllModels(c.data));
    if (!refit.ok()) return refit.status();
    absl::StatusOr<HeldOutPredictions> oracle_p =
        PredictRows(c.data, s, **refit, s.split.test, s.test);
    if (!oracle_p.ok()) return oracle_p.status();
    StreamSetup drift_setup = setup;
    drift_setup.truth_after = &drifted;
    StreamArm oracle_arm = static_arm;
    oracle_arm.after = &*oracle_p;
    StreamArm online_drift_arm = online_arm;
    online_drift_arm.seed = s.seed * 7919 + 2;
    absl::StatusOr<StreamRun> drift_static = ReplayStream(drift_setup, static_arm);
    if (!drift_static.ok()) return drift_static.status();
    absl::StatusOr<StreamRun> drift_online = ReplayStream(drift_setup, online_drift_arm);
    if (!drift_online.ok()) return drift_online.status();
    absl::StatusOr<StreamRun> drift_oracle = ReplayStream(drift_setup, oracle_arm);
    if (!drift_oracle.ok()) return drift_oracle.status();
    const auto [st_after, st_end] = report("drift", "static", *drift_static);
    const auto [on_after, on_end] = report("drift", "online", *drift_online);
    const auto [or_after, or_end] = report("drift", "oracle", *drift_oracle);
    figs["drift_static_oracle_gap_pts_end_window"].push_back(100.0 * (or_end - st_end));
    figs["drift_online_minus_static_pts_end_window"].push_back(100.0 * (on_end - st_end));
    figs["drift_static_oracle_gap_pts_after_switch"].push_back(100.0 * (or_after - st_after));
    figs["drift_online_minus_static_pts_after_switch"].push_back(100.0 * (on_after - st_after));
    figs["drift_tasks"].push_back(static_cast<double>(drift_tasks.size()));
    double stream_share = 0.0;
    for (int64_t t = horizon; t < length; ++t) {
      stream_share += drift_tasks.count(task_of(setup.stream[static_cast<size_t>(t)])) > 0;
    }
    figs["drift_tasks_share_of_stream"].push_back(stream_share / static_cast<double>(horizon));

    // A new model: a model truly best on some task, and that the full-knowledge router (the
    // static arm above, which has every model's validation results) gives most of that task's
    // traffic, joins with no validation results at the start of the stream (cold start).
    const std::map<std::string, std::vector<double>> accuracy = TaskAccuracy(c.data, s, *p);
    std::map<std::string, int64_t> task_count;
    std::map<std::string, std::vector<int64_t>> task_to;
    for (int64_t t = 0; t < length; ++t) {
      const std::string& task = task_of(setup.stream[static_cast<size_t>(t)]);
      ++task_count[task];
      auto& to = task_to[task];
      to.resize(m, 0);
      const int j = base->chosen[static_cast<size_t>(t)];
      if (j >= 0) ++to[static_cast<size_t>(j)];
    }
    int newcomer_model = -1;
    std::string newcomer_task;
    double best_share = -1.0;
    int64_t best_count = -1;
    for (const auto& [task, acc] : accuracy) {
      const int j = static_cast<int>(std::max_element(acc.begin(), acc.end()) - acc.begin());
      const double share = static_cast<double>(task_to[task][static_cast<size_t>(j)]) /
                           static_cast<double>(std::max<int64_t>(1, task_count[task]));
      // The clearest case: the largest share under full knowledge, among tasks frequent enough
      // for windows of kCurveWindow queries to hold kMinTaskQueriesPerWindow of them on average.
      const bool frequent = task_count[task] * kCurveWindow >= kMinTaskQueriesPerWindow * length;
      const bool best_frequent = best_count * kCurveWindow >= kMinTaskQueriesPerWindow * length;
      const bool better = frequent != best_frequent ? frequent
                          : share != best_share     ? share > best_share
                                                    : task_count[task] > best_count;
      if (better) {
        newcomer_model = j;
        newcomer_task = task;
        best_share = share;
        best_count = task_count[task];
      }
    }
    ++new_names[absl::StrCat(p->models[static_cast<size_t>(newcomer_model)], " on ",
                             newcomer_task)];
    StreamArm cold_online = online_arm;
    cold_online.cold_models = {newcomer_model};
    cold_online.seed = s.seed * 7919 + 3;
    StreamArm without = static_arm;
    without.cold_models = {newcomer_model};
    absl::StatusOr<StreamRun> new_online = ReplayStream(setup, cold_online);
    if (!new_online.ok()) return new_online.status();
    absl::StatusOr<StreamRun> new_without = ReplayStream(setup, without);
    if (!new_without.ok()) return new_without.status();
    report("new_model", "online", *new_online);
    report("new_model", "static_without", *new_without);
    report("new_model", "static_full", *base);
    // Share of the task's queries the new model serves, per window, in the online arm.
    int64_t first = -1;
    for (int64_t w = 0; w < length; w += kCurveWindow) {
      int64_t task_queries = 0, to_new = 0, full_to_new = 0;
      for (int64_t t = w; t < std::min(length, w + kCurveWindow); ++t) {
        if (task_of(setup.stream[static_cast<size_t>(t)]) != newcomer_task) continue;
        ++task_queries;
        to_new += new_online->chosen[static_cast<size_t>(t)] == newcomer_model;
        full_to_new += base->chosen[static_cast<size_t>(t)] == newcomer_model;
      }
      if (task_queries == 0) continue;
      const double share = static_cast<double>(to_new) / static_cast<double>(task_queries);
      for (const auto& [arm, value] :
           {std::pair{std::string("online"), share},
            std::pair{std::string("static_full"),
                      static_cast<double>(full_to_new) / static_cast<double>(task_queries)}}) {
        curve.rows.push_back({Num(static_cast<double>(s.seed)), "new_model", arm,
                              "new_model_task_share", Num(static_cast<double>(w)),
                              Num(static_cast<double>(std::min(length, w + kCurveWindow))),
                              Num(value)});
      }
      if (first < 0 && task_queries >= kMinTaskQueriesPerWindow && share > 0.5) {
        first = std::min(length, w + kCurveWindow);
      }
    }
    int64_t last_task = 0, last_new = 0;
    for (int64_t t = length - length / 4; t < length; ++t) {
      if (task_of(setup.stream[static_cast<size_t>(t)]) != newcomer_task) continue;
      ++last_task;
      last_new += new_online->chosen[static_cast<size_t>(t)] == newcomer_model;
    }
    const double last_share =
        static_cast<double>(last_new) / static_cast<double>(std::max<int64_t>(1, last_task));
    // How much the clusters (the learner's cells) single the task out: the share of its stream
    // queries in its most frequent cluster.
    std::map<int, int64_t> task_clusters;
    for (const int64_t row : setup.stream) {
      if (task_of(row) == newcomer_task) ++task_clusters[clusters[static_cast<size_t>(row)]];
    }
    int64_t top = 0;
    for (const auto& [cluster, count] : task_clusters) top = std::max(top, count);
    const double top_cluster_share =
        static_cast<double>(top) / static_cast<double>(std::max<int64_t>(1, task_count[newcomer_task]));
    newcomer.rows.push_back({Num(static_cast<double>(s.seed)),
                             p->models[static_cast<size_t>(newcomer_model)], newcomer_task,
                             Num(static_cast<double>(task_count[newcomer_task]) /
                                 static_cast<double>(length)),
                             Num(top_cluster_share), Num(best_share), Num(last_share),
                             first < 0 ? "never" : Num(static_cast<double>(first))});
    figs["new_model_task_top_cluster_share"].push_back(top_cluster_share);
    figs["new_model_full_knowledge_share"].push_back(best_share);
    figs["new_model_online_share_last_quarter"].push_back(last_share);
    if (first >= 0) {
      ++reached;
      to_majority.push_back(static_cast<double>(first));
    }
  }

  nlohmann::json& out = c.summary["exp7_learning"];
  out["estimator"] = "uniroute";
  out["stream_length"] = length;
  out["switch_at"] = horizon;
  out["end_window"] = end_window;
  out["batch_size"] = kSweepBatch;
  out["cap_fraction"] = kLearnCap;
  out["slots_per_model_per_batch"] = kLearnSlots;
  out["drift_flip"] = kDriftFlip;
  out["solve"] = {{"time_limit_ms", absl::ToDoubleMilliseconds(c.config.sim.solve.time_limit)},
                  {"relative_gap", c.config.sim.solve.relative_gap}};
  out["learner"] = {{"half_life_outcomes", learner.half_life_outcomes},
                    {"prior_strength", learner.prior_strength},
                    {"cold_start_quality", learner.cold_start_quality},
                    {"cold_start_strength", learner.cold_start_strength},
                    {"lower_quantile", learner.lower_quantile},
                    {"exploration", learner.exploration},
                    {"max_cells", learner.max_cells}};
  out["degraded_models"] = degraded_names;
  out["new_models"] = new_names;
  for (auto& [figure, values] : figs) {
    out[figure] = figure.find("_minus_") != std::string::npos ? DiffJson(values)
                                                                : SpreadJson(values);
  }
  // The gap closed: ratio of the means over seeds (a per-seed ratio divides by a gap of a few
  // points measured on a few hundred queries, too noisy to average).
  auto closed = [&](const std::string& online_key, const std::string& gap_key) {
    const double gap = Summarize(figs[gap_key]).mean;
    const double gain = Summarize(figs[online_key]).mean;
    return gap > 0 ? nlohmann::json(gain / gap) : nlohmann::json(nullptr);
  };
  c.summary["online_minus_static_pts_nodrift"] = DiffJson(figs["online_minus_static_pts_nodrift"]);
  c.summary["drift_gap_closed_fraction"] = closed("drift_online_minus_static_pts_end_window",
                                                  "drift_static_oracle_gap_pts_end_window");
  out["drift_gap_closed_fraction_after_switch"] =
      closed("drift_online_minus_static_pts_after_switch",
             "drift_static_oracle_gap_pts_after_switch");
  nlohmann::json majority = SpreadJson(to_majority);
  majority["reached"] = reached;
  majority["seeds"] = c.seeds.size();
  c.summary["new_model_queries_to_majority"] = majority;
  c.tables.push_back(std::move(rows));
  c.tables.push_back(std::move(curve));
  c.tables.push_back(std::move(newcomer));
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateEvalConfig(const EvalConfig& config) {
  if (config.seeds.empty()) return absl::InvalidArgumentError("seeds: at least one");
  std::vector<uint64_t> sorted = config.seeds;
  std::sort(sorted.begin(), sorted.end());
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) {
    return absl::InvalidArgumentError("seeds: must be distinct");
  }
  if (config.experiments.empty()) return absl::InvalidArgumentError("experiments: none selected");
  for (const int e : config.experiments) {
    if (e < 1 || e > 7) {
      return absl::InvalidArgumentError(absl::StrCat("experiments: ", e, " not in [1, 7]"));
    }
  }
  if (absl::Status s = ValidateSimOptions(config.sim); !s.ok()) return s;
  if (absl::Status s = Featurizer::Create(config.featurizer).status(); !s.ok()) return s;
  if (absl::Status s = ValidateClassifierOptions(config.classifier); !s.ok()) return s;
  if (absl::Status s = ValidateOutcomeLearnerOptions(config.learner); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("learner.", s.message()));
  }
  return ValidateUniRouteOptions(config.uniroute);
}

absl::StatusOr<EvalOutput> RunEvaluation(const Dataset& data, const EvalConfig& config,
                                         const ProgressFn& progress) {
  if (absl::Status s = ValidateEvalConfig(config); !s.ok()) return s;
  Context c{data, config, progress, {}, {}, {}, {}, {}};
  c.summary["dataset"] = data.name;
  c.summary["num_models"] = data.models.size();
  c.summary["seeds"] = config.seeds;
  c.summary["quick"] = config.quick;
  c.summary["split"] = {{"train", 0.6}, {"calibration", 0.2}, {"test", 0.2}};
  c.summary["sim"] = {{"time_limit_ms", absl::ToDoubleMilliseconds(config.sim.solve.time_limit)},
                      {"relative_gap", config.sim.solve.relative_gap}};
  // Experiment 7 fits its own UniRoute; alone, it needs no other estimator's predictions.
  const bool only_learning = config.experiments == std::set<int>{7};
  std::vector<double> best_accuracy, best_cost;
  std::map<std::string, int> best_names;
  for (const uint64_t seed : config.seeds) {
    progress(absl::StrCat("seed ", seed, ": split, featurize, fit ",
                          only_learning ? "uniroute" : "knn, uniroute and classifier"));
    absl::StatusOr<SeedData> s = PrepareSeed(data, config, seed);
    if (!s.ok()) return s.status();
    std::map<std::string, HeldOutPredictions> by_estimator;
    const std::vector<std::string> fitted =
        only_learning ? std::vector<std::string>{"uniroute"} : kEstimators;
    for (const std::string& est : fitted) {
      absl::StatusOr<HeldOutPredictions> p = FitAndPredict(data, config, *s, est, 1.0);
      if (!p.ok()) return p.status();
      by_estimator[est] = *std::move(p);
    }
    // Accuracy and realized cost of the best single model do not depend on the estimator.
    absl::StatusOr<Reference> ref = BestSingleModel(by_estimator.begin()->second);
    if (!ref.ok()) return ref.status();
    best_accuracy.push_back(ref->accuracy);
    best_cost.push_back(ref->realized_cost);
    ++best_names[data.models[static_cast<size_t>(ref->model)].name];
    c.summary["split_sizes"].push_back({{"seed", seed},
                                        {"train", s->split.train.size()},
                                        {"calibration", s->split.calibration.size()},
                                        {"test", s->split.test.size()}});
    c.seeds.push_back(*std::move(s));
    c.predictions.push_back(std::move(by_estimator));
  }
  c.summary["best_single_model"] = {{"accuracy", SpreadJson(best_accuracy)},
                                    {"realized_cost_usd", SpreadJson(best_cost)},
                                    {"models", best_names}};
  const bool has_cost = std::isfinite(Summarize(best_cost).mean) && Summarize(best_cost).mean > 0;
  c.summary["has_cost"] = has_cost;
  for (const int e : config.experiments) {
    absl::Status s;
    if (e == 4) {
      s = Experiment4(c);
    } else if (!has_cost) {
      c.summary["skipped"].push_back(
          {{"experiment", e}, {"reason", "the dataset has no per-call cost and no prices"}});
      continue;
    } else if (e == 1) {
      s = Experiment1(c);
    } else if (e == 2) {
      s = Experiment2(c);
    } else if (e == 3) {
      s = Experiment3(c);
    } else if (e == 5) {
      s = Experiment5(c);
    } else if (e == 7) {
      s = Experiment7(c);
    } else {
      s = Experiment6(c);
    }
    if (!s.ok()) return s;
  }
  EvalOutput out;
  out.tables = std::move(c.tables);
  out.summary = std::move(c.summary);
  out.report_markdown = RenderReport(out.summary);
  return out;
}

std::string TableToCsv(const Table& table) {
  std::string out = absl::StrCat(absl::StrJoin(table.header, ","), "\n");
  for (const auto& row : table.rows) absl::StrAppend(&out, absl::StrJoin(row, ","), "\n");
  return out;
}

}  // namespace router::core::eval
