#!/usr/bin/env bash
# Runs one libFuzzer target (tests/**/*_fuzz.cc) for a fixed time on a copy of its seed corpus in a
# temporary folder, so the tree is never modified: the ctest of label `fuzz` (ROUTER_FUZZ=ON).
#   fuzz_target_test.sh TARGET CORPUS_DIR SECONDS ARTIFACT_DIR
# Exits non-zero on any finding (crash, sanitizer report, leak, an input over 10 s or 2 GiB); the
# input that caused it is written to ARTIFACT_DIR/<target>-crash-<sha1> (or -timeout-, -oom-,
# -leak-), to reproduce with `TARGET FILE`.
set -euo pipefail
target=$1
corpus=$2
seconds=$3
artifacts=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus" "$artifacts"
cp -r "$corpus"/. "$work/corpus/"
rm -f "$work/corpus/README.md"
cd "$work"
exec "$target" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
  -artifact_prefix="$artifacts/$(basename "$target")-" "$work/corpus"
