#!/usr/bin/env bash
# Checks that the Rust toolchain this workspace needs is on PATH: cargo and a rustc at least as
# new as the workspace's rust-version (Cargo.toml). Debian 12's own rustc (1.63) is too old for
# the lock file. Fails with what is missing and how to get it.
#   scripts/check-rust.sh [--lints] [--for CMD]
#     --lints    also need clippy and rustfmt (scripts/test.sh)
#     --for CMD  the command to rerun under sudo, in the message (default: this script)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
lints=0
caller=$0
while [ $# -gt 0 ]; do
  case "$1" in
    --lints) lints=1 ;;
    --for) caller=${2:?--for needs a command}; shift ;;
    *) echo "check-rust: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
want=$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' "$ROOT/Cargo.toml" | head -n1)
[ -n "$want" ] || { echo "check-rust: no rust-version in $ROOT/Cargo.toml" >&2; exit 1; }

how_to_get() {
  cat >&2 <<MSG
  Get it with rustup (https://rustup.rs), as the user who runs the scripts:
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt
    . "\$HOME/.cargo/env"
  or, with rustup already there: rustup update stable
  Under sudo, keep the PATH that has cargo: sudo env "PATH=\$PATH" $caller
MSG
}

for tool in cargo rustc; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "Rust $want or newer is needed: $tool not found on PATH ($PATH)." >&2
    how_to_get
    exit 1
  fi
done

have=$(rustc --version 2>/dev/null | awk '{print $2}')
older() { # is $1 older than $2 (major.minor.patch)?
  local IFS=.
  local -a a=($1) b=($2)
  local i
  for i in 0 1 2; do
    local x=${a[$i]:-0} y=${b[$i]:-0}
    x=${x%%[!0-9]*} y=${y%%[!0-9]*}
    ((10#${x:-0} < 10#${y:-0})) && return 0
    ((10#${x:-0} > 10#${y:-0})) && return 1
  done
  return 1
}
if [ -z "$have" ] || older "$have" "$want"; then
  echo "Rust $want or newer is needed: $(command -v rustc) is ${have:-of unknown version}." >&2
  how_to_get
  exit 1
fi

if [ "$lints" = 1 ]; then
  for sub in clippy fmt; do
    if ! cargo "$sub" --version >/dev/null 2>&1; then
      echo "cargo $sub not found (the tests check formatting and lints): rustup component add clippy rustfmt" >&2
      exit 1
    fi
  done
fi
