#!/usr/bin/env bash
# Runs every test: unit tests (ctest) then integration tests (pytest against the real binary),
# and ends with one summary line: "N passed, N failed, N skipped". Exits non-zero if anything
# failed or could not run.
set -uo pipefail
build_dir=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
reports=$(mktemp -d)
trap 'rm -rf "$reports"' EXIT
status=0

echo "== unit tests (ctest) =="
ctest --test-dir "$build_dir" --output-on-failure --timeout 120 -j2 \
  --output-junit "$reports/unit.xml" || status=1

echo "== integration tests (pytest, real processes on loopback) =="
WSGATE_BIN="$root/$build_dir/wsgate" /usr/bin/python3 -m pytest "$root/tests/integration" \
  -q -p no:cacheprovider --junitxml="$reports/integration.xml" || status=1

/usr/bin/python3 - "$reports" "$status" <<'PY'
import glob, sys, xml.etree.ElementTree as ET
passed = failed = skipped = 0
for path in sorted(glob.glob(sys.argv[1] + "/*.xml")):
    for case in ET.parse(path).getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        if kinds & {"failure", "error"}:
            failed += 1
        elif "skipped" in kinds:
            skipped += 1
        else:
            passed += 1
if sys.argv[2] != "0" and failed == 0:
    failed = 1  # a runner failed without reporting a test case (crash, collection error)
    print("a test runner failed before reporting its tests; see above")
print(f"{passed} passed, {failed} failed, {skipped} skipped")
PY
[[ $status -eq 0 ]] || { echo "TESTS FAILED" >&2; exit 1; }
