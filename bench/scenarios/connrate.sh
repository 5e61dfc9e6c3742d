#!/usr/bin/env bash
# connrate: a new connection per request (wrk with `Connection: close`)
# against the same hello-world on herd (rr, lc, shared, reuseport) and on
# Node's cluster (RR, NONE), with the same number of workers. Reports
# requests/s and, for the policies where the primary accepts, the primary's
# CPU time per handed-off connection (utime + stime from /proc/PID/stat over
# the measured run, divided by the connections served). herd-rr-normal is
# rr with the primary's dispatch thread left in the normal scheduling class
# (HERD_PRIMARY_SCHED=normal) instead of SCHED_BATCH, to show what that does;
# herd-rr-nowatch is rr with the primary's watch of its workers' doorbells
# off (HERD_PRIMARY_SPIN_US=0), to show what the watch costs here, where
# the workers keep every CPU busy.
#
#   bench/run.sh connrate
#   env: WORKERS (2), DURATION seconds per run (5), CONNS (32), ROUNDS (5),
#        WARMUP seconds (1)
# Configurations run interleaved, ROUNDS times, in an order rotated every
# round (so that none always runs first or after the same neighbour); the
# table shows the medians. The overhead ratios (rr/shared, rr/none) are the
# medians of the ratios measured within each round: on a shared machine
# whose speed drifts between rounds, a paired ratio is the steadier figure.
set -euo pipefail
. "$(dirname "$0")/lib/http.sh"
ensure_wrk

WORKERS=${WORKERS:-2}
DURATION=${DURATION:-5}
CONNS=${CONNS:-32}
ROUNDS=${ROUNDS:-5}
WARMUP=${WARMUP:-1}
CONFIGS=(herd-rr herd-rr-normal herd-rr-nowatch herd-lc herd-shared herd-reuseport node-rr node-none)

declare -A RPS US ERRS
PAIR_HERD=() PAIR_NORMAL=() PAIR_NOWATCH=() PAIR_NODE=()
machine_note
echo "# $WORKERS workers, wrk -t1 -c$CONNS -d${DURATION}s -H 'Connection: close', $ROUNDS rounds (median)"
n_cfg=${#CONFIGS[@]}
for ((round = 1; round <= ROUNDS; round++)); do
  declare -A THIS=()
  for ((k = 0; k < n_cfg; k++)); do
    cfg=${CONFIGS[$(((k + round - 1) % n_cfg))]}
    case $cfg in
      herd-rr-normal) HERD_PRIMARY_SCHED=normal herd_server "$cfg" rr "$WORKERS" ;;
      herd-rr-nowatch) HERD_PRIMARY_SPIN_US=0 herd_server "$cfg" rr "$WORKERS" ;;
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
    THIS[$cfg]=$WRK_RPS
    echo "# round $round $cfg: $WRK_RPS req/s, $WRK_REQUESTS conns, primary $(ratio "$us" 10 1) us/conn, $WRK_ERRORS errors" >&2
  done
  # Ratios within the round, in thousandths.
  PAIR_HERD+=("$(awk -v a="${THIS[herd-rr]}" -v b="${THIS[herd-shared]}" 'BEGIN { printf "%.0f", a * 1000 / b }')")
  PAIR_NORMAL+=("$(awk -v a="${THIS[herd-rr-normal]}" -v b="${THIS[herd-shared]}" 'BEGIN { printf "%.0f", a * 1000 / b }')")
  PAIR_NOWATCH+=("$(awk -v a="${THIS[herd-rr-nowatch]}" -v b="${THIS[herd-shared]}" 'BEGIN { printf "%.0f", a * 1000 / b }')")
  PAIR_NODE+=("$(awk -v a="${THIS[node-rr]}" -v b="${THIS[node-none]}" 'BEGIN { printf "%.0f", a * 1000 / b }')")
  echo "# round $round ratios: herd-rr/shared $(ratio "${PAIR_HERD[-1]}" 1000) node-rr/none $(ratio "${PAIR_NODE[-1]}" 1000)" >&2
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

echo "connrate-overhead-of-medians: herd-rr/shared $(ratio "$med_herd_rr" "$med_herd_shared") node-rr/none $(ratio "$med_node_rr" "$med_node_none")"
echo "connrate-sched-normal: herd-rr-normal/shared $(ratio "$(median "${PAIR_NORMAL[@]}")" 1000) primary-us-per-conn $us_herd_rr_normal"
echo "connrate-watch-off: herd-rr-nowatch/shared $(ratio "$(median "${PAIR_NOWATCH[@]}")" 1000) primary-us-per-conn $us_herd_rr_nowatch"
echo "connrate-overhead: herd-rr/shared $(ratio "$(median "${PAIR_HERD[@]}")" 1000) node-rr/none $(ratio "$(median "${PAIR_NODE[@]}")" 1000)"
echo "primary-us-per-conn: herd $us_herd_rr node $us_node_rr"
echo "connrate: herd $med_herd_rr node $med_node_rr ratio $(ratio "$med_herd_rr" "$med_node_rr")"
