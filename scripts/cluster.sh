#!/usr/bin/env bash
# A whole local ciao cluster in network namespaces (tests/src/bin/ciao-cluster.rs): a scheduler on
# a shared underlay bridge, a network node with one CNCI agent per tenant, two compute nodes with
# their delivery daemons, and two tenants A and B with identical subnets and addresses. Prints the
# topology and a reachability matrix, then waits for Ctrl-C and tears everything down.
#   --exit   tear down right after printing (exit status: 0 if every cell is as expected)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "scripts/cluster.sh: run as root (it creates network namespaces): sudo $0 $*" >&2; exit 1; }

scripts/install-deps.sh
echo "== building (release)"
cargo build --release --quiet -p ciao-cni -p ciao-node -p ciao-scheduler -p ciao-cnci-agent -p ciao-tests --bins
exec target/release/ciao-cluster "$@"
