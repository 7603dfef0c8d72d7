#!/bin/bash
# The estimator quality table of bench/README.md: for every dataset of ../shared/data and every
# estimator router_train builds, per-query lambda routing on the held-out test part
# (router_train --evaluate; metrics defined in router_core/estimate/estimator_eval.h).
# usage: bench/estimator_quality.sh [BUILD_DIR] [SEEDS...]   (defaults: build, seed 1)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build}"
shift || true
seeds=("${@:-1}")
[ ${#seeds[@]} -gt 0 ] || seeds=(1)
data="$root/../shared/data"
echo "| dataset | method | seed | test prompts | best single model (acc) | argmax acc | rel. acc @20% cost | @50% | @100% | QNC | deferral AUC | mean Brier | mean ECE |"
echo "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for dataset in routerbench_subset llmrouter_nim9 routerdc_7model; do
  for seed in "${seeds[@]}"; do
    for estimator in knn uniroute classifier; do
      "$build/bin/router_train" --dataset "$data/$dataset/derived" --evaluate --estimator "$estimator" \
          --seed "$seed" 2>/dev/null | grep '^|' |
        if [ "$estimator" = knn ]; then cat; else head -n 1; fi |
        sed "s/^| \([^|]*\) | \([^|]*\) |/| \1 | \2 | $seed |/"
    done
  done
done
