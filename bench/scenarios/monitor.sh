#!/usr/bin/env bash
# monitor: what watching a cluster costs. connrate's and keepalive's herd-rr
# runs, each side by side with the same run with everything an operator
# turns on to watch it: `hello --monitor` runs the workers under a
# Supervisor, serves herd's monitor in the primary, and serves the app
# through Worker::serve, whose layer counts every request and its latency
# for the heartbeats; and a background loop GETs /metrics every second
# during the warm-up and the measured run (as a Prometheus scrape would).
#
#   without  hello (axum::serve on herd's listener: no counting layer, no
#            supervisor, no monitor): what connrate and keepalive run
#   with     hello --monitor, and /metrics scraped every second
#
# Workloads: connrate (WORKERS workers, wrk `Connection: close`, a new
# connection per request) and keepalive (1 worker, wrk keep-alive). Reports
# requests/s medians, the primary's CPU (utime + stime of the whole primary
# process over the measured run: per connection for connrate, as a share of
# one CPU for keepalive), the workers' CPU per request (all workers' utime +
# stime over the measured run, divided by the requests) and the scrapes'
# answers and times.
#
#   bench/run.sh monitor
#   env: WORKERS (2), DURATION seconds per run (5), CONNS (32), ROUNDS (7),
#        WARMUP seconds (1), SCRAPE_EVERY seconds (1),
#        PAIRING (interleaved | together)
# PAIRING=interleaved (the default, as connrate): each round runs both
# workloads, each without and with one after the other, the order swapped
# every round. PAIRING=together: both sides run at the same time, each under
# its own wrk, so that whatever else loads the machine loads both alike
# (each gets about half the machine; the side started first alternates).
# The ratios (req/s, and the workers' CPU per request) are the medians of
# the ratios within each round. Last lines:
#   monitor-connrate: with <req/s> without <req/s> ratio <with/without>
#   monitor-keepalive: with <req/s> without <req/s> ratio <with/without>
set -euo pipefail
. "$(dirname "$0")/lib/http.sh"
ensure_wrk
command -v curl >/dev/null || { echo "bench: curl is required" >&2; exit 1; }

WORKERS=${WORKERS:-2}
DURATION=${DURATION:-5}
CONNS=${CONNS:-32}
ROUNDS=${ROUNDS:-7}
WARMUP=${WARMUP:-1}
SCRAPE_EVERY=${SCRAPE_EVERY:-1}
PAIRING=${PAIRING:-interleaved}
case $PAIRING in
  interleaved | together) ;;
  *) echo "bench: PAIRING is interleaved or together, not $PAIRING" >&2; exit 2 ;;
esac
WORKLOADS=(connrate keepalive)
SIDES=(without with)

# The scrape loop and a second wrk (together), killed at exit with
# everything else.
SCRAPER_PID= WRK2_PID=
stop_scraper() {
  [ -n "$SCRAPER_PID" ] || return 0
  kill "$SCRAPER_PID" 2>/dev/null || true
  wait "$SCRAPER_PID" 2>/dev/null || true
  SCRAPER_PID=
}
trap '[ -z "$WRK2_PID" ] || kill -KILL "$WRK2_PID" 2>/dev/null; stop_scraper; cleanup' EXIT

# start_scraper URL OUTFILE: GET URL every SCRAPE_EVERY seconds, one line
# `CODE SECONDS` per scrape (`000` for a failed one) appended to OUTFILE.
start_scraper() {
  local url=$1 out=$2
  : >"$out"
  (
    trap 'exit 0' TERM
    while :; do
      curl -s -o /dev/null --max-time 2 -w '%{http_code} %{time_total}\n' "$url" >>"$out" || true
      sleep "$SCRAPE_EVERY" &
      wait $!
    done
  ) &
  SCRAPER_PID=$!
}

# workers_ticks PID: user + system clock ticks of the server's workers.
workers_ticks() {
  local t=0 k
  for k in $(pgrep -P "$1"); do
    t=$((t + $(cpu_ticks "$k" 2>/dev/null || echo 0)))
  done
  echo "$t"
}

# Per side of the current run: PID, PORT, the CPU ticks at the start.
declare -A PID PORT T0 W0

# start_side LOAD SIDE WORKERS ROUND: starts that side's server (and, for
# `with`, the scraper).
start_side() {
  local load=$1 side=$2 workers=$3 round=$4 key="$1-$2" mon
  if [ "$side" = with ]; then
    herd_server "$key" rr "$workers" --monitor
    mon=$(sed -n 's/^ready .* monitor=\([0-9.:]*\).*/\1/p' "$SERVER_OUT" | head -1)
    [ -n "$mon" ] || { echo "bench: no monitor address in: $(cat "$SERVER_OUT")" >&2; exit 1; }
    start_scraper "http://$mon/metrics" "$WORKDIR/$key.$round.scrapes"
  else
    herd_server "$key" rr "$workers"
  fi
  PID[$side]=$SERVER_PID PORT[$side]=$SERVER_PORT
}

# wrk_on SIDE OUTFILE ARGS...: wrk against that side, in the background
# (WRK_PID, or WRK2_PID when WRK_PID is taken).
wrk_on() {
  local side=$1 out=$2
  shift 2
  wrk "$@" "http://127.0.0.1:${PORT[$side]}/" >"$out" 2>&1 &
  if [ -z "$WRK_PID" ]; then WRK_PID=$!; else WRK2_PID=$!; fi
}

wait_wrks() {
  local pid
  for pid in $WRK_PID $WRK2_PID; do
    wait "$pid" || { echo "bench: wrk failed" >&2; exit 1; }
  done
  WRK_PID= WRK2_PID=
}

# measure LOAD ROUND SIDE...: warm-up, then the measured run, of the sides
# given (one, or both at once); records each side's figures.
measure() {
  local load=$1 round=$2 side key cpu wcpu shown t1 w1
  shift 2
  local close=()
  [ "$load" = keepalive ] || close=(-H 'Connection: close')
  for side in "$@"; do wrk_on "$side" "$WORKDIR/warmup.$side" -t1 -c"$CONNS" -d"${WARMUP}s" "${close[@]}"; done
  wait_wrks
  for side in "$@"; do T0[$side]=$(cpu_ticks "${PID[$side]}") W0[$side]=$(workers_ticks "${PID[$side]}"); done
  for side in "$@"; do wrk_on "$side" "$WORKDIR/$load-$side.$round.wrk" -t1 -c"$CONNS" -d"${DURATION}s" "${close[@]}"; done
  wait_wrks
  for side in "$@"; do
    key="$load-$side"
    t1=$(cpu_ticks "${PID[$side]}") w1=$(workers_ticks "${PID[$side]}")
    parse_wrk "$WORKDIR/$key.$round.wrk"
    # Hundredths of a microsecond per request.
    wcpu=$(awk -v t=$((w1 - W0[$side])) -v hz="$CLK_TCK" -v n="$WRK_REQUESTS" 'BEGIN { printf "%.0f", t * 1e6 / hz / n * 100 }')
    if [ "$load" = connrate ]; then
      # Tenths of a microsecond per connection.
      cpu=$(awk -v t=$((t1 - T0[$side])) -v hz="$CLK_TCK" -v n="$WRK_REQUESTS" 'BEGIN { printf "%.0f", t * 1e6 / hz / n * 10 }')
      shown="$(ratio "$cpu" 10 1) us/conn"
    else
      # Tenths of a percent of one CPU.
      cpu=$(awk -v t=$((t1 - T0[$side])) -v hz="$CLK_TCK" -v d="$DURATION" 'BEGIN { printf "%.0f", t / hz / d * 1000 }')
      shown="$(ratio "$cpu" 10 1)% CPU"
    fi
    RPS[$key]="${RPS[$key]:-} $WRK_RPS"
    CPU[$key]="${CPU[$key]:-} $cpu"
    WCPU[$key]="${WCPU[$key]:-} $wcpu"
    ERRS[$key]=$((${ERRS[$key]:-0} + WRK_ERRORS))
    THIS[$side]=$WRK_RPS THIS[$side-wcpu]=$wcpu
    REPORT[$side]="# round $round $key: $WRK_RPS req/s, primary $shown, workers $(ratio "$wcpu" 100) us/req, $WRK_ERRORS errors"
  done
}

# scrapes LOAD ROUND: adds up the with side's scrapes.
scrapes() {
  local f="$WORKDIR/$1-with.$2.scrapes" n bad
  n=$(wc -l <"$f")
  bad=$(awk '$1 != 200' "$f" | wc -l)
  SCRAPES=$((SCRAPES + n)) SCRAPE_FAILS=$((SCRAPE_FAILS + bad))
  # Microseconds.
  mapfile -t -O "${#SCRAPE_TIMES[@]}" SCRAPE_TIMES < <(awk '$1 == 200 { printf "%.0f\n", $2 * 1e6 }' "$f")
  REPORT[with]+=", $n scrapes ($bad failed)"
}

declare -A RPS CPU WCPU ERRS PAIRS CPU_PAIRS THIS REPORT
SCRAPES=0 SCRAPE_FAILS=0
SCRAPE_TIMES=()
machine_note
echo "# connrate: $WORKERS workers, wrk -t1 -c$CONNS -d${DURATION}s -H 'Connection: close'; keepalive: 1 worker, wrk -t1 -c$CONNS -d${DURATION}s"
echo "# with: hello --monitor (supervisor, monitor, Worker::serve counting), GET /metrics every ${SCRAPE_EVERY}s; $ROUNDS rounds (median), $PAIRING"
for ((round = 1; round <= ROUNDS; round++)); do
  for load in "${WORKLOADS[@]}"; do
    workers=$WORKERS
    [ "$load" = connrate ] || workers=1
    first=${SIDES[$(((round - 1) % 2))]} second=${SIDES[$((round % 2))]}
    if [ "$PAIRING" = together ]; then
      start_side "$load" "$first" "$workers" "$round"
      start_side "$load" "$second" "$workers" "$round"
      measure "$load" "$round" "$first" "$second"
      stop_scraper
      stop_pid "${PID[$first]}"
      stop_pid "${PID[$second]}"
      scrapes "$load" "$round"
      echo "${REPORT[$first]}" >&2
      echo "${REPORT[$second]}" >&2
    else
      for side in "$first" "$second"; do
        start_side "$load" "$side" "$workers" "$round"
        measure "$load" "$round" "$side"
        stop_scraper
        stop_pid "${PID[$side]}"
        [ "$side" = without ] || scrapes "$load" "$round"
        echo "${REPORT[$side]}" >&2
      done
    fi
    PAIRS[$load]="${PAIRS[$load]:-} $(awk -v a="${THIS[with]}" -v b="${THIS[without]}" 'BEGIN { printf "%.0f", a * 1000 / b }')"
    CPU_PAIRS[$load]="${CPU_PAIRS[$load]:-} $(awk -v a="${THIS[with-wcpu]}" -v b="${THIS[without-wcpu]}" 'BEGIN { printf "%.0f", a * 1000 / b }')"
    echo "# round $round $load with/without $(ratio "${PAIRS[$load]##* }" 1000), workers' CPU per request $(ratio "${CPU_PAIRS[$load]##* }" 1000)" >&2
  done
done

printf '%-20s %10s %14s %16s %8s  %s\n' config "req/s" "primary CPU" "workers us/req" errors "rounds (req/s)"
for load in "${WORKLOADS[@]}"; do
  for side in "${SIDES[@]}"; do
    key="$load-$side"
    # shellcheck disable=SC2086
    rps=$(median ${RPS[$key]})
    # shellcheck disable=SC2086
    cpu=$(ratio "$(median ${CPU[$key]})" 10 1)
    if [ "$load" = connrate ]; then cpu="$cpu us/conn"; else cpu="$cpu% CPU"; fi
    # shellcheck disable=SC2086
    wcpu=$(ratio "$(median ${WCPU[$key]})" 100)
    declare "med_${load}_$side=$rps" "wcpu_${load}_$side=$wcpu"
    printf '%-20s %10s %14s %16s %8s  %s\n' "$key" "$rps" "$cpu" "$wcpu" "${ERRS[$key]}" "${RPS[$key]# }"
  done
done
for load in "${WORKLOADS[@]}"; do
  # shellcheck disable=SC2086
  echo "# $load with/without per round: req/s$(for p in ${PAIRS[$load]}; do printf ' %s' "$(ratio "$p" 1000)"; done), workers' CPU per request$(for p in ${CPU_PAIRS[$load]}; do printf ' %s' "$(ratio "$p" 1000)"; done)"
done
for load in "${WORKLOADS[@]}"; do
  with="wcpu_${load}_with" without="wcpu_${load}_without"
  # shellcheck disable=SC2086
  echo "monitor-$load-workers-us-per-req: with ${!with} without ${!without} ratio $(ratio "$(median ${CPU_PAIRS[$load]})" 1000)"
done
if [ "${#SCRAPE_TIMES[@]}" -gt 0 ]; then
  scrape_med=$(ratio "$(median "${SCRAPE_TIMES[@]}")" 1000 2)
  scrape_max=$(printf '%s\n' "${SCRAPE_TIMES[@]}" | sort -n | tail -1)
  echo "monitor-scrapes: $SCRAPES scrapes under load, $SCRAPE_FAILS failed, median $scrape_med ms, max $(ratio "$scrape_max" 1000 2) ms"
fi
for load in "${WORKLOADS[@]}"; do
  with="med_${load}_with" without="med_${load}_without"
  # shellcheck disable=SC2086
  echo "monitor-$load: with ${!with} without ${!without} ratio $(ratio "$(median ${PAIRS[$load]})" 1000)"
done
