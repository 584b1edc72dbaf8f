#!/usr/bin/env bash
# Runs every test of the project on this machine (as root: the tests build network namespaces).
#   1. installs the Debian packages the tests need (scripts/install-deps.sh)
#   2. checks formatting and lints (cargo fmt --check, cargo clippy -D warnings)
#   3. runs unit tests and the root integration tests (real netlink, namespaces, podman)
#   4. runs the tests this machine's kernel cannot (GRE tap, Geneve) in the kernel lane: Debian's
#      stock kernel under QEMU (scripts/kernel-lane.sh; the list: scripts/kernel-lane/tests.txt)
# Tests that cannot run on this machine say "skipped: <test>: <why>"; they are listed at the end,
# with the line `tests: N passed, N failed, N skipped`, whether the tests pass or fail.
# Needs Rust with clippy and rustfmt (scripts/check-rust.sh says which and how to get it). The
# tests start a private dockerd and QEMU guests, and fetch Debian packages (the QEMU guest's
# kernel and QEMU itself, scripts/qemu-guest.sh). The first run takes about 32 minutes on a
# 2-core machine (building included).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/check-rust.sh --lints --for "$0"
if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/test.sh: run as root (the tests create network namespaces): sudo env \"PATH=\$PATH\" $0" >&2
  exit 1
fi

scripts/install-deps.sh

export CIAO_SKIP_LOG="$PWD/target/test-skips.log"
mkdir -p target
rm -f "$CIAO_SKIP_LOG"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo test"
# The summary must print whether the tests pass or fail: no `set -e` exit from here on.
set +e
cargo test --workspace --no-fail-fast 2>&1 | tee target/test-output.log
status=${PIPESTATUS[0]}
echo "== kernel lane"
scripts/kernel-lane/suite.sh target/kernel-lane-results.txt 2>&1 | tee target/kernel-lane-output.log
lane_status=${PIPESTATUS[0]}
exec scripts/test-summary.sh target/test-output.log "$CIAO_SKIP_LOG" "$status" \
  target/kernel-lane-results.txt "$lane_status"
