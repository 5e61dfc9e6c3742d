# The RESP measurement shared by the resp and cache scenarios: herd's
# services socket (`herd run`'s HERD_SERVICES_SOCKET, the cluster's cache
# over RESP) against a plain redis-server on a Unix socket, from the same
# clients: Node with ioredis (one command in flight, and 16 pipelined) and
# Python with redis-py (one in flight). GET and SET of 64-byte values over
# 1000 keys; rounds alternate herd and redis. Sourced, not run.
#
#   resp_run WORKDIR N ROUNDS   starts both servers in WORKDIR (the caller
#                               removes it), measures, stops them
#   resp_table                  prints the table (ops/s, and the one-in-
#                               flight clients' latency p50/p99 in us);
#                               sets RESP_LAST, the resp scenario's last line
# Needs redis-server (installed with apt when missing), and the pinned
# ioredis and redis-py of scripts/deps.sh (run here: it installs them into
# .deps when missing).

resp_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
RESP_PIDS=()
declare -A RESP_RESULTS

resp_stop() {
  local p
  for p in "${RESP_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${RESP_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  RESP_PIDS=()
}

resp_run() {
  local work=$1 n=$2 rounds=$3 round target sock
  "$resp_root/scripts/deps.sh"
  command -v redis-server >/dev/null || {
    echo "resp: installing redis-server (Debian's package)" >&2
    apt-get install -y -q redis-server >/dev/null
  }
  cargo build --release -q -p herd-cli
  redis-server --port 0 --unixsocket "$work/resp-redis.sock" --unixsocketperm 700 \
    --save '' --appendonly no --dir "$work" >"$work/resp-redis.log" 2>&1 &
  RESP_PIDS+=($!)
  mkdir -m 700 "$work/rt"
  HERD_RUNTIME_DIR="$work/rt" "$resp_root/target/release/herd" run -w 1 --ready delay:0s \
    -- sleep 1000000 >"$work/herd.log" 2>&1 &
  RESP_PIDS+=($!)
  for _ in $(seq 200); do
    [ -S "$work/resp-redis.sock" ] && [ -S "$work/rt/herd.services" ] && break
    sleep 0.05
  done
  [ -S "$work/resp-redis.sock" ] || { cat "$work/resp-redis.log" >&2; echo "resp: redis-server did not start" >&2; return 1; }
  [ -S "$work/rt/herd.services" ] || { cat "$work/herd.log" >&2; echo "resp: herd's services socket never appeared" >&2; return 1; }
  RESP_INFO="$n commands per measurement, median of $rounds rounds; $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg)"
  for round in $(seq "$rounds"); do
    for target in herd redis; do
      sock="$work/resp-redis.sock"
      [ "$target" = herd ] && sock="$work/rt/herd.services"
      RESP_RESULTS[$target.node1]+="$(NODE_PATH="$resp_root/.deps/node/node_modules" node "$resp_root/bench/node/resp_client.js" "$sock" "$n" 1)"$'\n'
      RESP_RESULTS[$target.node16]+="$(NODE_PATH="$resp_root/.deps/node/node_modules" node "$resp_root/bench/node/resp_client.js" "$sock" "$n" 16)"$'\n'
      RESP_RESULTS[$target.py]+="$(PYTHONPATH="$resp_root/.deps/python" python3 "$resp_root/bench/python/resp_client.py" "$sock" "$n")"$'\n'
    done
  done
  resp_stop
}

# resp_median FIELD LINES: the median of the value after FIELD.
resp_median() {
  awk -v f="$1" '{for (i = 1; i < NF; i++) if ($i == f) print $(i + 1)}' <<<"$2" | sort -g |
    awk '{a[NR] = $1} END {if (NR == 0) print "-"; else print a[int((NR + 1) / 2)]}'
}

resp_table() {
  local client op h r ratio label field
  echo "resp: $RESP_INFO"
  printf '%-30s %12s %12s %7s\n' "RESP client" "herd socket" redis-server ratio
  RESP_LAST=
  for client in node1 node16 py; do
    label="ioredis x1"; [ "$client" = node16 ] && label="ioredis x16"; [ "$client" = py ] && label="redis-py x1"
    for op in get set get.p50 set.p50 get.p99 set.p99; do
      # Latency is one command's only with one in flight.
      [ "$client" = node16 ] && [ "${op#*.}" != "$op" ] && continue
      h=$(resp_median "$op" "${RESP_RESULTS[herd.$client]}")
      r=$(resp_median "$op" "${RESP_RESULTS[redis.$client]}")
      case $op in
        *.p*) field="${op%.*} latency ${op#*.}, us"
              ratio=$(awk -v a="$h" -v b="$r" 'BEGIN {printf "%.2f", b / a}') ;;
        *) field="$op/s"
           ratio=$(awk -v a="$h" -v b="$r" 'BEGIN {printf "%.2f", a / b}') ;;
      esac
      printf '%-30s %12s %12s %7s\n' "$label $field" "$h" "$r" "$ratio"
      [ "$client$op" = node1get ] && RESP_LAST="resp: herd $h redis $r ratio $ratio"
    done
  done
  echo "(ratio: herd's speed over redis-server's, so above 1 is herd faster; for latency, redis's over herd's)"
}
