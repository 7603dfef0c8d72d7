// Tests of the evaluation harness: curve figures on hand-made curves, seed statistics, lambda
// tuning, the per-batch cap invariant of every budgeted policy, the inline replay (its windows'
// caps on orderings built to break them, slots, result structure), and a quick end-to-end run on a
// small synthetic dataset (output shape, the cap invariant of the batch and inline arms).

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/eval/curve.h"
#include "bench/eval/experiments.h"
#include "bench/eval/simulate.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "router_core/estimate/dataset.h"

namespace router::core::eval {
namespace {

TEST(CurveTest, HandMadeCurve) {
  // Envelope: (0.1, 0.6) -> (0.5, 0.9) -> (1.0, 0.95); (0.3, 0.65) lies under it.
  const CurveMetrics m =
      ComputeCurveMetrics({{0.5, 0.9}, {0.1, 0.6}, {1.0, 0.95}, {0.3, 0.65}}, 0.9);
  ASSERT_EQ(m.envelope.size(), 3u);
  EXPECT_DOUBLE_EQ(m.qnc, 0.5);
  EXPECT_DOUBLE_EQ(m.acc_rel_at_50, 1.0);
  EXPECT_NEAR(m.acc_rel_at_100, 0.95 / 0.9, 1e-12);
  EXPECT_NEAR(m.auc, (0.4 * 0.75 + 0.5 * 0.925) / 0.9, 1e-12);
}

TEST(CurveTest, NeverReachesBestModel) {
  const CurveMetrics m = ComputeCurveMetrics({{0.2, 0.5}, {0.8, 0.7}}, 0.9);
  EXPECT_TRUE(std::isnan(m.qnc));
  EXPECT_NEAR(m.acc_rel_at_50, 0.6 / 0.9, 1e-12);
  EXPECT_TRUE(std::isnan(ComputeCurveMetrics({}, 0.9).auc));
}

TEST(CurveTest, SpreadAndVerdict) {
  const Spread s = Summarize({1.0, 2.0, 3.0, std::nan("")});
  EXPECT_EQ(s.n, 3);
  EXPECT_DOUBLE_EQ(s.mean, 2.0);
  EXPECT_DOUBLE_EQ(s.sd, 1.0);
  EXPECT_EQ(PairedVerdict({1.0, 1.1, 0.9, 1.0, 1.05}), "a > b");
  EXPECT_EQ(PairedVerdict({-1.0, -1.1, -0.9}), "a < b");
  EXPECT_EQ(PairedVerdict({1.0, -1.0, 0.5, -0.4}), "tie");
  EXPECT_EQ(PairedVerdict({5.0}), "tie");
}

// n prompts, 3 models: cheap/weak, mid, dear/strong; realized cost = predicted cost.
HeldOutPredictions Synthetic(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  HeldOutPredictions p;
  p.num_prompts = n;
  p.models = {"cheap", "mid", "dear"};
  const double base[3] = {1e-4, 1e-3, 5e-3};
  for (int i = 0; i < n; ++i) {
    const double hardness = u(rng);
    for (int j = 0; j < 3; ++j) {
      const double q =
          std::clamp(1.0 - hardness * (1.0 - 0.3 * j) + 0.1 * (u(rng) - 0.5), 0.0, 1.0);
      p.quality.push_back(q);
      p.quality_lower.push_back(0.8 * q);
      const double c = base[j] * (0.5 + hardness);
      p.predicted_cost.push_back(c);
      p.realized_cost.push_back(c);
      p.correct.push_back(u(rng) < q ? 1.0 : 0.0);
    }
  }
  return p;
}

// The cap tests' input: Synthetic(250, 7), its best single model's predicted cost per prompt,
// and its prompts in windows of 100, 100 and 50 in either ordering.
struct CapScenario {
  HeldOutPredictions p = Synthetic(250, 7);
  double best_cost = 0.0;
  std::vector<std::pair<Ordering, Batches>> orderings;
};

CapScenario MakeCapScenario() {
  CapScenario s;
  absl::StatusOr<Reference> ref = BestSingleModel(s.p);
  EXPECT_TRUE(ref.ok()) << ref.status();
  if (ref.ok()) s.best_cost = ref->predicted_cost;
  for (const Ordering ordering : {Ordering::kRandom, Ordering::kAdversarial}) {
    absl::StatusOr<Batches> batches = MakeBatches(s.p, ordering, 100, 3);
    EXPECT_TRUE(batches.ok()) << batches.status();
    if (!batches.ok()) continue;
    EXPECT_EQ(batches->size(), 3u) << OrderingName(ordering);  // 100, 100, 50
    s.orderings.emplace_back(ordering, *std::move(batches));
  }
  return s;
}

TEST(SimulateTest, EveryBudgetedPolicyMeetsEveryBatchCap) {
  const CapScenario s = MakeCapScenario();
  ASSERT_EQ(s.orderings.size(), 2u);
  const HeldOutPredictions& p = s.p;
  for (const auto& [ordering, batches] : s.orderings) {
    for (const PolicyKind policy :
         {PolicyKind::kBatch, PolicyKind::kBatchRobust, PolicyKind::kBatchGamma,
          PolicyKind::kPerQuery, PolicyKind::kThreshold, PolicyKind::kNdch, PolicyKind::kNdchP}) {
      for (const double f : {0.1, 0.3, 0.6}) {
        PolicyRun run;
        run.policy = policy;
        run.params.gamma = 10;
        run.budget_per_prompt = f * s.best_cost;
        absl::StatusOr<RunResult> r = RunPolicy(p, batches, run, SimOptions());
        ASSERT_TRUE(r.ok()) << r.status();
        EXPECT_EQ(BatchesOverCap(*r, *run.budget_per_prompt), 0)
            << PolicyKindName(policy) << " f=" << f << " " << OrderingName(ordering);
        EXPECT_EQ(r->prompts, 250);
      }
    }
  }
}

TEST(SimulateTest, MatchedSpendTuningFindsTheSmallestLambdaWithinTarget) {
  const HeldOutPredictions p = Synthetic(200, 11);
  absl::StatusOr<Batches> batches = MakeBatches(p, Ordering::kRandom, 100, 1);
  ASSERT_TRUE(batches.ok());
  absl::StatusOr<Reference> ref = BestSingleModel(p);
  ASSERT_TRUE(ref.ok());
  const double target = 0.4 * ref->predicted_cost * 200;
  absl::StatusOr<LambdaTuning> t = TuneLambdaToSpend(p, *batches, target, SimOptions());
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_LE(t->total_spend, target * (1 + 1e-9));
  // Within one query's price step of the target, and a slightly smaller lambda overspends.
  EXPECT_GE(t->total_spend, target - 2 * 5e-3 * 1.5);
  PolicyRun run;
  run.policy = PolicyKind::kPerQuery;
  run.params.lambda = t->lambda * 0.999;
  absl::StatusOr<RunResult> r = RunPolicy(p, *batches, run, SimOptions());
  ASSERT_TRUE(r.ok());
  EXPECT_GT(r->predicted_cost * 200, target);

  const double cap = 0.3 * ref->predicted_cost;
  absl::StatusOr<LambdaTuning> safe = TuneLambdaUnderCap(p, *batches, cap, SimOptions());
  ASSERT_TRUE(safe.ok()) << safe.status();
  run.params.lambda = safe->lambda;
  r = RunPolicy(p, *batches, run, SimOptions());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(BatchesOverCap(*r, cap), 0);
}

// The structure every replay must have: one entry per batch, sizes and spends that add up.
void ExpectConsistent(const InlineReplay& r, const Batches& batches) {
  int64_t prompts = 0;
  double spend = 0.0;
  ASSERT_EQ(r.result.batch_size.size(), batches.size());
  ASSERT_EQ(r.result.batch_spend.size(), batches.size());
  ASSERT_EQ(r.result.solve_ms.size(), batches.size());
  for (size_t b = 0; b < batches.size(); ++b) {
    EXPECT_EQ(r.result.batch_size[b], static_cast<int>(batches[b].size())) << b;
    prompts += static_cast<int64_t>(batches[b].size());
    spend += r.result.batch_spend[b];
  }
  EXPECT_EQ(r.result.prompts, prompts);
  EXPECT_EQ(r.decision_us.size(), static_cast<size_t>(prompts));
  EXPECT_NEAR(r.result.predicted_cost * static_cast<double>(prompts), spend, 1e-12);
  EXPECT_GE(r.result.unserved, 0);
  EXPECT_LE(r.result.unserved, prompts);
  EXPECT_GE(r.result.accuracy, 0.0);
  EXPECT_LE(r.result.accuracy, 1.0);
  EXPECT_LE(r.guarded, prompts);
}

TEST(InlineReplayTest, NoWindowOverItsCapInEitherOrder) {
  const CapScenario s = MakeCapScenario();
  ASSERT_EQ(s.orderings.size(), 2u);
  for (const auto& [ordering, batches] : s.orderings) {  // the last window of 50 is re-sized
    for (const double f : {0.1, 0.3, 0.6}) {
      InlineRun run;
      run.budget_per_prompt = f * s.best_cost;
      absl::StatusOr<InlineReplay> r = RunInline(s.p, batches, run);
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_EQ(BatchesOverCap(r->result, *run.budget_per_prompt), 0)
          << "f=" << f << " " << OrderingName(ordering);
      ExpectConsistent(*r, batches);
    }
  }
}

// Every prompt's cheapest model costs exactly kCheap (a power of two, so sums are exact), and the
// dearer, better models get dearer and better towards the end of each window: the arrivals that
// would break a cap come last. `hardness` rises within each window.
HeldOutPredictions CheapestIsExact(int n, double kCheap) {
  HeldOutPredictions p;
  p.num_prompts = n;
  p.models = {"cheap", "mid", "dear"};
  for (int i = 0; i < n; ++i) {
    const double hardness = static_cast<double>(i % 50) / 49.0;
    const double quality[3] = {0.9 - 0.8 * hardness, 0.95 - 0.4 * hardness, 0.99};
    const double cost[3] = {kCheap, kCheap * (4 + 8 * hardness), kCheap * (20 + 60 * hardness)};
    for (int j = 0; j < 3; ++j) {
      p.quality.push_back(quality[j]);
      p.quality_lower.push_back(0.8 * quality[j]);
      p.predicted_cost.push_back(cost[j]);
      p.realized_cost.push_back(cost[j]);
      p.correct.push_back(j == 2 || i % 3 != 0 ? 1.0 : 0.0);
    }
  }
  return p;
}

TEST(InlineReplayTest, GuardHoldsWhenExpensiveArrivalsComeLastAndTheCapIsTheCheapestTotal) {
  constexpr double kCheap = 1.0 / 1024;
  const HeldOutPredictions p = CheapestIsExact(130, kCheap);
  // Windows of 50 in index order (each ends with its hardest, dearest prompts), and a last one of
  // 30.
  Batches batches(3);
  for (int64_t i = 0; i < 130; ++i) {
    batches[static_cast<size_t>(std::min<int64_t>(i / 50, 2))].push_back(i);
  }
  ASSERT_EQ(batches[2].size(), 30u);
  for (const double cap : {kCheap, 1.5 * kCheap, 4 * kCheap, 20 * kCheap}) {
    InlineRun run;
    run.budget_per_prompt = cap;
    absl::StatusOr<InlineReplay> r = RunInline(p, batches, run);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(BatchesOverCap(r->result, cap), 0) << "cap=" << cap / kCheap << " x cheapest";
    ExpectConsistent(*r, batches);
    if (cap == kCheap) {
      // The budget is exactly the cheapest total: the guard keeps it for the arrivals still
      // expected, so every query is served, by its cheapest model, and each window spends its cap.
      EXPECT_EQ(r->result.unserved, 0);
      for (size_t b = 0; b < batches.size(); ++b) {
        EXPECT_DOUBLE_EQ(r->result.batch_spend[b], kCheap * static_cast<double>(batches[b].size()))
            << b;
      }
    }
  }
}

TEST(InlineReplayTest, SlotsAreReleasedBetweenWindowsAndNeverExceeded) {
  const HeldOutPredictions p = Synthetic(250, 9);
  absl::StatusOr<Batches> batches = MakeBatches(p, Ordering::kAdversarial, 100, 1);
  ASSERT_TRUE(batches.ok()) << batches.status();
  InlineRun run;
  run.slots = {std::nullopt, 10, 3};  // the cheap model is an unlimited API model
  absl::StatusOr<InlineReplay> r = RunInline(p, *batches, run);
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectConsistent(*r, *batches);
  EXPECT_EQ(r->result.batches_over_slots, 0);
  EXPECT_EQ(r->result.unserved, 0);
  // Without a cap only the slots hold the better models back, and every window gets them all
  // again: each window spends more than its all-cheapest total (a window after the first would
  // not if the previous windows' assignments still held the slots).
  for (size_t b = 0; b < batches->size(); ++b) {
    double cheapest = 0.0;
    for (const int64_t i : (*batches)[b]) cheapest += p.predicted_cost[static_cast<size_t>(i) * 3];
    EXPECT_GT(r->result.batch_spend[b], cheapest * (1 + 1e-9)) << b;
  }
}

TEST(InlineReplayTest, RejectsBadArguments) {
  const HeldOutPredictions p = Synthetic(20, 1);
  InlineRun run;
  EXPECT_EQ(RunInline(p, {}, run).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RunInline(p, {{0, 1}, {}}, run).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RunInline(p, {{0, 20}}, run).status().code(), absl::StatusCode::kInvalidArgument);
  run.slots = {1, 2};
  EXPECT_EQ(RunInline(p, {{0, 1}}, run).status().code(), absl::StatusCode::kInvalidArgument);
  run.slots.clear();
  run.budget_per_prompt = -1.0;
  EXPECT_EQ(RunInline(p, {{0, 1}}, run).status().code(), absl::StatusCode::kInvalidArgument);
}

// A small derived/ folder: 3 tasks, 3 models with per-call costs.
std::string WriteDataset() {
  const std::string dir =
      (std::filesystem::temp_directory_path() / absl::StrCat("router_eval_test_", getpid()))
          .string();
  std::filesystem::create_directories(dir);
  std::ofstream prompts(dir + "/prompts.jsonl"), labels(dir + "/labels.csv"),
      models(dir + "/models.csv");
  models << "model\ncheap\nmid\ndear\n";
  labels << "prompt_id,model,score,correct,cost_usd\n";
  const char* tasks[3] = {"math", "code", "chat"};
  const char* words[6] = {"alpha", "beta", "gamma", "delta", "omega", "sigma"};
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (int i = 0; i < 240; ++i) {
    const int t = i % 3;
    prompts << absl::StrFormat(
                   R"({"prompt_id":"p%d","task":"%s","text":"%s question %d about %s and %s"})", i,
                   tasks[t], tasks[t], i, words[i % 6], words[(i / 6) % 6])
            << "\n";
    const double skill[3][3] = {{0.2, 0.5, 0.9}, {0.5, 0.7, 0.8}, {0.7, 0.8, 0.85}};
    const double price[3] = {1e-4, 6e-4, 4e-3};
    const char* names[3] = {"cheap", "mid", "dear"};
    for (int j = 0; j < 3; ++j) {
      const int y = u(rng) < skill[t][j] ? 1 : 0;
      labels << absl::StrFormat("p%d,%s,%d,%d,%g\n", i, names[j], y, y,
                                price[j] * (1 + t) * (0.8 + 0.4 * u(rng)));
    }
  }
  return dir;
}

// A quick evaluation on a small featurizer and light estimators (seconds, also under ASan):
// `seeds`, and `experiments` (EvalConfig's default set when empty).
absl::StatusOr<EvalOutput> RunQuick(const Dataset& data, std::vector<uint64_t> seeds,
                                    std::set<int> experiments = {}) {
  EvalConfig config;
  config.seeds = std::move(seeds);
  config.quick = true;
  if (!experiments.empty()) config.experiments = std::move(experiments);
  config.featurizer.dim = 32;
  config.knn.k = 20;
  config.knn.bootstrap_samples = 10;
  config.uniroute.num_clusters = 4;
  return RunEvaluation(data, config, [](absl::string_view) {});
}

TEST(RunEvaluationTest, QuickEndToEnd) {
  const std::string dir = WriteDataset();
  absl::StatusOr<Dataset> data = ReadDataset(dir);
  ASSERT_TRUE(data.ok()) << data.status();
  absl::StatusOr<EvalOutput> out = RunQuick(*data, {1, 2});
  ASSERT_TRUE(out.ok()) << out.status();
  std::vector<std::string> names;
  for (const Table& t : out->tables) {
    names.push_back(t.name);
    EXPECT_FALSE(t.rows.empty()) << t.name;
    for (const auto& row : t.rows) ASSERT_EQ(row.size(), t.header.size()) << t.name;
    const std::string csv = TableToCsv(t);
    EXPECT_EQ(static_cast<size_t>(std::count(csv.begin(), csv.end(), '\n')), t.rows.size() + 1);
    if (t.name == "exp2_batching" || t.name == "exp2_batches") {
      const auto arm = std::find(t.header.begin(), t.header.end(), "arm") - t.header.begin();
      std::set<std::string> arms;
      for (const auto& row : t.rows) arms.insert(row[static_cast<size_t>(arm)]);
      EXPECT_THAT(arms, testing::ElementsAre("batch", "inline", "per_query_guarded",
                                             "per_query_matched", "per_query_safe"))
          << t.name;
    }
    if (t.name == "exp2_batching") {
      const auto arm = std::find(t.header.begin(), t.header.end(), "arm") - t.header.begin();
      const auto over =
          std::find(t.header.begin(), t.header.end(), "batches_over_cap") - t.header.begin();
      for (const auto& row : t.rows) {
        if (row[static_cast<size_t>(arm)] == "batch" || row[static_cast<size_t>(arm)] == "inline") {
          EXPECT_EQ(row[static_cast<size_t>(over)], "0") << row[static_cast<size_t>(arm)];
        }
      }
    }
  }
  EXPECT_THAT(names, testing::UnorderedElementsAre("exp1_budget_sweep", "exp1_metrics",
                                                   "exp2_batching", "exp2_batches",
                                                   "exp3_robustness", "exp4_unseen_models"));
  const nlohmann::json& s = out->summary;
  for (const char* key : {"best_single_model", "qnc", "acc_rel_at_50pct_cost",
                          "batch_vs_perquery_safe_gain", "exp3_robustness", "exp4_unseen_models"}) {
    EXPECT_TRUE(s.contains(key)) << key;
  }
  // Every estimator, the calibrated classifier included, runs experiments 1-3.
  for (const char* est : {"knn", "uniroute", "classifier"}) {
    EXPECT_TRUE(s["qnc"][est].contains("batch")) << est;
    EXPECT_TRUE(s["acc_rel_at_50pct_cost"][est].contains("ndch_p")) << est;
    EXPECT_TRUE(s["batch_vs_perquery_safe_gain"][absl::StrCat(est, "/cap=0.5")].contains("verdict"))
        << est;
    EXPECT_TRUE(s["exp3_robustness"].contains(absl::StrCat(est, "/train=1/budget=0.3"))) << est;
  }
  // The inline arm's headline figures, per estimator and cap, and no window over its cap.
  for (const char* est : {"knn", "uniroute", "classifier"}) {
    const std::string label = absl::StrCat(est, "/cap=0.5");
    for (const char* key : {"inline_minus_batch_pts", "inline_minus_batch_pts_random"}) {
      ASSERT_TRUE(s.contains(key)) << key;
      const nlohmann::json& diff = s[key][label];
      EXPECT_EQ(diff.value("n", 0), 2) << key << " " << label;
      for (const char* field : {"mean", "sd", "min", "max", "verdict"}) {
        EXPECT_TRUE(diff.contains(field)) << key << " " << label << " " << field;
      }
    }
    ASSERT_TRUE(s.contains("inline_decision_us_p99"));
    EXPECT_EQ(s["inline_decision_us_p99"][label].value("n", 0), 2) << label;
    EXPECT_TRUE(s["exp2_batching"][absl::StrCat(est, "/N=100/adversarial/cap=0.5")].contains(
        "inline_guarded_share"));
  }
  ASSERT_TRUE(s.contains("inline_cap_violations"));
  ASSERT_TRUE(s["inline_cap_violations"].is_number_integer());
  EXPECT_EQ(s["inline_cap_violations"].get<int64_t>(), 0);
  EXPECT_THAT(out->report_markdown, testing::HasSubstr("Inline routing vs the batch ILP"));
  EXPECT_THAT(out->report_markdown, testing::HasSubstr("| our target |"));
  EXPECT_THAT(out->report_markdown, testing::HasSubstr("### Claims vs ours"));
  std::filesystem::remove_all(dir);
}

TEST(RunEvaluationTest, CapacityAndAllocationRespectSlotsAndGpuBudget) {
  const std::string dir = WriteDataset();
  absl::StatusOr<Dataset> data = ReadDataset(dir);
  ASSERT_TRUE(data.ok()) << data.status();
  absl::StatusOr<EvalOutput> out = RunQuick(*data, {1}, {5, 6});
  ASSERT_TRUE(out.ok()) << out.status();
  auto column = [](const Table& t, const std::string& name) {
    const auto at = std::find(t.header.begin(), t.header.end(), name);
    EXPECT_NE(at, t.header.end()) << name;
    return static_cast<size_t>(at - t.header.begin());
  };
  std::vector<std::string> names;
  for (const Table& t : out->tables) {
    names.push_back(t.name);
    ASSERT_FALSE(t.rows.empty()) << t.name;
    for (const auto& row : t.rows) ASSERT_EQ(row.size(), t.header.size()) << t.name;
    if (t.name == "exp5_capacity") {
      // Every arm, per-query ones included (their guard), stays within the slots of every batch.
      for (const auto& row : t.rows) {
        EXPECT_EQ(row[column(t, "batches_over_slots")], "0") << row[column(t, "arm")];
        EXPECT_EQ(row[column(t, "batches_over_cap")], "0") << row[column(t, "arm")];
      }
    }
    if (t.name == "exp6_allocation") {
      for (const auto& row : t.rows) {
        double used = 0, budget = 0;
        ASSERT_TRUE(absl::SimpleAtod(row[column(t, "gpus_used")], &used));
        ASSERT_TRUE(absl::SimpleAtod(row[column(t, "gpu_budget")], &budget));
        EXPECT_LE(used, budget) << row[column(t, "plan")];
        EXPECT_EQ(row[column(t, "batches_over_slots")], "0");
      }
    }
  }
  EXPECT_THAT(names, testing::UnorderedElementsAre("exp5_capacity", "exp6_allocation"));
  // Every estimator, the classifier included, runs both experiments.
  for (const std::string est : {"knn", "uniroute", "classifier"}) {
    EXPECT_TRUE(out->summary["exp5_capacity"][est]["slots_binding"].contains(
        "batch_minus_per_query_guarded_points"))
        << est;
    EXPECT_TRUE(out->summary["exp6_allocation"][est]["gpus=16"]["optimized_minus_uniform_points"]
                    .contains("verdict"))
        << est;
  }
  EXPECT_THAT(out->report_markdown, testing::HasSubstr("### 6. Instance allocation"));
  std::filesystem::remove_all(dir);
}

TEST(RunEvaluationTest, LearningFromOutcomesOnATinyStream) {
  const std::string dir = WriteDataset();
  absl::StatusOr<Dataset> data = ReadDataset(dir);
  ASSERT_TRUE(data.ok()) << data.status();
  absl::StatusOr<EvalOutput> out = RunQuick(*data, {1, 2}, {7});
  ASSERT_TRUE(out.ok()) << out.status();
  std::set<std::string> names;
  for (const Table& t : out->tables) {
    names.insert(t.name);
    ASSERT_FALSE(t.rows.empty()) << t.name;
    for (const auto& row : t.rows) ASSERT_EQ(row.size(), t.header.size()) << t.name;
  }
  EXPECT_THAT(names, testing::UnorderedElementsAre("exp7_learning", "exp7_learning_curve",
                                                   "exp7_new_model"));
  const Table& rows = out->tables.front();
  ASSERT_EQ(rows.name, "exp7_learning");
  std::set<std::string> arms;
  for (const auto& row : rows.rows) arms.insert(row[1] + "/" + row[2]);
  EXPECT_THAT(arms, testing::UnorderedElementsAre(
                        "no_drift/static", "no_drift/online", "drift/static", "drift/online",
                        "drift/oracle", "new_model/online", "new_model/static_without",
                        "new_model/static_full"));
  const nlohmann::json& s = out->summary;
  EXPECT_EQ(s["online_minus_static_pts_nodrift"].value("n", 0), 2);
  EXPECT_TRUE(s["online_minus_static_pts_nodrift"].contains("verdict"));
  EXPECT_TRUE(s.contains("drift_gap_closed_fraction"));
  EXPECT_EQ(s["new_model_queries_to_majority"].value("seeds", 0), 2);
  EXPECT_EQ(s["exp7_learning"].value("stream_length", 0), 400);
  // Only the online arms explore.
  EXPECT_EQ(s["exp7_learning"]["no_drift/static/explored_share"].value("max", 1.0), 0.0);
  EXPECT_GT(s["exp7_learning"]["no_drift/online/explored_share"].value("mean", 0.0), 0.0);
  EXPECT_THAT(out->report_markdown, testing::HasSubstr("### 7. Learning from outcomes"));
  std::filesystem::remove_all(dir);
}

TEST(RunEvaluationTest, RejectsBadConfig) {
  EvalConfig config;
  config.experiments = {8};
  EXPECT_FALSE(ValidateEvalConfig(config).ok());
  config.experiments = {1};
  config.seeds = {1, 1};
  EXPECT_FALSE(ValidateEvalConfig(config).ok());
  config.seeds = {1};
  config.learner.half_life_outcomes = 0;
  EXPECT_THAT(ValidateEvalConfig(config).message(),
              testing::HasSubstr("learner.half_life_outcomes"));
}

}  // namespace
}  // namespace router::core::eval
