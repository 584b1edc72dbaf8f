#!/usr/bin/env bash
# One line per test the kernel lane ran, from libtest's output (`test NAME ... ok|FAILED`) and the
# guest's skip log: `passed: NAME`, `failed: NAME`, or `skipped: NAME: WHY (in the kernel lane)`
# (a test that skipped in the guest did not pass there).
#   results.sh TESTS_LOG SKIP_LOG
set -u
tests=$1
skips=$2
sed -n 's/^skipped: \([^:]*\): \(.*\)$/skipped: \1: \2 (in the kernel lane)/p' "$skips" 2>/dev/null | awk -F': ' '!seen[$2]++'
sed -n 's/^test \([^ ]*\) \.\.\. \(ok\|FAILED\)$/\2 \1/p' "$tests" 2>/dev/null |
	while read -r verdict name; do
		short=${name##*::}
		if grep -q "^skipped: \($name\|$short\): " "$skips" 2>/dev/null; then continue; fi
		if [ "$verdict" = ok ]; then echo "passed: $name"; else echo "failed: $name"; fi
	done
