#!/usr/bin/env bash
# Fetches and unpacks what the kernel lane boots, into CACHE; prints `key=value` lines for
# scripts/kernel-lane.sh (qemu, libdir, datadirs, vmlinux, initrd, kroot). The caller holds the
# cache's flock. Nothing is installed: `apt-get download` + `dpkg -x` only (installing bookworm's
# qemu-system-x86 would remove the image's qemu-utils). Exit 2 with `kernel-lane: unavailable: ...`
# when the packages cannot be fetched here.
#   prepare.sh CACHE INIT_SH
set -euo pipefail
CACHE=$1
INIT=$2
cd "$CACHE/debs"

log() { echo "kernel-lane: $*" >&2; }
unavailable() { log "unavailable: $*"; exit 2; }
die() { log "$*"; exit 1; }

command -v apt-get >/dev/null || unavailable "apt-get not found (not a Debian system)"
command -v xz >/dev/null || unavailable "xz not found (needed to extract the kernel's vmlinux)"

# Downloads the packages not in the cache yet; one `apt-get update` retry.
fetch() {
	local want=() p
	for p in "$@"; do compgen -G "${p}_*.deb" >/dev/null || want+=("$p"); done
	[ ${#want[@]} -eq 0 ] && return 0
	log "downloading ${want[*]}"
	if ! apt-get download -q "${want[@]}" >"$CACHE/apt.log" 2>&1; then
		apt-get update -qq >>"$CACHE/apt.log" 2>&1 || true
		apt-get download -q "${want[@]}" >>"$CACHE/apt.log" 2>&1 ||
			unavailable "apt-get download ${want[*]} failed: $(grep -m1 -E '^(E|W):' "$CACHE/apt.log" || tail -n1 "$CACHE/apt.log")"
	fi
}

# Unpacks packages into DIR once (DIR/.done names them).
unpack() { # dir pkg...
	local d=$1 p
	shift
	[ "$(cat "$d/.done" 2>/dev/null)" = "$*" ] && return 0
	rm -rf "$d" && mkdir -p "$d"
	for p in "$@"; do dpkg -x "$(compgen -G "${p}_*.deb" | head -n1)" "$d"; done
	echo "$*" >"$d/.done"
}

# The kernel: linux-image-amd64 names the versioned package of the day.
KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [ -z "$KPKG" ]; then
	apt-get update -qq >/dev/null 2>&1 || true
	KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
fi
[ -n "$KPKG" ] || unavailable "apt knows no linux-image-amd64 (no Debian 12 sources?)"
KVER=${KPKG#linux-image-}
# QEMU and those of its dependencies the host lacks, as apt would install them.
QPKGS=$(apt-get -s -o Debug::NoLocking=1 install --no-install-recommends qemu-system-x86 2>/dev/null |
	awk '/^Inst/ {print $2}' | tr '\n' ' ')
case " $QPKGS " in *" qemu-system-x86 "*) ;; *) unavailable "apt cannot resolve qemu-system-x86" ;; esac
fetch "$KPKG" busybox-static $QPKGS

unpack "$CACHE/qemu-root" $QPKGS
unpack "$CACHE/bb-root" busybox-static
unpack "$CACHE/kernel-root" "$KPKG"
Q=$CACHE/qemu-root
QEMU=$Q/usr/bin/qemu-system-x86_64
LIBDIR=$Q/usr/lib/x86_64-linux-gnu:$Q/lib/x86_64-linux-gnu
LD_LIBRARY_PATH=$LIBDIR "$QEMU" --version >/dev/null 2>&1 || die "the unpacked $QEMU does not run"
BB=$CACHE/bb-root/bin/busybox
KROOT=$CACHE/kernel-root
MODDIR=$KROOT/lib/modules/$KVER
# Debian's package ships no modules.dep (its postinst runs depmod); the host may lack kmod.
[ -f "$MODDIR/modules.dep" ] || "$BB" depmod -b "$KROOT" "$KVER" || die "depmod $KVER failed"

# The ELF vmlinux inside vmlinuz (xz, after the first FD 37 7A 58 5A 00), booted by its PVH entry:
# no real-mode setup, no decompression in the (slow, TCG) guest. busybox unxz lacks the x86 BCJ
# filter; xz reports the bytes after the stream as an error, which is expected.
VMLINUX=$CACHE/vmlinux-$KVER
if [ ! -s "$VMLINUX" ]; then
	off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$KROOT/boot/vmlinuz-$KVER" | head -n1 | cut -d: -f1)
	[ -n "$off" ] || die "no xz stream in vmlinuz-$KVER"
	tail -c +$((off + 1)) "$KROOT/boot/vmlinuz-$KVER" | xz -dc >"$VMLINUX.tmp" 2>/dev/null || true
	[ "$(head -c 4 "$VMLINUX.tmp" | od -An -c | tr -d ' ')" = 177ELF ] || die "cannot extract vmlinux from vmlinuz-$KVER"
	mv "$VMLINUX.tmp" "$VMLINUX"
fi

# The initramfs: busybox, /init, and what reaching the shares needs (modules.dep closure, in order).
STAMP="$KVER $(sha256sum "$INIT" | cut -c1-16)"
INITRD=$CACHE/initrd.gz
if [ "$(cat "$INITRD.stamp" 2>/dev/null)" != "$STAMP" ]; then
	IR=$CACHE/initramfs
	rm -rf "$IR" && mkdir -p "$IR"/{bin,sbin,proc,sys,dev,lib/modules/"$KVER"}
	cp "$BB" "$IR/bin/busybox"
	for a in $("$BB" --list); do [ "$a" = busybox ] || ln -sf busybox "$IR/bin/$a"; done
	for a in modprobe insmod depmod poweroff; do ln -sf ../bin/busybox "$IR/sbin/$a"; done
	cp "$INIT" "$IR/init" && chmod 755 "$IR/init"
	need=$(awk -v want="virtio_pci 9pnet_virtio 9p" '
		{ p = $1; sub(/:$/, "", p); n = p; sub(/.*\//, "", n); sub(/\.ko.*$/, "", n); gsub(/-/, "_", n)
		  path[n] = p; deps[p] = ""; for (i = 2; i <= NF; i++) deps[p] = deps[p] " " $i }
		function visit(p,   a, k, i) { if (p in seen) return; seen[p] = 1
		  k = split(deps[p], a, " "); for (i = 1; i <= k; i++) visit(a[i]); print p }
		END { k = split(want, w, " "); for (i = 1; i <= k; i++) visit(path[w[i]]) }' "$MODDIR/modules.dep")
	for m in $need; do
		mkdir -p "$IR/lib/modules/$KVER/$(dirname "$m")"
		cp "$MODDIR/$m" "$IR/lib/modules/$KVER/$m"
	done
	"$BB" depmod -b "$IR" "$KVER"
	(cd "$IR" && find . | "$BB" cpio -o -H newc 2>/dev/null | gzip -1 >"$INITRD.tmp")
	mv "$INITRD.tmp" "$INITRD"
	echo "$STAMP" >"$INITRD.stamp"
	rm -rf "$IR"
fi

printf 'qemu=%q\nlibdir=%q\ndatadirs=%q\nvmlinux=%q\ninitrd=%q\nkroot=%q\n' "$QEMU" "$LIBDIR" \
	"$Q/usr/share/qemu:$Q/usr/share/seabios" "$VMLINUX" "$INITRD" "$KROOT"
