#!/usr/bin/env bash
# Installs the Debian 12 packages router needs. Safe to re-run. Needs root (or sudo) and Debian's
# package registry.
#
#   install-deps.sh                    everything to build, test and run router, and to build and
#                                      run its container image (tests/deploy/container_test.sh)
#   install-deps.sh routerd-build      only what building routerd and routerctl needs, with
#                                      -DROUTER_BUILD_TESTS=OFF -DROUTER_BUILD_BENCH=OFF (the
#                                      image's build stage, deploy/Dockerfile)
#   install-deps.sh routerd-runtime    only the shared libraries routerd and routerctl load (the
#                                      image's runtime stage)
set -euo pipefail

# Compilers and the -dev packages routerd and routerctl build against. protobuf-compiler-grpc also
# brings grpc_python_plugin, which configuring the project needs (clients/CMakeLists.txt).
# libhiredis-dev is the Redis ledger's client (server/ledger_redis/).
ROUTERD_BUILD=(
  cmake ninja-build g++ make pkg-config
  libgrpc++-dev libgrpc-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler grpc-proto
  libabsl-dev coinor-libcbc-dev prometheus-cpp-dev nlohmann-json3-dev libyaml-cpp-dev libjemalloc-dev
  libssl-dev libhiredis-dev
)
# The runtime halves of those -dev packages: `ldd routerd routerctl | dpkg -S` (apt brings their
# own dependencies: libgrpc29, libre2-9, libc-ares2, zlib). routerd links OpenSSL itself (certificate
# checks, token hashing), hence libssl3. The image's build fails if one is missing (deploy/Dockerfile
# checks ldd). libhiredis0.14 for the Redis ledger.
ROUTERD_RUNTIME=(
  libgrpc++1.51 libprotobuf32 libabsl20220623 libyaml-cpp0.7 libjemalloc2 libssl3
  libprometheus-cpp-pull1.0 libprometheus-cpp-core1.0 libcivetweb1
  coinor-libcbc3 coinor-libcgl1 coinor-libclp1 coinor-libosi1v5 coinor-libcoinutils3v5
  libhiredis0.14
)
# Tests, sanitizer, thread-safety and libFuzzer builds (libclang-rt-14-dev: clang's sanitizer and
# libFuzzer runtimes, only recommended by clang; lld, the linker every build uses where it is
# installed: CMake option ROUTER_LLD), benchmarks and their plots, the clients'
# end-to-end test (Python), the systemd unit's check, promtool and Prometheus (tests/deploy/), the
# openssl command (deploy/README.md, "Transport security", makes certificates and tokens with it).
# redis-server for the Redis ledger's tests and the fleet chaos test (each starts its own on a free
# port), with redis-tools, python3-redis and faketime (one replica's skewed clock); yamllint for
# the Kubernetes manifests (tests/deploy/k8s_manifests_test.py).
TEST_TOOLS=(
  clang libclang-rt-14-dev lld openssl libgtest-dev libgmock-dev googletest libbenchmark-dev
  python3 python3-grpcio python3-protobuf python3-yaml curl ca-certificates systemd gnuplot-nox
  prometheus
  redis-server redis-tools python3-redis faketime yamllint
)
# The Kubernetes manifests' offline validator (tests/deploy/k8s_manifests_test.py): the npm package
# kubernetes-models, the JSON schemas of the Kubernetes 1.27 API (types, required fields, formats),
# installed globally with npm. 4.5.1 is the newest that runs on Node.js 20 (5.x needs 22).
K8S_VALIDATOR=kubernetes-models@4.5.1
# The container test (tests/deploy/container_test.sh): podman with runc (crun refuses these
# machines' hybrid cgroup layout), catatonit for `podman run --init`, slirp4netns for
# `--network slirp4netns`, debootstrap for the base image (deploy/make-base-image.sh). uidmap and
# fuse-overlayfs are what rootless podman needs; as root they go unused.
CONTAINER_TOOLS=(podman runc catatonit slirp4netns debootstrap uidmap fuse-overlayfs)

case "${1:-all}" in
  all) packages=("${ROUTERD_BUILD[@]}" "${ROUTERD_RUNTIME[@]}" "${TEST_TOOLS[@]}" "${CONTAINER_TOOLS[@]}") ;;
  routerd-build) packages=("${ROUTERD_BUILD[@]}") ;;
  routerd-runtime) packages=("${ROUTERD_RUNTIME[@]}") ;;
  *)
    echo "install-deps: unknown package set '$1' (all, routerd-build, routerd-runtime)" >&2
    exit 2
    ;;
esac

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
redis_was_installed=0
if dpkg-query -W -f='${Status}' redis-server 2>/dev/null | grep -q 'install ok installed'; then
  redis_was_installed=1
fi
if dpkg-query -W -f='${Status}' prometheus 2>/dev/null | grep -q 'install ok installed'; then
  prometheus_was_installed=1
fi

$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
if [ "${1:-all}" = all ]; then
  # kubectl renders the Kubernetes manifests offline (`kubectl kustomize`): Debian's
  # kubernetes-client (1.20, its kustomize renders deploy/kustomization.yaml) unless the machine
  # already has a kubectl (another package owns /usr/bin/kubectl then).
  if ! command -v kubectl >/dev/null; then
    $SUDO apt-get install -y -qq --no-install-recommends kubernetes-client >/dev/null
  fi
  # Node.js and npm: the machine's own if it has them (a Node.js from elsewhere brings its own npm,
  # which Debian's npm package would conflict with), else Debian's.
  if ! command -v npm >/dev/null; then
    $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
  fi
  if ! npm ls -g --depth=0 "$K8S_VALIDATOR" >/dev/null 2>&1; then
    $SUDO npm install -g --no-audit --no-fund --loglevel=error "$K8S_VALIDATOR" >/dev/null
  fi
fi

# On a systemd machine the package also enabled prometheus.service for the next boot (a server on
# port 9090). Disabled here when this run installed it; a Prometheus installed before is not touched.
if [ "${1:-all}" = all ] && [ "$prometheus_was_installed" -eq 0 ] && [ -d /run/systemd/system ]; then
  $SUDO systemctl disable --now prometheus.service >/dev/null 2>&1 ||
    echo "install-deps: could not disable prometheus.service (the tests use their own ports)" >&2
fi
# Likewise redis-server.service (port 6379): the tests start their own redis-server on free ports.
if [ "${1:-all}" = all ] && [ "$redis_was_installed" -eq 0 ] && [ -d /run/systemd/system ]; then
  $SUDO systemctl disable --now redis-server.service >/dev/null 2>&1 ||
    echo "install-deps: could not disable redis-server.service (the tests use their own ports)" >&2
fi
echo "install-deps: ${1:-all}: done"
