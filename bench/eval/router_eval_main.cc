// File: router_eval_main.cc
//
// router_eval --dataset DIR --out DIR [--seed N] [--seeds K] [--experiments LIST] [--quick]
//             [--learner K=V,...]
//
// Runs the evaluation harness (bench/eval/experiments.h) on one `derived/` dataset folder
// and writes into --out: one CSV per experiment table, summary.json (headline numbers with their
// spread over seeds), report.md (the dataset's Markdown report) and PNG plots drawn by gnuplot
// from the CSVs (skipped with a warning when gnuplot is not installed).
//
// --merge: experiments can be run separately (5 and 6 are slow to add to a finished 1-4 run); the
// summary keys of this run replace the old ones (but "sim", the solver settings of the first run),
// every other key is kept, and the report, which is rendered from the summary alone, covers both. CSVs are per experiment and never collide; the
// plot script draws from the kept CSVs as well.
//
// Seeds: --seed N --seeds K uses the split seeds N, N+1, ..., N+K-1 (default 1 and 5).
// Progress goes to stderr; the last stdout line is the summary's path.
// Exit status: 0 done; 1 bad data or failure; 2 usage error. Errors are one line on stderr.

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"
#include "router_core/estimate/dataset.h"
#include "bench/eval/experiments.h"
#include "bench/eval/report.h"
#include "router_core/tools/cli_flags.h"

namespace {

constexpr int kExitFailure = 1;

constexpr char kUsage[] =
    "usage: router_eval --dataset DIR --out DIR [options]\n"
    "\n"
    "Evaluates routing policies and estimators on a derived/ dataset folder.\n"
    "\n"
    "  --dataset DIR        derived/ folder (prompts.jsonl, labels.csv, models.csv)\n"
    "  --out DIR            output folder (created if missing)\n"
    "  --seed N             first split seed (default 1)\n"
    "  --seeds K            number of seeds N..N+K-1 (default 5)\n"
    "  --experiments LIST   comma-separated experiment numbers 1-7 (default 1,2,3,4)\n"
    "  --learner K=V,...    experiment 7's outcome learner options (outcome_learner.h):\n"
    "                       half_life_outcomes, prior_strength, cold_start_quality,\n"
    "                       cold_start_strength, lower_quantile, exploration\n"
    "  --merge              keep the experiments of an existing --out/summary.json that this\n"
    "                       run does not redo, and render report.md from the merged summary\n"
    "  --quick              coarse grids, batch size 100 only (smoke runs and tests)\n"
    "  --help               this text\n"
    "\n"
    "Exit status: 0 done, 1 bad data or failure, 2 usage error.\n";

constexpr absl::string_view kTool = "router_eval";
using router::core::ToolError;

struct Flags {
  std::string dataset;
  std::string out;
  bool merge = false;
  router::core::eval::EvalConfig config;
};

// --learner "half_life_outcomes=50,exploration=0.02": options of experiment 7's learner.
absl::Status ParseLearner(absl::string_view value, router::core::OutcomeLearnerOptions& options) {
  for (absl::string_view part : absl::StrSplit(value, ',', absl::SkipEmpty())) {
    const std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(part, '=');
    double v = 0.0;
    if (!absl::SimpleAtod(kv.second, &v)) {
      return absl::InvalidArgumentError(absl::StrCat("--learner: bad number in '", part, "'"));
    }
    if (kv.first == "half_life_outcomes") {
      options.half_life_outcomes = v;
    } else if (kv.first == "prior_strength") {
      options.prior_strength = v;
    } else if (kv.first == "cold_start_quality") {
      options.cold_start_quality = v;
    } else if (kv.first == "cold_start_strength") {
      options.cold_start_strength = v;
    } else if (kv.first == "lower_quantile") {
      options.lower_quantile = v;
    } else if (kv.first == "exploration") {
      options.exploration = v;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("--learner: unknown option '", kv.first, "'"));
    }
  }
  if (absl::Status s = router::core::ValidateOutcomeLearnerOptions(options); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--learner: ", s.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<Flags> ParseFlags(int argc, char** argv) {
  Flags f;
  uint64_t first_seed = 1;
  int num_seeds = 5;
  const absl::string_view switches[] = {"--quick", "--merge"};
  absl::StatusOr<std::vector<router::core::CliFlag>> flags =
      router::core::SplitFlags(argc, argv, switches);
  if (!flags.ok()) return flags.status();
  for (const auto& [arg, value] : *flags) {
    if (arg == "--quick") {
      f.config.quick = true;
      continue;
    }
    if (arg == "--merge") {
      f.merge = true;
      continue;
    }
    if (arg == "--dataset") {
      f.dataset = value;
    } else if (arg == "--out") {
      f.out = value;
    } else if (arg == "--seed") {
      if (!absl::SimpleAtoi(value, &first_seed)) {
        return absl::InvalidArgumentError(absl::StrCat("--seed: not a number: '", value, "'"));
      }
    } else if (arg == "--seeds") {
      if (!absl::SimpleAtoi(value, &num_seeds) || num_seeds < 1) {
        return absl::InvalidArgumentError(
            absl::StrCat("--seeds: expected >= 1, got '", value, "'"));
      }
    } else if (arg == "--learner") {
      if (absl::Status s = ParseLearner(value, f.config.learner); !s.ok()) return s;
    } else if (arg == "--experiments") {
      f.config.experiments.clear();
      for (absl::string_view part : absl::StrSplit(value, ',', absl::SkipEmpty())) {
        int e = 0;
        if (!absl::SimpleAtoi(part, &e)) {
          return absl::InvalidArgumentError(absl::StrCat("--experiments: bad entry '", part, "'"));
        }
        f.config.experiments.insert(e);
      }
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag '", arg, "'"));
    }
  }
  if (f.dataset.empty()) return absl::InvalidArgumentError("missing --dataset DIR");
  if (f.out.empty()) return absl::InvalidArgumentError("missing --out DIR");
  f.config.seeds.clear();
  for (int k = 0; k < num_seeds; ++k)
    f.config.seeds.push_back(first_seed + static_cast<uint64_t>(k));
  if (absl::Status s = router::core::eval::ValidateEvalConfig(f.config); !s.ok()) return s;
  return f;
}

absl::Status WriteFile(const std::string& path, absl::string_view text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

// An awk pipeline printing, per group, "group,mean of column 1,mean of column 2,...": the mean over
// seeds of the CSV `file`'s columns `values` (1-based) for the rows passing `filter`, grouped by
// the columns `group` joined with a space, one line per group in first-seen order. Cells reading
// "nan" are left out of their mean.
std::string MeansBy(absl::string_view file, absl::string_view filter, absl::string_view group,
                    const std::vector<int>& values) {
  std::string sums, prints;
  for (size_t v = 0; v < values.size(); ++v) {
    absl::StrAppend(&sums, "if ($", values[v], " != \\\"nan\\\") {s", v, "[g] += $", values[v],
                    "; n", v, "[g]++} ");
    absl::StrAppend(&prints, " \\\",\\\" (n", v, "[g] ? s", v, "[g] / n", v,
                    "[g] : \\\"nan\\\")");
  }
  return absl::StrCat("< awk -F, 'NR > 1 && ", filter, " {g = ", group,
                      "; if (!(g in seen)) {seen[g] = 1; order[++k] = g} ", sums,
                      "} END {for (i = 1; i <= k; i++) {g = order[i]; print g", prints, "}}' ",
                      file);
}

// Gnuplot script drawing the PNGs from the CSVs in the output folder (run with it as the working
// directory), for the experiments whose CSV is in `csvs`. Curves and per-batch spends: the first
// seed; the other plots: means over seeds. kNN estimator. `has_cost`: the dataset has costs.
std::string PlotScript(uint64_t seed, const std::set<std::string>& csvs, bool has_cost,
                       int64_t learning_switch) {
  std::string gp =
      "set datafile separator ','\nset terminal pngcairo size 900,600 noenhanced\nset key "
      "bottom right\nset grid\n";
  if (csvs.count("exp1_budget_sweep")) {
    absl::StrAppend(
        &gp, "set output 'exp1_budget_sweep.png'\n", "set title 'Budget sweep (kNN, seed ", seed,
        ", random batches of 100)'\n",
        "set xlabel 'realized cost / best single model cost'\nset ylabel 'accuracy / best "
        "single model accuracy'\nset xrange [0:1.3]\n",
        "plot for [p in 'per_query threshold ndch ndch_p batch batch_robust batch_gamma'] "
        "sprintf(\"< awk -F, '$1==",
        seed,
        " && $2==\\\"knn\\\" && $3==\\\"%s\\\"' exp1_budget_sweep.csv | sort -t, -k6 -g\", p) "
        "using 6:8 with linespoints title p, 1 with lines dt 2 lc 'black' title 'best model'\n",
        "unset xrange\n");
  }
  if (csvs.count("exp2_batches")) {
    absl::StrAppend(
        &gp, "set output 'exp2_batches.png'\n",
        "set title 'Per-batch predicted spend / cap (kNN, seed ", seed,
        ", N=100, adversarial order, cap 0.5)'\n",
        "set xlabel 'batch (arrival order)'\nset ylabel 'predicted spend / cap'\n",
        "set key top right\n",
        "plot for [a in 'batch per_query_matched per_query_safe per_query_guarded inline'] "
        "sprintf(\"< awk -F, '$1==",
        seed,
        " && $2==\\\"knn\\\" && $3==100 && $4==\\\"adversarial\\\" && $5==0.5 && "
        "$6==\\\"%s\\\"' exp2_batches.csv\", a) using 7:8 with linespoints title a, 1 with lines "
        "dt 2 lc 'black' title 'cap'\n");
  }
  // Bar charts: one cluster per row of the means table, one bar per value column.
  const std::string bars =
      "set style data histograms\nset style histogram clustered gap 1\nset style fill solid 0.8 "
      "border -1\nset key top right\nset xlabel ''\nset auto x\n";
  if (csvs.count("exp3_robustness")) {
    absl::StrAppend(
        &gp, "set output 'exp3_robustness.png'\n",
        "set title 'Robustness: batch accuracy by share of the train part (kNN, mean over seeds "
        "and budgets)'\n",
        "set xlabel 'train fraction'\nset ylabel 'accuracy'\nset key bottom right\n",
        "plot for [p in 'batch batch_robust batch_gamma'] sprintf(\"",
        MeansBy("exp3_robustness.csv", "$2 == \\\"knn\\\" && $5 == \\\"%s\\\"", "$3", {6}),
        " | sort -g\", p) using 1:2 with linespoints title p\n");
  }
  if (csvs.count("exp4_unseen_models")) {
    absl::StrAppend(
        &gp, "set output 'exp4_unseen_models.png'\n", bars,
        "set title 'Unseen models: a third of the pool added from validation results (mean over "
        "seeds)'\nset ylabel 'deferral AUC / argmax accuracy'\nset yrange [0:1]\n",
        "plot \"", MeansBy("exp4_unseen_models.csv", "1", "$2", {4, 7}), "\" ",
        // Without costs there is no deferral curve (the AUC column is nan throughout).
        has_cost ? "using 2:xtic(1) title 'deferral AUC', '' using 3 title 'argmax accuracy'\n"
                 : "using 3:xtic(1) title 'argmax accuracy'\n",
        "unset yrange\n");
  }
  if (csvs.count("exp5_capacity")) {
    absl::StrAppend(
        &gp, "set output 'exp5_capacity.png'\n", bars,
        "set title 'Capacity: accuracy with self-hosted slots (kNN, mean over seeds)'\n",
        "set key top left\nset yrange [0.6:1.05]\n",
        "set ylabel 'accuracy / best single model accuracy'\n",
        "plot for [a in 'batch per_query_guarded threshold_guarded'] sprintf(\"",
        MeansBy("exp5_capacity.csv", "$2 == \\\"knn\\\" && $5 == \\\"%s\\\"", "$3", {8}),
        "\", a) using 2:xtic(1) title a\nunset yrange\n");
  }
  if (csvs.count("exp6_allocation")) {
    absl::StrAppend(
        &gp, "set output 'exp6_allocation.png'\n", bars,
        "set title 'Instance allocation: test accuracy of each plan (kNN, mean over seeds)'\n",
        "set key top left\nset yrange [0.6:1.05]\n",
        "set ylabel 'accuracy / best single model accuracy'\n",
        "plot for [plan in 'optimized uniform proportional'] sprintf(\"",
        MeansBy("exp6_allocation.csv", "$2 == \\\"knn\\\" && $4 == \\\"%s\\\"",
                "\\\"GPUs \\\" $3", {9}),
        "\", plan) using 2:xtic(1) title plan\nunset yrange\n");
  }
  if (csvs.count("exp7_learning_curve")) {
    absl::StrAppend(
        &gp, "set output 'exp7_learning.png'\nset style data linespoints\n",
        "set title 'Drift at query ", learning_switch,
        ": accuracy per window of 200 queries (UniRoute, mean over seeds)'\n",
        "set xlabel 'stream position (queries)'\nset ylabel 'accuracy'\nset key bottom left\n",
        "set arrow 1 from ", learning_switch, ", graph 0 to ", learning_switch,
        ", graph 1 nohead dt 2 lc 'black'\n",
        "plot for [a in 'static online oracle'] sprintf(\"",
        MeansBy("exp7_learning_curve.csv",
                "$2 == \\\"drift\\\" && $3 == \\\"%s\\\" && $4 == \\\"accuracy\\\"",
                "$5", {7}),
        " | sort -g\", a) using ($1 + 100):2 with linespoints title a\n", "unset arrow 1\n");
    absl::StrAppend(
        &gp, "set output 'exp7_new_model.png'\n",
        "set title 'New model (cold start): its share of the task it is best at, per window of "
        "200 queries (mean over seeds)'\n",
        "set xlabel 'stream position (queries)'\nset ylabel 'share of the task'\n",
        "set key bottom right\nset yrange [0:1]\n",
        "plot for [a in 'online static_full'] sprintf(\"",
        MeansBy("exp7_learning_curve.csv",
                "$2 == \\\"new_model\\\" && $3 == \\\"%s\\\" && $4 == "
                "\\\"new_model_task_share\\\"",
                "$5", {7}),
        " | sort -g\", a) using ($1 + 100):2 with linespoints title a, 0.5 with lines dt 2 lc "
        "'black' title 'majority'\nunset yrange\n");
  }
  return gp;
}

// The tool once its flags are parsed.
int Run(const Flags& flags) {
  std::cerr << "router_eval: reading " << flags.dataset << std::endl;
  absl::StatusOr<router::core::Dataset> data = router::core::ReadDataset(flags.dataset);
  if (!data.ok()) return ToolError(kTool, kExitFailure, data.status().ToString());
  if (std::system(absl::StrCat("mkdir -p '", flags.out, "'").c_str()) != 0) {
    return ToolError(kTool, kExitFailure, absl::StrCat("cannot create ", flags.out));
  }
  absl::StatusOr<router::core::eval::EvalOutput> out = router::core::eval::RunEvaluation(
      *data, flags.config,
      [](absl::string_view m) { std::cerr << "router_eval: " << m << std::endl; });
  if (!out.ok()) return ToolError(kTool, kExitFailure, out.status().ToString());

  std::set<std::string> csvs;  // CSVs in the output folder the plots may draw from
  for (const auto& table : out->tables) {
    csvs.insert(table.name);
    const std::string path = absl::StrCat(flags.out, "/", table.name, ".csv");
    if (absl::Status s = WriteFile(path, router::core::eval::TableToCsv(table)); !s.ok()) {
      return ToolError(kTool, kExitFailure, s.ToString());
    }
  }
  const std::string summary = absl::StrCat(flags.out, "/summary.json");
  if (flags.merge) {
    std::ifstream old_file(summary);
    if (old_file) {
      nlohmann::json old = nlohmann::json::parse(old_file, nullptr, /*allow_exceptions=*/false);
      if (old.is_discarded() || !old.is_object()) {
        return ToolError(kTool, kExitFailure,
                         absl::StrCat(summary, ": not a JSON object; cannot --merge"));
      }
      // Seeds and split must agree, or the merged report would mix incomparable runs.
      if (old.value("seeds", nlohmann::json()) != out->summary["seeds"] ||
          old.value("quick", false) != out->summary["quick"]) {
        return ToolError(kTool, kExitFailure,
                         absl::StrCat(summary, ": other seeds or --quick; cannot --merge"));
      }
      // "skipped" is per run: keep the old entries for experiments this run did not redo.
      nlohmann::json skipped = nlohmann::json::array();
      for (const auto& e : old.value("skipped", nlohmann::json::array())) {
        if (!flags.config.experiments.count(e.value("experiment", 0))) skipped.push_back(e);
      }
      for (const auto& e : out->summary.value("skipped", nlohmann::json::array())) {
        skipped.push_back(e);
      }
      // The solver settings stay those of the run that made the summary: a later pass with other
      // defaults records its own in its section (experiment 7's "solve").
      for (const auto& [key, value] : out->summary.items()) {
        if (key == "sim" && old.contains("sim")) continue;
        old[key] = value;
      }
      if (skipped.empty()) {
        old.erase("skipped");
      } else {
        old["skipped"] = skipped;
      }
      out->summary = std::move(old);
      out->report_markdown = router::core::eval::RenderReport(out->summary);
      // The plot script covers the kept experiments' CSVs too.
      for (const std::string name :
           {"exp1_budget_sweep", "exp2_batches", "exp3_robustness", "exp4_unseen_models",
            "exp5_capacity", "exp6_allocation", "exp7_learning_curve"}) {
        if (std::ifstream(absl::StrCat(flags.out, "/", name, ".csv")).good()) csvs.insert(name);
      }
    }
  }
  if (absl::Status s = WriteFile(summary, out->summary.dump(2) + "\n"); !s.ok()) {
    return ToolError(kTool, kExitFailure, s.ToString());
  }
  if (absl::Status s = WriteFile(absl::StrCat(flags.out, "/report.md"), out->report_markdown);
      !s.ok()) {
    return ToolError(kTool, kExitFailure, s.ToString());
  }
  if (!csvs.empty()) {
    const std::string script = absl::StrCat(flags.out, "/plots.gp");
    const int64_t learning_switch =
        out->summary.contains("exp7_learning")
            ? out->summary["exp7_learning"].value("switch_at", int64_t{0})
            : int64_t{0};
    if (absl::Status s = WriteFile(script, PlotScript(flags.config.seeds.front(), csvs,
                                                      out->summary.value("has_cost", true),
                                                      learning_switch));
        !s.ok()) {
      return ToolError(kTool, kExitFailure, s.ToString());
    }
    // Plots are a convenience: the CSVs and the report stand without them.
    if (std::system(absl::StrCat("cd '", flags.out, "' && gnuplot plots.gp").c_str()) != 0) {
      std::cerr << "router_eval: warning: gnuplot failed or is not installed; no PNGs" << std::endl;
    }
  }
  std::cout << summary << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return router::core::RunFlagTool<Flags>(kTool, kUsage, argc, argv, ParseFlags, Run);
}
