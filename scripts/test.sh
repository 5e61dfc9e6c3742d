#!/usr/bin/env bash
# The whole test suite: lints, unit and integration tests, doctests.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
# The library without its default features (the herd command builds it so).
cargo clippy -p herd --no-default-features --locked -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
cargo test --doc --workspace --locked
