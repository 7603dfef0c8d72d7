#!/usr/bin/env bash
# End-to-end test of the router_solve CLI (run by ctest as router_solve_cli).
#   usage: router_solve_cli_test.sh ROUTER_SOLVE DEMO_JSON
set -euo pipefail

# shellcheck source=../tools/cli_testing.sh
source "$(dirname "$0")/../tools/cli_testing.sh"
cli_test_init "ROUTER_SOLVE DEMO_JSON" "$@"

# 1. The demo solves: exit 0, stdout is one JSON answer covering every query within the budget.
run --instance "${INPUT}"
if [[ ${rc} -eq 0 ]] && check_answer "${INPUT}" <<'EOF'
problem = inp
ids = [q["id"] for q in problem["queries"]]
assigned = set(d["assignment"])
unserved = set(d["unserved"])
assert not (assigned & unserved), "a query is both assigned and unserved"
assert assigned | unserved == set(ids), "some query is neither assigned nor unserved"
assert set(d["unserved_reasons"]) == unserved
names = [m["name"] for m in problem["models"]]
cost = 0.0
for q in problem["queries"]:
    if q["id"] in assigned:
        m = d["assignment"][q["id"]]
        assert m in names, m
        assert not q.get("allowed") or m in q["allowed"], f"{q['id']} -> {m} not allowed"
        cost += q["cost"][names.index(m)]
budget = problem.get("budget")
if budget is not None:
    assert d["total_cost"] <= budget * (1 + 1e-9), (d["total_cost"], budget)
    assert cost <= budget * (1 + 1e-9), (cost, budget)
assert abs(cost - d["total_cost"]) <= 1e-9 * max(1.0, cost), (cost, d["total_cost"])
for key in ("objective", "upper_bound", "gap", "solve_ms", "nodes", "method", "policy"):
    assert key in d, key
assert d["policy"] == problem.get("policy", "batch")
EOF
then
  pass "demo solves"
else
  fail "demo solves (exit ${rc})"
fi

# 2. A batch with a badly typed field: non-zero exit, stderr names the field, stdout empty.
cat >"${TMP}/bad.json" <<'EOF'
{"models":[{"name":"m0"},{"name":"m1"}],
 "queries":[{"id":"q0","quality":[0.8,0.6],"cost":[0.01,"cheap"]}]}
EOF
run --instance="${TMP}/bad.json"
if [[ ${rc} -ne 0 ]] && grep -q 'queries\[0\]\.cost\[1\]' "${TMP}/err" \
  && [[ ! -s "${TMP}/out" ]]; then
  pass "bad field is named"
else
  fail "bad field is named (exit ${rc})"
fi

# Missing file, then no arguments (cli_testing.sh).
check_missing_file --instance
check_no_arguments router_solve
finish
