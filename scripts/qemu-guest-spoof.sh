# The test guest's spoofing mode, copied into the initramfs by scripts/qemu-guest.sh as
# /spoof.sh and sourced by its /init (after the lease and the pings) for
#   ciao.spoof=NIP,NMAC,TIP    NIP/NMAC: a neighbour's address and MAC; TIP: a target's address
# Each step is the guest's own kernel or busybox sending what anti-spoofing must stop
# (tests/tests/qemu_spoof.rs checks that none of it arrives):
#   dhcp  udhcpd on eth0 answers a DHCP discover (the test sends one after `spoof dhcpd up`) with
#         a server reply; `spoof offered` once it went out
#   ip    ping TIP from NIP, a secondary /32 (the kernel's ARP request for TIP claims NIP too)
#   arp   gratuitous ARP request (arping -U) and reply (arping -A) claiming NIP
#   na    NIP's MAC-derived link-local address added without DAD: the kernel sends an unsolicited
#         neighbour advertisement for it (ndisc_notify)
#   mac   eth0 takes NMAC (the kernel announces it: ARP and NA), pings TIP, takes its own back
# then the marker, valid traffic sent last: a ping with payload byte 0xc5 to TIP, then to NIP
# (`spoof marker ok|failed IP`), and `spoof done`. Busybox cannot craft an IPv6 router
# advertisement: the guest sends none (the container and tap tests in antispoof.rs do).
# Needs `say` and $SPOOF from /init.

IFS=, read -r NIP NMAC TIP <<EOF
$SPOOF
EOF
OWNMAC=$(cat /sys/class/net/eth0/address)
IFS=: read -r m1 m2 m3 m4 m5 m6 <<EOF
$NMAC
EOF
# NMAC's EUI-64 link-local address.
NLL=$(printf 'fe80::%x:%x:%x:%x' $(((0x$m1 ^ 2) << 8 | 0x$m2)) $((0x$m3 << 8 | 0xff)) \
  $((0xfe << 8 | 0x$m4)) $((0x$m5 << 8 | 0x$m6)))
sysctl -qw net.ipv4.conf.eth0.arp_notify=1
sysctl -qw net.ipv6.conf.eth0.ndisc_notify=1
sysctl -qw net.ipv6.conf.eth0.accept_dad=0

# dhcp: udhcpd records an offer just before sending it and writes its records on USR1 (once it
# listens on port 67 it has its USR1 handler: before, USR1 would kill it).
POOL=${NIP%.*}
printf 'interface eth0\nstart %s.200\nend %s.210\nlease_file /tmp/udhcpd.leases\nopt subnet 255.255.255.0\n' \
  "$POOL" "$POOL" >/tmp/udhcpd.conf
udhcpd -f -a 100 /tmp/udhcpd.conf >/tmp/udhcpd.log 2>&1 &
DHCPD=$!
n=0
while ! grep -q ':0043 ' /proc/net/udp && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
say "spoof dhcpd up"
n=0
while [ $n -lt 600 ]; do
  kill -USR1 $DHCPD 2>/dev/null
  sleep 0.1
  dumpleases -f /tmp/udhcpd.leases 2>/dev/null | grep -q " $POOL\.2" && break
  n=$((n + 1))
done
if [ $n -lt 600 ]; then
  say "spoof offered"
else
  say "spoof no discover"
  sed 's/^/CIAO-GUEST udhcpd: /' /tmp/udhcpd.log >/dev/ttyS0
fi
kill $DHCPD

# ip, arp
ip addr add "$NIP/32" dev eth0
ping -c 1 -W 1 -p a1 -I "$NIP" "$TIP" >/dev/null 2>&1
arping -U -c 1 -w 1 -I eth0 -s "$NIP" "$NIP" >/dev/null 2>&1
arping -A -c 1 -w 1 -I eth0 -s "$NIP" "$NIP" >/dev/null 2>&1
ip addr del "$NIP/32" dev eth0
say "spoof ip arp sent"

# na
ip -6 addr add "$NLL/64" dev eth0 && say "spoof na $NLL"

# mac
ip link set eth0 address "$NMAC" || say "spoof mac change refused"
ping -c 1 -W 1 -p b2 "$TIP" >/dev/null 2>&1
ip link set eth0 address "$OWNMAC"
say "spoof mac sent, back to $(cat /sys/class/net/eth0/address)"

for t in "$TIP" "$NIP"; do
  if ping -c 1 -W 3 -p c5 "$t" >/dev/null 2>&1; then
    say "spoof marker ok $t"
  else
    say "spoof marker failed $t"
  fi
done
say "spoof done"
