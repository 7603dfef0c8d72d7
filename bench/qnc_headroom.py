#!/usr/bin/python3
"""How much per-prompt signal QNC <= 0.5 on routerbench_subset needs (bench/README.md, "Estimator
quality"). No estimator is trained: a synthetic predictor is built from the labels themselves,

    predicted quality = task prior + 0.1 x (label - task prior) + sigma x N(0, 1),

where the task prior is each model's accuracy on the prompt's task, and sigma is set so that the
predictor ranks a correct answer above a wrong one of the same model with probability AUC (the
within-task ROC AUC, the same for every model). Routing is the estimators' per-query lambda sweep
(router_core/estimate/estimator_eval.h: argmax quality - mu x cost / C, mu = 0 and 401 geometric
steps in [1e-3, 1e3], plus cheapest-always; cost = per-task mean cost; realized cost and accuracy
from the labels; mixing two operating points allowed). QNC = the smallest cost fraction of the best
single model at which that reaches its accuracy. All prompts with every label, in-sample: this
bounds what a predictor of that quality could do; it is not a held-out evaluation.

It then prints, per task, the within-task ROC AUC of simple surface features of the prompt (length,
word count, digit count) for four models, and of "how many of the other models answer correctly"
for GPT-4: the difficulty the labels share, which no text feature we have exposes.

usage: /usr/bin/python3 bench/qnc_headroom.py [SEEDS]   (default 3 noise seeds per AUC level)
"""
import collections
import csv
import bisect
import json
import math
import os
import random
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "..", "shared", "data", "routerbench_subset", "derived")
SEEDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3

task = {}
for line in open(os.path.join(DATA, "prompts.jsonl")):
    row = json.loads(line)
    task[row["prompt_id"]] = row["task"]
label = collections.defaultdict(dict)
cost = collections.defaultdict(dict)
for row in csv.DictReader(open(os.path.join(DATA, "labels.csv"))):
    label[row["prompt_id"]][row["model"]] = int(row["correct"])
    cost[row["prompt_id"]][row["model"]] = float(row["cost_usd"])
models = sorted({m for p in label for m in label[p]})
prompts = sorted(p for p in label if len(label[p]) == len(models))

by_task = collections.defaultdict(list)
for p in prompts:
    by_task[task[p]].append(p)
prior = {t: [statistics.mean(label[p][m] for p in ps) for m in models] for t, ps in by_task.items()}
task_cost = {t: [statistics.mean(cost[p][m] for p in ps) for m in models] for t, ps in by_task.items()}
n = len(prompts)
best = max(range(len(models)), key=lambda j: sum(label[p][models[j]] for p in prompts))
best_acc = sum(label[p][models[best]] for p in prompts) / n
best_cost = sum(cost[p][models[best]] for p in prompts) / n
correct = [[label[p][m] for m in models] for p in prompts]
realized = [[cost[p][m] / best_cost for m in models] for p in prompts]
routing_cost = [[c / best_cost for c in task_cost[task[p]]] for p in prompts]


def qnc(quality):
    """QNC of the lambda sweep on `quality` (prompts x models), None if never reached."""
    points = []
    for mu in [0.0] + [10 ** (-3 + 6 * k / 400) for k in range(401)]:
        c = a = 0.0
        for i in range(n):
            q, rc = quality[i], routing_cost[i]
            j = max(range(len(models)), key=lambda j: q[j] - mu * rc[j])
            c += realized[i][j]
            a += correct[i][j]
        points.append((c / n, a / n))
    cheapest = [min(range(len(models)), key=lambda j: routing_cost[i][j]) for i in range(n)]
    points.append((sum(realized[i][cheapest[i]] for i in range(n)) / n,
                   sum(correct[i][cheapest[i]] for i in range(n)) / n))
    found = [c for c, a in points if a >= best_acc]
    for c1, a1 in points:  # mixing a point below the target with one above it
        for c2, a2 in points:
            if a1 < best_acc <= a2 and c2 > c1:
                found.append(c1 + (best_acc - a1) * (c2 - c1) / (a2 - a1))
    return min(found) if found else None


def sigma_for(auc, signal=0.1):
    # Two scores differing by `signal`, each with N(0, sigma^2) noise: P(right order) = Phi(signal /
    # (sigma sqrt 2)) = AUC, so sigma = signal / (sqrt 2 x Phi^-1(AUC)).
    lo, hi = 0.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if 0.5 * (1 + math.erf(mid / 2)) < auc:  # Phi(mid / sqrt 2)
            lo = mid
        else:
            hi = mid
    return signal / lo


print(f"routerbench_subset, {n} prompts with every label; best single model {models[best]} "
      f"accuracy {best_acc:.3f} at {best_cost:.5f} USD per prompt")
task_prior_quality = [prior[task[p]] for p in prompts]
prior_qnc = qnc(task_prior_quality)
print(f"task prior alone: QNC {'never' if prior_qnc is None else f'{prior_qnc:.3f}'}")
print()
print("| within-task ROC AUC per model | QNC per noise seed |")
print("|---:|---|")
for auc in [0.55, 0.60, 0.65, 0.675, 0.70, 0.75, 0.80]:
    sigma = sigma_for(auc)
    results = []
    for seed in range(1, SEEDS + 1):
        rng = random.Random(seed)
        quality = [[prior[task[p]][j] + 0.1 * (correct[i][j] - prior[task[p]][j]) +
                    sigma * rng.gauss(0, 1) for j in range(len(models))]
                   for i, p in enumerate(prompts)]
        q = qnc(quality)
        results.append("never" if q is None else f"{q:.2f}")
    print(f"| {auc:.3f} | {', '.join(results)} |", flush=True)


def roc_auc(scores, labels):
    positives = [s for s, l in zip(scores, labels) if l]
    negatives = sorted(s for s, l in zip(scores, labels) if not l)
    if not positives or not negatives:
        return float("nan")
    wins = 0.0
    for s in positives:
        lo, hi = bisect.bisect_left(negatives, s), bisect.bisect_right(negatives, s)
        wins += lo + 0.5 * (hi - lo)
    return wins / len(positives) / len(negatives)


text = {}
for line in open(os.path.join(DATA, "prompts.jsonl")):
    row = json.loads(line)
    text[row["prompt_id"]] = row["text"]
surface = {
    "length": lambda t: len(t),
    "words": lambda t: len(t.split()),
    "digits": lambda t: sum(ch.isdigit() for ch in t),
}
print()
print("| task | model | AUC of length | of words | of digits |")
print("|---|---|---:|---:|---:|")
shown = ["gpt-4-1106-preview", "zero-one-ai/Yi-34B-Chat", "gpt-3.5-turbo-1106",
         "mistralai/mixtral-8x7b-chat"]
for t, ps in sorted(by_task.items()):
    for m in shown:
        labels = [label[p][m] for p in ps]
        cells = [f"{roc_auc([f(text[p]) for p in ps], labels):.3f}" for f in surface.values()]
        print(f"| {t} | {m} | {' | '.join(cells)} |")
print()
print("| task | AUC for GPT-4 of how many other models are right |")
print("|---|---:|")
for t, ps in sorted(by_task.items()):
    others = [sum(label[p][m] for m in models if m != models[best]) for p in ps]
    print(f"| {t} | {roc_auc(others, [label[p][models[best]] for p in ps]):.3f} |")
