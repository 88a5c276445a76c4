#!/usr/bin/env bash
# The whole test suite: installs what is missing, checks formatting and lints, builds the
# `ferry` binary the end-to-end tests run, then runs every test against real redis-servers.
set -euo pipefail
cd "$(dirname "$0")/.."
# pip may install tools per user (moto_server, cfn-lint, cargo-lambda, hadolint): find them there too.
export PATH="$HOME/.local/bin:$PATH"
scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --bins
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
# The slowest test files (libtest times each file, not each test, on stable Rust).
echo "slowest test files:"
awk '/^     Running / { file = $2 } /^test result:/ { for (i = 1; i <= NF; i++) if ($i == "in") { t = $(i + 1); sub(/s$/, "", t); printf "%8.1f s  %s\n", t, file } }' "$log" | sort -rn | awk 'NR <= 8'
# One closing line for the whole suite.
awk '/^test result:/ { p += $4; f += $6 } END { printf "suite: %d passed, %d failed\n", p, f; exit (f > 0) }' "$log"
exit "$status"
