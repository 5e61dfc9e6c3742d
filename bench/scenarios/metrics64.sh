#!/usr/bin/env bash
# metrics64: how fast the monitor answers /metrics for a big cluster.
# `hello --monitor` with 64 herd-aware workers (each heartbeats its counts
# every second); once every worker is ready and /metrics carries every
# worker's request counts (a heartbeat from each), a little traffic so the
# histograms are not empty, then GET /metrics N times, one after the other
# on one keep-alive connection (as Prometheus scrapes), timed by curl
# (`time_total`: request sent to last byte read).
#
#   bench/run.sh metrics64
#   env: WORKERS (64), SCRAPES (200)
# Last line:
#   metrics64: median <ms> p99 <ms> workers <n>
set -euo pipefail
. "$(dirname "$0")/lib/http.sh"
command -v curl >/dev/null || { echo "bench: curl is required" >&2; exit 1; }

WORKERS=${WORKERS:-64}
SCRAPES=${SCRAPES:-200}

machine_note
echo "# hello --monitor, $WORKERS workers (rr), $SCRAPES GETs of /metrics on one keep-alive connection"
herd_server metrics64 rr "$WORKERS" --monitor
mon=$(sed -n 's/^ready .* monitor=\([0-9.:]*\).*/\1/p' "$SERVER_OUT" | head -1)
[ -n "$mon" ] || { echo "bench: no monitor address in: $(cat "$SERVER_OUT")" >&2; exit 1; }
url="http://$mon/metrics"

# A heartbeat from every worker: each then has a requests sample.
for ((i = 0; ; i++)); do
  n=$(curl -s --max-time 5 "$url" | grep -c '^herd_worker_requests_total{' || true)
  [ "$n" -ge "$WORKERS" ] && break
  if [ "$i" -ge 100 ]; then
    echo "bench: only $n of $WORKERS workers in /metrics after 10 s" >&2
    exit 1
  fi
  sleep 0.1
done
# Some traffic over every worker (rr hands connections out in turn), and a
# heartbeat to carry it.
for ((i = 0; i < WORKERS * 4; i++)); do
  printf 'url = "http://127.0.0.1:%s/"\noutput = "/dev/null"\n' "$SERVER_PORT"
done >"$WORKDIR/hello.urls"
curl -s -K "$WORKDIR/hello.urls" -H 'Connection: close'
sleep 1.5

args=()
for ((i = 0; i < SCRAPES; i++)); do args+=(-o /dev/null "$url"); done
curl -s --max-time 60 -w '%{http_code} %{size_download} %{time_total}\n' "${args[@]}" >"$WORKDIR/times" &
WRK_PID=$! # killed at exit if still running
wait "$WRK_PID"
WRK_PID=
stop_server

ok=$(awk '$1 == 200' "$WORKDIR/times" | wc -l)
[ "$ok" -eq "$SCRAPES" ] || { echo "bench: $ok of $SCRAPES scrapes answered 200" >&2; exit 1; }
bytes=$(awk '{ print $2 }' "$WORKDIR/times" | sort -n | tail -1)
kib=$(awk -v b="$bytes" 'BEGIN { printf "%.0f", b / 1024 }')
# Microseconds, sorted.
sort -n <(awk '{ printf "%.0f\n", $3 * 1e6 }' "$WORKDIR/times") >"$WORKDIR/us"
pct() { awk -v q="$1" '{ v[NR] = $1 } END { i = int(q * NR + 0.999999); if (i < 1) i = 1; if (i > NR) i = NR; print v[i] }' "$WORKDIR/us"; }
# shellcheck disable=SC2046
med=$(median $(cat "$WORKDIR/us"))
echo "# body ${kib} KiB; min $(ratio "$(head -1 "$WORKDIR/us")" 1000 2) ms, p90 $(ratio "$(pct 0.90)" 1000 2) ms, max $(ratio "$(tail -1 "$WORKDIR/us")" 1000 2) ms"
echo "metrics64: median $(ratio "$med" 1000 2) p99 $(ratio "$(pct 0.99)" 1000 2) workers $WORKERS"
