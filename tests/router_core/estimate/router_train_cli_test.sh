#!/bin/bash
# router_train end to end: usage errors exit 2 with a message, bad data exits 1, a small training
# run writes a loadable artifact and ends stdout with one JSON line of held-out metrics.
# usage: router_train_cli_test.sh ROUTER_TRAIN DERIVED_DIR
set -u
train="$1"
data="$2"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

expect_exit() {  # expect_exit CODE MESSAGE_SUBSTRING ARGS...
  local code="$1" message="$2"
  shift 2
  "$train" "$@" >"$tmp/out" 2>"$tmp/err"
  local got=$?
  [ "$got" -eq "$code" ] || fail "router_train $* exited $got, expected $code: $(cat "$tmp/err")"
  grep -q -- "$message" "$tmp/err" || fail "router_train $*: stderr lacks '$message': $(cat "$tmp/err")"
}

expect_exit 2 "missing --dataset" --out "$tmp/a.cbor"
expect_exit 2 "unknown flag '--nope'" --dataset "$data" --out "$tmp/a.cbor" --nope 1
expect_exit 2 "--k: not a number" --dataset "$data" --out "$tmp/a.cbor" --k many
expect_exit 2 "expected knn, uniroute or classifier" --dataset "$data" --out "$tmp/a.cbor" --estimator forest
expect_exit 2 "featurizer dim" --dataset "$data" --out "$tmp/a.cbor" --dim 0
expect_exit 2 "must be 1" --dataset "$data" --out "$tmp/a.cbor" --train 0.9
expect_exit 2 "--char-ngrams: expected MIN-MAX or off, got '3_5'" --dataset "$data" --out "$tmp/a.cbor" \
    --char-ngrams 3_5
expect_exit 2 "char_ngram_min/char_ngram_max" --dataset "$data" --out "$tmp/a.cbor" --char-ngrams 5-3
expect_exit 2 "--word-bigrams: expected true or false, got 'yes'" --dataset "$data" \
    --out "$tmp/a.cbor" --word-bigrams yes
expect_exit 2 "max_text_bytes: expected 16..1048576, got 8" --dataset "$data" --out "$tmp/a.cbor" \
    --max-text-bytes 8
expect_exit 2 "--max-text-bytes: not a number" --dataset "$data" --out "$tmp/a.cbor" \
    --max-text-bytes 1k
expect_exit 1 "not found" --dataset "$tmp/missing" --out "$tmp/a.cbor"

small=(--dataset "$data" --dim 64 --idf-bits 10 --k 10 --bootstrap 10 --seed 3)
"$train" "${small[@]}" --out "$tmp/a.cbor" >"$tmp/out" 2>"$tmp/err" || fail "training failed: $(cat "$tmp/err")"
[ -s "$tmp/a.cbor" ] || fail "no artifact written"
tail -n 1 "$tmp/out" | grep -q '"routing":{' || fail "last stdout line is not the metrics JSON"
tail -n 1 "$tmp/out" | grep -q '"ece":' || fail "no per-model ece in the metrics"
grep -q "wrote $tmp/a.cbor" "$tmp/err" || fail "no progress line for the artifact"
# The featurizer's flags reach the artifact (the embedded one uses --char-ngrams 4-4
# --max-text-bytes 1024). In CBOR a key is followed by its value: small integers are one byte (0x04
# = 4), false is 0xf4, and 1024 / 16384 are 0x19 then two bytes big-endian.
"$train" "${small[@]}" --char-ngrams 4-4 --word-bigrams false --max-text-bytes 1024 \
    --out "$tmp/ngrams.cbor" >/dev/null 2>"$tmp/err" ||
  fail "training with --char-ngrams 4-4 --max-text-bytes 1024 failed: $(cat "$tmp/err")"
for field in 'char_ngram_min\x04' 'char_ngram_max\x04' 'word_bigrams\xf4' 'max_text_bytes\x19\x04\x00'; do
  LC_ALL=C grep -aPq "$field" "$tmp/ngrams.cbor" || fail "artifact lacks featurizer $field"
done
LC_ALL=C grep -aPq 'char_ngram_min\x03' "$tmp/a.cbor" || fail "default artifact lacks char_ngram_min 3"
LC_ALL=C grep -aPq 'max_text_bytes\x19\x40\x00' "$tmp/a.cbor" ||
  fail "default artifact lacks max_text_bytes 16384"
# Same seed and creation time: byte-identical artifact.
# (The command line is part of the provenance, so both runs write the same path.)
SOURCE_DATE_EPOCH=0 "$train" "${small[@]}" --out "$tmp/b.cbor" >/dev/null 2>&1 || fail "second run failed"
mv "$tmp/b.cbor" "$tmp/c.cbor"
SOURCE_DATE_EPOCH=0 "$train" "${small[@]}" --out "$tmp/b.cbor" >/dev/null 2>&1 || fail "third run failed"
cmp -s "$tmp/b.cbor" "$tmp/c.cbor" || fail "artifacts of identical runs differ"
# The classifier trains on the train part and calibrates on the calibration part; a small network
# keeps this fast. No CLI reads artifacts back (artifact_test covers loading every kind), so check
# what the loader dispatches on: the estimator kind stored in the artifact.
"$train" --dataset "$data" --dim 64 --idf-bits 10 --seed 3 --estimator classifier \
    --out "$tmp/cls.cbor" >"$tmp/out" 2>"$tmp/err" || fail "classifier training failed: $(cat "$tmp/err")"
[ -s "$tmp/cls.cbor" ] || fail "no classifier artifact written"
tail -n 1 "$tmp/out" | grep -q '"estimator":"classifier"' || fail "classifier metrics JSON lacks the estimator"
# CBOR of {"kind": "classifier"}: the key, then the 10-byte text header 0x6a ('j'), then the value.
# (A bare "classifier" would also match the command line in the provenance.)
grep -aq 'kindjclassifier' "$tmp/cls.cbor" || fail "classifier artifact does not have kind classifier"
# --upgrade rewrites version-1 artifacts only (artifact_test covers the rewrite itself).
expect_exit 2 "--upgrade needs --out NEW" --upgrade "$tmp/a.cbor"
expect_exit 2 "--upgrade takes no --dataset" --upgrade "$tmp/a.cbor" --out "$tmp/u.cbor" --dataset "$data"
expect_exit 1 "only a version 1 artifact is upgraded; this one is version 2" --upgrade "$tmp/a.cbor" \
    --out "$tmp/u.cbor"
[ ! -e "$tmp/u.cbor" ] || fail "a refused upgrade wrote its output"
expect_exit 2 "classifier needs a calibration part" --dataset "$data" --out "$tmp/a.cbor" \
    --estimator classifier --train 0.8 --calibration 0 --test 0.2
echo "router_train CLI: OK"
