#!/usr/bin/env bash
# Installs every Debian 12 package needed to build, test and run router (build and runtime).
# Safe to re-run. Needs root (or sudo) and Debian's package registry.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

# Debian's `prometheus` package (promtool and the server, for tests/deploy/) starts its service on
# install: through invoke-rc.d and its init script on a machine without systemd, through systemd
# otherwise. A build or CI machine needs only the binaries (the tests start their own Prometheus on
# a free port), so while this script installs, a policy-rc.d refuses every service start, unless
# the machine has its own policy-rc.d (container images do), which is then left as it is.
POLICY=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\n# deploy/install-deps.sh: no service starts while it installs packages.\nexit 101\n' |
    $SUDO tee "$POLICY" >/dev/null
  $SUDO chmod 0755 "$POLICY"
  trap '$SUDO rm -f "$POLICY"' EXIT
fi
prometheus_was_installed=0
if dpkg-query -W -f='${Status}' prometheus 2>/dev/null | grep -q 'install ok installed'; then
  prometheus_was_installed=1
fi

$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  cmake ninja-build g++ clang make pkg-config \
  libgrpc++-dev libgrpc-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler grpc-proto \
  libabsl-dev coinor-libcbc-dev prometheus-cpp-dev nlohmann-json3-dev libyaml-cpp-dev libjemalloc-dev \
  libgtest-dev libgmock-dev googletest libbenchmark-dev \
  python3 python3-grpcio python3-protobuf python3-yaml curl ca-certificates systemd gnuplot-nox \
  prometheus >/dev/null

# On a systemd machine the package also enabled prometheus.service for the next boot (a server on
# port 9090). Disabled here when this run installed it; a Prometheus installed before is not touched.
if [ "$prometheus_was_installed" -eq 0 ] && [ -d /run/systemd/system ]; then
  $SUDO systemctl disable --now prometheus.service >/dev/null 2>&1 ||
    echo "install-deps: could not disable prometheus.service (the tests use their own ports)" >&2
fi
echo "install-deps: done"
