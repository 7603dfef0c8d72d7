#!/usr/bin/env bash
# Regenerates bench/results/: runs router_eval (SEEDS split seeds, default 20; experiments 1-7) on
# every dataset of ../shared/data and assembles bench/results/REPORT.md from the per-dataset
# reports.
# Experiments 5-6 (capacity, allocation) and 7 (learning from outcomes) run as further passes with
# --merge, so any pass can be redone alone without clobbering the others' summary keys
# (ONLY=7 bash bench/run_eval.sh redoes experiment 7 alone and reassembles the report).
# Usage: bash bench/run_eval.sh [BUILD_DIR] [DATA_DIR]   (defaults: build, ../shared/data)
#        ONLY=7 bash bench/run_eval.sh   experiment 7 alone (merged into the existing results)
#        ASSEMBLE_ONLY=1 bash bench/run_eval.sh   only rebuilds REPORT.md from the reports
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${1:-$ROOT/build}"
DATA="${2:-$ROOT/../shared/data}"
OUT="$ROOT/bench/results"
SEEDS="${SEEDS:-20}"
EVAL="$BUILD/bin/router_eval"
[ -n "${ASSEMBLE_ONLY:-}" ] || [ -x "$EVAL" ] || { echo "run_eval: $EVAL not built (ninja -C $BUILD router_eval)" >&2; exit 1; }
mkdir -p "$OUT"
if [ -z "${ASSEMBLE_ONLY:-}" ]; then
  for dir in "$DATA"/*/derived; do
    name="$(basename "$(dirname "$dir")")"
    echo "run_eval: $name" >&2
    if [ -z "${ONLY:-}" ]; then
      nice "$EVAL" --dataset "$dir" --out "$OUT/$name" --seed 1 --seeds "$SEEDS" >/dev/null
      nice "$EVAL" --dataset "$dir" --out "$OUT/$name" --seed 1 --seeds "$SEEDS" --experiments 5,6 \
        --merge >/dev/null
    fi
    if [ -z "${ONLY:-}" ] || [ "$ONLY" = 7 ]; then
      nice "$EVAL" --dataset "$dir" --out "$OUT/$name" --seed 1 --seeds "$SEEDS" --experiments 7 \
        --merge >/dev/null
    fi
  done
fi
{
  cat "$OUT/REPORT_HEADER.md"
  for dir in "$DATA"/*/derived; do
    name="$(basename "$(dirname "$dir")")"
    # Image links point into the dataset's folder.
    sed -e "s#](exp#]($name/exp#g" "$OUT/$name/report.md"
  done
} > "$OUT/REPORT.md"
echo "run_eval: wrote $OUT/REPORT.md" >&2
