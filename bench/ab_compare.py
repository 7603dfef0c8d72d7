#!/usr/bin/python3
"""Compares two builds of one Google Benchmark program in the same run.

Runs binary A and binary B alternately (A B A B ...) for --rounds rounds on the benchmarks that
--filter selects, so that a machine whose speed drifts during the run weighs on both alike, and
prints, per benchmark and counter (p50/p99 and the like, and real_time), the median over rounds
for A and for B and their ratio B / A. Counters that are not times (gaps, shares) are printed
too; their ratio says whether the two builds decided alike.

usage: ab_compare.py --a OLD_BINARY --b NEW_BINARY --filter REGEX [--rounds 5] [--json OUT]
"""

import argparse
import json
import statistics
import subprocess
import sys


def run(binary, regex):
    out = subprocess.run([binary, f"--benchmark_filter={regex}", "--benchmark_format=json"],
                         check=True, capture_output=True, text=True).stdout
    results = {}
    for b in json.loads(out)["benchmarks"]:
        figures = {"real_time": b["real_time"]}
        for key, value in b.items():
            if key.endswith(("_ms", "_us", "_pct", "_query", "guarded", "served", "objective_mean")):
                figures[key] = value
        results[b["name"]] = figures
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", required=True, help="the baseline binary")
    ap.add_argument("--b", required=True, help="the binary compared with it")
    ap.add_argument("--filter", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", help="also write every round's figures here")
    args = ap.parse_args()
    rounds = {"a": [], "b": []}
    for r in range(args.rounds):
        for side in ("a", "b"):
            rounds[side].append(run(getattr(args, side), args.filter))
        print(f"round {r + 1} of {args.rounds} done", file=sys.stderr)
    names = list(rounds["a"][0])
    print(f"{'benchmark':58} {'figure':20} {'A median':>12} {'B median':>12} {'B/A':>7}")
    for name in names:
        for figure in rounds["a"][0][name]:
            a = statistics.median(x[name][figure] for x in rounds["a"])
            b = statistics.median(x[name][figure] for x in rounds["b"] if name in x)
            ratio = f"{b / a:7.3f}" if a else "      -"
            print(f"{name:58} {figure:20} {a:12.4g} {b:12.4g} {ratio}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rounds, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
