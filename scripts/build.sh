#!/usr/bin/env bash
# Builds wsgate in BUILD_DIR, profile-guided unless PGO=off (docs/benchmarks.md, "Clients that
# close at once", step 6). The first build compiles the gateway instrumented, trains it on
# loopback with the bench's load generator (scripts/pgo-train.sh) and compiles it again with the
# profile. Later builds reuse that profile, so a change compiles once: GCC uses the profile
# wherever it still matches the code. `make retrain` (or `make clean`) drops it. Where the
# training cannot run, the build is plain, says why, and is not tried again until the profile is
# dropped.
# Usage: scripts/build.sh BUILD_DIR [TARGET...]   (JOBS: parallel compiles; PGO: on or off)
set -euo pipefail

build=${1:?usage: scripts/build.sh BUILD_DIR [TARGET...]}
shift
targets=("$@")
jobs=${JOBS:-$(nproc)}
profile="$(realpath -m "$build")/pgo-profile"
trained="$profile/trained"          # a training ran to its end and left a profile
untrainable="$profile/untrainable"  # why the training could not run

say() { echo "build: $*" >&2; }

# Configures only when the profile mode changes: a configured tree keeps its other settings.
configure() {  # WSGATE_PGO value: "", generate or use
  local cache="$build/CMakeCache.txt"
  if [[ -f $cache ]] && grep -qx "WSGATE_PGO:STRING=$1" "$cache" &&
     grep -qx "WSGATE_PGO_DIR:PATH=$profile" "$cache"; then
    return 0
  fi
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DWSGATE_PGO="$1" \
    -DWSGATE_PGO_DIR="$profile" >/dev/null
}

compile() {  # targets (none: the default ones)
  if (($#)); then
    cmake --build "$build" -j "$jobs" --target "$@"
  else
    cmake --build "$build" -j "$jobs"
  fi
}

plain() {  # why
  say "plain build: $1"
  configure ""
  compile "${targets[@]}"
}

case ${PGO:-on} in
  off) plain "PGO=off"; exit 0 ;;
  on) ;;
  *) say "PGO is '$PGO': it takes on or off"; exit 2 ;;
esac

if [[ -f $trained ]]; then
  say "profile-guided, with the profile kept in $profile"
  configure use
  compile "${targets[@]}"
  exit 0
fi
if [[ -f $untrainable ]]; then
  plain "$(cat "$untrainable") ('make retrain' tries again)"
  exit 0
fi

say "profile-guided: compiling the gateway instrumented, training it on loopback, compiling again"
rm -rf "$profile"
mkdir -p "$profile"
configure generate
compile wsgate wsgate-loadgen wsgate-bench-echo
log="$profile/training.log"
if ! scripts/pgo-train.sh "$build" >"$log" 2>&1; then
  echo "the training failed: $(tail -n 1 "$log")" >"$untrainable"
elif [[ -z $(find "$profile" -name '*.gcda' -print -quit) ]]; then
  echo "the training left no profile in $profile" >"$untrainable"
fi
if [[ -f $untrainable ]]; then
  find "$profile" -name '*.gcda' -delete
  say "WARNING: $(cat "$untrainable")"
  plain "without a profile; the gateway works the same, with more CPU per connection"
  exit 0
fi
touch "$trained"
configure use
compile "${targets[@]}"
say "profile-guided: trained ($(tail -n 1 "$log")); the profile is kept in $profile"
