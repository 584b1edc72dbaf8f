#!/usr/bin/env bash
# Runs every test of the project on this machine (as root: the tests build network namespaces).
#   1. installs the Debian packages the tests need (scripts/install-deps.sh)
#   2. checks formatting and lints (cargo fmt --check, cargo clippy -D warnings)
#   3. runs unit tests and the root integration tests (real netlink, namespaces, podman)
# Tests that cannot run on this machine say "skipped: <test>: <why>"; they are listed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/test.sh: run as root (the tests create network namespaces): sudo $0" >&2
  exit 1
fi
command -v cargo >/dev/null || { echo "scripts/test.sh: cargo (Rust toolchain) not found" >&2; exit 1; }

scripts/install-deps.sh

export CIAO_SKIP_LOG="$PWD/target/test-skips.log"
mkdir -p target
rm -f "$CIAO_SKIP_LOG"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo test"
# The summary below must print whether the tests pass or fail: no `set -e` exit on this pipeline.
set +e
cargo test --workspace --no-fail-fast 2>&1 | tee target/test-output.log
status=${PIPESTATUS[0]}
set -e

# One line per skipped test, whatever its reasons (a test may report several).
skipped_tests=$(sed -n 's/^skipped: \([^:]*\):.*/\1/p' "$CIAO_SKIP_LOG" 2>/dev/null | sort -u)
if [ -n "$skipped_tests" ]; then
  echo "== tests that could not run here"
  sort -u "$CIAO_SKIP_LOG"
fi
passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' target/test-output.log | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed; [0-9]+ failed' target/test-output.log | awk '{s+=$6} END {print s+0}')
skipped=$(printf '%s' "$skipped_tests" | grep -c . || true)
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  # A target that failed to build or crashed has no result line: count it as a failure.
  failed=1
fi
# cargo counts a skipped test (it returns early) as passed.
echo "tests: $((passed - skipped)) passed, $failed failed, $skipped skipped"
exit "$status"
