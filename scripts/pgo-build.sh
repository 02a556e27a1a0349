#!/usr/bin/env bash
# A profile-guided build of the gateway (docs/benchmarks.md, "Profile-guided optimisation"):
# builds it instrumented, trains it on loopback (scripts/pgo-train.sh), then builds it again in
# the same directory with the profile. A failed training leaves a plain build and fails.
# Usage: scripts/pgo-build.sh [BUILD_DIR]   (default build-pgo; JOBS: parallel compiles)
set -euo pipefail

build=${1:-build-pgo}
jobs=${JOBS:-$(nproc)}
profile="$(realpath -m "$build")/pgo-profile"

cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DWSGATE_PGO=generate \
  -DWSGATE_PGO_DIR="$profile"
rm -rf "$profile"
cmake --build "$build" -j "$jobs" --target wsgate wsgate-loadgen wsgate-bench-echo
if ! scripts/pgo-train.sh "$build"; then
  echo "pgo-build: training failed; $build is left as a plain build" >&2
  cmake -S . -B "$build" -DWSGATE_PGO=
  cmake --build "$build" -j "$jobs"
  exit 1
fi
[[ -n $(find "$profile" -name '*.gcda' -print -quit 2>/dev/null) ]] ||
  { echo "pgo-build: the training wrote no profile under $profile" >&2; exit 1; }
cmake -S . -B "$build" -DWSGATE_PGO=use
cmake --build "$build" -j "$jobs"
echo "pgo-build: $build/wsgate is built with the profile in $profile"
