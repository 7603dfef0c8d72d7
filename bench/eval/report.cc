#include "bench/eval/report.h"

#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace router::core::eval {
namespace {

using nlohmann::json;

const json& At(const json& j, const std::vector<std::string>& path) {
  static const json kNull;
  const json* at = &j;
  for (const std::string& key : path) {
    if (!at->is_object() || !at->contains(key)) return kNull;
    at = &(*at)[key];
  }
  return *at;
}

// "mean ± sd" of a spread object, scaled (e.g. 100 for percent).
std::string Ms(const json& spread, int digits, double scale = 1.0) {
  if (!spread.is_object() || !spread["mean"].is_number()) return "n/a";
  const double sd = spread["sd"].is_number() ? spread["sd"].get<double>() : 0.0;
  return absl::StrFormat("%.*f ± %.*f", digits, scale * spread["mean"].get<double>(), digits,
                         scale * sd);
}

std::string Verdict(const json& diff) {
  if (!diff.is_object() || !diff.contains("verdict")) return "n/a";
  const std::string v = diff["verdict"];
  return v == "a > b" ? "**win**" : v == "a < b" ? "**loss**" : "tie";
}

// The estimators whose results `section` of the summary holds (each an object keyed by name).
std::vector<std::string> EstimatorsIn(const json& section) {
  std::vector<std::string> out;
  for (const std::string est : {"knn", "uniroute", "classifier"}) {
    if (section.is_object() && section.contains(est) && section[est].is_object()) {
      out.push_back(est);
    }
  }
  return out;
}

const std::vector<std::string> kPolicies = {"per_query", "threshold",    "ndch",       "ndch_p",
                                            "batch",     "batch_robust", "batch_gamma"};

// The inline router's claim for one estimator: inline minus batch per cap (adversarial, random), decision
// p99, and whether the targets hold: |mean| <= 0.5 pts in both orders, mean p99 <= 100 us (at
// the dataset's pool size, which the verdict names), no window over its cap.
std::string InlineClaim(const json& s, const std::string& est) {
  const json& adversarial = At(s, {"inline_minus_batch_pts"});
  if (!adversarial.is_object()) return "not measured | - ";
  std::vector<std::string> parts;
  bool accurate = true, fast = true, measured = false;
  for (const auto& [label, diff] : adversarial.items()) {
    if (label.rfind(est + "/", 0) != 0) continue;
    const json& random = At(s, {"inline_minus_batch_pts_random", label});
    const json& p99 = At(s, {"inline_decision_us_p99", label});
    parts.push_back(absl::StrCat(label.substr(est.size() + 1), ": adversarial ", Ms(diff, 2),
                                 ", random ", Ms(random, 2), " pts, p99 ", Ms(p99, 0), " us"));
    for (const json* d : {&diff, &random}) {
      const json& mean = At(*d, {"mean"});
      measured = measured || mean.is_number();
      accurate = accurate && mean.is_number() && std::abs(mean.get<double>()) <= 0.5;
    }
    const json& p99_mean = At(p99, {"mean"});
    fast = fast && p99_mean.is_number() && p99_mean.get<double>() <= 100.0;
  }
  if (!measured) return "not measured | - ";
  const json& violations = At(s, {"inline_cap_violations"});
  const bool capped = violations.is_number() && violations.get<double>() == 0;
  return absl::StrCat(absl::StrJoin(parts, "; "),
                      "; windows over cap (all adversarial): ", violations.dump(), " | accuracy ",
                      accurate ? "met" : "**not met**", ", latency ", fast ? "met" : "**not met**",
                      " (M=", At(s, {"num_models"}).dump(), "), caps ",
                      capped ? "met" : "**not met**");
}

// "a (3 seeds), b (1 seed)" from an object of counts.
std::string Counted(const json& counts) {
  if (!counts.is_object()) return "n/a";
  std::vector<std::string> parts;
  for (const auto& [name, n] : counts.items()) {
    const int count = n.is_number() ? n.get<int>() : 0;
    parts.push_back(absl::StrCat(name, " (", count, count == 1 ? " seed)" : " seeds)"));
  }
  return absl::StrJoin(parts, ", ");
}

}  // namespace

std::string RenderReport(const json& s) {
  std::string md;
  const std::string dataset = s.value("dataset", std::string("?"));
  std::vector<std::string> seeds;
  for (const auto& seed : s["seeds"]) seeds.push_back(seed.dump());
  absl::StrAppend(&md, "## ", dataset, "\n\n");
  absl::StrAppend(&md, "Seeds ", absl::StrJoin(seeds, ", "),
                  " (split 0.6 / 0.2 / 0.2 by prompt, identical texts together); every figure is "
                  "mean ± sd over the seeds. Best single model (most accurate on the test part): ",
                  At(s, {"best_single_model", "models"}).dump(), ", accuracy ",
                  Ms(At(s, {"best_single_model", "accuracy"}), 3), ", cost/query $",
                  Ms(At(s, {"best_single_model", "realized_cost_usd"}), 5), ".",
                  s.value("quick", false) ? " **Quick run (coarse grids).**" : "", "\n\n");
  if (s.contains("skipped")) {
    for (const auto& sk : s["skipped"]) {
      absl::StrAppend(&md, "- Experiment ", sk["experiment"].dump(),
                      " skipped: ", sk["reason"].get<std::string>(), ".\n");
    }
    absl::StrAppend(&md, "\n");
  }

  if (s.contains("exp1_budget_sweep")) {
    absl::StrAppend(
        &md,
        "### 1. Budget sweep (random batches of 100)\n\n"
        "Accuracy relative to the best single model at 50% of its realized cost, "
        "QNC (cost fraction at which the best model's accuracy is matched; n/a = "
        "never, in every seed) and the area under the deferral curve.\n\n"
        "| estimator | policy | acc_rel @50% cost | QNC | AUC |\n|---|---|---|---|---|\n");
    for (const std::string& est : EstimatorsIn(s["exp1_budget_sweep"])) {
      for (const std::string& pol : kPolicies) {
        const json& f = At(s, {"exp1_budget_sweep", est, pol});
        if (f.is_null()) continue;
        absl::StrAppend(&md, "| ", est, " | ", pol, " | ", Ms(f["acc_rel_at_50"], 3), " | ",
                        Ms(f["qnc"], 3), " (", f["qnc"].value("n", 0), " seeds) | ",
                        Ms(f["auc"], 3), " |\n");
      }
    }
    absl::StrAppend(&md, "\n![budget sweep](exp1_budget_sweep.png)\n\n");
  }

  if (s.contains("exp2_batching")) {
    absl::StrAppend(
        &md,
        "### 2. Batching regimes under a hard per-batch cap\n\n"
        "Cap = fraction x the best model's mean predicted cost x batch size. `batch` = the batch "
        "ILP under the cap; `matched` = per-query lambda routing tuned so its total predicted "
        "spend equals the batch arm's (no cap); `safe` = per-query lambda tuned, in hindsight on "
        "these very batches, so that no batch breaks the cap; `guarded` = per-query at the "
        "matched lambda with the router's feasibility guard enforcing the cap. Gains are in "
        "accuracy points (batch minus arm), verdict by paired seeds (2 standard errors). "
        "\"over cap\" = batches per seed whose predicted spend broke the cap.\n\n"
        "| estimator | N | order | cap | batch acc | vs matched | vs safe | vs guarded | matched: "
        "batches over cap | batch: over cap | sd of spend/cap, matched vs batch |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (const auto& [key, e] : s["exp2_batching"].items()) {
      absl::StrAppend(
          &md, "| ", e.value("estimator", ""), " | ", e["batch_size"].dump(), " | ",
          e.value("ordering", ""), " | ", e["cap_fraction"].dump(), " | ",
          Ms(e["batch_accuracy"], 3), " | ", Ms(e["batch_minus_per_query_matched_points"], 2), " ",
          Verdict(e["batch_minus_per_query_matched_points"]), " | ",
          Ms(e["batch_minus_per_query_safe_points"], 2), " ",
          Verdict(e["batch_minus_per_query_safe_points"]), " | ",
          Ms(e["batch_minus_per_query_guarded_points"], 2), " ",
          Verdict(e["batch_minus_per_query_guarded_points"]), " | ",
          Ms(e["per_query_matched_batches_over_cap"], 1), " | ", Ms(e["batch_batches_over_cap"], 1),
          " | ", Ms(e["per_query_matched_spend_sd_over_cap"], 2), " vs ",
          Ms(e["batch_spend_sd_over_cap"], 2), " |\n");
    }
    absl::StrAppend(&md, "\nThe batch arm never broke a cap (checked per batch, every seed: ",
                    "see `batch_batches_over_cap` in summary.json).\n\n",
                    "![per-batch spend](exp2_batches.png)\n\n");
    if (s.contains("inline_minus_batch_pts")) {
      absl::StrAppend(
          &md,
          "#### Inline routing vs the batch ILP\n\n"
          "`inline` decides each query on arrival (no batch wait) by argmax quality - lambda x "
          "cost - mu_j, its prices re-solved at every arrival as the duals of the batch LP over "
          "the query plus a forecast of the rest of its window (the last 100 arrivals), with a "
          "guard that keeps every window within its cap. Windows = the batches above, each with "
          "the batch's cap. inline − batch in accuracy points (verdict by paired seeds); guarded "
          "= share of decisions where the guard overrode the priced choice; p99 = 99th "
          "percentile of one decision's wall time in process (per seed), with this dataset's "
          "pool of ",
          At(s, {"num_models"}).dump(),
          " models.\n\n"
          "| estimator | N | order | cap | inline − batch (pts) | inline windows over cap | "
          "guarded share | decision p99 (us) |\n|---|---|---|---|---|---|---|---|\n");
      for (const auto& [key, e] : s["exp2_batching"].items()) {
        absl::StrAppend(&md, "| ", e.value("estimator", ""), " | ", e["batch_size"].dump(), " | ",
                        e.value("ordering", ""), " | ", e["cap_fraction"].dump(), " | ",
                        Ms(At(e, {"inline_minus_batch_points"}), 2), " ",
                        Verdict(At(e, {"inline_minus_batch_points"})), " | ",
                        Ms(At(e, {"inline_batches_over_cap"}), 1), " | ",
                        Ms(At(e, {"inline_guarded_share"}), 3), " | ",
                        Ms(At(e, {"inline_decision_us_p99"}), 1), " |\n");
      }
      absl::StrAppend(&md,
                      "\nInline windows over their cap, all seeds and adversarial "
                      "configurations: ",
                      s.value("inline_cap_violations", json()).dump(), ".\n\n");
    }
  }

  if (s.contains("exp3_robustness")) {
    absl::StrAppend(&md,
                    "### 3. Robustness: point estimates vs lower bounds vs Gamma\n\n"
                    "Random batches of 100; estimators fitted on a share of the train part "
                    "(UniRoute: of the calibration part too). Gains in accuracy points over the "
                    "plain batch ILP at the same budget.\n\n"
                    "| setting | batch acc | robust (box) − batch | gamma − batch |\n"
                    "|---|---|---|---|\n");
    for (const auto& [key, e] : s["exp3_robustness"].items()) {
      absl::StrAppend(&md, "| ", key, " | ", Ms(e["batch_accuracy"], 3), " | ",
                      Ms(e["batch_robust_minus_batch_points"], 2), " ",
                      Verdict(e["batch_robust_minus_batch_points"]), " | ",
                      Ms(e["batch_gamma_minus_batch_points"], 2), " ",
                      Verdict(e["batch_gamma_minus_batch_points"]), " |\n");
    }
    absl::StrAppend(&md, "\n");
  }

  if (s.contains("exp4_unseen_models")) {
    const json& e = s["exp4_unseen_models"];
    absl::StrAppend(&md,
                    "### 4. Unseen models (UniRoute protocol)\n\n"
                    "Fit on 2/3 of the models (seeded choice), add the other third from its "
                    "calibration-part results only (AddModel); `_all` = fitted with every model. "
                    "Figures from estimator_eval's per-query lambda sweep.\n\n"
                    "| arm | deferral AUC | QNC | acc_rel @50% | argmax accuracy |\n"
                    "|---|---|---|---|---|\n");
    for (const std::string arm : {"uniroute_unseen", "knn_unseen", "uniroute_all", "knn_all"}) {
      if (!e.contains(arm)) continue;
      absl::StrAppend(&md, "| ", arm, " | ", Ms(e[arm]["auc"], 3), " | ", Ms(e[arm]["qnc"], 3),
                      " | ", Ms(e[arm]["acc_rel_at_50"], 3), " | ",
                      Ms(e[arm]["argmax_accuracy"], 3), " |\n");
    }
    absl::StrAppend(&md, "\nUniRoute-unseen minus kNN-unseen (", e.value("figure_compared", ""),
                    "): ", Ms(e["uniroute_unseen_minus_knn_unseen"], 4), " ",
                    Verdict(e["uniroute_unseen_minus_knn_unseen"]),
                    "; UniRoute-unseen minus UniRoute refitted on all: ",
                    Ms(e["uniroute_unseen_minus_uniroute_all"], 4), " ",
                    Verdict(e["uniroute_unseen_minus_uniroute_all"]), ".\n\n");
  }

  if (s.contains("exp5_capacity")) {
    const json& e = s["exp5_capacity"];
    absl::StrAppend(
        &md,
        "### 5. Capacity (self-hosted slots)\n\n"
        "The 4 models most accurate on the train part are self-hosted at zero per-query cost, "
        "best first with the paper's shapes (8, 4, 2, 1 GPUs per instance; 2, 4, 8, 16 slots per "
        "instance); the rest are priced API models. Random batches of 100, spend cap ",
        e.value("cap_fraction", 0.0),
        " x the best model's predicted cost per prompt. Slots bind: one instance each (30 slots "
        "per batch); not binding: every self-hosted model could take a whole batch. The per-query "
        "router is tuned (without slots) to the batch arm's spend, then its feasibility guard "
        "enforces slots and cap; threshold uses tau ",
        e.value("threshold_tau", 0.0),
        ". cost_rel = realized cost / best single model's (priced) cost.\n\n"
        "| estimator | scenario | arm | accuracy | cost_rel | batches over slots | batch minus arm "
        "(pts) |\n|---|---|---|---|---|---|---|\n");
    for (const std::string& est : EstimatorsIn(e)) {
      for (const std::string scenario : {"slots_binding", "slots_not_binding"}) {
        const json& x = At(e, {est, scenario});
        if (!x.is_object()) continue;
        for (const std::string arm : {"batch", "per_query_guarded", "threshold_guarded"}) {
          const std::string diff = "batch_minus_" + arm + "_points";
          absl::StrAppend(&md, "| ", est, " | ", scenario, " | ", arm, " | ",
                          Ms(At(x, {arm + "_accuracy"}), 3), " | ",
                          Ms(At(x, {arm + "_cost_rel"}), 3), " | ",
                          Ms(At(x, {arm + "_batches_over_slots"}), 1), " | ",
                          arm == "batch" ? std::string("-")
                                         : absl::StrCat(Ms(At(x, {diff}), 2), " ",
                                                        Verdict(At(x, {diff}))),
                          " |\n");
        }
      }
    }
    absl::StrAppend(&md, "\n![capacity](exp5_capacity.png)\n\n");
  }

  if (s.contains("exp6_allocation")) {
    const json& e = s["exp6_allocation"];
    absl::StrAppend(
        &md,
        "### 6. Instance allocation\n\n"
        "Same self-hosted models and shapes as experiment 5. The capacity planner chooses "
        "instances under the GPU budget from each estimator's *predicted* quality and cost on "
        "history (",
        e.value("history", std::string("?")),
        "), against the uniform and proportional water-filling baselines at the same budget; "
        "each plan is then scored by routing the held-out test part (batch ILP, cap ",
        e.value("cap_fraction", 0.0),
        " x best model's predicted cost) on realized outcomes.\n\n"
        "| estimator | GPUs | plan | history predicted quality | test accuracy | GPUs used |\n"
        "|---|---|---|---|---|---|\n");
    std::string verdicts;
    for (const std::string& est : EstimatorsIn(e)) {
      for (const auto& [key, x] : e[est].items()) {
        if (!x.is_object()) continue;
        for (const std::string plan : {"optimized", "uniform", "proportional"}) {
          absl::StrAppend(&md, "| ", est, " | ", key, " | ", plan, " | ",
                          Ms(At(x, {plan + "_history_predicted_quality"}), 3), " | ",
                          Ms(At(x, {plan + "_test_accuracy"}), 3), " | ",
                          Ms(At(x, {plan + "_gpus_used"}), 1), " |\n");
        }
        for (const std::string base : {"uniform", "proportional"}) {
          const std::string diff = "optimized_minus_" + base + "_points";
          absl::StrAppend(&verdicts, "- ", est, ", ", key, ": optimized minus ", base, " ",
                          Ms(At(x, {diff}), 2), " pts ", Verdict(At(x, {diff})), ".\n");
        }
      }
    }
    absl::StrAppend(&md, "\n", verdicts, "\n![allocation](exp6_allocation.png)\n\n");
  }

  if (s.contains("exp7_learning")) {
    const json& e = s["exp7_learning"];
    const json& l = e["learner"];
    absl::StrAppend(
        &md,
        "### 7. Learning from outcomes (UniRoute, bandit feedback)\n\n"
        "A stream of ",
        e.value("stream_length", 0),
        " test prompts (the test part in seeded shuffles, one after another) decided in batches "
        "of ",
        e.value("batch_size", 0), " by the batch engine (`RouteBatch`, local ledger) with a cap of ",
        e.value("cap_fraction", 0.0), " x the best model's predicted cost per query and ",
        e.value("slots_per_model_per_batch", 0),
        " slots per model per batch (solver: ", At(e, {"solve", "time_limit_ms"}).dump(),
        " ms, relative gap ", At(e, {"solve", "relative_gap"}).dump(),
        "). Only the chosen model's outcome is revealed, after the "
        "batch; the online router records it in the outcome learner and adjusts the next "
        "batches' predictions (learner: half-life ",
        l.value("half_life_outcomes", 0.0), " outcomes, prior strength ",
        l.value("prior_strength", 0.0), ", cold start ", l.value("cold_start_quality", 0.0), " x ",
        l.value("cold_start_strength", 0.0), ", exploration ", l.value("exploration", 0.0),
        "). Every batch's spend and slots are re-counted against its limits (the replay fails "
        "otherwise): none was exceeded. Drift: from query ",
        e.value("switch_at", 0), ", the model most accurate on the train part (",
        Counted(At(e, {"degraded_models"})), ") loses ", e.value("drift_flip", 0.0) * 100.0,
        "% of its correct answers on the tasks that carried half its static traffic before (",
        Ms(At(e, {"drift_tasks"}), 1), " tasks, ",
        Ms(At(e, {"drift_tasks_share_of_stream"}), 2, 100.0),
        "% of the queries); the oracle is UniRoute refitted on the calibration part under the "
        "same drift. \"end\" = the last ",
        e.value("end_window", 0), " of the ", e.value("switch_at", 0),
        " queries after the switch.\n\n"
        "| scenario | arm | accuracy (all) | after switch | end window | predicted cost/query "
        "| explored | budget-binding batches | slots-binding batches |\n"
        "|---|---|---|---|---|---|---|---|---|\n");
    for (const auto& [scenario, arms] :
         {std::pair{std::string("no_drift"), std::vector<std::string>{"static", "online"}},
          std::pair{std::string("drift"), std::vector<std::string>{"static", "online", "oracle"}},
          std::pair{std::string("new_model"),
                    std::vector<std::string>{"static_without", "online", "static_full"}}}) {
      for (const std::string& arm : arms) {
        const std::string key = scenario + "/" + arm;
        if (!e.contains(key + "/accuracy_all")) continue;
        absl::StrAppend(&md, "| ", scenario, " | ", arm, " | ",
                        Ms(At(e, {key + "/accuracy_all"}), 3), " | ",
                        Ms(At(e, {key + "/accuracy_after_switch"}), 3), " | ",
                        Ms(At(e, {key + "/accuracy_end_window"}), 3), " | $",
                        Ms(At(e, {key + "/predicted_cost_per_query"}), 6), " | ",
                        Ms(At(e, {key + "/explored_share"}), 3), " | ",
                        Ms(At(e, {key + "/budget_binding_batches"}), 1), " | ",
                        Ms(At(e, {key + "/slots_binding_batches"}), 1), " |\n");
      }
    }
    const json& nodrift = At(s, {"online_minus_static_pts_nodrift"});
    const json& closed = At(s, {"drift_gap_closed_fraction"});
    const json& majority = At(s, {"new_model_queries_to_majority"});
    const bool nodrift_met =
        At(nodrift, {"mean"}).is_number() && At(nodrift, {"mean"}).get<double>() >= -0.3;
    const bool closed_met = closed.is_number() && closed.get<double>() >= 0.8;
    auto fraction = [](const json& f) {
      return f.is_number() ? absl::StrFormat("%.2f", f.get<double>()) : std::string("n/a");
    };
    absl::StrAppend(
        &md, "\n- No drift: online minus static ", Ms(nodrift, 2), " pts (", Verdict(nodrift),
        ") under the same cap and slots (predicted spend, online relative to static: ",
        Ms(At(e, {"nodrift_online_minus_static_spend_pct"}), 1),
        "%); target: costs at most 0.3 pts: ",
        nodrift_met ? "met" : "**not met**", ".\n",
        "- Drift, end window: static ", Ms(At(e, {"drift/static/accuracy_end_window"}), 3),
        ", online ", Ms(At(e, {"drift/online/accuracy_end_window"}), 3), ", oracle ",
        Ms(At(e, {"drift/oracle/accuracy_end_window"}), 3), "; static-to-oracle gap ",
        Ms(At(e, {"drift_static_oracle_gap_pts_end_window"}), 2),
        " pts, online closes ", fraction(closed),
        " of it (target >= 0.8: ", closed_met ? "met" : "**not met**",
        "); over all the queries after the switch: gap ",
        Ms(At(e, {"drift_static_oracle_gap_pts_after_switch"}), 2), " pts, closed ",
        fraction(At(e, {"drift_gap_closed_fraction_after_switch"})), ".\n",
        "- New model (", Counted(At(e, {"new_models"})),
        "): the full-knowledge router gives it ",
        Ms(At(e, {"new_model_full_knowledge_share"}), 2),
        " of its task; cold-started, it serves most of the task from stream query ",
        Ms(majority, 0),
        " on (the end of the first window of 200 with a majority; mean over the ",
        majority.value("reached", 0), " of ", majority.value("seeds", 0),
        " seeds in which it happened), and ",
        Ms(At(e, {"new_model_online_share_last_quarter"}), 2),
        " of the task in the stream's last quarter. The learner's cells are UniRoute's clusters: "
        "the share of the task's queries in its most frequent cluster is ",
        Ms(At(e, {"new_model_task_top_cluster_share"}), 2),
        " (the lower, the less the cells can single the task out).\n\n"
        "![drift](exp7_learning.png)\n\n![new model](exp7_new_model.png)\n\n");
  }

  // Claims side by side.
  absl::StrAppend(&md, "### Claims vs ours (", dataset,
                  ")\n\n| claim | source | ours | verdict |\n|---|---|---|---|\n");
  auto exp2 = [&](const std::string& key, const std::string& figure) -> const json& {
    return At(s, {"exp2_batching", key, figure});
  };
  for (const std::string& est : EstimatorsIn(At(s, {"acc_rel_at_50pct_cost"}))) {
    const std::string adv = absl::StrCat(est, "/N=100/adversarial/cap=0.5");
    const std::string rnd = absl::StrCat(est, "/N=100/random/cap=0.5");
    absl::StrAppend(&md,
                    "| batch vs per-query, adversarial batches + hard cap: up to +24% | "
                    "Markovic-Voronov et al. | ",
                    est, ", N=100, cap 0.5: vs cap-safe per-query ",
                    Ms(exp2(adv, "batch_minus_per_query_safe_points"), 2), " pts | ",
                    Verdict(exp2(adv, "batch_minus_per_query_safe_points")), " |\n");
    absl::StrAppend(
        &md,
        "| at matched total spend batch gains ~nothing (-0.2..+0.5 pts) | "
        "peer (vLLM SR) | ",
        est, ", N=100, random, cap 0.5: ", Ms(exp2(rnd, "batch_minus_per_query_matched_points"), 2),
        " pts | ", Verdict(exp2(rnd, "batch_minus_per_query_matched_points")), " |\n");
    absl::StrAppend(&md, "| MIP reaches 95% of the best model at 50% of its cost | Dria | ", est,
                    ": ", Ms(At(s, {"acc_rel_at_50pct_cost", est, "batch"}), 3),
                    " (heuristics: ndch_p ", Ms(At(s, {"acc_rel_at_50pct_cost", est, "ndch_p"}), 3),
                    ", threshold ", Ms(At(s, {"acc_rel_at_50pct_cost", est, "threshold"}), 3),
                    "; Dria ~0.90) | measured |\n");
    const std::string low = absl::StrCat(est, "/train=0.1/budget=0.2");
    absl::StrAppend(
        &md, "| robust beats non-robust by +1-14% | Markovic-Voronov et al. | ", est,
        ", 10% train, budget 0.2: ",
        Ms(At(s, {"exp3_robustness", low, "batch_robust_minus_batch_points"}), 2), " pts | ",
        Verdict(At(s, {"exp3_robustness", low, "batch_robust_minus_batch_points"})), " |\n");
    absl::StrAppend(&md,
                    "| inline routing lands within -0.5..+0.3 pts of the batch MIP, no cap broken "
                    "(prototype; target: within 0.5 pts, p99 <= 100 us per decision at M=20, "
                    "horizon 100) | our target | ",
                    est, ", N=100: ", InlineClaim(s, est), " |\n");
  }
  absl::StrAppend(&md,
                  "| UniRoute K-means beats kNN on unseen models (AUC 0.712 vs 0.707 "
                  "RouterBench) | Jitkrittum et al. | ",
                  Ms(At(s, {"exp4_unseen_models", "uniroute_unseen", "auc"}), 3), " vs ",
                  Ms(At(s, {"exp4_unseen_models", "knn_unseen", "auc"}), 3), " | ",
                  Verdict(At(s, {"exp4_unseen_models", "uniroute_unseen_minus_knn_unseen"})),
                  " |\n");
  bool allocation_measured = false;
  if (s.contains("exp6_allocation")) {
    for (const std::string& est : EstimatorsIn(s["exp6_allocation"])) {
      for (const auto& [key, x] : s["exp6_allocation"][est].items()) {
        if (!x.is_object()) continue;
        allocation_measured = true;
        for (const std::string base : {"uniform", "proportional"}) {
          const json& gain = At(x, {"optimized_over_" + base + "_rel_gain"});
          absl::StrAppend(
              &md, "| optimized allocation up to +3% (+2.7-3.2%) | Markovic-Voronov et al. | ",
              est, ", ", key, ", vs ", base, ": ", Ms(gain, 2, 100.0), "% test accuracy | ",
              Verdict(gain), " |\n");
        }
      }
    }
  }
  if (!allocation_measured) {
    absl::StrAppend(&md,
                    "| optimized allocation +2.7-3.2% | Markovic-Voronov et al. | not "
                    "measured | - |\n");
  }
  absl::StrAppend(&md, "\n");
  return md;
}

}  // namespace router::core::eval
