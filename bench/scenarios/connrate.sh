#!/usr/bin/env bash
# connrate: a new connection per request (wrk with `Connection: close`)
# against the same hello-world on herd (rr, lc, shared, reuseport) and on
# Node's cluster (RR, NONE), with the same number of workers. Reports
# requests/s and, for the policies where the primary accepts, the primary's
# CPU time per handed-off connection (utime + stime from /proc/PID/stat over
# the measured run, divided by the connections served).
#
#   bench/run.sh connrate
#   env: WORKERS (2), DURATION seconds per run (5), CONNS (32), ROUNDS (3),
#        WARMUP seconds (1)
# Configurations run interleaved, ROUNDS times; the table shows the median.
set -euo pipefail
. "$(dirname "$0")/lib/http.sh"
ensure_wrk

WORKERS=${WORKERS:-2}
DURATION=${DURATION:-5}
CONNS=${CONNS:-32}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1}
CONFIGS=(herd-rr herd-lc herd-shared herd-reuseport node-rr node-none)

declare -A RPS US ERRS
machine_note
echo "# $WORKERS workers, wrk -t1 -c$CONNS -d${DURATION}s -H 'Connection: close', $ROUNDS rounds (median)"
for ((round = 1; round <= ROUNDS; round++)); do
  for cfg in "${CONFIGS[@]}"; do
    case $cfg in
      herd-*) herd_server "$cfg" "${cfg#herd-}" "$WORKERS" ;;
      node-*) node_server "$cfg" "${cfg#node-}" "$WORKERS" ;;
    esac
    run_wrk "$WORKDIR/warmup" -t1 -c"$CONNS" -d"${WARMUP}s" -H 'Connection: close'
    t0=$(cpu_ticks "$SERVER_PID")
    run_wrk "$WORKDIR/$cfg.$round.wrk" -t1 -c"$CONNS" -d"${DURATION}s" -H 'Connection: close'
    t1=$(cpu_ticks "$SERVER_PID")
    stop_server
    us=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$WRK_REQUESTS" 'BEGIN { printf "%.0f", t * 1e6 / hz / n * 10 }')
    RPS[$cfg]="${RPS[$cfg]:-} $WRK_RPS"
    US[$cfg]="${US[$cfg]:-} $us" # tenths of a microsecond
    ERRS[$cfg]=$((${ERRS[$cfg]:-0} + WRK_ERRORS))
    echo "# round $round $cfg: $WRK_RPS req/s, $WRK_REQUESTS conns, primary $(ratio "$us" 10 1) us/conn, $WRK_ERRORS errors" >&2
  done
done

printf '%-16s %10s %22s %8s  %s\n' config "req/s" "primary CPU us/conn" errors "rounds (req/s)"
for cfg in "${CONFIGS[@]}"; do
  # shellcheck disable=SC2086
  rps=$(median ${RPS[$cfg]})
  # shellcheck disable=SC2086
  us=$(ratio "$(median ${US[$cfg]})" 10 1)
  declare "med_${cfg//-/_}=$rps" "us_${cfg//-/_}=$us"
  printf '%-16s %10s %22s %8s  %s\n' "$cfg" "$rps" "$us" "${ERRS[$cfg]}" "${RPS[$cfg]# }"
done

echo "connrate-overhead: herd-rr/shared $(ratio "$med_herd_rr" "$med_herd_shared") node-rr/none $(ratio "$med_node_rr" "$med_node_none")"
echo "primary-us-per-conn: herd $us_herd_rr node $us_node_rr"
echo "connrate: herd $med_herd_rr node $med_node_rr ratio $(ratio "$med_herd_rr" "$med_node_rr")"
