#!/usr/bin/env bash
# Fetches QEMU and builds the small Linux test guest of the QEMU tests and benchmark, from Debian
# packages, without installing anything (../shared/reference/qemu-hooks.md §1: installing
# bookworm's qemu-system-x86 would remove the image's qemu-utils, so the packages are only
# downloaded with `apt-get download` and unpacked with `dpkg -x`).
#
#   scripts/qemu-guest.sh [--print]
#
# Everything is cached under target/qemu-guest/ (CIAO_QEMU_GUEST_DIR overrides); a second run
# only prints the result. On success it prints, one per line, shell-style `key=value`:
#   qemu=      the qemu-system-x86_64 binary       libdir=  its LD_LIBRARY_PATH (colon-separated)
#   datadirs=  colon-separated -L directories        kernel=  vmlinuz    initrd=  initrd.gz
# Exit status: 0 ready; 2 the packages cannot be fetched here (no network or no apt source), with a
# one-line reason on stderr (the tests skip on it); 1 anything else.
#
# The guest (initrd.gz) is busybox-static + the virtio-net modules + /init, which reads from the
# kernel command line:
#   ciao.ip=A/P ciao.gw=G   static address (default: DHCP with udhcpc on eth0)
#   ciao.ping=IP[,IP...]    ping each target (one echo per second) until it answers or
#   ciao.tries=N            N tries (default 30) have failed
#   ciao.spoof=NIP,NMAC,TIP then attack a neighbour and mark the end with valid traffic
#                           (scripts/qemu-guest-spoof.sh, sourced as /spoof.sh)
# and prints `CIAO-GUEST ...` lines on ttyS0 (see guest_init below), then powers off.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${CIAO_QEMU_GUEST_DIR:-$ROOT/target/qemu-guest}"
# The cache key: a change to this script or the guest's spoofing mode rebuilds the cache.
SPOOF_SH="$ROOT/scripts/qemu-guest-spoof.sh"
FORMAT="5-$(cat "$0" "$SPOOF_SH" | sha256sum | cut -c1-16)"

QEMU_PKGS=(qemu-system-x86 qemu-system-common qemu-system-data seabios ipxe-qemu)
# Of qemu-system-x86's dependency closure, packages never unpacked: installer and init-system
# alternatives (libelogind0 would shadow the host's libsystemd).
SKIP_PKGS=" cdebconf libdebian-installer4 libnewt0.52 libtextwrap1 install-info libelogind0 "
# Modules the guest needs if the kernel has them as modules (built-in ones are skipped).
GUEST_MODULES=(virtio_pci virtio_net af_packet)

die() { echo "qemu-guest: $*" >&2; exit 1; }
unavailable() { echo "qemu-guest: $*" >&2; exit 2; }

print_result() { cat "$OUT/guest.env"; }

mkdir -p "$OUT"
# Concurrent test processes build once: the second waits for the first.
exec 9>"$OUT/.lock"
flock 9

if [ -f "$OUT/guest.env" ] && grep -qx "format=$FORMAT" "$OUT/guest.env"; then
  ok=1
  while IFS='=' read -r k v; do
    case "$k" in qemu|kernel|initrd) [ -e "$v" ] || ok=0 ;; esac
  done <"$OUT/guest.env"
  if [ "$ok" = 1 ]; then print_result; exit 0; fi
fi
rm -f "$OUT/guest.env"

command -v apt-get >/dev/null || unavailable "apt-get not found (not a Debian system)"
command -v dpkg >/dev/null || unavailable "dpkg not found"

DEBS="$OUT/debs"
mkdir -p "$DEBS"
cd "$DEBS"

# Downloads the named packages that are not in $DEBS yet; one `apt-get update` retry.
fetch() {
  local want=() p
  for p in "$@"; do
    compgen -G "${p}_*.deb" >/dev/null || want+=("$p")
  done
  [ ${#want[@]} -eq 0 ] && return 0
  if ! apt-get download -q "${want[@]}" >"$OUT/apt.log" 2>&1; then
    apt-get update -qq >>"$OUT/apt.log" 2>&1 || true
    apt-get download -q "${want[@]}" >>"$OUT/apt.log" 2>&1 ||
      unavailable "apt-get download ${want[*]} failed (no network?): $(grep -m1 -E '^(E|W):' "$OUT/apt.log" || tail -n1 "$OUT/apt.log")"
  fi
}

# The kernel: linux-image-amd64 is a metapackage; its dependency is the real one.
KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$KPKG" ] || unavailable "apt-cache knows no linux-image-amd64 (run apt-get update)"

fetch "${QEMU_PKGS[@]}"
# Libraries: the dependency closure, only what the host lacks, to keep the download small.
need=()
for p in $(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
  --no-replaces --no-enhances qemu-system-x86 2>/dev/null | grep -v '^[ <]' | sort -u); do
  case " ${QEMU_PKGS[*]} " in *" $p "*) continue ;; esac
  case "$SKIP_PKGS" in *" $p "*) continue ;; esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
[ ${#need[@]} -gt 0 ] && fetch "${need[@]}"
fetch "$KPKG" busybox-static

# --- QEMU, unpacked ---------------------------------------------------------------------------
QROOT="$OUT/qemu-root"
rm -rf "$QROOT"
mkdir -p "$QROOT"
for p in "${QEMU_PKGS[@]}" "${need[@]}"; do
  dpkg -x "$(compgen -G "${p}_*.deb" | head -n1)" "$QROOT"
done
QEMU="$QROOT/usr/bin/qemu-system-x86_64"
[ -x "$QEMU" ] || die "$QEMU missing after unpacking qemu-system-x86"
LIBDIR="$QROOT/usr/lib/x86_64-linux-gnu:$QROOT/lib/x86_64-linux-gnu"
missing=$(LD_LIBRARY_PATH="$LIBDIR" ldd "$QEMU" | awk '/not found/ {print $1}' | tr '\n' ' ')
[ -z "$missing" ] || die "qemu-system-x86_64 still lacks libraries: $missing"
LD_LIBRARY_PATH="$LIBDIR" "$QEMU" --version >/dev/null || die "the unpacked qemu-system-x86_64 does not run"
DATADIRS="$QROOT/usr/share/qemu:$QROOT/usr/share/seabios:$QROOT/usr/lib/ipxe/qemu"

# --- busybox (the guest's userland; its depmod also serves the host, which may lack kmod) ---
BBROOT="$OUT/busybox-root"
rm -rf "$BBROOT"
mkdir -p "$BBROOT"
dpkg -x "$(compgen -G "busybox-static_*.deb" | head -n1)" "$BBROOT"
[ -x "$BBROOT/bin/busybox" ] || die "busybox missing in busybox-static"

# --- kernel and modules -----------------------------------------------------------------------
KROOT="$OUT/kernel-root"
rm -rf "$KROOT"
mkdir -p "$KROOT"
dpkg -x "$(compgen -G "${KPKG}_*.deb" | head -n1)" "$KROOT"
KVER=${KPKG#linux-image-}
KERNEL="$KROOT/boot/vmlinuz-$KVER"
MODDIR="$KROOT/lib/modules/$KVER"
[ -f "$KERNEL" ] || die "$KERNEL missing in $KPKG"
# The package has no modules.dep (depmod makes it at install time): make it here.
"$BBROOT/bin/busybox" depmod -b "$KROOT" "$KVER" || die "depmod for $KVER failed"
[ -f "$MODDIR/modules.dep" ] || die "depmod made no $MODDIR/modules.dep"

# Dependency order from modules.dep: a module's dependencies load before it.
declare -A seen=()
order=()
add_module() { # path relative to $MODDIR
  local path=$1 deps d
  [ -n "${seen[$path]:-}" ] && return 0
  seen[$path]=1
  deps=$(awk -v p="$path:" '$1 == p { for (i = 2; i <= NF; i++) print $i }' "$MODDIR/modules.dep")
  # modules.dep lists the deepest dependency last: load from the end.
  for d in $(echo "$deps" | tac); do add_module "$d"; done
  order+=("$path")
}
for m in "${GUEST_MODULES[@]}"; do
  pat="/${m}\\.ko(\\.xz|\\.zst|\\.gz)?$"
  if grep -Eq "$pat" "$MODDIR/modules.builtin" 2>/dev/null; then continue; fi
  path=$(awk -F: '{print $1}' "$MODDIR/modules.dep" | grep -E "$pat" | head -n1 || true)
  if [ -z "$path" ]; then
    # af_packet is optional by name (CONFIG_PACKET may be =y under another builtin name).
    [ "$m" = af_packet ] && continue
    die "module $m is neither built into $KVER nor in modules.dep"
  fi
  add_module "$path"
done

# --- initramfs --------------------------------------------------------------------------------
STAGE="$OUT/initramfs"
rm -rf "$STAGE"
mkdir -p "$STAGE"/{bin,sbin,proc,sys,dev,tmp,etc,lib/modules}
cp "$BBROOT/bin/busybox" "$STAGE/bin/busybox"
: >"$STAGE/modules"
for path in "${order[@]}"; do
  base=$(basename "$path")
  case "$base" in
    *.ko.xz) xz -dc "$MODDIR/$path" >"$STAGE/lib/modules/${base%.xz}"; base=${base%.xz} ;;
    *.ko.zst) zstd -qdc "$MODDIR/$path" >"$STAGE/lib/modules/${base%.zst}"; base=${base%.zst} ;;
    *.ko.gz) gzip -dc "$MODDIR/$path" >"$STAGE/lib/modules/${base%.gz}"; base=${base%.gz} ;;
    *) cp "$MODDIR/$path" "$STAGE/lib/modules/$base" ;;
  esac
  echo "$base" >>"$STAGE/modules"
done

cat >"$STAGE/init" <<'INIT'
#!/bin/busybox sh
# The ciao test guest: network up (DHCP unless ciao.ip= is given), ping targets, power off.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
say() { echo "CIAO-GUEST $* uptime=$(cut -d' ' -f1 /proc/uptime)" >/dev/ttyS0; }
say init
for m in $(cat /modules); do insmod "/lib/modules/$m" || say "insmod $m failed"; done
IP= GW= PING= TRIES=30 SPOOF=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    ciao.ip=*) IP=${arg#ciao.ip=} ;;
    ciao.gw=*) GW=${arg#ciao.gw=} ;;
    ciao.ping=*) PING=${arg#ciao.ping=} ;;
    ciao.tries=*) TRIES=${arg#ciao.tries=} ;;
    ciao.spoof=*) SPOOF=${arg#ciao.spoof=} ;;
  esac
done
ip link set lo up
n=0
while ! ip link show eth0 >/dev/null 2>&1 && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
ip link set eth0 up || say "no eth0"
say "eth0 $(cat /sys/class/net/eth0/address 2>/dev/null)"
if [ -n "$IP" ]; then
  ip addr add "$IP" dev eth0
  [ -n "$GW" ] && ip route add default via "$GW"
  say "static ip=$IP"
else
  # -t tries, -T seconds between them, -n give up (exit 1) without a lease, -q exit with one.
  if udhcpc -i eth0 -s /udhcpc.sh -t 20 -T 1 -n -q -f >/tmp/udhcpc.log 2>&1; then
    say "dhcp ok $(cat /tmp/lease)"
  else
    say "dhcp failed"
    sed 's/^/CIAO-GUEST udhcpc: /' /tmp/udhcpc.log >/dev/ttyS0
  fi
fi
for target in $(echo "$PING" | tr ',' ' '); do
  i=0
  ok=0
  while [ $i -lt "$TRIES" ]; do
    i=$((i + 1))
    if ping -c 1 -W 1 "$target" >/tmp/ping.log 2>&1; then ok=1; break; fi
  done
  if [ $ok = 1 ]; then
    say "ping ok $target tries=$i $(grep -o 'ttl=[0-9]*' /tmp/ping.log)"
  else
    say "ping failed $target tries=$i"
  fi
done
[ -n "$SPOOF" ] && . /spoof.sh
say done
poweroff -f
INIT
chmod 755 "$STAGE/init"
cp "$SPOOF_SH" "$STAGE/spoof.sh"

cat >"$STAGE/udhcpc.sh" <<'DHCP'
#!/bin/sh
# udhcpc's hook: configure eth0 from the lease (address, router, MTU from option 26).
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    for r in $router; do ip route add default via "$r" dev "$interface"; break; done
    echo "ip=$ip/$mask router=$router mtu=$mtu server=$serverid" >/tmp/lease
    ;;
  deconfig) ip addr flush dev "$interface" ;;
esac
exit 0
DHCP
chmod 755 "$STAGE/udhcpc.sh"

INITRD="$OUT/initrd.gz"
(cd "$STAGE" && find . | sort | "$BBROOT/bin/busybox" cpio -o -H newc 2>/dev/null | gzip -9) >"$INITRD.tmp"
mv "$INITRD.tmp" "$INITRD"

cat >"$OUT/guest.env.tmp" <<ENV
format=$FORMAT
qemu=$QEMU
libdir=$LIBDIR
datadirs=$DATADIRS
kernel=$KERNEL
initrd=$INITRD
kernel_version=$KVER
modules=$(paste -sd, "$STAGE/modules")
ENV
mv "$OUT/guest.env.tmp" "$OUT/guest.env"
print_result
