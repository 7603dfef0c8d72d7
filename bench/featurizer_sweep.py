#!/usr/bin/python3
"""The evidence behind the embedded default artifact (deploy/models/README.md): held-out quality of
each estimator x character n-gram setting over many split seeds, from router_train --evaluate (its
last stdout line is a JSON object; metrics defined in router_core/estimate/estimator_eval.h).

usage: /usr/bin/python3 bench/featurizer_sweep.py [BUILD_DIR] [SEEDS]   (defaults: build, 10)

Prints one Markdown row per dataset x estimator x --char-ngrams: means over seeds 1..SEEDS of the
accuracy relative to the best single model at 50% of its cost, the deferral AUC, the per-model ROC
AUC and the lower-bound coverage (nominal 0.9), and in how many seeds QNC (matching the best model's
accuracy at a lower cost) is reached. routerdc_7model has no costs, so its routing columns are n/a.
"""
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build")
SEEDS = int(sys.argv[2]) if len(sys.argv) > 2 else 10
DATA = os.path.join(ROOT, "..", "shared", "data")


def mean(values):
    values = [v for v in values if v is not None]
    return f"{statistics.mean(values):.4f}" if values else "n/a"


print("| dataset | estimator | char n-grams | rel. acc @50% cost | deferral AUC | mean ROC AUC "
      "| mean coverage | QNC reached |")
print("|---|---|---|---:|---:|---:|---:|---:|")
for dataset in ["routerbench_subset", "llmrouter_nim9", "routerdc_7model"]:
    for estimator in ["knn", "uniroute"]:
        for ngrams in ["3-5", "4-4", "off"]:
            runs = []
            for seed in range(1, SEEDS + 1):
                out = subprocess.run(
                    [os.path.join(BUILD, "bin", "router_train"), "--dataset",
                     os.path.join(DATA, dataset, "derived"), "--evaluate", "--estimator", estimator,
                     "--seed", str(seed), "--char-ngrams", ngrams],
                    capture_output=True, text=True, check=True).stdout
                runs.append(json.loads(out.strip().splitlines()[-1]))
            routing = [r["routing"] for r in runs]
            models = [m for r in runs for m in r["models"].values()]
            has_cost = routing[0].get("best_cost_usd") is not None
            reached = sum(r.get("qnc") is not None for r in routing)
            print(f"| {dataset} | {estimator} | {ngrams} "
                  f"| {mean(r.get('relative_accuracy_at_50pct_cost') for r in routing)} "
                  f"| {mean(r.get('deferral_auc') for r in routing)} "
                  f"| {mean(m.get('auc') for m in models)} | {mean(m.get('coverage') for m in models)} "
                  f"| {f'{reached}/{SEEDS}' if has_cost else 'n/a'} |", flush=True)
