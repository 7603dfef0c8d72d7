# Shared by the end-to-end tests of the JSON-in, JSON-out tools (router_solve_cli_test.sh,
# router_plan_cli_test.sh); sourced, not run. Sourcing it makes TMP (a temporary folder removed on
# exit) and the pass/fail counters. The test then calls:
#   cli_test_init "TOOL_NAME INPUT_NAME" "$@"   exactly two arguments (else exit 2 with a usage
#                                      line): the tool's path as TOOL, its input file as INPUT
#   run ARGS...                        "${TOOL}" ARGS: stdout -> $TMP/out, stderr -> $TMP/err,
#                                      exit status -> rc
#   pass NAME / fail NAME              count a check (fail prints the tool's stderr)
#   check_answer INPUT <<'PY' ... PY   the Python check on stdin, run after a prologue that loads
#                                      INPUT as `inp` and the tool's stdout, which must be one line
#                                      of JSON with status OPTIMAL or FEASIBLE, as `d`
#   check_missing_file FLAG            FLAG on a missing file: exit 1 naming it, stdout empty
#   check_no_arguments NAME            no arguments: exit 2, stderr starts with "NAME: "
#   finish                             print "N passed, N failed"; false if any failed

TMP="$(mktemp -d)"
trap 'rm -rf "${TMP}"' EXIT

passed=0
failed=0
pass() { echo "PASS: $1"; passed=$((passed + 1)); }
fail() {
  echo "FAIL: $1"
  if [[ -s "${TMP}/err" ]]; then sed 's/^/  stderr: /' "${TMP}/err"; fi
  failed=$((failed + 1))
}

cli_test_init() {
  local names="$1"
  shift
  if [[ $# -ne 2 ]]; then
    echo "usage: $0 ${names}" >&2
    exit 2
  fi
  readonly TOOL="$1"
  readonly INPUT="$2"
}

run() {
  rc=0
  "${TOOL}" "$@" >"${TMP}/out" 2>"${TMP}/err" || rc=$?
}

check_answer() {
  local prologue
  prologue='import json, sys
inp = json.load(open(sys.argv[1]))
with open(sys.argv[2]) as f:
    lines = f.read().splitlines()
assert len(lines) == 1, f"expected one line on stdout, got {len(lines)}"
d = json.loads(lines[0])
assert d["status"] in ("OPTIMAL", "FEASIBLE"), d["status"]'
  python3 -c "${prologue}
$(cat)" "$1" "${TMP}/out"
}

check_missing_file() {
  run "$1" "${TMP}/does-not-exist.json"
  if [[ ${rc} -eq 1 ]] && grep -q 'does-not-exist.json' "${TMP}/err" && [[ ! -s "${TMP}/out" ]]
  then
    pass "missing file"
  else
    fail "missing file (exit ${rc})"
  fi
}

check_no_arguments() {
  run
  if [[ ${rc} -eq 2 ]] && grep -q "^$1: " "${TMP}/err" && [[ ! -s "${TMP}/out" ]]; then
    pass "no arguments is a usage error"
  else
    fail "no arguments is a usage error (exit ${rc})"
  fi
}

finish() {
  echo "${passed} passed, ${failed} failed"
  [[ ${failed} -eq 0 ]]
}
