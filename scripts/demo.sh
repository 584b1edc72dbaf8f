#!/usr/bin/env bash
# A local demo of ciao networking on one simulated compute node, all inside network namespaces:
#   - namespace ciao-demo-cn is the compute node, with an underlay link (10.250.0.2/24)
#   - two containers (ciao-demo-c1, ciao-demo-c2) of tenant "blue" are attached through the CNI
#     plugin, executed exactly as a container runtime does (CNI_* env + config on stdin)
#   - the plugin creates the tenant subnet's bridge and VXLAN tunnel toward the CNCI on the first
#     ADD, and queues a TenantAdded report; the containers ping each other
# Everything is removed on exit (Ctrl-C included). Run as root. Options:
#   --keep   wait for Ctrl-C before tearing down (to look around with `ip netns exec ...`)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "scripts/demo.sh: run as root: sudo $0" >&2; exit 1; }
keep=${1:-}

scripts/install-deps.sh
echo "== building (release)"
cargo build --release --quiet -p ciao-cni -p ciao-node
plugin=$PWD/target/release/ciao
tool=$PWD/target/release/ciao-node

cn=ciao-demo-cn
state=$(mktemp -d /tmp/ciao-demo-state.XXXXXX)
conf=$(cat <<JSON
{
  "cniVersion": "1.1.0",
  "name": "blue",
  "type": "ciao",
  "tenant": "2491851d-dce9-48d6-b83a-a717417072ce",
  "subnet": "172.16.1.0/24",
  "cnci": {"uuid": "3390740c-dce9-48d6-b83a-a717417072ce", "ip": "10.250.0.3"},
  "stateDir": "$state"
}
JSON
)

cni() { # cni COMMAND CONTAINER NETNS
  echo "$conf" | ip netns exec "$cn" env CNI_COMMAND="$1" CNI_CONTAINERID="$2" \
    CNI_NETNS="$3" CNI_IFNAME=eth0 CNI_PATH=/opt/cni/bin "$plugin"
}

cleanup() {
  set +e
  echo "== tearing down"
  for c in c1 c2; do cni DEL "$c" "/run/netns/ciao-demo-$c" >/dev/null 2>&1; done
  for ns in "$cn" ciao-demo-c1 ciao-demo-c2; do ip netns delete "$ns" 2>/dev/null; done
  rm -rf "$state"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for ns in "$cn" ciao-demo-c1 ciao-demo-c2; do
  ip netns delete "$ns" 2>/dev/null || true
  ip netns add "$ns"
done
ip -n "$cn" link set lo up
ip -n "$cn" link add ul0 type veth peer name ul1
ip -n "$cn" addr add 10.250.0.2/24 dev ul0
ip -n "$cn" link set ul0 up
ip -n "$cn" link set ul1 up

echo "== network configuration (CNI stdin)"
echo "$conf"
for c in c1 c2; do
  echo "== CNI ADD $c"
  cni ADD "$c" "/run/netns/ciao-demo-$c"
done

echo "== what the plugin built on the compute node ($cn)"
ip -n "$cn" -d -br link show | grep -E '^(cb|ct|cv)' || true
ip -n "$cn" -d link show | grep -E 'vxlan id|alias ciao' | sed 's/^ */    /'
echo "== node state (ciao-node show)"
ip netns exec "$cn" "$tool" --state-dir "$state" show
for c in c1 c2; do
  echo "== container $c"
  ip -n "ciao-demo-$c" -br addr show eth0
  ip -n "ciao-demo-$c" route
done

echo "== c1 pings c2"
ip netns exec ciao-demo-c1 ping -c 3 -i 0.2 172.16.1.3
echo "== c2 pings c1"
ip netns exec ciao-demo-c2 ping -c 3 -i 0.2 172.16.1.2

if [ "$keep" = "--keep" ]; then
  echo "== running; try: ip netns exec ciao-demo-c1 ping 172.16.1.3   (Ctrl-C to tear down)"
  while true; do sleep 3600; done
fi
