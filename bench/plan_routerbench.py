#!/usr/bin/env python3
"""Capacity-planner scenarios from real RouterBench data, and the planner-vs-baselines comparison.

  plan_routerbench.py scenario [options] > scenario.json
      writes one router_plan scenario (format: docs/planner.md)
  plan_routerbench.py compare --router-plan build/bin/router_plan [options]
      runs router_plan on a grid of GPU budgets x cost caps and prints the markdown table of
      bench/README.md ("Capacity planner")

Data: ../shared/data/routerbench_subset/derived (labels.csv: prompt_id, model, correct, cost_usd;
prompts.jsonl: prompt_id, task, split). Only prompts with a label for all 11 models are used.

Predicted quality (a stand-in for an estimator): the prompt's real 0/1 correctness shrunk toward the
model's mean correctness on the prompt's task over the train split,
    quality_ij = (correct_ij + alpha * task_mean_{task(i), j}) / (1 + alpha),   alpha = 2 by default,
so the prediction ranks models mostly by task and partly by the prompt. Predicted cost: the real
per-call USD cost of labels.csv for API models, 0 for self-hosted models (their cost is the GPUs).

Models: six open models are self-hosted with footprints as in the paper (GPUs per instance / slots
per instance): llama-2-70b 8/2, mixtral-8x7b 4/4, Yi-34B 4/4, code-llama-34b 4/4, WizardLM-13B 2/8,
mistral-7b 1/16. GPT-4, GPT-3.5 and the three Claude models are priced API models.

Batches: --batches batches of --batch-size prompts drawn at random (--seed) from --split.

Held-out check (compare only): every allocation found on the train-split sample (the plan and both
baselines) is also routed on --holdout-batches batches drawn from the test split, by running
router_plan with min_instances = max_instances = that allocation; the table reports both.
Python 3 standard library only.
"""

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.normpath(
    os.path.join(HERE, "..", "..", "shared", "data", "routerbench_subset", "derived"))

# name in labels.csv -> (short name, gpus per instance, slots per instance); None = API model.
MODELS = [
    ("meta/llama-2-70b-chat", "llama-2-70b", 8, 2),
    ("mistralai/mixtral-8x7b-chat", "mixtral-8x7b", 4, 4),
    ("zero-one-ai/Yi-34B-Chat", "yi-34b", 4, 4),
    ("meta/code-llama-instruct-34b-chat", "code-llama-34b", 4, 4),
    ("WizardLM/WizardLM-13B-V1.2", "wizardlm-13b", 2, 8),
    ("mistralai/mistral-7b-chat", "mistral-7b", 1, 16),
    ("gpt-4-1106-preview", "gpt-4", None, None),
    ("gpt-3.5-turbo-1106", "gpt-3.5", None, None),
    ("claude-v1", "claude-v1", None, None),
    ("claude-v2", "claude-v2", None, None),
    ("claude-instant-v1", "claude-instant", None, None),
]


def load(data_dir):
    task, split = {}, {}
    with open(os.path.join(data_dir, "prompts.jsonl")) as f:
        for line in f:
            p = json.loads(line)
            task[p["prompt_id"]] = p["task"]
            split[p["prompt_id"]] = p["split"]
    labels = defaultdict(dict)  # prompt -> model -> (correct, cost)
    with open(os.path.join(data_dir, "labels.csv")) as f:
        for r in csv.DictReader(f):
            labels[r["prompt_id"]][r["model"]] = (float(r["correct"]), float(r["cost_usd"]))
    names = [m[0] for m in MODELS]
    complete = sorted(p for p, by_model in labels.items() if all(n in by_model for n in names))
    return task, split, labels, complete


def task_means(task, split, labels, prompts):
    total = defaultdict(lambda: defaultdict(float))
    count = defaultdict(int)
    for p in prompts:
        if split[p] != "train":
            continue
        count[task[p]] += 1
        for name, _, _, _ in MODELS:
            total[task[p]][name] += labels[p][name][0]
    return {t: {n: total[t][n] / count[t] for n, _, _, _ in MODELS} for t in count}


def make_scenario(args, data=None):
    task, split, labels, complete = data or load(args.data)
    means = task_means(task, split, labels, complete)
    pool = [p for p in complete if split[p] == args.split]
    need = args.batches * args.batch_size
    if need > len(pool):
        sys.exit(f"plan_routerbench: {need} prompts requested, the {args.split} split has {len(pool)}")
    rng = random.Random(args.seed)
    chosen = rng.sample(pool, need)
    models = []
    for _, short, gpus, slots in MODELS:
        m = {"name": short}
        if gpus is not None:
            m["gpus_per_instance"] = gpus
            m["slots_per_instance"] = slots
        models.append(m)
    batches = []
    for b in range(args.batches):
        batch = []
        for p in chosen[b * args.batch_size:(b + 1) * args.batch_size]:
            quality, cost = [], []
            for name, _, gpus, _ in MODELS:
                correct, usd = labels[p][name]
                quality.append(round((correct + args.alpha * means[task[p]][name]) / (1 + args.alpha), 6))
                cost.append(0.0 if gpus is not None else usd)
            batch.append({"id": p, "quality": quality, "cost": cost})
        batches.append(batch)
    return {"gpu_budget": args.gpu_budget, "avg_cost_cap": args.avg_cost_cap,
            "time_limit_ms": args.time_limit_ms, "models": models, "batches": batches}


def format_scenario(scenario):
    """The scenario as JSON with one model and one query per line, for readable diffs."""
    compact = lambda v: json.dumps(v, separators=(",", ":"))
    head = ", ".join(f'"{k}": {compact(v)}' for k, v in scenario.items()
                     if k not in ("models", "batches"))
    models = ",\n  ".join(compact(m) for m in scenario["models"])
    batches = ",\n  ".join("[\n   " + ",\n   ".join(compact(q) for q in b) + "]"
                            for b in scenario["batches"])
    return f'{{{head},\n "models": [\n  {models}],\n "batches": [\n  {batches}]}}\n'


def run_plan(router_plan, scenario):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(scenario, f)
        path = f.name
    try:
        run = subprocess.run([router_plan, "--scenario", path], capture_output=True, text=True)
    finally:
        os.unlink(path)
    if run.returncode != 0:
        sys.exit(f"plan_routerbench: router_plan failed: {run.stderr.strip()}")
    return json.loads(run.stdout)


def holdout_quality(args, data, instances):
    """Mean predicted quality of a fixed allocation on test-split batches."""
    held = argparse.Namespace(**vars(args))
    held.split, held.batches = "test", args.holdout_batches
    scenario = make_scenario(held, data)
    scenario["baselines"] = False
    scenario["time_limit_ms"] = 1000  # nothing to search: every model is fixed
    for m in scenario["models"]:
        if m["name"] in instances:
            m["min_instances"] = m["max_instances"] = instances[m["name"]]
    return run_plan(args.router_plan, scenario)["evaluation"]["mean_quality"]


def add_common(p):
    p.add_argument("--data", default=DEFAULT_DATA, help="routerbench_subset/derived directory")
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--split", default="train", choices=["train", "test"])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--alpha", type=float, default=2.0, help="shrinkage toward the task mean")
    p.add_argument("--time-limit-ms", type=float, default=10000)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("scenario", help="print one scenario as JSON")
    add_common(s)
    s.add_argument("--gpu-budget", type=int, required=True)
    s.add_argument("--avg-cost-cap", type=float, required=True)
    c = sub.add_parser("compare", help="planner vs baselines on a grid; prints a markdown table")
    add_common(c)
    c.add_argument("--router-plan", required=True, help="path to the router_plan binary")
    c.add_argument("--gpu-budgets", default="16,32,64")
    c.add_argument("--avg-cost-caps", default="0.0005,0.001,0.002")
    c.add_argument("--holdout-batches", type=int, default=9,
                   help="test-split batches for the held-out check (the split has ~940 prompts)")
    args = parser.parse_args()

    if args.command == "scenario":
        sys.stdout.write(format_scenario(make_scenario(args)))
        return

    data = load(args.data)
    print("| G | cap $/query | planner | uniform | proportional | vs uniform | vs proportional "
          "| held-out: planner, uniform, proportional | status, gap | solve s | planner instances |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---|")
    for g in [int(x) for x in args.gpu_budgets.split(",")]:
        for cap in [float(x) for x in args.avg_cost_caps.split(",")]:
            args.gpu_budget, args.avg_cost_cap = g, cap
            d = run_plan(args.router_plan, make_scenario(args, data))
            plan = d["evaluation"]["mean_quality"]
            uni = d["baselines"]["uniform"]["mean_quality"]
            prop = d["baselines"]["proportional"]["mean_quality"]
            held = [holdout_quality(args, data, inst) for inst in
                    (d["instances"], d["baselines"]["uniform"]["instances"],
                     d["baselines"]["proportional"]["instances"])]
            inst = ", ".join(f"{k} {v}" for k, v in d["instances"].items() if v)
            print(f"| {g} | {cap} | {plan:.4f} | {uni:.4f} | {prop:.4f} "
                  f"| {100 * (plan - uni):+.2f} pt | {100 * (plan - prop):+.2f} pt "
                  f"| {held[0]:.4f}, {held[1]:.4f}, {held[2]:.4f} "
                  f"| {d['status']}, {100 * d['gap']:.3f}% | {d['solve_ms'] / 1000:.1f} | {inst} |")
            sys.stdout.flush()

if __name__ == "__main__":
    main()
