#!/usr/bin/env bash
# dashboard: what open dashboard pages cost the data path. connrate's
# herd-rr run (WORKERS workers, wrk `Connection: close`, a new connection
# per request) against `hello --monitor` (supervisor, monitor, Worker::serve
# counting), side by side:
#
#   without  no page open
#   with     PAGES streams of GET /debug/events held open (`curl -N`, as
#            many open dashboard pages would), from before the warm-up to
#            the end of the measured run
#
# Both sides run the same binary with the same monitor: the difference is
# the pages alone (the hub reads the cluster once per second either way).
# Each stream's events are counted, to show the pages were fed all along.
#
#   bench/run.sh dashboard
#   env: WORKERS (2), DURATION seconds per run (5), CONNS (32), ROUNDS (7),
#        WARMUP seconds (1), PAGES (10)
#        PAIRING (interleaved | together)
# PAIRING=interleaved (the default): each round runs both sides one after
# the other, the order swapped every round. PAIRING=together: both sides at
# once, each under its own wrk, so that whatever else loads the machine
# loads both alike (each gets about half of it). The ratio is the median of
# the ratios within each round. Last line:
#   dashboard-connrate: with <req/s> without <req/s> ratio <with/without>
set -euo pipefail
. "$(dirname "$0")/lib/http.sh"
ensure_wrk
command -v curl >/dev/null || { echo "bench: curl is required" >&2; exit 1; }

WORKERS=${WORKERS:-2}
DURATION=${DURATION:-5}
CONNS=${CONNS:-32}
ROUNDS=${ROUNDS:-7}
WARMUP=${WARMUP:-1}
PAGES=${PAGES:-10}
PAIRING=${PAIRING:-interleaved}
case $PAIRING in
  interleaved | together) ;;
  *) echo "bench: PAIRING is interleaved or together, not $PAIRING" >&2; exit 2 ;;
esac
SIDES=(without with)

# The page streams, killed at exit with everything else.
PAGE_PIDS=()
stop_pages() {
  local p
  for p in "${PAGE_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PAGE_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PAGE_PIDS=()
}

# open_pages URL ROUND: PAGES streams, each to its own file.
open_pages() {
  local url=$1 round=$2 i
  for ((i = 0; i < PAGES; i++)); do
    curl -s -N --max-time 600 "$url" >"$WORKDIR/page.$round.$i" &
    PAGE_PIDS+=($!)
  done
}

# page_events ROUND: snapshots received by the round's pages (min and sum).
page_events() {
  local round=$1 i n min= sum=0
  for ((i = 0; i < PAGES; i++)); do
    n=$(grep -c '^event: snapshot' "$WORKDIR/page.$round.$i" || true)
    sum=$((sum + n))
    if [ -z "$min" ] || [ "$n" -lt "$min" ]; then min=$n; fi
  done
  echo "$min $sum"
}

declare -A RPS ERRS THIS PORT PID NOTE
PAIRS=()
MIN_EVENTS=
WRK2_PID=

# start_side SIDE ROUND: its server (and, for `with`, its pages, each with
# its first snapshot before the load starts).
start_side() {
  local side=$1 round=$2 mon i m
  herd_server "dashboard-$side" rr "$WORKERS" --monitor
  PID[$side]=$SERVER_PID PORT[$side]=$SERVER_PORT
  mon=$(sed -n 's/^ready .* monitor=\([0-9.:]*\).*/\1/p' "$SERVER_OUT" | head -1)
  [ -n "$mon" ] || { echo "bench: no monitor address in: $(cat "$SERVER_OUT")" >&2; exit 1; }
  [ "$side" = with ] || return 0
  open_pages "http://$mon/debug/events" "$round"
  for ((i = 0; i < 100; i++)); do
    read -r m _ < <(page_events "$round")
    [ "$m" -ge 1 ] && break
    sleep 0.05
  done
}

# measure ROUND SIDE...: warm-up, then the measured run, of the sides given
# (one, or both at once).
measure() {
  local round=$1 side pids p
  shift
  for phase in warmup run; do
    pids=()
    for side in "$@"; do
      local d=$DURATION out="$WORKDIR/$side.$round.wrk"
      [ "$phase" = run ] || { d=$WARMUP; out="$WORKDIR/warmup.$side"; }
      wrk -t1 -c"$CONNS" -d"${d}s" -H 'Connection: close' "http://127.0.0.1:${PORT[$side]}/" >"$out" 2>&1 &
      pids+=($!)
      if [ -z "$WRK_PID" ]; then WRK_PID=$!; else WRK2_PID=$!; fi
    done
    for p in "${pids[@]}"; do wait "$p" || { echo "bench: wrk failed" >&2; exit 1; }; done
    WRK_PID= WRK2_PID=
  done
  for side in "$@"; do
    parse_wrk "$WORKDIR/$side.$round.wrk"
    NOTE[$side]=""
    if [ "$side" = with ]; then
      read -r m s < <(page_events "$round")
      NOTE[$side]=", pages got $s snapshots (the fewest $m)"
      if [ -z "$MIN_EVENTS" ] || [ "$m" -lt "$MIN_EVENTS" ]; then MIN_EVENTS=$m; fi
    fi
    RPS[$side]="${RPS[$side]:-} $WRK_RPS"
    ERRS[$side]=$((${ERRS[$side]:-0} + WRK_ERRORS))
    THIS[$side]=$WRK_RPS
    echo "# round $round $side: $WRK_RPS req/s, $WRK_ERRORS errors${NOTE[$side]}" >&2
  done
}

trap '[ -z "$WRK2_PID" ] || kill -KILL "$WRK2_PID" 2>/dev/null; stop_pages; cleanup' EXIT
machine_note
echo "# connrate: $WORKERS workers, hello --monitor, wrk -t1 -c$CONNS -d${DURATION}s -H 'Connection: close'"
echo "# with: $PAGES streams of /debug/events open (curl -N) through warm-up and run; $ROUNDS rounds (median), $PAIRING"
for ((round = 1; round <= ROUNDS; round++)); do
  first=${SIDES[$(((round - 1) % 2))]} second=${SIDES[$((round % 2))]}
  if [ "$PAIRING" = together ]; then
    start_side "$first" "$round"
    start_side "$second" "$round"
    measure "$round" "$first" "$second"
    stop_pages
    stop_pid "${PID[$first]}"
    stop_pid "${PID[$second]}"
  else
    for side in "$first" "$second"; do
      start_side "$side" "$round"
      measure "$round" "$side"
      stop_pages
      stop_pid "${PID[$side]}"
    done
  fi
  PAIRS+=("$(awk -v a="${THIS[with]}" -v b="${THIS[without]}" 'BEGIN { printf "%.0f", a * 1000 / b }')")
  echo "# round $round with/without $(ratio "${PAIRS[-1]}" 1000)" >&2
done

printf '%-20s %10s %8s  %s\n' config "req/s" errors "rounds (req/s)"
for side in "${SIDES[@]}"; do
  # shellcheck disable=SC2086
  rps=$(median ${RPS[$side]})
  declare "med_$side=$rps"
  printf '%-20s %10s %8s  %s\n' "dashboard-$side" "$rps" "${ERRS[$side]}" "${RPS[$side]# }"
done
echo "# with/without per round:$(for p in "${PAIRS[@]}"; do printf ' %s' "$(ratio "$p" 1000)"; done)"
echo "dashboard-pages: $PAGES pages, the fewest snapshots one page got in a round: $MIN_EVENTS (warm-up + run: $((WARMUP + DURATION))s)"
echo "dashboard-connrate: with $med_with without $med_without ratio $(ratio "$(median "${PAIRS[@]}")" 1000)"
