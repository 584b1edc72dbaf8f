#!/usr/bin/env bash
# Installs every Debian package the demo, the tests and the benchmarks need, on a fresh Debian 12.
# Idempotent: packages already present are skipped quickly.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
packages=(
  iproute2 iputils-ping nftables iptables procps util-linux
  busybox-static            # container root filesystems built without a registry
  podman crun               # the real runtime test (CNI backend; crun runs with cgroups disabled)
  containernetworking-plugins iperf3  # benchmark baselines: reference bridge + host-local plugins; iperf3 for overlay-bench
  uidmap
  jq xz-utils               # the kernel lane: test binary paths from cargo's JSON; vmlinux from vmlinuz
  docker.io                 # the Docker plugin tests start their own private dockerd (20.10)
  containerd runc           # (docker.io's dependencies) the containerd test runs a private containerd 1.6 + ctr
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then echo "install-deps: run as root (missing: ${missing[*]})" >&2; exit 1; fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Rust components used by the test command.
if command -v rustup >/dev/null 2>&1; then
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt >/dev/null 2>&1 || true
fi
