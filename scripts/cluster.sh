#!/usr/bin/env bash
# A whole local ciao cluster in network namespaces (cluster/src/main.rs): a scheduler and the
# controller on a shared underlay bridge, a network node agent that runs each tenant's CNCI, two compute nodes with
# their delivery daemons, and two tenants A and B with identical subnets and addresses. Prints the
# topology and a reachability matrix, then waits for Ctrl-C and tears everything down.
#   --exit   tear down right after printing (exit status: 0 if every cell is as expected)
# Needs Rust (scripts/check-rust.sh says which and how to get it). The first run builds the
# release binaries: about 15 minutes on a 2-core machine; later runs start in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/check-rust.sh --for "$0 $*"
[ "$(id -u)" -eq 0 ] || { echo "scripts/cluster.sh: run as root (it creates network namespaces): sudo env \"PATH=\$PATH\" $0 $*" >&2; exit 1; }

scripts/install-deps.sh
echo "== building (release)"
cargo build --release --quiet -p ciao-cni -p ciao-node -p ciao-scheduler -p ciao-cnci-agent -p ciao-controller -p ciao-cluster
# The demo takes its sibling binaries from its own directory and never builds anything.
exec target/release/ciao-cluster "$@"
