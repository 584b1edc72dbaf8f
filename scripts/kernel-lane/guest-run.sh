#!/usr/bin/env bash
# Runs in the kernel lane's guest, chrooted into the host's root (scripts/kernel-lane/init.sh):
# each `lane_run CWD BIN ARGS...` line of /tmp/lane/plan.sh runs one host-built test binary; its
# output goes to the console (the host streams it) and to /tmp/lane-out/tests.log. Exits 1 if any
# binary failed. Tests say `skipped:` into /tmp/lane-out/skips.log (CIAO_SKIP_LOG).
set -u
export CIAO_SKIP_LOG=/tmp/lane-out/skips.log
status=0
up() { read -r u _ </proc/uptime; echo "$u"; }

lane_run() { # cwd bin args...
	local cwd=$1
	shift
	echo "LANE-MARK test-start $(up) $1"
	(cd "$cwd" && "$@") 2>&1 | tee -a /tmp/lane-out/tests.log
	local rc=${PIPESTATUS[0]}
	echo "LANE-MARK test-end $(up) rc=$rc $1"
	[ "$rc" -eq 0 ] || status=1
}

# shellcheck source=/dev/null
. /tmp/lane/plan.sh
exit "$status"
