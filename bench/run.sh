#!/usr/bin/env bash
# Side-by-side benchmarks of herd against Node's cluster (and PM2).
#   bench/run.sh SCENARIO [ARGS...]     e.g. bench/run.sh ipc
#   bench/run.sh list                   the scenarios
# Each scenario prints a table, then summary lines; the last line is
#   NAME: herd <value> node <value> ratio <herd/node>
# except `reload`, whose last line is
#   reload: herd <failed requests> pm2 <failed requests> replacements <n>
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
scenario=${1:-list}
shift || true
if [ "$scenario" = list ] || [ ! -f "$here/scenarios/$scenario.sh" ]; then
  [ "$scenario" = list ] || echo "unknown scenario: $scenario" >&2
  echo "scenarios:"; ls "$here/scenarios" | sed -n 's/\.sh$//p' | sed 's/^/  /'
  [ "$scenario" = list ]; exit $?
fi
command -v node >/dev/null || { echo "bench: node is required (apt-get install nodejs)" >&2; exit 1; }
cargo build --release -q -p herd-bench
export HERD_BENCH_BIN="$PWD/target/release"
exec bash "$here/scenarios/$scenario.sh" "$@"
