#!/usr/bin/env bash
# resp: herd's services socket (the cluster's cache over RESP, issue 16)
# against a plain redis-server on a Unix socket, from the same clients in
# one run: Node with ioredis (one command in flight, and 16 pipelined) and
# Python with redis-py (one in flight). GET and SET of 64-byte values over
# 1000 keys. Rounds alternate herd and redis; the table shows medians.
#
#   bench/run.sh resp
#   env: N (commands per measurement, 20000), ROUNDS (3)
# Goal: the RESP socket at least as fast as Redis for GET and SET.
# The last line is `resp: herd <GETs/s> redis <GETs/s> ratio <herd/redis>`
# for ioredis, one command in flight.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
root=$(cd "$here/.." && pwd)
N=${N:-20000}
ROUNDS=${ROUNDS:-3}
"$root/scripts/deps.sh"
command -v redis-server >/dev/null || { echo "bench: redis-server is required (apt-get install redis-server)" >&2; exit 1; }
cargo build --release -q -p herd-cli
HERD="$root/target/release/herd"
work=$(mktemp -d "${TMPDIR:-/tmp}/herd-bench-resp.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

redis-server --port 0 --unixsocket "$work/redis.sock" --unixsocketperm 700 \
  --save '' --appendonly no >"$work/redis.log" 2>&1 &
pids+=($!)
mkdir -m 700 "$work/rt"
HERD_RUNTIME_DIR="$work/rt" "$HERD" run -w 1 --ready delay:0s -- sleep 1000000 >"$work/herd.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do
  [ -S "$work/redis.sock" ] && [ -S "$work/rt/herd.services" ] && break
  sleep 0.05
done
[ -S "$work/rt/herd.services" ] || { cat "$work/herd.log" >&2; echo "bench: herd's services socket never appeared" >&2; exit 1; }

export NODE_PATH="$root/.deps/node/node_modules" PYTHONPATH="$root/.deps/python"
declare -A results
for round in $(seq "$ROUNDS"); do
  for target in herd redis; do
    sock="$work/redis.sock"
    [ "$target" = herd ] && sock="$work/rt/herd.services"
    results[$target.node1]+="$(node "$here/node/resp_client.js" "$sock" "$N" 1)"$'\n'
    results[$target.node16]+="$(node "$here/node/resp_client.js" "$sock" "$N" 16)"$'\n'
    results[$target.py]+="$(python3 "$here/python/resp_client.py" "$sock" "$N")"$'\n'
  done
done

# median FIELD LINES: the median of the value after FIELD.
median() {
  awk -v f="$1" '{for (i = 1; i < NF; i++) if ($i == f) print $(i + 1)}' <<<"$2" | sort -n |
    awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'
}
echo "resp: $N commands per measurement, median of $ROUNDS rounds; $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-22s %12s %12s %7s\n' client herd redis ratio
last=
for client in node1 node16 py; do
  for op in get set; do
    h=$(median "$op" "${results[herd.$client]}")
    r=$(median "$op" "${results[redis.$client]}")
    ratio=$(awk -v a="$h" -v b="$r" 'BEGIN {printf "%.2f", a / b}')
    label="ioredis x1"; [ "$client" = node16 ] && label="ioredis x16"; [ "$client" = py ] && label="redis-py x1"
    printf '%-22s %12s %12s %7s\n' "$label $op/s" "$h" "$r" "$ratio"
    [ "$client$op" = node1get ] && last="resp: herd $h redis $r ratio $ratio"
  done
done
echo "$last"
