#!/usr/bin/env bash
# cache: the shared cache (issue 15, points 3 and 4) from one worker, side
# by side in one run:
#   herd, local copy   a hit served by the worker's copy, no message;
#   herd, via primary  the same cache with the local copy off: a get is a
#                      request to the primary and its reply, each caller
#                      on a key of its own (so that no get shares a
#                      request, like for like with redis and node); the
#                      "one key, shared" row has every caller on one key,
#                      where concurrent gets share requests not yet sent;
#   redis              a redis-server on a Unix socket in this run's work
#                      directory, from the same worker, with the `redis`
#                      crate (multiplexed connection);
#   node               cluster2's design: a Map held by the primary behind
#                      process.send (bench/node/cache.js).
# Then the herd cache on Redis (issue 16: `CacheService::with_redis`, the
# same redis-server), from one worker: a hit with the local copy, a hit
# through the primary (local_copy false: worker -> primary -> Redis) and a
# miss, beside the redis column's plain GETs. And the RESP socket (`herd
# run`'s HERD_SERVICES_SOCKET) against a plain redis-server on a Unix
# socket, from ioredis and redis-py: bench/scenarios/lib/resp.sh, the resp
# scenario's measurement (knobs RESP_N, 20000, and RESP_ROUNDS, 3).
# gets/s: CACHE_CONC callers at once (32) on the worker's one thread, the
# same for each. Latency: sequential gets. The staleness window: worker 2
# sets a key, worker 1 spins on its local copy until it shows the new value
# (CACHE_STALE rounds, CLOCK_MONOTONIC across the two processes).
# Each measurement runs CACHE_REPEAT times (median shown).
#
# Run through bench/run.sh (which builds the binaries):  bench/run.sh cache
# Knobs: CACHE_N (gets per measurement, 200000), CACHE_CONC (32),
#        CACHE_STALE (rounds, 2000), CACHE_REPEAT (3).
# Goals (issue 15): local-copy hit >= 20x a Redis GET; a hit through the
# primary >= 2x a Redis GET and >= 5x the Node design. Issue 16: the RESP
# socket at least as fast as redis-server for GET and SET.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scenarios/lib/resp.sh"
bin=${HERD_BENCH_BIN:?run this through bench/run.sh}/cache
n=${CACHE_N:-200000}
conc=${CACHE_CONC:-32}
stale=${CACHE_STALE:-2000}
repeat=${CACHE_REPEAT:-3}

command -v redis-server >/dev/null || {
  echo "cache: installing redis-server (Debian's package)" >&2
  apt-get install -y -q redis-server >/dev/null
}

out=$(mktemp -d)
redis_pid=
cleanup() {
  [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
  resp_stop
  rm -rf "$out"
}
trap cleanup EXIT
sock="$out/redis.sock"
redis-server --port 0 --unixsocket "$sock" --unixsocketperm 700 --save '' --appendonly no \
  --dir "$out" --daemonize no >"$out/redis.log" 2>&1 &
redis_pid=$!
for _ in $(seq 200); do [ -S "$sock" ] && break; sleep 0.05; done
[ -S "$sock" ] || { echo "cache: redis-server did not start:" >&2; cat "$out/redis.log" >&2; exit 1; }

echo "cache: n=$n gets, $conc callers at once, $stale staleness rounds, median of $repeat runs"
echo "cache: $(nproc) cpus, load average $(cut -d' ' -f1-3 /proc/loadavg), $(redis-server --version | cut -d' ' -f1-3), node $(node --version)"
for i in $(seq "$repeat"); do
  "$bin" --redis "$sock" --n "$n" --conc "$conc" --stale "$stale" >"$out/herd.$i"
  node "$here/node/cache.js" --n "$n" --conc "$conc" >"$out/node.$i"
  "$bin" --redis "$sock" --n "$n" --conc "$conc" --backend redis >"$out/herd-redis.$i"
done
# Its own servers, after the rest (so they do not share the cpus with it).
resp_run "$out" "${RESP_N:-20000}" "${RESP_ROUNDS:-3}"

median() {
  cat "$out"/*.[0-9]* | awk -v k="$1" '$1 == k { print $2 }' | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) { print "nan"; exit 1 } print v[int((NR + 1) / 2)] }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
int() { awk -v a="$1" 'BEGIN { printf "%.0f", a }'; }
cell() { median "$1" 2>/dev/null || echo "-"; }

echo
printf '| %-26s | %12s | %12s | %12s | %12s |\n' metric "herd local" "herd primary" redis node
printf '|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..28})" "$(printf -- '-%.0s' {1..14})" \
  "$(printf -- '-%.0s' {1..14})" "$(printf -- '-%.0s' {1..14})" "$(printf -- '-%.0s' {1..14})"
printf '| %-26s | %12s | %12s | %12s | %12s |\n' "gets/s, hit (higher)" \
  "$(int "$(cell herd-local.tput)")" "$(int "$(cell herd-primary.tput)")" \
  "$(int "$(cell redis.tput)")" "$(int "$(cell node.tput)")"
printf '| %-26s | %12s | %12s | %12s | %12s |\n' "gets/s, one key, shared" "-" \
  "$(int "$(cell herd-primary-shared.tput)")" "-" "-"
printf '| %-26s | %12s | %12s | %12s | %12s |\n' "hit latency mean, us" "-" \
  "$(cell herd-primary.hit.mean)" "$(cell redis.hit.mean)" "$(cell node.hit.mean)"
printf '| %-26s | %12s | %12s | %12s | %12s |\n' "hit latency p50, us" "$(cell herd-local.hit.p50)" \
  "$(cell herd-primary.hit.p50)" "$(cell redis.hit.p50)" "$(cell node.hit.p50)"
printf '| %-26s | %12s | %12s | %12s | %12s |\n' "hit latency p99, us" "-" \
  "$(cell herd-primary.hit.p99)" "$(cell redis.hit.p99)" "$(cell node.hit.p99)"
printf '| %-26s | %12s | %12s | %12s | %12s |\n' "miss latency p50, us" "-" \
  "$(cell herd-primary.miss.p50)" "$(cell redis.miss.p50)" "$(cell node.miss.p50)"
echo
echo "the herd cache on Redis (CacheService::with_redis, the same redis-server), from one worker:"
printf '| %-26s | %12s | %12s | %12s |\n' metric "herd local" "herd primary" redis
printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..28})" "$(printf -- '-%.0s' {1..14})" \
  "$(printf -- '-%.0s' {1..14})" "$(printf -- '-%.0s' {1..14})"
printf '| %-26s | %12s | %12s | %12s |\n' "gets/s, hit (higher)" \
  "$(int "$(cell herd-redis-local.tput)")" "$(int "$(cell herd-redis-primary.tput)")" \
  "$(int "$(cell redis.tput)")"
printf '| %-26s | %12s | %12s | %12s |\n' "hit latency mean, us" "-" \
  "$(cell herd-redis-primary.hit.mean)" "$(cell redis.hit.mean)"
printf '| %-26s | %12s | %12s | %12s |\n' "hit latency p50, us" "$(cell herd-redis-local.hit.p50)" \
  "$(cell herd-redis-primary.hit.p50)" "$(cell redis.hit.p50)"
printf '| %-26s | %12s | %12s | %12s |\n' "hit latency p99, us" "-" \
  "$(cell herd-redis-primary.hit.p99)" "$(cell redis.hit.p99)"
printf '| %-26s | %12s | %12s | %12s |\n' "gets/s, miss (higher)" "-" \
  "$(int "$(cell herd-redis-primary.miss.tput)")" "$(int "$(cell redis.miss.tput)")"
printf '| %-26s | %12s | %12s | %12s |\n' "miss latency p50, us" "-" \
  "$(cell herd-redis-primary.miss.p50)" "$(cell redis.miss.p50)"
echo
resp_table
echo
echo "staleness of the local copy after another worker's set returns, us: p50 $(cell stale.p50) p99 $(cell stale.p99) max $(cell stale.max)"

local_t=$(median herd-local.tput); primary_t=$(median herd-primary.tput)
redis_t=$(median redis.tput); node_t=$(median node.tput)
local_r=$(ratio "$local_t" "$redis_t"); primary_r=$(ratio "$primary_t" "$redis_t")
node_r=$(ratio "$primary_t" "$node_t")
verdict() { awk -v r="$1" -v g="$2" 'BEGIN { print (r >= g) ? "met" : "MISSED" }'; }
echo "goal: local-copy hit >= 20x a redis GET: $(verdict "$local_r" 20) (${local_r}x)"
echo "goal: hit through the primary >= 2x a redis GET: $(verdict "$primary_r" 2) (${primary_r}x)"
echo "goal: hit through the primary >= 5x the node design: $(verdict "$node_r" 5) (${node_r}x)"
shared_t=$(median herd-primary-shared.tput)
echo "one key, concurrent gets sharing requests: $(ratio "$shared_t" "$redis_t")x a redis GET, $(ratio "$shared_t" "$node_t")x the node design"
for client in node1 py; do
  for op in get set; do
    h=$(resp_median "$op" "${RESP_RESULTS[herd.$client]}")
    r=$(resp_median "$op" "${RESP_RESULTS[redis.$client]}")
    label="ioredis"; [ "$client" = py ] && label="redis-py"
    echo "goal: RESP socket $op/s >= redis-server's from $label: $(verdict "$(ratio "$h" "$r")" 1) ($(ratio "$h" "$r")x)"
  done
done
echo "cache-local: herd $(int "$local_t") redis $(int "$redis_t") ratio $local_r"
if [ -f "$here/scenarios/emitter.sh" ]; then
  bash "$here/scenarios/emitter.sh" | tail -n 1
else
  echo "emitter: TODO (bench/scenarios/emitter.sh, the emitter branch's, is not merged yet)"
fi
echo "cache: herd $(int "$primary_t") redis $(int "$redis_t") ratio $primary_r"
