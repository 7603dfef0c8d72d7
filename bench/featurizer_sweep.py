#!/usr/bin/python3
"""The evidence behind the embedded default artifact (deploy/models/README.md): held-out quality of
each estimator x featurizer setting over many split seeds, from router_train --evaluate (its last
stdout line is a JSON object; metrics defined in router_core/estimate/estimator_eval.h).

usage: /usr/bin/python3 bench/featurizer_sweep.py [BUILD_DIR] [SEEDS] [SWEEP]
  (defaults: build, 10, char-ngrams)

SWEEP is what varies:
  char-ngrams   --char-ngrams 3-5, 4-4 and off (the other options at their defaults)
  text-bytes    --max-text-bytes 16384 (the default), 2048, 1024 and 512, with --char-ngrams 4-4
  idf-bits      --idf-bits 16 (the default), 14 and 12, with --char-ngrams 4-4 --max-text-bytes 1024
                (the embedded artifact's options)
  idf-bits-defaults
                --idf-bits 16, 14 and 12 with every other option at its default, for the
                classifier too (the evidence behind the library default)

Prints one Markdown row per dataset x estimator x setting: means over seeds 1..SEEDS of the
accuracy relative to the best single model at 50% of its cost, the deferral AUC, the per-model ROC
AUC and the lower-bound coverage (nominal 0.9), and in how many seeds QNC (matching the best model's
accuracy at a lower cost) is reached. routerdc_7model has no costs, so its routing columns are n/a.
The last two columns compare each setting with the first one of its sweep on the same split seeds:
the mean and the standard deviation over seeds of the paired difference in relative accuracy at 50%
cost and in mean ROC AUC, so a difference can be read against how much it varies from split to
split.
"""
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build")
SEEDS = int(sys.argv[2]) if len(sys.argv) > 2 else 10
SWEEP = sys.argv[3] if len(sys.argv) > 3 else "char-ngrams"
DATA = os.path.join(ROOT, "..", "shared", "data")

# Per sweep: the column's title, per row (the column's value, router_train's flags), and the
# estimators it runs.
TEXT_ESTIMATORS = ["knn", "uniroute"]
SWEEPS = {
    "char-ngrams": ("char n-grams", [(n, ["--char-ngrams", n]) for n in ["3-5", "4-4", "off"]],
                    TEXT_ESTIMATORS),
    "text-bytes": ("max_text_bytes", [(str(b), ["--char-ngrams", "4-4", "--max-text-bytes", str(b)])
                                      for b in [16384, 2048, 1024, 512]], TEXT_ESTIMATORS),
    "idf-bits": ("idf_bits", [(str(b), ["--char-ngrams", "4-4", "--max-text-bytes", "1024",
                                        "--idf-bits", str(b)]) for b in [16, 14, 12]],
                 TEXT_ESTIMATORS),
    "idf-bits-defaults": ("idf_bits", [(str(b), ["--idf-bits", str(b)]) for b in [16, 14, 12]],
                          TEXT_ESTIMATORS + ["classifier"]),
}
if SWEEP not in SWEEPS:
    sys.exit(f"featurizer_sweep.py: SWEEP must be one of {', '.join(SWEEPS)}, got '{SWEEP}'")
TITLE, SETTINGS, ESTIMATORS = SWEEPS[SWEEP]


def mean(values):
    values = [v for v in values if v is not None]
    return f"{statistics.mean(values):.4f}" if values else "n/a"


def paired(values, baseline):
    """Mean (sd) over seeds of values[i] - baseline[i], skipping seeds where either is missing."""
    diffs = [v - b for v, b in zip(values, baseline) if v is not None and b is not None]
    if len(diffs) < 2:
        return "n/a"
    return f"{statistics.mean(diffs):+.4f} ({statistics.stdev(diffs):.4f})"


def seed_metrics(runs):
    """Per seed: relative accuracy at 50% cost and the mean per-model ROC AUC (None if absent)."""
    acc, auc = [], []
    for r in runs:
        acc.append(r["routing"].get("relative_accuracy_at_50pct_cost"))
        aucs = [m.get("auc") for m in r["models"].values() if m.get("auc") is not None]
        auc.append(statistics.mean(aucs) if aucs else None)
    return acc, auc


print(f"| dataset | estimator | {TITLE} | rel. acc @50% cost | deferral AUC | mean ROC AUC "
      "| mean coverage | QNC reached | vs first: rel. acc @50% | vs first: ROC AUC |")
print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
for dataset in ["routerbench_subset", "llmrouter_nim9", "routerdc_7model"]:
    for estimator in ESTIMATORS:
        first = None
        for value, flags in SETTINGS:
            runs = []
            for seed in range(1, SEEDS + 1):
                out = subprocess.run(
                    [os.path.join(BUILD, "bin", "router_train"), "--dataset",
                     os.path.join(DATA, dataset, "derived"), "--evaluate", "--estimator", estimator,
                     "--seed", str(seed)] + flags,
                    capture_output=True, text=True, check=True).stdout
                runs.append(json.loads(out.strip().splitlines()[-1]))
            routing = [r["routing"] for r in runs]
            models = [m for r in runs for m in r["models"].values()]
            has_cost = routing[0].get("best_cost_usd") is not None
            reached = sum(r.get("qnc") is not None for r in routing)
            acc, auc = seed_metrics(runs)
            if first is None:
                first = (acc, auc)
            print(f"| {dataset} | {estimator} | {value} "
                  f"| {mean(r.get('relative_accuracy_at_50pct_cost') for r in routing)} "
                  f"| {mean(r.get('deferral_auc') for r in routing)} "
                  f"| {mean(m.get('auc') for m in models)} | {mean(m.get('coverage') for m in models)} "
                  f"| {f'{reached}/{SEEDS}' if has_cost else 'n/a'} "
                  f"| {paired(acc, first[0])} | {paired(auc, first[1])} |", flush=True)
