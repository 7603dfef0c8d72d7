#!/usr/bin/env bash
# Installs every Debian 12 package needed to build, test and run router (build and runtime).
# Safe to re-run. Needs root (or sudo) and Debian's package registry.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  cmake ninja-build g++ clang make pkg-config \
  libgrpc++-dev libgrpc-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler grpc-proto \
  libabsl-dev coinor-libcbc-dev prometheus-cpp-dev nlohmann-json3-dev libyaml-cpp-dev libjemalloc-dev \
  libgtest-dev libgmock-dev googletest libbenchmark-dev \
  python3 python3-grpcio python3-protobuf curl ca-certificates systemd gnuplot-nox >/dev/null
echo "install-deps: done"
