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
# stime over the measured run, divided by the requests: the counting
# layer's cost shows there, less blurred by the machine's other load than
# requests/s) and the scrapes' answers and times.
#
#   bench/run.sh monitor
#   env: WORKERS (2), DURATION seconds per run (5), CONNS (32), ROUNDS (7),
#        WARMUP seconds (1), SCRAPE_EVERY seconds (1)
# Each round runs both workloads, each with and without, the order of with
# and without swapped every round. The ratios (req/s, and the workers' CPU
# per request) are the medians of the ratios within each round (paired:
# the machine's drift between rounds cancels).
# Last lines:
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
WORKLOADS=(connrate keepalive)
SIDES=(without with)

# The scrape loop, killed at exit with everything else.
SCRAPER_PID=
stop_scraper() {
  [ -n "$SCRAPER_PID" ] || return 0
  kill "$SCRAPER_PID" 2>/dev/null || true
  wait "$SCRAPER_PID" 2>/dev/null || true
  SCRAPER_PID=
}
trap 'stop_scraper; cleanup' EXIT

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

# workers_ticks: user + system clock ticks of the current server's workers.
workers_ticks() {
  local t=0 k
  for k in $(pgrep -P "$SERVER_PID"); do
    t=$((t + $(cpu_ticks "$k" 2>/dev/null || echo 0)))
  done
  echo "$t"
}

declare -A RPS CPU WCPU ERRS
declare -A PAIRS CPU_PAIRS
SCRAPES=0 SCRAPE_FAILS=0
SCRAPE_TIMES=()
machine_note
echo "# connrate: $WORKERS workers, wrk -t1 -c$CONNS -d${DURATION}s -H 'Connection: close'; keepalive: 1 worker, wrk -t1 -c$CONNS -d${DURATION}s"
echo "# with: hello --monitor (supervisor, monitor, Worker::serve counting), GET /metrics every ${SCRAPE_EVERY}s; $ROUNDS rounds (median)"
for ((round = 1; round <= ROUNDS; round++)); do
  for load in "${WORKLOADS[@]}"; do
    declare -A THIS=()
    case $load in
      connrate) workers=$WORKERS close=(-H 'Connection: close') ;;
      keepalive) workers=1 close=() ;;
    esac
    for ((k = 0; k < 2; k++)); do
      side=${SIDES[$(((k + round - 1) % 2))]}
      key="$load-$side"
      if [ "$side" = with ]; then
        herd_server "$key" rr "$workers" --monitor
        mon=$(sed -n 's/^ready .* monitor=\([0-9.:]*\).*/\1/p' "$SERVER_OUT" | head -1)
        [ -n "$mon" ] || { echo "bench: no monitor address in: $(cat "$SERVER_OUT")" >&2; exit 1; }
        start_scraper "http://$mon/metrics" "$WORKDIR/$key.$round.scrapes"
      else
        herd_server "$key" rr "$workers"
      fi
      run_wrk "$WORKDIR/warmup" -t1 -c"$CONNS" -d"${WARMUP}s" "${close[@]}"
      t0=$(cpu_ticks "$SERVER_PID") w0=$(workers_ticks)
      run_wrk "$WORKDIR/$key.$round.wrk" -t1 -c"$CONNS" -d"${DURATION}s" "${close[@]}"
      t1=$(cpu_ticks "$SERVER_PID") w1=$(workers_ticks)
      # Hundredths of a microsecond per request.
      wcpu=$(awk -v t=$((w1 - w0)) -v hz="$CLK_TCK" -v n="$WRK_REQUESTS" 'BEGIN { printf "%.0f", t * 1e6 / hz / n * 100 }')
      stop_scraper
      stop_server
      if [ "$load" = connrate ]; then
        # Tenths of a microsecond per connection.
        cpu=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$WRK_REQUESTS" 'BEGIN { printf "%.0f", t * 1e6 / hz / n * 10 }')
        shown="$(ratio "$cpu" 10 1) us/conn"
      else
        # Tenths of a percent of one CPU.
        cpu=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v d="$DURATION" 'BEGIN { printf "%.0f", t / hz / d * 1000 }')
        shown="$(ratio "$cpu" 10 1)% CPU"
      fi
      scraped=
      if [ "$side" = with ]; then
        f="$WORKDIR/$key.$round.scrapes"
        n=$(wc -l <"$f")
        bad=$(awk '$1 != 200' "$f" | wc -l)
        SCRAPES=$((SCRAPES + n)) SCRAPE_FAILS=$((SCRAPE_FAILS + bad))
        # Microseconds.
        mapfile -t -O "${#SCRAPE_TIMES[@]}" SCRAPE_TIMES < <(awk '$1 == 200 { printf "%.0f\n", $2 * 1e6 }' "$f")
        scraped=", $n scrapes ($bad failed)"
      fi
      RPS[$key]="${RPS[$key]:-} $WRK_RPS"
      CPU[$key]="${CPU[$key]:-} $cpu"
      WCPU[$key]="${WCPU[$key]:-} $wcpu"
      ERRS[$key]=$((${ERRS[$key]:-0} + WRK_ERRORS))
      THIS[$side]=$WRK_RPS
      THIS[$side-wcpu]=$wcpu
      echo "# round $round $key: $WRK_RPS req/s, primary $shown, workers $(ratio "$wcpu" 100) us/req, $WRK_ERRORS errors$scraped" >&2
    done
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
