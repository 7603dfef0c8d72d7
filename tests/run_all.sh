#!/usr/bin/env bash
# Runs every test the project has, the way CI does:
#   1. gcc, Release, -Wall -Wextra -Werror: build everything, run all tests;
#   2. clang, Debug, ASan + UBSan, -Wthread-safety -Werror: build everything but the benchmarks
#      (stage 1 builds those), run all tests; the thread-safety analysis is the build's check.
#      Debug info is line tables only (what the sanitizers' reports need), here and in stage 4;
#   3. clang, ThreadSanitizer (-O1): build the core's concurrency tests and routerd's end-to-end
#      tests (target `tsan_tests`, listed in tests/CMakeLists.txt) and run them (ctest label
#      `tsan`). Debian's Abseil and gRPC are not built with TSan: tests/tsan_annotations.cc
#      annotates Abseil's mutexes and gRPC's hand-offs (batches, OnCancel, OnDone), and nothing
#      is suppressed;
#   4. clang, ROUTER_FUZZ=ON: build the libFuzzer targets (target `fuzz_targets`: libFuzzer
#      instrumentation, ASan and UBSan on them and the libraries they link), then run each (ctest
#      label `fuzz`, docs/fuzzing.md) for ROUTER_FUZZ_SECONDS (20) on a temporary copy of its seed
#      corpus;
#   5. the container image: deploy/Dockerfile built by podman and run (ctest label `container`,
#      left out of stages 1 and 2; skipped where podman cannot run containers). Minutes: the first
#      time it compiles routerd inside the image, on base images made while stage 1 compiled.
# Build trees: build/ (the README's build), build-clang/, build-tsan/, build-fuzz/. Every tree links
# with lld (CMake option ROUTER_LLD).
# Needs deploy/install-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="${JOBS:-$(nproc)}"
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)

step() { echo; echo "=== $* ==="; }

# The container stage's base images (deploy/make-base-image.sh: mostly downloads, under nice),
# made in the background while stage 1 compiles; existing ones are kept. If this fails, the
# container test tries again itself and reports why.
base_images_pid=""
base_images_log="$(mktemp)"
if [[ "$(id -u)" -eq 0 ]] && command -v podman >/dev/null && command -v debootstrap >/dev/null; then
  bash deploy/make-base-image.sh >"${base_images_log}" 2>&1 &
  base_images_pid=$!
fi

step "gcc Release -Werror: build and test"
cmake -S . -B build "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$JOBS"
ctest --test-dir build --output-on-failure -j "$JOBS" -LE container

step "clang Debug ASan+UBSan, -Wthread-safety -Werror: build and test"
cmake -S . -B build-clang "${GEN[@]}" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_CXX_FLAGS_DEBUG=-gline-tables-only -DROUTER_SANITIZE=ON -DROUTER_THREAD_SAFETY=ON \
  -DROUTER_FUZZ=OFF -DROUTER_BUILD_BENCH=OFF >/dev/null
cmake --build build-clang -j "$JOBS"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  LSAN_OPTIONS="suppressions=$PWD/tests/lsan_suppressions.txt" \
  ctest --test-dir build-clang --output-on-failure -j "$JOBS" -LE container

step "clang ThreadSanitizer: build and run the concurrency and end-to-end tests"
cmake -S . -B build-tsan "${GEN[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" -DCMAKE_CXX_COMPILER=clang++ \
  -DROUTER_TSAN=ON -DROUTER_BUILD_BENCH=OFF >/dev/null
cmake --build build-tsan -j "$JOBS" --target tsan_tests
ctest --test-dir build-tsan --output-on-failure -j "$JOBS" -L tsan

step "clang libFuzzer + ASan + UBSan: build and run the fuzz targets"
cmake -S . -B build-fuzz "${GEN[@]}" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_CXX_FLAGS_DEBUG=-gline-tables-only -DROUTER_BUILD_BENCH=OFF -DROUTER_FUZZ=ON >/dev/null
cmake --build build-fuzz -j "$JOBS" --target fuzz_targets
ctest --test-dir build-fuzz --output-on-failure -j "$JOBS" -L fuzz

step "container image: podman build and run"
if [[ -n "${base_images_pid}" ]] && ! wait "${base_images_pid}"; then
  echo "deploy/make-base-image.sh failed in the background:"; cat "${base_images_log}"
fi
rm -f "${base_images_log}"
ctest --test-dir build --output-on-failure -L container

step "all test stages passed"
