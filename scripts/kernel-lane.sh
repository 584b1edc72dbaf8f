#!/usr/bin/env bash
# The kernel lane: runs host-built test binaries in Debian 12's stock kernel under QEMU (TCG), for
# the tests this machine's kernel cannot run (GRE tap, Geneve, ...). One boot for all of them.
#
#   scripts/kernel-lane.sh [--results FILE] BIN [ARG...] [-- BIN [ARG...]]...
#
# Each BIN (a test binary: `cargo test --no-run` prints their paths) runs with its ARGs (libtest's:
# filters, --exact, ...) in the guest, chrooted into the host's root shared read-only (9p), with
# tmpfs on /tmp /run /var/tmp /dev/shm. Its output streams to stdout (the serial console). The exit
# status is the tests': 0 all passed; 1 a test failed, the guest failed or the watchdog
# (KERNEL_LANE_TIMEOUT, default 900 s) killed QEMU; 2 the lane cannot run here (QEMU or the kernel
# cannot be fetched: the reason is the last stderr line, `kernel-lane: unavailable: <why>`).
# --results FILE: one line per test, `passed: <test>`, `failed: <test>` or
# `skipped: <test>: <why> (in the kernel lane)`; when the lane cannot run, `unavailable: <why>`.
#
# Fetched with `apt-get download` and unpacked with `dpkg -x` (nothing is installed): QEMU 7.2 and
# the libraries the host lacks, linux-image-amd64's versioned package, busybox-static. Cached in
# target/kernel-lane/cache (KERNEL_LANE_CACHE), prepared under a flock. Each run's directory
# (target/kernel-lane/run.*) is removed at the end, also on failure.
# The binaries the tests spawn come from target/debug (CIAO_BIN_DIR overrides): build them first.
# Settings: KERNEL_LANE_MODULES (modules loaded before the tests), KERNEL_LANE_MEM (MiB, 1536).
set -euo pipefail
{ # parsed whole before it runs: editing this file during a run cannot change the run

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
HERE=$ROOT/scripts/kernel-lane
BASE=$ROOT/target/kernel-lane
CACHE=${KERNEL_LANE_CACHE:-$BASE/cache}
TIMEOUT=${KERNEL_LANE_TIMEOUT:-900}
MEM=${KERNEL_LANE_MEM:-1536}
MODULES=${KERNEL_LANE_MODULES:-ip_gre geneve vxlan bridge veth nf_tables}
T_START=$EPOCHREALTIME

log() { echo "kernel-lane: $*" >&2; }
die() { log "$*"; exit 1; }
el() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", a - b}'; }

RESULTS=
if [ "${1:-}" = --results ]; then RESULTS=${2:?--results FILE}; shift 2; fi
[ $# -gt 0 ] || die "usage: $0 [--results FILE] BIN [ARG...] [-- BIN [ARG...]]..."
[ "$(id -u)" -eq 0 ] || die "run as root (QEMU shares the whole root filesystem; tests need root)"

RUN= TPID=
cleanup() {
	local rc=$?
	if [ -n "$TPID" ]; then kill "$TPID" 2>/dev/null || true; wait "$TPID" 2>/dev/null || true; fi
	[ -n "$RUN" ] && rm -rf "$RUN"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- 1. The plan: which binaries, with which arguments (checked before anything is fetched) ----
mkdir -p "$BASE"
RUN=$(mktemp -d "$BASE/run.XXXXXX")
mkdir -p "$RUN/out"
{
	printf 'export CIAO_BIN_DIR=%q RUST_BACKTRACE=1\n' "${CIAO_BIN_DIR:-$ROOT/target/debug}"
	cmd=()
	flush() {
		[ ${#cmd[@]} -gt 0 ] || return 0
		[ -x "${cmd[0]}" ] || die "not an executable test binary: ${cmd[0]}"
		local bin
		bin=$(realpath "${cmd[0]}")
		case "$bin" in /tmp/* | /run/* | /var/tmp/* | /dev/*)
			die "$bin is hidden in the guest (tmpfs over /tmp, /run, /var/tmp, /dev/shm)" ;;
		esac
		printf 'lane_run %q' "$ROOT"
		printf ' %q' "$bin" "${cmd[@]:1}"
		echo
		cmd=()
	}
	for a in "$@"; do if [ "$a" = -- ]; then flush; else cmd+=("$a"); fi; done
	flush
} >"$RUN/plan.sh"
cp "$HERE/guest-run.sh" "$RUN/guest-run.sh"

# ---- 2. Packages, unpacked into the cache (one preparer at a time) ----
mkdir -p "$CACHE/debs"
exec 9>"$CACHE/.lock"
flock 9
prc=0
"$HERE/prepare.sh" "$CACHE" "$HERE/init.sh" >"$RUN/prepared.env" 2>"$RUN/prepare.log" || prc=$?
cat "$RUN/prepare.log" >&2
if [ "$prc" -ne 0 ]; then
	why=$(sed -n 's/^kernel-lane: unavailable: //p' "$RUN/prepare.log" | tail -n1)
	[ "$prc" -eq 2 ] && [ -n "$RESULTS" ] && echo "unavailable: $why" >"$RESULTS"
	exit "$prc"
fi
flock -u 9
exec 9>&-
# shellcheck source=/dev/null
. "$RUN/prepared.env" # qemu, libdir, datadirs, vmlinux, initrd, kroot
T_PREP=$EPOCHREALTIME
log "prepared in $(el "$T_PREP" "$T_START") s"

# ---- 3. The boot: TCG, q35, qboot, no network device; the watchdog is `timeout` ----
CMDLINE="console=ttyS0 quiet loglevel=3 panic=-1 lane.run=$RUN lane.kroot=$kroot lane.modules=$(echo $MODULES | tr ' ' ,)"
DATA=()
IFS=: read -ra dd <<<"$datadirs"
for d in "${dd[@]}"; do DATA+=(-L "$d"); done
mkfifo "$RUN/serial"
T_LAUNCH=$EPOCHREALTIME
LD_LIBRARY_PATH=$libdir timeout -k 5 "$TIMEOUT" "$qemu" "${DATA[@]}" \
	-machine q35,accel=tcg -cpu max -bios qboot.rom -m "$MEM" -smp 1 \
	-display none -nodefaults -no-reboot -serial stdio -pidfile "$RUN/qemu.pid" \
	-kernel "$vmlinux" -initrd "$initrd" -append "$CMDLINE" \
	-virtfs "local,path=$RUN/out,mount_tag=laneout,security_model=none" \
	-virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap" \
	</dev/null >"$RUN/serial" 2>&1 &
TPID=$!
# The console, as it arrives: on stdout and, stamped with the host's clock, in serial.log.
while IFS= read -r line; do
	line=${line%$'\r'}
	printf '%s\n' "$line"
	printf '%s %s\n' "$EPOCHREALTIME" "$line" >>"$RUN/serial.log"
done <"$RUN/serial"
wait "$TPID" && qrc=0 || qrc=$?
TPID=
T_EXIT=$EPOCHREALTIME

# ---- 4. The verdict ----
grc=$(cat "$RUN/out/rc" 2>/dev/null || echo none)
mark() { awk -v k="$1" '$2 == "LANE-MARK" && $3 == k {print $1; exit}' "$RUN/serial.log"; }
first=$(mark test-start)
log "boot to first test $([ -n "$first" ] && el "$first" "$T_LAUNCH" || echo -) s, QEMU $(el "$T_EXIT" "$T_LAUNCH") s, whole lane $(el "$T_EXIT" "$T_START") s"
if [ -n "$RESULTS" ]; then
	"$HERE/results.sh" "$RUN/out/tests.log" "$RUN/out/skips.log" >"$RESULTS"
fi
[ "$qrc" -eq 124 ] && die "timeout: QEMU killed after ${TIMEOUT} s (KERNEL_LANE_TIMEOUT)"
[ "$qrc" -eq 0 ] || die "QEMU failed (exit $qrc)"
[ "$grc" = 0 ] || die "the tests in the guest failed (guest status $grc)"
exit
}
