#!/usr/bin/env bash
# keepalive: keep-alive requests/s of ONE herd worker (policy rr: the
# primary hands each connection over once, then the worker serves it alone)
# against the same axum app and runtime run without herd (`hello --plain`:
# one process, a tokio TcpListener), and Node's cluster with one worker for
# reference.
#
#   bench/run.sh keepalive
#   env: DURATION seconds per run (5), CONNS (32), ROUNDS (3), WARMUP (1)
# Configurations run interleaved, ROUNDS times; the table shows the median.
set -euo pipefail
. "$(dirname "$0")/lib/http.sh"
ensure_wrk

DURATION=${DURATION:-5}
CONNS=${CONNS:-32}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1}
CONFIGS=(herd plain node)

declare -A RPS ERRS
machine_note
echo "# 1 worker, wrk -t1 -c$CONNS -d${DURATION}s (keep-alive), $ROUNDS rounds (median)"
for ((round = 1; round <= ROUNDS; round++)); do
  for cfg in "${CONFIGS[@]}"; do
    case $cfg in
      herd) herd_server herd rr 1 ;;
      plain) herd_server plain rr 1 --plain ;;
      node) node_server node rr 1 ;;
    esac
    run_wrk "$WORKDIR/warmup" -t1 -c"$CONNS" -d"${WARMUP}s"
    run_wrk "$WORKDIR/$cfg.$round.wrk" -t1 -c"$CONNS" -d"${DURATION}s"
    stop_server
    RPS[$cfg]="${RPS[$cfg]:-} $WRK_RPS"
    ERRS[$cfg]=$((${ERRS[$cfg]:-0} + WRK_ERRORS))
    echo "# round $round $cfg: $WRK_RPS req/s, $WRK_ERRORS errors" >&2
  done
done

printf '%-8s %10s %8s  %s\n' server "req/s" errors "rounds (req/s)"
for cfg in "${CONFIGS[@]}"; do
  # shellcheck disable=SC2086
  declare "med_$cfg=$(median ${RPS[$cfg]})"
  med="med_$cfg"
  printf '%-8s %10s %8s  %s\n' "$cfg" "${!med}" "${ERRS[$cfg]}" "${RPS[$cfg]# }"
done

echo "keepalive-overhead: herd/plain $(ratio "$med_herd" "$med_plain")"
echo "keepalive: herd $med_herd node $med_node ratio $(ratio "$med_herd" "$med_node")"
