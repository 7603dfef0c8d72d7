#!/usr/bin/env bash
# Builds deploy/Dockerfile with podman and runs the image for real: gRPC health SERVING through a
# published port, one query routed by routerctl, /metrics, the image's HEALTHCHECK, then
# `podman stop` (SIGTERM) and a clean exit (code 0, the drain lines in the log). Checks the image
# runs routerd as uid 10001 on a read-only root file system and holds no build tools, and prints
# its size and the time each part took.
#   usage: container_test.sh [ROUTERCTL]     (default: build/bin/routerctl of this checkout)
# ctest runs it as deploy_container (label `container`; tests/run_all.sh runs it as a stage of its
# own). Exits 77 (skipped) with the reason when this machine cannot build or run containers: not
# root, no podman, no base image and no way to make one (deploy/make-base-image.sh), or podman
# cannot run a trivial container. Any failure after that is a failure.
#
# The images are kept as a cache: debian:bookworm and debian:bookworm-slim (made once),
# localhost/routerd:container-test and its build stage localhost/routerd-build:container-test
# (rebuilt when a file the Dockerfile copies changes; the images they replace are removed). One
# run at a time on a machine (a lock in /run/lock). Heavy steps run under `nice -n 19`.
#
# podman's settings for these machines (runc, cgroupfs, ulimits the machine allows) go in a
# containers.conf in the test's temporary directory (CONTAINERS_CONF), nothing system-wide.
set -uo pipefail
readonly REPO="$(cd "$(dirname "$0")/../.." && pwd)"
readonly CTL="${1:-${REPO}/build/bin/routerctl}"
readonly IMAGE=localhost/routerd:container-test
readonly BUILD_IMAGE=localhost/routerd-build:container-test
readonly NAME="router-container-test-$$"
readonly SKIP=77
# Bounds, so a hung step fails the test instead of hanging it (not timing assertions); together
# below ctest's TIMEOUT of 3600 s (tests/deploy/CMakeLists.txt).
readonly LOCK_WAIT_S=600 BASE_TIMEOUT_S=900 BUILD_TIMEOUT_S=1800 SERVING_WAIT_S=60 STOP_T_S=30

TMP="$(mktemp -d)"
started=""
cleanup() {
  if [[ -n "${started}" ]]; then podman rm -f -t 0 "${NAME}" >/dev/null 2>&1; fi
  rm -rf "${TMP}"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
skip() { echo "SKIP: $*"; exit "${SKIP}"; }
fail() { echo "FAIL: $*"; exit 1; }
passed=0
pass() { echo "PASS: $*"; passed=$((passed + 1)); }
now() { date +%s; }
elapsed() { echo "$(($(now) - $1)) s"; }
t_start="$(now)"

# ---- Can this machine build and run containers? ---------------------------------------------
[[ "$(id -u)" -eq 0 ]] || skip "not root: this test runs rootful podman (rootless podman needs subuid ranges this test does not set up)"
command -v podman >/dev/null || skip "podman not installed (deploy/install-deps.sh installs podman, runc, catatonit, slirp4netns, debootstrap)"
[[ -x "${CTL}" ]] || fail "routerctl not found at ${CTL} (cmake --build build --target routerctl)"
command -v curl >/dev/null || fail "curl not installed (deploy/install-deps.sh installs it)"

export CONTAINERS_CONF="${TMP}/containers.conf"
cat >"${CONTAINERS_CONF}" <<'EOF'
# These machines: crun refuses the hybrid cgroup layout, systemd is not PID 1, and podman's default
# ulimits are above what the machine allows (setrlimit fails). podman build reads it too.
[containers]
default_ulimits = ["nofile=16384:16384", "nproc=16384:16384"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
EOF
podman info >"${TMP}/info" 2>&1 || skip "podman info failed: $(tail -n 3 "${TMP}/info")"

lock=/run/lock/router-container-test.lock
[[ -d /run/lock ]] || lock=/tmp/router-container-test.lock
exec 9>"${lock}"
flock -w "${LOCK_WAIT_S}" 9 || fail "another container test held ${lock} for ${LOCK_WAIT_S} s"
# Under the lock, a container of this test's name prefix is left over from a run that was killed.
for stale in $(podman ps -a --format '{{.Names}}' | grep '^router-container-test-'); do
  podman rm -f -t 0 "${stale}" >/dev/null 2>&1 && echo "removed a leftover container ${stale}"
done

t0="$(now)"
if podman image exists debian:bookworm && podman image exists debian:bookworm-slim; then
  echo "base images: debian:bookworm and debian:bookworm-slim exist, reused"
else
  command -v debootstrap >/dev/null ||
    skip "no debian:bookworm(-slim) base image and no debootstrap to make one (deploy/install-deps.sh)"
  timeout "${BASE_TIMEOUT_S}" bash "${REPO}/deploy/make-base-image.sh" >"${TMP}/base.log" 2>&1 ||
    skip "could not make the base images (deploy/make-base-image.sh; Debian's mirror unreachable?): $(tail -n 5 "${TMP}/base.log")"
  echo "base images: made in $(elapsed "${t0}")"
fi

# A trivial container with the run flags the test uses below: runtime, ulimits, --init, slirp4netns.
podman run --rm --init --network slirp4netns debian:bookworm-slim true >"${TMP}/trivial" 2>&1 ||
  skip "podman cannot run a trivial container here: $(tail -n 3 "${TMP}/trivial")"

# ---- Build ---------------------------------------------------------------------------------
old_ids=()
for tag in "${IMAGE}" "${BUILD_IMAGE}"; do
  old_ids+=("$(podman image inspect --format '{{.Id}}' "${tag}" 2>/dev/null)")
done
# --network host: apt inside the build reaches Debian's mirror without a CNI bridge. --format
# docker keeps HEALTHCHECK (the OCI format has none). The second build tags the build stage (all
# cached) so that its layers stay as the compile cache and the ones it replaces can be removed.
t0="$(now)"
build=(podman build --format docker --network host --pull=never --layers
  --ignorefile "${REPO}/deploy/Dockerfile.dockerignore" -f "${REPO}/deploy/Dockerfile")
if ! timeout "${BUILD_TIMEOUT_S}" nice -n 19 "${build[@]}" -t "${IMAGE}" "${REPO}" >"${TMP}/build.log" 2>&1 ||
   ! timeout 300 nice -n 19 "${build[@]}" --target build -t "${BUILD_IMAGE}" "${REPO}" >>"${TMP}/build.log" 2>&1; then
  tail -n 40 "${TMP}/build.log" | sed 's/^/  build: /'
  fail "podman build -f deploy/Dockerfile failed (log above)"
fi
if grep -q 'Using cache' "${TMP}/build.log" && ! grep -q 'Building CXX' "${TMP}/build.log"; then
  how="compile cached"
else
  how="compiled"
fi
pass "image built in $(elapsed "${t0}") (${how})"
i=0
for tag in "${IMAGE}" "${BUILD_IMAGE}"; do
  old="${old_ids[$i]}"; i=$((i + 1))
  if [[ -n "${old}" && "${old}" != "$(podman image inspect --format '{{.Id}}' "${tag}")" ]]; then
    podman rmi "${old}" >/dev/null 2>&1 || true  # in use by another container: left for later
  fi
done

# ---- The image's settings ------------------------------------------------------------------
size="$(podman image inspect --format '{{.Size}}' "${IMAGE}")"
config="$(podman image inspect --format '{{.Config.User}}|{{.Config.StopSignal}}|{{json .Config.Healthcheck}}' "${IMAGE}")"
IFS='|' read -r user stopsignal healthcheck <<<"${config}"
[[ "${user}" == "10001:10001" ]] || fail "image user is '${user}', expected 10001:10001"
[[ "${stopsignal}" == "SIGTERM" ]] || fail "image stop signal is '${stopsignal}', expected SIGTERM"
[[ "${healthcheck}" == *routerctl* ]] || fail "image has no routerctl HEALTHCHECK (built without --format docker?): ${healthcheck}"
tools="$(podman run --rm --network none --no-healthcheck --entrypoint sh "${IMAGE}" -c \
  'for t in g++ gcc c++ cc cmake ninja make protoc; do command -v "$t"; done; true' 2>"${TMP}/tools")" ||
  fail "podman run sh in the image: $(cat "${TMP}/tools")"
[[ -z "${tools}" ]] || fail "the runtime image holds build tools: $(echo "${tools}" | tr '\n' ' ')"
pass "image: user 10001:10001, STOPSIGNAL SIGTERM, routerctl HEALTHCHECK, no compiler or build tool"

# ---- Run -----------------------------------------------------------------------------------
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
t0="$(now)"
for _ in 1 2 3; do  # a port picked free can be taken before podman binds it
  PORT="$(free_port)"; METRICS="$(free_port)"
  started=1
  if podman run -d --name "${NAME}" --init --read-only --network slirp4netns \
      -p "127.0.0.1:${PORT}:50051" -p "127.0.0.1:${METRICS}:9464" "${IMAGE}" >"${TMP}/run" 2>&1; then
    break
  fi
  podman rm -f -t 0 "${NAME}" >/dev/null 2>&1
  grep -qi 'address already in use' "${TMP}/run" || fail "podman run: $(tail -n 3 "${TMP}/run")"
done
logs() { podman logs "${NAME}" 2>&1 | grep -v 'level=error msg=".*systemd' | sed 's/^/  routerd: /'; }
serving=0
for _ in $(seq 1 $((SERVING_WAIT_S * 5))); do
  if [[ "$(podman inspect --format '{{.State.Running}}' "${NAME}" 2>/dev/null)" != "true" ]]; then
    logs; fail "the container exited before routerd was SERVING"
  fi
  if "${CTL}" --address "127.0.0.1:${PORT}" --timeout_ms 1000 health >"${TMP}/health" 2>&1; then
    serving=1; break
  fi
  sleep 0.2
done
[[ "${serving}" -eq 1 ]] || { logs; fail "routerd not SERVING on 127.0.0.1:${PORT} within ${SERVING_WAIT_S} s: $(cat "${TMP}/health")"; }
grep -q '"status":"SERVING"' "${TMP}/health" || fail "health answer: $(cat "${TMP}/health")"
pass "SERVING through 127.0.0.1:${PORT} -> 50051 (slirp4netns) $(elapsed "${t0}") after podman run"
podman logs "${NAME}" 2>&1 | grep -q 'serving on port 50051, metrics on port 9464' ||
  { logs; fail "routerd's start line does not name ports 50051 and 9464"; }

process="$(podman top "${NAME}" huser args | grep '/usr/local/bin/routerd --config' | grep -v podman-init)"
[[ "$(awk '{print $1}' <<<"${process}")" == "10001" ]] || fail "routerd does not run as uid 10001: ${process}"
pass "routerd runs as uid 10001 under podman's init, on a read-only root file system"

"${CTL}" --address "127.0.0.1:${PORT}" route --id container-q1 \
  --text "Which gas do plants absorb from the air?" >"${TMP}/route" 2>&1 ||
  fail "routerctl route: $(cat "${TMP}/route")"
model="$(python3 -c 'import json, sys; a = json.load(open(sys.argv[1])); assert a["query_id"] == "container-q1" and a["assignment_id"]; print(a["model"])' "${TMP}/route" 2>&1)" ||
  fail "routerctl route answered no assignment for container-q1: $(cat "${TMP}/route")"
[[ -n "${model}" ]] || fail "empty model in $(cat "${TMP}/route")"
pass "one query routed to ${model}"

curl -fsS --max-time 5 "http://127.0.0.1:${METRICS}/metrics" >"${TMP}/metrics" 2>&1 ||
  fail "/metrics on 127.0.0.1:${METRICS}: $(head -c 300 "${TMP}/metrics")"
grep -qxF "router_assignments_total{model=\"${model}\"} 1" "${TMP}/metrics" ||
  fail "/metrics does not count the one assignment to ${model}: $(grep '^router_assignments_total' "${TMP}/metrics")"
pass "/metrics through 127.0.0.1:${METRICS} -> 9464 counts the assignment"

# The HEALTHCHECK runs routerctl inside the container. podman schedules it with systemd timers,
# which these machines lack, so it is run once by hand.
podman healthcheck run "${NAME}" >"${TMP}/hc" 2>&1 || fail "podman healthcheck run: $(cat "${TMP}/hc")"
pass "HEALTHCHECK (routerctl health inside the container): $(podman inspect --format '{{.State.Health.Status}}' "${NAME}")"

# ---- Stop: SIGTERM, drain, exit 0 ------------------------------------------------------------
t0="$(now)"
timeout $((STOP_T_S + 30)) podman stop -t "${STOP_T_S}" "${NAME}" >"${TMP}/stop" 2>&1 ||
  fail "podman stop: $(cat "${TMP}/stop")"
code="$(podman inspect --format '{{.State.ExitCode}}' "${NAME}")"
podman logs "${NAME}" >"${TMP}/log" 2>&1
[[ "${code}" == "0" ]] || { logs; fail "exit code ${code} after podman stop, expected 0 (137: killed after -t ${STOP_T_S})"; }
grep -q '^routerd: Terminated, draining (' "${TMP}/log" || { logs; fail "no drain line in the log"; }
grep -q '^routerd: stopped$' "${TMP}/log" || { logs; fail "no 'routerd: stopped' line in the log"; }
pass "podman stop: SIGTERM, drained, exit code 0 in $(elapsed "${t0}")"

echo "image ${IMAGE}: $((size / 1000000)) MB (${size} bytes); test took $(elapsed "${t_start}")"
echo "${passed} passed, 0 failed"
