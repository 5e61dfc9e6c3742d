#!/usr/bin/env bash
# The whole test suite: lints, unit and integration tests, doctests.
set -euo pipefail
cd "$(dirname "$0")/.."
# What the tests need, installed when missing (Debian's packages; as root,
# or through sudo), so that this one command passes on a fresh machine.
need=()
command -v curl >/dev/null || need+=(curl)
command -v node >/dev/null || need+=(nodejs)
command -v python3 >/dev/null || need+=(python3)
command -v promtool >/dev/null || need+=(prometheus)
# HAProxy and wrk: the load-balancer tests (crates/herd-cli/tests/haproxy.rs).
# Debian puts haproxy in /usr/sbin, which a user's PATH may lack.
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v wrk >/dev/null || need+=(wrk)
# systemd-analyze checks the README's systemd unit.
command -v systemd-analyze >/dev/null || need+=(systemd)
# The dashboard's browser test drives Debian's Chromium (playwright-core,
# from scripts/deps); the services' tests and benchmarks start redis-server.
command -v chromium >/dev/null || need+=(chromium)
command -v redis-server >/dev/null || need+=(redis-server)
# herd ctl dump reads a worker's threads with gdb; herd ctl profile of a
# foreign worker records it with perf (the test is skipped where perf
# record is refused).
command -v gdb >/dev/null || need+=(gdb)
command -v perf >/dev/null || need+=(linux-perf)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "test.sh: installing ${need[*]}" >&2
  $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Third-party servers and clients, pinned, into .deps/ (not system-wide).
./scripts/deps.sh
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
