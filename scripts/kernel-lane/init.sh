#!/bin/sh
# /init of the kernel lane's initramfs (busybox-static; scripts/kernel-lane.sh builds it).
#
# Kernel command line it reads:
#   lane.run=DIR       the run's directory on the host (guest-run.sh and plan.sh), seen at /tmp/lane
#   lane.kroot=DIR     the unpacked, depmod'ed kernel package on the host (its lib/modules/<ver>)
#   lane.modules=a,b   modules to load before the tests
# PID 1 stays here (so the kernel's /sbin/modprobe is busybox with the full module tree); the tests
# run in a chroot of the host's root, shared read-only over 9p, with tmpfs where programs write and
# the writable share `laneout` at /tmp/lane-out. The exit status goes to /tmp/lane-out/rc, since
# QEMU exits 0 on `poweroff -f`. Prints LANE-MARK / LANE-FATAL lines on the serial console.
export PATH=/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
up() { read -r u _ </proc/uptime; echo "$u"; }
echo "LANE-MARK init $(up)"

fatal() {
	echo "LANE-FATAL $*"
	[ -d /out ] && echo 1 >/out/rc
	sync
	poweroff -f
}

RUN= KROOT= MODS=
for a in $(cat /proc/cmdline); do
	case "$a" in
	lane.run=*) RUN=${a#lane.run=} ;;
	lane.kroot=*) KROOT=${a#lane.kroot=} ;;
	lane.modules=*) MODS=$(echo "${a#lane.modules=}" | tr , ' ') ;;
	esac
done
[ -n "$RUN" ] && [ -n "$KROOT" ] || fatal "lane.run= or lane.kroot= missing on the kernel command line"
KVER=$(uname -r)

for m in virtio_pci 9pnet_virtio 9p; do modprobe "$m" || fatal "modprobe $m"; done
O=trans=virtio,version=9p2000.L,msize=262144
mkdir -p /host /out /run-dir
mount -t 9p -o "$O,ro,cache=loose" hostroot /host || fatal "mount the host's root"
mount -t 9p -o "$O" laneout /out || fatal "mount the output share"

MT=/host$KROOT/lib/modules/$KVER
[ -f "$MT/modules.dep" ] || fatal "no depmod'ed module tree at $KROOT for $KVER"
mount --bind "$MT" "/lib/modules/$KVER" || fatal "bind the module tree"
for m in $MODS; do modprobe "$m" || fatal "modprobe $m"; done
echo "LANE-MARK modules-loaded $(up)"

R=/host
mount --bind "/host$RUN" /run-dir || fatal "bind the run directory" # before /tmp is covered
mount -t proc proc $R/proc
mount -t sysfs sysfs $R/sys
mount -t devtmpfs devtmpfs $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts $R/dev/pts
mount -t tmpfs -o mode=1777 tmpfs $R/dev/shm
mount -t tmpfs -o mode=1777 tmpfs $R/tmp
mount -t tmpfs -o mode=0755 tmpfs $R/run
mount -t tmpfs -o mode=1777 tmpfs $R/var/tmp
mkdir -p $R/tmp/lane $R/tmp/lane-out
mount --bind /run-dir $R/tmp/lane
mount --bind /out $R/tmp/lane-out

chroot $R /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	HOME=/tmp TMPDIR=/tmp /bin/bash /tmp/lane/guest-run.sh
rc=$?
echo "$rc" >/out/rc
echo "LANE-MARK end $(up) rc=$rc"
sync
poweroff -f
