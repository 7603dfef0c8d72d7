#!/usr/bin/env bash
# End-to-end test of the router_plan CLI (run by ctest as router_plan_cli).
#   usage: router_plan_cli_test.sh ROUTER_PLAN SCENARIO_JSON
set -euo pipefail

# shellcheck source=../tools/cli_testing.sh
source "$(dirname "$0")/../tools/cli_testing.sh"
cli_test_init "ROUTER_PLAN SCENARIO_JSON" "$@"

# 1. The example plans: exit 0, one line of JSON, instances within the bounds and the GPU budget,
#    the same budget for both baselines, and objective <= upper_bound.
run --scenario "${INPUT}"
if [[ ${rc} -eq 0 ]] && check_answer "${INPUT}" <<'PY'
s = inp
hosted = {m["name"]: m for m in s["models"] if "gpus_per_instance" in m}
def check(instances, gpus_used, what):
    assert set(instances) == set(hosted), (what, instances)
    gpus = 0
    for name, k in instances.items():
        m = hosted[name]
        assert k >= m.get("min_instances", 0), (what, name, k)
        assert "max_instances" not in m or k <= m["max_instances"], (what, name, k)
        if m.get("pin") == "off": assert k == 0, (what, name)
        if m.get("pin") == "on": assert k >= 1, (what, name)
        gpus += k * m["gpus_per_instance"]
    assert gpus == gpus_used, (what, gpus, gpus_used)
    assert gpus <= s["gpu_budget"], (what, gpus, s["gpu_budget"])
check(d["instances"], d["gpus_used"], "plan")
for name in ("uniform", "proportional"):
    check(d["baselines"][name]["instances"], d["baselines"][name]["gpus_used"], name)
assert d["objective"] <= d["upper_bound"] + 1e-9, (d["objective"], d["upper_bound"])
n = sum(len(b) for b in s["batches"])
assert d["num_queries"] == n and d["evaluation"]["unserved"] == 0, d
cap = s.get("avg_cost_cap")
if cap is not None:
    assert d["evaluation"]["total_cost"] <= cap * n * (1 + 1e-9), d["evaluation"]
# The plan maximizes the same objective the evaluation measures: never worse than a baseline.
for name in ("uniform", "proportional"):
    assert d["evaluation"]["objective"] >= d["baselines"][name]["objective"] - 1e-3 * n, name
PY
then
  pass "example plans"
else
  fail "example plans (exit ${rc})"
fi

# 2. A badly typed field: non-zero exit, stderr names the field, stdout empty.
cat >"${TMP}/bad.json" <<'JSON'
{"gpu_budget": 8, "models": [{"name": "m0", "gpus_per_instance": 2, "slots_per_instance": 0}],
 "batches": [[{"id": "q0", "quality": [0.8], "cost": [0.0]}]]}
JSON
run --scenario="${TMP}/bad.json"
if [[ ${rc} -eq 1 ]] && grep -q 'models\[0\]\.slots_per_instance' "${TMP}/err" \
  && [[ ! -s "${TMP}/out" ]]; then
  pass "bad field is named"
else
  fail "bad field is named (exit ${rc})"
fi

# 3. An infeasible scenario (a pinned model needs more GPUs than exist): clear error.
cat >"${TMP}/infeasible.json" <<'JSON'
{"gpu_budget": 4, "models": [{"name": "big", "gpus_per_instance": 8, "slots_per_instance": 2,
                              "min_instances": 1}, {"name": "api"}],
 "batches": [[{"id": "q0", "quality": [0.8, 0.9], "cost": [0.0, 0.01]}]]}
JSON
run --scenario "${TMP}/infeasible.json"
if [[ ${rc} -eq 1 ]] && grep -q 'big.*exceed gpu_budget 4' "${TMP}/err" \
  && [[ ! -s "${TMP}/out" ]]; then
  pass "infeasible scenario"
else
  fail "infeasible scenario (exit ${rc})"
fi

# Missing file, then no arguments (cli_testing.sh).
check_missing_file --scenario
check_no_arguments router_plan
finish
