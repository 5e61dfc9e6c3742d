#!/usr/bin/env bash
# fairness: how evenly each policy spreads new connections over 8 workers.
# For herd rr, lc, shared, reuseport and Node RR, NONE: new connections for a
# fixed time (wrk with `Connection: close`; wrk cannot stop after a number of
# requests, its main thread always sleeps the whole duration), then each
# worker's count of accepted connections and max/mean (1.00 is perfectly
# even; it does not depend on the total).
#
#   bench/run.sh fairness
#   env: WORKERS (8), DURATION seconds (3), CONNS (32)
set -euo pipefail
. "$(dirname "$0")/lib/http.sh"
ensure_wrk

WORKERS=${WORKERS:-8}
DURATION=${DURATION:-3}
CONNS=${CONNS:-32}
CONFIGS=(rr lc shared reuseport node-rr node-none)

machine_note
echo "# $WORKERS workers, wrk -t1 -c$CONNS -d${DURATION}s -H 'Connection: close'"
printf '%-10s %9s %6s %6s %9s  %s\n' policy total min max max/mean "per-worker connections"
for cfg in "${CONFIGS[@]}"; do
  case $cfg in
    node-*) node_server "$cfg" "${cfg#node-}" "$WORKERS" ;;
    *) herd_server "$cfg" "$cfg" "$WORKERS" ;;
  esac
  run_wrk "$WORKDIR/$cfg.wrk" -t1 -c"$CONNS" -d"${DURATION}s" -H 'Connection: close'
  counts=$(server_counts)
  stop_server
  values=$(counts_values "$counts")
  read -r total min max mm < <(echo "$values" | awk -v w="$WORKERS" '
    { t += $1; if (NR == 1 || $1 < lo) lo = $1; if ($1 > hi) hi = $1 }
    END { if (NR < w) lo = 0; printf "%d %d %d %.3f\n", t, lo, hi, (t ? hi / (t / w) : 0) }')
  declare "mm_${cfg//-/_}=$mm"
  printf '%-10s %9s %6s %6s %9s  %s\n' "$cfg" "$total" "$min" "$max" "$mm" "$(echo "$values" | tr '\n' ' ')"
done

echo "fairness-max/mean: rr $mm_rr lc $mm_lc shared $mm_shared reuseport $mm_reuseport node-rr $mm_node_rr node-none $mm_node_none"
echo "fairness: herd $mm_rr node $mm_node_rr ratio $(ratio "$mm_rr" "$mm_node_rr" 3)"
