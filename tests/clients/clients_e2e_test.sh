#!/usr/bin/env bash
# End to end test of routerctl and the Python client against a real routerd process (run by ctest
# as clients_e2e), in the secure setup of deploy/README.md: TLS, client certificates and an admin
# token, made with its openssl commands.
#   usage: clients_e2e_test.sh ROUTERD ROUTERCTL ARTIFACT PYTHON_STUBS_DIR PYTHON_CLIENT_DIR
# Exits 77 (skipped) when the estimator artifact does not exist.
set -euo pipefail

if [[ $# -ne 5 ]]; then
  echo "usage: $0 ROUTERD ROUTERCTL ARTIFACT PYTHON_STUBS_DIR PYTHON_CLIENT_DIR" >&2
  exit 2
fi
readonly ROUTERD="$1"
readonly CTL="$2"
readonly ARTIFACT="$3"
readonly STUBS="$4"
readonly PYCLIENT="$5"
readonly PY=/usr/bin/python3  # Debian's python3-grpcio and python3-protobuf live here

if [[ ! -f "${ARTIFACT}" ]]; then
  echo "SKIP: estimator artifact ${ARTIFACT} not found (router_train writes it)"
  exit 77
fi

TMP="$(mktemp -d)"
ROUTERD_PID=""
cleanup() {
  if [[ -n "${ROUTERD_PID}" ]] && kill -0 "${ROUTERD_PID}" 2>/dev/null; then
    kill -KILL "${ROUTERD_PID}" 2>/dev/null || true
    wait "${ROUTERD_PID}" 2>/dev/null || true
  fi
  rm -rf "${TMP}"
}
trap cleanup EXIT

passed=0
failed=0
pass() { echo "PASS: $1"; passed=$((passed + 1)); }
fail() {
  echo "FAIL: $1"
  for f in out err; do
    if [[ -s "${TMP}/${f}" ]]; then head -c 2000 "${TMP}/${f}" | sed "s/^/  ${f}: /"; fi
  done
  failed=$((failed + 1))
}

# ---- The secure setup of deploy/README.md ("Transport security"), with its openssl commands: a
# CA, a server certificate, a client certificate, an admin token. routerd serves TLS, requires
# client certificates, and RouterAdmin needs the token.
PKI="${TMP}/pki"
mkdir -p "${PKI}"
make_pki() (
  set -e
  cd "${PKI}"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj "/CN=routerd CA" -keyout ca.key -out ca.pem
  # $1: the files' name; $2: the certificate's subject CN; $3: its extensions.
  issue() {
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$2" \
      -keyout "$1.key" -out "$1.csr"
    printf '%b\n' "$3" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 90 \
      -extfile "$1.ext" -out "$1.pem"
  }
  issue server routerd 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth'
  issue client routerctl-ops 'extendedKeyUsage=clientAuth'
  issue server2 routerd-renewed 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth'
  openssl rand -hex 32 >admin.token
  openssl rand -hex 32 >wrong.token
  chmod 0600 ./*.key admin.token
)
if ! make_pki >"${TMP}/openssl.log" 2>&1; then
  echo "FAIL: the openssl commands of deploy/README.md"; sed 's/^/  openssl: /' "${TMP}/openssl.log"
  exit 1
fi
cat >"${TMP}/routerd.yaml" <<EOF_YAML
listen: 127.0.0.1:0
reflection: false
tls:
  cert_file: ${PKI}/server.pem
  key_file: ${PKI}/server.key
  client_ca_file: ${PKI}/ca.pem
admin:
  token_file: ${PKI}/admin.token
EOF_YAML
readonly TLS_ARGS=(--ca_file "${PKI}/ca.pem" --cert_file "${PKI}/client.pem"
                   --key_file "${PKI}/client.key" --server_name localhost)

# Runs routerctl against the server with TLS, the client certificate and the admin token; stdout
# -> $TMP/out, stderr -> $TMP/err, exit -> rc. ctl_as runs it with only the flags given.
ctl() {
  rc=0
  "${CTL}" --address "127.0.0.1:${PORT}" "${TLS_ARGS[@]}" --token_file "${PKI}/admin.token" "$@" \
    >"${TMP}/out" 2>"${TMP}/err" || rc=$?
}
ctl_as() {
  rc=0
  "${CTL}" --address "127.0.0.1:${PORT}" "$@" >"${TMP}/out" 2>"${TMP}/err" || rc=$?
}
# Runs Python (Debian's) with its program on stdin; arguments follow.
check_py() { "${PY}" - "$@"; }

# ---- Start routerd on a free port and wait until it is SERVING. ----------------------------
# A port picked free can be taken before routerd binds it; routerd then exits, and we try again.
start_routerd() {
  for _ in 1 2 3 4 5; do
    PORT="$("${PY}" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    "${ROUTERD}" --config "${TMP}/routerd.yaml" --port "${PORT}" --metrics_port 0 \
      --estimator "${ARTIFACT}" >"${TMP}/routerd.log" 2>&1 &
    ROUTERD_PID=$!
    # Bounded so a broken server fails the test instead of hanging it (not a timing assertion).
    for _ in $(seq 1 300); do
      if ! kill -0 "${ROUTERD_PID}" 2>/dev/null; then break; fi
      if "${CTL}" --address "127.0.0.1:${PORT}" "${TLS_ARGS[@]}" --timeout_ms 1000 health \
        >/dev/null 2>&1; then
        return 0
      fi
      sleep 0.1
    done
    if kill -0 "${ROUTERD_PID}" 2>/dev/null; then return 1; fi  # alive but never SERVING
    wait "${ROUTERD_PID}" 2>/dev/null || true
    ROUTERD_PID=""
  done
  return 1
}
if ! start_routerd; then
  echo "FAIL: routerd did not become SERVING"
  sed 's/^/  routerd: /' "${TMP}/routerd.log"
  exit 1
fi
echo "routerd pid ${ROUTERD_PID} serving on port ${PORT}"

# ---- health ---------------------------------------------------------------------------------
ctl health
if [[ ${rc} -eq 0 ]] && check_py "${TMP}/out" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
assert d == {"service": "", "status": "SERVING"}, d
EOF
then pass "health: whole server SERVING"; else fail "health: whole server SERVING"; fi

ctl health --service router.v1.Router
if [[ ${rc} -eq 0 ]] && grep -q '"status":"SERVING"' "${TMP}/out"; then
  pass "health: router.v1.Router SERVING"
else fail "health: router.v1.Router SERVING"; fi

ctl health --service no.such.Service
if [[ ${rc} -eq 1 ]] && grep -q "NOT_FOUND" "${TMP}/err"; then
  pass "health: unknown service is NOT_FOUND, exit 1"
else fail "health: unknown service is NOT_FOUND, exit 1"; fi

# ---- models ---------------------------------------------------------------------------------
ctl models
cp "${TMP}/out" "${TMP}/models.json"
if [[ ${rc} -eq 0 ]] && check_py "${TMP}/models.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
names = [m["deployment"]["name"] for m in d["models"]]
assert len(names) >= 2, names
assert len(set(names)) == len(names), names
assert all(m["in_estimator"] for m in d["models"]), d
assert int(d["config_generation"]) >= 1, d
EOF
then pass "models: lists the pool"; else fail "models: lists the pool"; fi
# The first two models of the pool, for the allowed-models checks below.
MODEL_A="$("${PY}" -c 'import json, sys; print(json.load(open(sys.argv[1]))["models"][0]["deployment"]["name"])' "${TMP}/models.json")"
MODEL_B="$("${PY}" -c 'import json, sys; print(json.load(open(sys.argv[1]))["models"][1]["deployment"]["name"])' "${TMP}/models.json")"

# ---- route ----------------------------------------------------------------------------------
ctl route --text "What is the capital of France?" --id r1
if [[ ${rc} -eq 0 ]] && check_py "${TMP}/out" "${TMP}/models.json" <<'EOF'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 1, lines
a = json.loads(lines[0])
pool = {m["deployment"]["name"] for m in json.load(open(sys.argv[2]))["models"]}
assert a["query_id"] == "r1", a
assert a["model"] in pool, a["model"]
assert a["assignment_id"], a
assert 0 <= a["predicted_quality_lower"] <= a["predicted_quality"] <= 1, a
assert a["predicted_cost_usd"] >= 0, a
assert a["model"] not in a["fallback_models"], a
assert set(a["fallback_models"]) <= pool, a
d = a["decision"]
assert d["batch_id"] and d["batch_size"] >= 1 and d["policy"], d
assert d["solver_status"].startswith("SOLVER_STATUS_") and d["solver_status"] != "SOLVER_STATUS_UNSPECIFIED", d
assert a["decision_mode"] == "ROUTING_MODE_BATCH", a  # routerd's default mode
assert "inline_decision" not in a, a
EOF
then pass "route: prints the assignment as JSON"; else fail "route: prints the assignment as JSON"; fi

ctl route --text "What is the capital of Italy?" --id ri1 --mode inline
if [[ ${rc} -eq 0 ]] && check_py "${TMP}/out" "${TMP}/models.json" <<'EOF'
import json, sys
a = json.loads(open(sys.argv[1]).read())
pool = {m["deployment"]["name"] for m in json.load(open(sys.argv[2]))["models"]}
assert a["query_id"] == "ri1" and a["model"] in pool and a["assignment_id"], a
assert a["decision_mode"] == "ROUTING_MODE_INLINE", a
assert "decision" not in a, a  # batch facts only for batch decisions
d = a["inline_decision"]
for key in ("lambda_per_usd", "slot_price", "window_id", "position_in_window", "expected_after",
            "window_cap_usd", "window_spent_usd", "guarded", "decision_time"):
    assert key in d, (key, d)
assert d["lambda_per_usd"] >= 0 and d["window_id"], d
assert d["window_spent_usd"] >= a["predicted_cost_usd"], d
EOF
then pass "route --mode inline: decided inline, prints the mode and the prices"
else fail "route --mode inline: decided inline, prints the mode and the prices"; fi

ctl route --text "What is the capital of Spain?" --id rb1 --mode batch
if [[ ${rc} -eq 0 ]] && grep -q '"decision_mode":"ROUTING_MODE_BATCH"' "${TMP}/out" &&
   grep -q '"batch_id":"' "${TMP}/out"; then
  pass "route --mode batch: decided in a batch"
else fail "route --mode batch: decided in a batch"; fi

ctl route --text "Summarize the French revolution." --id r2 --allowed "${MODEL_B}"
if [[ ${rc} -eq 0 ]] && check_py "${TMP}/out" "${MODEL_B}" <<'EOF'
import json, sys
a = json.loads(open(sys.argv[1]).read())
assert a["model"] == sys.argv[2], (a["model"], sys.argv[2])
assert a["fallback_models"] == [], a
EOF
then pass "route --allowed: one allowed model is the one chosen"; else fail "route --allowed: one allowed model is the one chosen"; fi

ctl route --text "" --id bad1
if [[ ${rc} -eq 1 ]] && grep -q "INVALID_ARGUMENT" "${TMP}/err" && grep -q "query.text" "${TMP}/err" &&
   [[ ! -s "${TMP}/out" ]]; then
  pass "route: empty text is INVALID_ARGUMENT naming query.text, exit 1"
else fail "route: empty text is INVALID_ARGUMENT naming query.text, exit 1"; fi

ctl route --text "hello" --id bad2 --allowed "${MODEL_A},no-such-model"
if [[ ${rc} -eq 1 ]] && grep -q "INVALID_ARGUMENT" "${TMP}/err" &&
   grep -qF "query.allowed_models[1]" "${TMP}/err" && grep -q "no-such-model" "${TMP}/err"; then
  pass "route: unknown allowed model is INVALID_ARGUMENT naming query.allowed_models[1], exit 1"
else fail "route: unknown allowed model is INVALID_ARGUMENT naming query.allowed_models[1], exit 1"; fi

# ---- bad usage: exit 2, nothing sent ----------------------------------------------------------
usage_ok=1
for args in "" "route" "route --text" "route --text x --bogus 1" "frobnicate" "--timeout_ms abc models" \
            "stream" "complete" "config" "config set" "model upsert" "model upsert --name m --slots x" \
            "route --text x --mode fast" "stream --file x --mode INLINE" "learned" "learned reset" \
            "learned reset --all --model m" "learned show --cluster -1" "complete --id x --score y"; do
  # shellcheck disable=SC2086  # word splitting of the argument list is intended
  ctl ${args}
  if [[ ${rc} -ne 2 ]] || ! grep -q "usage:" "${TMP}/err"; then
    echo "  'routerctl ${args}' gave exit ${rc}"
    usage_ok=0
  fi
done
if [[ ${usage_ok} -eq 1 ]]; then pass "bad usage: exit 2 with the usage"; else fail "bad usage: exit 2 with the usage"; fi

# routerd's own flags: a bad port is a usage error naming the flag, before anything starts.
flags_ok=1
for args in "--port 70000|--port: expected a port number 0..65535, got '70000'" \
            "--metrics_port x|--metrics_port: expected a port number" \
            "--port 1 --listen 127.0.0.1:1|--port and --listen: give one of them"; do
  # shellcheck disable=SC2086  # word splitting of the argument list is intended
  rc=0; "${ROUTERD}" ${args%%|*} >"${TMP}/out" 2>"${TMP}/err" || rc=$?
  if [[ ${rc} -ne 2 ]] || ! grep -qF -- "${args#*|}" "${TMP}/err"; then
    echo "  'routerd ${args%%|*}' gave exit ${rc}: $(head -1 "${TMP}/err")"
    flags_ok=0
  fi
done
if [[ ${flags_ok} -eq 1 ]]; then pass "routerd: a bad --port/--metrics_port is exit 2 naming the flag"
else fail "routerd: a bad --port/--metrics_port is exit 2 naming the flag"; fi

# ---- batch ----------------------------------------------------------------------------------
cat >"${TMP}/batch.jsonl" <<'EOF'
{"prompt_id": "b1", "text": "Translate 'good morning' into German."}
{"prompt_id": "b2", "text": "What is 17 * 23?"}

{"prompt_id": "b3", "text": ""}
{"prompt_id": 4, "text": "Name three prime numbers."}
{"text": "Write a haiku about the sea."}
EOF
ctl batch --file "${TMP}/batch.jsonl"
if [[ ${rc} -eq 0 ]] && check_py "${TMP}/out" "${TMP}/models.json" <<'EOF'
import json, sys
items = [json.loads(l) for l in open(sys.argv[1]).read().splitlines()]
pool = {m["deployment"]["name"] for m in json.load(open(sys.argv[2]))["models"]}
assert len(items) == 5, items
ids = ["b1", "b2", "b3", "4", "line-6"]  # in request order; a record without id gets its line
for item, qid in zip(items, ids):
    if qid == "b3":
        e = item["error"]
        assert e["query_id"] == "b3" and e["code"] == 3, e
        assert "queries[2].text" in e["message"], e
    else:
        a = item["assignment"]
        assert a["query_id"] == qid, (a["query_id"], qid)
        assert a["model"] in pool, a
        assert a["decision"]["batch_size"] == 4, a["decision"]  # the 4 valid queries together
EOF
then pass "batch: one item per query, in order, the bad one an error naming its field"
else fail "batch: one item per query, in order, the bad one an error naming its field"; fi

echo '{"prompt_id": "x", "text": 5}' >"${TMP}/bad.jsonl"
ctl batch --file "${TMP}/bad.jsonl"
if [[ ${rc} -eq 2 ]] && grep -qF "bad.jsonl:1" "${TMP}/err"; then
  pass "batch: a malformed record is a usage error naming file:line"
else fail "batch: a malformed record is a usage error naming file:line"; fi

# ---- stream ---------------------------------------------------------------------------------
readonly STREAM_N=300
"${PY}" - "${TMP}/stream.jsonl" "${STREAM_N}" <<'EOF'
import json, sys
topics = ["algebra", "French history", "Python decorators", "protein folding", "tax law"]
with open(sys.argv[1], "w") as f:
    for k in range(int(sys.argv[2])):
        text = f"Question {k}: explain {topics[k % len(topics)]} in {k % 7 + 2} sentences."
        if k == 42:
            text = ""  # the one bad query: its own error item, the stream goes on
        f.write(json.dumps({"prompt_id": f"s{k}", "task": "demo", "text": text}) + "\n")
EOF
ctl stream --file "${TMP}/stream.jsonl"
if [[ ${rc} -eq 0 ]] && check_py "${TMP}/out" "${TMP}/models.json" "${STREAM_N}" <<'EOF'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 1, lines
s = json.loads(lines[0])
pool = {m["deployment"]["name"] for m in json.load(open(sys.argv[2]))["models"]}
n = int(sys.argv[3])
assert s["count"] == n and s["answered"] == n, s
assert s["assigned"] == n - 1, s
assert s["errors"] == {"INVALID_ARGUMENT": 1}, s
assert sum(s["models"].values()) == n - 1, s
assert set(s["models"]) <= pool, s
assert s["predicted_spend_usd"] > 0, s
assert 0 <= s["latency_ms"]["p50"] <= s["latency_ms"]["p99"], s
assert s["stream_status"] == "OK", s
EOF
then pass "stream: summary counts every answer, models, errors by code, spend, latency"
else fail "stream: summary counts every answer, models, errors by code, spend, latency"; fi
if grep -qF "${STREAM_N}/${STREAM_N} 100%" "${TMP}/err"; then
  pass "stream: progress bar on stderr reaches 100%"
else fail "stream: progress bar on stderr reaches 100%"; fi

ctl stream --file "${TMP}/stream.jsonl" --mode inline
if [[ ${rc} -eq 0 ]] && check_py "${TMP}/out" "${STREAM_N}" <<'EOF'
import json, sys
s = json.loads(open(sys.argv[1]).read())
n = int(sys.argv[2])
assert s["count"] == n and s["answered"] == n, s
assert s["errors"] == {"INVALID_ARGUMENT": 1}, s
assert s["modes"] == {"inline": s["assigned"]}, s  # every assignment decided inline
assert s["inline"]["decisions"] == s["assigned"] > 0, s
assert 0 <= s["inline"]["lambda_p50"] <= s["inline"]["lambda_max"], s
assert s["stream_status"] == "OK", s
EOF
then pass "stream --mode inline: every answer decided inline, summary with inline prices"
else fail "stream --mode inline: every answer decided inline, summary with inline prices"; fi

printf '{"qid": "f1", "prompt": "Hello there"}\n{"qid": "f2", "prompt": "General Kenobi"}\n' \
  >"${TMP}/fields.jsonl"
ctl stream --file "${TMP}/fields.jsonl" --text-field prompt --id-field qid
if [[ ${rc} -eq 0 ]] && check_py "${TMP}/out" <<'EOF'
import json, sys
s = json.loads(open(sys.argv[1]).read())
assert s["count"] == 2 and s["assigned"] == 2 and s["errors"] == {}, s
EOF
then pass "stream: --text-field/--id-field pick the record's fields"
else fail "stream: --text-field/--id-field pick the record's fields"; fi

# ---- complete -------------------------------------------------------------------------------
ctl route --text "Plan a three-day trip to Rome." --id c1
ASSIGNMENT_ID="$("${PY}" -c 'import json, sys; print(json.load(open(sys.argv[1]))["assignment_id"])' "${TMP}/out")"
ctl complete --id "${ASSIGNMENT_ID}" --cost 0.0025 --success true
if [[ ${rc} -eq 0 ]] && check_py "${TMP}/out" <<'EOF'
import json, sys
d = json.loads(open(sys.argv[1]).read())
assert abs(d["recorded_cost_usd"] - 0.0025) < 1e-12, d
assert d["lease_was_active"] is True, d
EOF
then pass "complete: records the actual cost of an active lease"
else fail "complete: records the actual cost of an active lease"; fi

ctl complete --id "${ASSIGNMENT_ID}"
if [[ ${rc} -eq 1 ]] && grep -q "NOT_FOUND" "${TMP}/err"; then
  pass "complete: twice is NOT_FOUND, exit 1"
else fail "complete: twice is NOT_FOUND, exit 1"; fi

ctl route --text "Explain recursion to a child." --id c2
cp "${TMP}/out" "${TMP}/c2.json"
ASSIGNMENT_ID="$("${PY}" -c 'import json, sys; print(json.load(open(sys.argv[1]))["assignment_id"])' "${TMP}/c2.json")"
ctl complete --id "${ASSIGNMENT_ID}"
if [[ ${rc} -eq 0 ]] && check_py "${TMP}/out" "${TMP}/c2.json" <<'EOF'
import json, sys
d = json.loads(open(sys.argv[1]).read())
a = json.loads(open(sys.argv[2]).read())
assert abs(d["recorded_cost_usd"] - a["predicted_cost_usd"]) <= 1e-12, (d, a)
EOF
then pass "complete: without --cost records the predicted cost"
else fail "complete: without --cost records the predicted cost"; fi

# ---- outcomes and learned statistics -----------------------------------------------------------
ctl route --text "Name a prime above 100." --id o1
ASSIGNMENT_ID="$("${PY}" -c 'import json, sys; print(json.load(open(sys.argv[1]))["assignment_id"])' "${TMP}/out")"
ctl complete --id "${ASSIGNMENT_ID}" --score 1.5
if [[ ${rc} -eq 1 ]] && grep -q "INVALID_ARGUMENT" "${TMP}/err" && grep -q "score" "${TMP}/err"; then
  pass "complete: a score outside [0, 1] is INVALID_ARGUMENT naming score, exit 1"
else fail "complete: a score outside [0, 1] is INVALID_ARGUMENT naming score, exit 1"; fi
ctl complete --id "${ASSIGNMENT_ID}" --score 0.75 --success false
complete_rc=${rc}
ctl learned show
# Learning is off by default: the outcome was counted and dropped, nothing learned.
if [[ ${complete_rc} -eq 0 && ${rc} -eq 0 ]] && check_py "${TMP}/out" <<'EOF'
import json, sys
d = json.loads(open(sys.argv[1]).read())
assert d["enabled"] is False and d["cells"] == [] and int(d["dropped_outcomes"]) >= 1, d
EOF
then pass "complete --score, learned show: with learning off the outcome is counted, not learned"
else fail "complete --score, learned show: with learning off the outcome is counted, not learned"; fi
ctl learned reset --all
if [[ ${rc} -eq 0 ]] && grep -qF '{"cells_removed":0}' "${TMP}/out"; then
  pass "learned reset --all: answers the cells removed"
else fail "learned reset --all: answers the cells removed"; fi

# ---- config ---------------------------------------------------------------------------------
ctl config get
cp "${TMP}/out" "${TMP}/config.yaml"
GENERATION="$(sed -n '1s/^# config_generation: \([0-9]*\)$/\1/p' "${TMP}/config.yaml")"
if [[ ${rc} -eq 0 && -n "${GENERATION}" ]] && grep -q "^  max_batch_size: " "${TMP}/config.yaml" &&
   grep -qF "listen: 127.0.0.1:${PORT}" "${TMP}/config.yaml"; then
  pass "config get: prints the generation and the YAML"
else fail "config get: prints the generation and the YAML"; fi

ctl config set --file "${TMP}/config.yaml" --dry-run
if [[ ${rc} -eq 0 ]] && grep -qF "\"dry_run\":true" "${TMP}/out"; then
  pass "config set --dry-run: the current config validates"
else fail "config set --dry-run: the current config validates"; fi

sed 's/^  max_batch_size: .*/  max_batch_size: 32/' "${TMP}/config.yaml" >"${TMP}/config32.yaml"
ctl config set --file "${TMP}/config32.yaml"
NEW_GENERATION="$("${PY}" -c 'import json, sys; print(json.load(open(sys.argv[1]))["config_generation"])' "${TMP}/out" 2>/dev/null || true)"
set_rc=${rc}
ctl config get
if [[ ${set_rc} -eq 0 && "${NEW_GENERATION}" -gt "${GENERATION}" ]] &&
   grep -q "^  max_batch_size: 32$" "${TMP}/out" &&
   grep -q "^# config_generation: ${NEW_GENERATION}$" "${TMP}/out"; then
  pass "config set: applies and bumps the generation"
else fail "config set: applies and bumps the generation"; fi

sed 's/^  max_batch_size: .*/  max_batch_size: 0/' "${TMP}/config.yaml" >"${TMP}/config0.yaml"
ctl config set --file "${TMP}/config0.yaml"
if [[ ${rc} -eq 1 ]] && grep -q "INVALID_ARGUMENT" "${TMP}/err" &&
   grep -q "batching.max_batch_size" "${TMP}/err"; then
  pass "config set: an invalid config is INVALID_ARGUMENT naming the field, exit 1"
else fail "config set: an invalid config is INVALID_ARGUMENT naming the field, exit 1"; fi

# ---- model upsert / remove ------------------------------------------------------------------
ctl model upsert --name "${MODEL_A}" --instances 2 --slots 3
if [[ ${rc} -eq 0 ]] && check_py "${TMP}/out" "${MODEL_A}" <<'EOF'
import json, sys
d = json.loads(open(sys.argv[1]).read())
m = d["model"]
assert m["deployment"] == {"name": sys.argv[2], "instances": 2, "slots_per_instance": 3}, m
assert int(m["slots_total"]) == 6, m
EOF
then pass "model upsert: sets a model's slots"; else fail "model upsert: sets a model's slots"; fi

# A model the estimator does not know: with learning on it joins as a cold start; an API model
# then needs a cost, which routerctl sends from --mean_cost_usd / --input_usd_per_mtok /
# --output_usd_per_mtok.
ctl config get
sed 's/^  enabled: false/  enabled: true/' "${TMP}/out" >"${TMP}/learning_on.yaml"
ctl config set --file "${TMP}/learning_on.yaml"
learning_on_rc=${rc}
ctl model upsert --name new-api-model
no_cost_rc=${rc}
no_cost_err="$(cat "${TMP}/err")"
ctl model upsert --name new-api-model --mean_cost_usd 0.002 --input_usd_per_mtok 1.5 \
    --output_usd_per_mtok 4
if [[ ${learning_on_rc} -eq 0 && ${no_cost_rc} -eq 1 && ${rc} -eq 0 ]] &&
   grep -q "mean_cost_usd" <<<"${no_cost_err}" && check_py "${TMP}/out" <<'EOF'
import json, sys
m = json.loads(open(sys.argv[1]).read())["model"]
assert m["deployment"]["name"] == "new-api-model", m
assert int(m["slots_total"]) == -1, m
EOF
then pass "model upsert --mean_cost_usd: a new API model is added with its cost (refused without)"
else fail "model upsert --mean_cost_usd: a new API model is added with its cost (refused without)"; fi
ctl model upsert --name other-model --mean_cost_usd -1
if [[ ${rc} -eq 2 ]] && grep -q -- "--mean_cost_usd" "${TMP}/err"; then
  pass "model upsert: a negative cost is bad usage naming the flag, exit 2"
else fail "model upsert: a negative cost is bad usage naming the flag, exit 2"; fi
ctl model remove --name new-api-model
ctl config get
sed 's/^  enabled: true/  enabled: false/' "${TMP}/out" >"${TMP}/learning_off.yaml"
ctl config set --file "${TMP}/learning_off.yaml"

ctl model remove --name "${MODEL_B}"
remove_rc=${rc}
ctl models
if [[ ${remove_rc} -eq 0 && ${rc} -eq 0 ]] && check_py "${TMP}/out" "${MODEL_B}" <<'EOF'
import json, sys
names = [m["deployment"]["name"] for m in json.load(open(sys.argv[1]))["models"]]
assert sys.argv[2] not in names, names
EOF
then pass "model remove: the model leaves the pool"; else fail "model remove: the model leaves the pool"; fi

ctl route --text "hello" --id r3 --allowed "${MODEL_B}"
if [[ ${rc} -eq 1 ]] && grep -q "INVALID_ARGUMENT" "${TMP}/err" && grep -qF "query.allowed_models[0]" "${TMP}/err"; then
  pass "route: a removed model is no longer allowed"
else fail "route: a removed model is no longer allowed"; fi

ctl model remove --name "${MODEL_B}"
if [[ ${rc} -eq 1 ]] && grep -q "NOT_FOUND" "${TMP}/err"; then
  pass "model remove: twice is NOT_FOUND, exit 1"
else fail "model remove: twice is NOT_FOUND, exit 1"; fi

# ---- Python client --------------------------------------------------------------------------
rc=0
PYTHONPATH="${STUBS}" "${PY}" "${PYCLIENT}/example.py" --address "127.0.0.1:${PORT}" \
  --ca_file "${PKI}/ca.pem" --cert_file "${PKI}/client.pem" --key_file "${PKI}/client.key" \
  --token_file "${PKI}/admin.token" >"${TMP}/out" 2>"${TMP}/err" || rc=$?
if [[ ${rc} -eq 0 ]] && check_py "${TMP}/out" <<'EOF'
import re, sys
lines = open(sys.argv[1]).read().splitlines()
assert lines[0].startswith("models: "), lines
pool = set(lines[0][len("models: "):].split(", "))
routed = [re.match(r"(ex-\d) -> (\S+) ", l) for l in lines if " -> " in l]
assert [m.group(1) for m in routed] == ["ex-1", "ex-2", "ex-3"], lines
assert all(m.group(2) in pool for m in routed), lines
modes = {l.split(" -> ")[0]: l for l in lines if " -> " in l}
assert ", batch, batch " in modes["ex-1"], lines
assert ", inline, lambda " in modes["ex-2"], lines
assert sum(1 for l in lines if " completed, recorded $" in l) == 3, lines
EOF
then pass "python: example routes, lists models and completes"
else fail "python: example routes, lists models and completes"; fi

rc=0
PYTHONPATH="${STUBS}:${PYCLIENT}" "${PY}" - "127.0.0.1:${PORT}" "${PKI}" >"${TMP}/out" 2>"${TMP}/err" <<'EOF' || rc=$?
import sys
from router_client import RouterClient, RouterError, make_query, mode_name, router_pb2
pki = sys.argv[2]
with RouterClient(sys.argv[1], ca_file=f"{pki}/ca.pem", cert_file=f"{pki}/client.pem",
                  key_file=f"{pki}/client.key", server_name="localhost") as c:
    try:
        c.route(make_query("p1", ""))
        raise SystemExit("an empty query was routed")
    except RouterError as e:
        assert e.code.name == "INVALID_ARGUMENT" and "query.text" in e.message, e
    items = c.route_batch([make_query("p2", "hi"), make_query("p3", "")])
    assert [i.WhichOneof("result") for i in items] == ["assignment", "error"], items
    answers = list(c.route_stream(make_query(f"p{k}", f"question {k}") for k in range(10, 30)))
    assert sorted(a.assignment.query_id for a in answers) == sorted(f"p{k}" for k in range(10, 30))
    inline = list(c.route_stream(make_query(f"pi{k}", f"question {k}", mode="inline")
                                 for k in range(5)))
    assert len(inline) == 5, inline
    assert all(mode_name(a.assignment.decision_mode) == "inline" for a in inline), inline
    assert all(a.assignment.inline_decision.window_id for a in inline), inline
    answers += inline
    raw = c.route(make_query("pb", b"caf\xe9 \xff au lait?"))  # a prompt is any bytes
    assert raw.query_id == "pb", raw
    answers.append(router_pb2.RouteBatchItem(assignment=raw))
    a = c.route(make_query("pa", "question", mode="auto"), timeout=30)
    assert mode_name(a.decision_mode) == "batch", a  # 30 s leave room for a batch
    answers.append(router_pb2.RouteBatchItem(assignment=a))
    try:
        make_query("px", "question", mode="fast")
        raise SystemExit("an unknown mode was accepted")
    except ValueError as e:
        assert "mode" in str(e), e
    try:
        c.complete(answers[0].assignment.assignment_id, score=1.5)
        raise SystemExit("a score of 1.5 was accepted")
    except RouterError as e:
        assert e.code.name == "INVALID_ARGUMENT" and "score" in e.message, e
    for a in answers + [items[0]]:
        c.complete(a.assignment.assignment_id, success=True, score=0.5)
with RouterClient(sys.argv[1], ca_file=f"{pki}/ca.pem", cert_file=f"{pki}/client.pem",
                  key_file=f"{pki}/client.key", server_name="localhost",
                  token_file=f"{pki}/admin.token") as admin:
    stats = admin.learned_stats(model="no-such-model")
    assert not stats.enabled and len(stats.cells) == 0 and stats.dropped_outcomes >= 1, stats
    assert admin.reset_learned_stats(cluster=0) == 0
EOF
if [[ ${rc} -eq 0 ]]; then pass "python: errors, batch items, stream answers, a prompt that is not UTF-8, scores"
else fail "python: errors, batch items, stream answers, a prompt that is not UTF-8, scores"; fi

# ---- Transport security and authorization ---------------------------------------------------
ctl_as --token_file "${PKI}/admin.token" --timeout_ms 2000 health
if [[ ${rc} -eq 1 ]] && grep -q "UNAVAILABLE" "${TMP}/err"; then
  pass "tls: a plaintext client is refused"
else fail "tls: a plaintext client is refused"; fi

ctl_as --ca_file "${PKI}/ca.pem" --server_name localhost --timeout_ms 2000 health
if [[ ${rc} -eq 1 ]] && grep -q "UNAVAILABLE" "${TMP}/err"; then
  pass "mtls: a client without a certificate is refused"
else fail "mtls: a client without a certificate is refused"; fi

ctl_as "${TLS_ARGS[@]}" models
if [[ ${rc} -eq 1 ]] && grep -q "UNAUTHENTICATED" "${TMP}/err"; then
  pass "admin: without a token, UNAUTHENTICATED, exit 1"
else fail "admin: without a token, UNAUTHENTICATED, exit 1"; fi

ctl_as "${TLS_ARGS[@]}" --token_file "${PKI}/wrong.token" config get
if [[ ${rc} -eq 1 ]] && grep -q "PERMISSION_DENIED" "${TMP}/err" &&
   ! grep -qF "$(cat "${PKI}/wrong.token")" "${TMP}/err"; then
  pass "admin: a wrong token is PERMISSION_DENIED and not echoed"
else fail "admin: a wrong token is PERMISSION_DENIED and not echoed"; fi

ctl_as "${TLS_ARGS[@]}" route --text "Is a token needed to route?" --id sec1
if [[ ${rc} -eq 0 ]]; then pass "router: no token needed without api.token_file"
else fail "router: no token needed without api.token_file"; fi

rc=0
PYTHONPATH="${STUBS}:${PYCLIENT}" "${PY}" - "127.0.0.1:${PORT}" "${PKI}" >"${TMP}/out" 2>"${TMP}/err" <<'EOF' || rc=$?
import sys
from router_client import RouterClient, RouterError
pki = sys.argv[2]
tls = dict(ca_file=f"{pki}/ca.pem", cert_file=f"{pki}/client.pem", key_file=f"{pki}/client.key",
           server_name="localhost")
with RouterClient(sys.argv[1], token_file=f"{pki}/wrong.token", **tls) as c:
    try:
        c.list_models()
        raise SystemExit("a wrong token was accepted")
    except RouterError as e:
        assert e.code.name == "PERMISSION_DENIED", e
with RouterClient(sys.argv[1], token_file=f"{pki}/admin.token", **tls) as c:
    assert len(c.list_models()) >= 2
# An overload refusal's retry hint (its grpc-retry-pushback-ms trailer) reaches RouterError.
import grpc
from router_client import _error
class Refused(grpc.RpcError):
    def code(self): return grpc.StatusCode.UNAVAILABLE
    def details(self): return "queue full; retry in 120 ms"
    def trailing_metadata(self): return (("grpc-retry-pushback-ms", "120"),)
e = _error(Refused())
assert e.retryable and e.retry_after_ms == 120, e
EOF
if [[ ${rc} -eq 0 ]]; then pass "python: TLS with a client certificate; tokens; the retry hint"
else fail "python: TLS with a client certificate; tokens; the retry hint"; fi

# The subject of the certificate routerd serves to a new connection.
served_subject() {
  openssl s_client -connect "127.0.0.1:${PORT}" -servername localhost -CAfile "${PKI}/ca.pem" \
    -cert "${PKI}/client.pem" -key "${PKI}/client.key" </dev/null 2>/dev/null |
    openssl x509 -noout -subject 2>/dev/null
}
# Polls (bounded) until routerd serves the certificate whose CN is $1.
await_subject() {
  for _ in $(seq 1 100); do
    if served_subject | grep -q "CN = $1\$"; then return 0; fi
    sleep 0.1
  done
  return 1
}
if await_subject routerd; then pass "tls: serves the server certificate"
else fail "tls: serves the server certificate"; fi
# A new certificate without its key (the old key does not match it) is refused on SIGHUP; the
# old certificate stays.
cp "${PKI}/server2.pem" "${PKI}/server.pem"
kill -HUP "${ROUTERD_PID}"
for _ in $(seq 1 100); do
  if grep -q "tls: new contents refused" "${TMP}/routerd.log"; then break; fi
  sleep 0.1
done
if grep -q "tls: new contents refused.*does not match" "${TMP}/routerd.log" && await_subject routerd; then
  pass "tls reload: a certificate without its key is refused, the old one stays"
else fail "tls reload: a certificate without its key is refused, the old one stays"; fi
# With its key, the renewed certificate is served from the next connection on.
cp "${PKI}/server2.key" "${PKI}/server.key"
kill -HUP "${ROUTERD_PID}"
if await_subject routerd-renewed; then pass "tls reload: SIGHUP serves the renewed certificate"
else fail "tls reload: SIGHUP serves the renewed certificate"; fi

# ---- SIGTERM: routerd drains and exits 0 ----------------------------------------------------
kill -TERM "${ROUTERD_PID}"
rc=0
wait "${ROUTERD_PID}" || rc=$?
ROUTERD_PID=""
if [[ ${rc} -eq 0 ]]; then pass "SIGTERM: routerd exits 0"
else
  echo "  routerd exit ${rc}"; sed 's/^/  routerd: /' "${TMP}/routerd.log"
  fail "SIGTERM: routerd exits 0"
fi

echo "${passed} passed, ${failed} failed"
[[ ${failed} -eq 0 ]]
