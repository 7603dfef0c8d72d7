#!/usr/bin/env bash
# Regenerates bench/results/: runs router_eval (5 split seeds, experiments 1-4) on every dataset
# of ../shared/data and assembles bench/results/REPORT.md from the per-dataset reports.
# Usage: bash bench/run_eval.sh [BUILD_DIR] [DATA_DIR]   (defaults: build, ../shared/data)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${1:-$ROOT/build}"
DATA="${2:-$ROOT/../shared/data}"
OUT="$ROOT/bench/results"
EVAL="$BUILD/bin/router_eval"
[ -x "$EVAL" ] || { echo "run_eval: $EVAL not built (ninja -C $BUILD router_eval)" >&2; exit 1; }
mkdir -p "$OUT"
for dir in "$DATA"/*/derived; do
  name="$(basename "$(dirname "$dir")")"
  echo "run_eval: $name" >&2
  nice "$EVAL" --dataset "$dir" --out "$OUT/$name" --seed 1 --seeds 5 >/dev/null
done
{
  cat "$OUT/REPORT_HEADER.md"
  for dir in "$DATA"/*/derived; do
    name="$(basename "$(dirname "$dir")")"
    # Image links point into the dataset's folder.
    sed -e "s#](exp#]($name/exp#g" "$OUT/$name/report.md"
  done
} > "$OUT/REPORT.md"
echo "run_eval: wrote $OUT/REPORT.md" >&2
