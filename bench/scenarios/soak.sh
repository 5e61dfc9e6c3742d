#!/usr/bin/env bash
# soak: RELOADS rolling restarts back to back under load, and what the
# primary holds all along: does anything leak (descriptors, memory) or fail?
#
# The server is bench/src/bin/hello_supervised.rs (herd's Supervisor, rr),
# reloaded by SIGHUP, each reload awaited (its `reload finished` line)
# before the next. Two wrk clients run throughout: keep-alive, and
# `Connection: close` (a new connection per request). The primary's open
# descriptors (/proc/PID/fd) and resident memory (VmRSS) are sampled at the
# start, every EVERY reloads and at the end.
#
#   bench/run.sh soak
#   env: RELOADS (1000), EVERY (100), WORKERS (2), CONNS per client (8),
#        WARMUP s (2), POLICY (rr)
# The last line is
#   soak: reloads <n> failed <requests> fds <start>-><end> rss_kb <start>-><end> growth_kb <n>
set -euo pipefail
. "$(dirname "$0")/lib/http.sh"
ensure_wrk

RELOADS=${RELOADS:-1000}
EVERY=${EVERY:-100}
WORKERS=${WORKERS:-2}
CONNS=${CONNS:-8}
WARMUP=${WARMUP:-2}
POLICY=${POLICY:-rr}
SUP_BIN="$HERD_BENCH_BIN/hello_supervised"
LOAD_PIDS=()

soak_cleanup() {
  local pid
  for pid in "${LOAD_PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  cleanup
}
trap soak_cleanup EXIT

fds() { ls "/proc/$SERVER_PID/fd" | wc -l; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$SERVER_PID/status"; }
sample() { # LABEL
  printf '%-8s %6s %8s %8s\n' "$1" "$done" "$(fds)" "$(rss_kb)"
}

machine_note
echo "# $WORKERS workers ($POLICY), $RELOADS reloads back to back; load: wrk -t1 -c$CONNS keep-alive + wrk -t1 -c$CONNS 'Connection: close'"
HERD_SCHED_POLICY=$POLICY start_server herd "$SUP_BIN" 127.0.0.1:0 --workers "$WORKERS"
url="http://127.0.0.1:$SERVER_PORT/"
wrk -t1 -c"$CONNS" -d24h --timeout 10s "$url" >"$WORKDIR/keepalive.wrk" 2>&1 &
LOAD_PIDS+=($!)
wrk -t1 -c"$CONNS" -d24h --timeout 10s -H 'Connection: close' "$url" >"$WORKDIR/close.wrk" 2>&1 &
LOAD_PIDS+=($!)
sleep "$WARMUP" # load before the first reload

printf '%-8s %6s %8s %8s\n' when reloads fds rss_kb
done=0
sample start
fds0=$(fds)
rss0=$(rss_kb)
aborted=0
t0=$(date +%s)
for ((done = 1; done <= RELOADS; done++)); do
  before=$(grep -c '^reload \(finished\|aborted\)' "$SERVER_OUT" || true)
  kill -HUP "$SERVER_PID"
  for ((i = 0; i < 6000; i++)); do
    [ "$(grep -c '^reload \(finished\|aborted\)' "$SERVER_OUT" || true)" -gt "$before" ] && break
    sleep 0.01
  done
  line=$(grep '^reload \(finished\|aborted\)' "$SERVER_OUT" | tail -1)
  case $line in
    "reload finished"*) ;;
    *) aborted=$((aborted + 1)); echo "# reload $done: $line" >&2 ;;
  esac
  if ((done % EVERY == 0)) && ((done < RELOADS)); then sample "$done"; fi
done
done=$RELOADS
# Let the last predecessors leave before the last sample.
sleep "$WARMUP"
sample end
fds1=$(fds)
rss1=$(rss_kb)
secs=$(($(date +%s) - t0))

kill -INT "${LOAD_PIDS[@]}" 2>/dev/null || true
for pid in "${LOAD_PIDS[@]}"; do wait "$pid" || true; done
LOAD_PIDS=()
stop_server

failed=0
for f in keepalive close; do
  n=$(awk '
    /Socket errors:/ { gsub(",", ""); n += $4 + $6 + $8 + $10 }
    /Non-2xx/ { n += $NF }
    END { print n + 0 }' "$WORKDIR/$f.wrk")
  reqs=$(awk '/ requests in / { print $1 }' "$WORKDIR/$f.wrk")
  echo "# $f: $reqs requests, $n failed ($(grep -E 'Socket errors|Non-2xx' "$WORKDIR/$f.wrk" | tr -s ' ' | paste -sd';' || true))"
  failed=$((failed + n))
done
echo "# $RELOADS reloads in ${secs}s, $aborted aborted"
echo "soak: reloads $RELOADS failed $failed fds $fds0->$fds1 rss_kb $rss0->$rss1 growth_kb $((rss1 - rss0))"
