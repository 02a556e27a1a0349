#!/bin/sh
# Runs each libFuzzer harness in turn (never two at once), each for FUZZ_SECONDS.
#   tests/fuzz/run.sh BUILD_DIR [harness...]      (default: frame handshake config)
# Environment: FUZZ_SECONDS (60), FUZZ_WORK (/tmp/wsgate-fuzz), FUZZ_ARGS (extra libFuzzer flags).
# New corpus entries, crash/leak/timeout artifacts and logs go to FUZZ_WORK, never into the
# repository; the seeds in tests/fuzz/corpus/<harness>/ are only read.
# Exit status: 0 if every harness ran its time without a finding, else 1.
set -u

build_dir=${1:?usage: tests/fuzz/run.sh BUILD_DIR [harness...]}
shift
[ $# -gt 0 ] || set -- frame handshake config
seconds=${FUZZ_SECONDS:-60}
work=${FUZZ_WORK:-/tmp/wsgate-fuzz}
here=$(cd "$(dirname "$0")" && pwd)
build_dir=$(cd "$build_dir" && pwd)

status=0
for harness in "$@"; do
  binary="$build_dir/${harness}_fuzz"
  if [ ! -x "$binary" ]; then
    echo "fuzz: $binary missing (make fuzz builds it)" >&2
    status=1
    continue
  fi
  corpus="$work/corpus/$harness"
  artifacts="$work/artifacts/$harness"
  log="$work/$harness.log"
  mkdir -p "$corpus" "$artifacts"
  dict=""
  [ -f "$here/$harness.dict" ] && dict="-dict=$here/$harness.dict"
  max_len=4096
  [ "$harness" = frame ] || max_len=8192
  echo "fuzz: $harness for ${seconds}s (corpus $corpus, artifacts $artifacts, log $log)"
  # Run from the work dir: libFuzzer may drop files in the current directory.
  # shellcheck disable=SC2086
  (cd "$work" && \
    ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=0:${ASAN_OPTIONS:-}" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}" \
    "$binary" "$corpus" "$here/corpus/$harness" \
      -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 -max_len="$max_len" \
      -artifact_prefix="$artifacts/" -print_final_stats=1 $dict ${FUZZ_ARGS:-}) \
    >"$log" 2>&1
  rc=$?
  grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss_mb|Done [0-9]+ runs)' "$log" \
    | sed "s/^/fuzz: $harness: /"
  if [ $rc -ne 0 ]; then
    echo "fuzz: $harness FAILED (exit $rc); see $log and $artifacts/" >&2
    grep -E 'ERROR: |FUZZ_CHECK|SUMMARY|runtime error|Test unit written' "$log" | head -20 >&2
    status=1
  fi
done
exit $status
