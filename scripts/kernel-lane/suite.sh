#!/usr/bin/env bash
# Runs every test of scripts/kernel-lane/tests.txt in one kernel-lane boot (scripts/test.sh calls
# it after the host tests) and writes RESULTS for scripts/test-summary.sh: `passed: <test>`,
# `failed: <test>`, or `skipped: <test>: <why>` for each test when the lane cannot run here.
#   scripts/kernel-lane/suite.sh RESULTS
# Builds the test binaries and the project's binaries the tests spawn first (cargo, debug; a no-op
# after `cargo test --workspace`); KERNEL_LANE_CARGO_LOCK=FILE runs cargo under `flock FILE`.
# Exit status: kernel-lane.sh's (0 passed, 1 failed, 2 the lane cannot run here).
set -euo pipefail
{ # parsed whole before it runs: editing this file during a run cannot change the run
RESULTS=${1:?results file}
rm -f "$RESULTS"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
LIST=$ROOT/scripts/kernel-lane/tests.txt
cd "$ROOT"

cargo_() { if [ -n "${KERNEL_LANE_CARGO_LOCK:-}" ]; then flock "$KERNEL_LANE_CARGO_LOCK" cargo "$@"; else cargo "$@"; fi; }

targets=$(grep -v '^#' "$LIST" | awk 'NF {print $1}' | sort -u)
test_args=()
for t in $targets; do test_args+=(--test "$t"); done
cargo_ build --quiet --workspace --bins
exes=$(cargo_ test --quiet -p ciao-tests "${test_args[@]}" --no-run --message-format=json |
	jq -r 'select(.profile.test == true and .executable != null) | "\(.target.name) \(.executable)"')

lane_args=()
for t in $targets; do
	exe=$(awk -v t="$t" '$1 == t {print $2; exit}' <<<"$exes")
	[ -n "$exe" ] || { echo "kernel-lane: no test binary for target $t" >&2; exit 1; }
	[ ${#lane_args[@]} -eq 0 ] || lane_args+=(--)
	lane_args+=("$exe" --exact $(awk -v t="$t" '!/^#/ && $1 == t {print $2}' "$LIST"))
done

rc=0
"$ROOT/scripts/kernel-lane.sh" --results "$RESULTS.lane" "${lane_args[@]}" || rc=$?
if [ "$rc" -eq 2 ]; then
	why=$(sed -n 's/^unavailable: //p' "$RESULTS.lane")
	grep -v '^#' "$LIST" | awk -v why="$why" 'NF {print "skipped: " $2 ": kernel lane unavailable: " why}' >"$RESULTS"
else
	cp "$RESULTS.lane" "$RESULTS" 2>/dev/null || : >"$RESULTS"
	# A listed test that did not report (the guest hung or crashed before it) failed.
	grep -v '^#' "$LIST" | awk 'NF {print $2}' | while read -r name; do
		grep -Eq "^(passed|failed|skipped): $name(:|$)" "$RESULTS" || echo "failed: $name" >>"$RESULTS"
	done
fi
rm -f "$RESULTS.lane"
exit "$rc"
exit
}
