#!/usr/bin/env bash
# foreign: the same Node hello-world app (bench/node/hello_app.js) run by
# `herd run -w 2` (shared and reuseport: the app serves the socket herd
# passes at fd 3), by Node's own cluster module (RR and NONE) and by PM2's
# cluster mode (which is Node's cluster, RR), side by side: requests/s with
# keep-alive and with a new connection per request, and the per-worker
# spread of requests (max/min over the 2 workers; 1.00 is even); with
# keep-alive also how the run's connections were placed (max/min of the
# connections each worker accepted).
#
#   bench/run.sh foreign
#   env: DURATION seconds per run (5), CONNS (32), ROUNDS (1), WARMUP (1),
#        PM2_PREFIX (where npm installs pm2; default ~/.cache/herd-bench/pm2)
# The last line is `foreign: herd <rps> node <rps> ratio <x>`: the best herd
# configuration against the best of Node's cluster and PM2, keep-alive.
set -euo pipefail
. "$(dirname "$0")/lib/http.sh"
ensure_wrk

DURATION=${DURATION:-5}
CONNS=${CONNS:-32}
ROUNDS=${ROUNDS:-1}
WARMUP=${WARMUP:-1}
WORKERS=2
APP="$BENCH_DIR/node/hello_app.js"
CLUSTER_APP="$BENCH_DIR/node/cluster_app.js"
CONFIGS=(herd-shared herd-reuseport node-rr node-none pm2)

cargo build --release -q -p herd-cli
HERD="$BENCH_DIR/../target/release/herd"

PM2_PREFIX=${PM2_PREFIX:-$HOME/.cache/herd-bench/pm2}
PM2="$PM2_PREFIX/node_modules/.bin/pm2"
if [ ! -x "$PM2" ]; then
  echo "# installing pm2 into $PM2_PREFIX" >&2
  mkdir -p "$PM2_PREFIX"
  npm install --silent --no-audit --no-fund --prefix "$PM2_PREFIX" pm2 >&2
fi
export PM2_HOME="$WORKDIR/pm2home"
pm2_stop() { "$PM2" kill >/dev/null 2>&1 || true; }
trap 'pm2_stop; cleanup' EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_http PORT PID: until the server answers (or fails after 30 s).
wait_http() {
  local i
  for ((i = 0; i < 300; i++)); do
    curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0
    [ -z "$2" ] || kill -0 "$2" 2>/dev/null || { echo "bench: server exited" >&2; exit 1; }
    sleep 0.1
  done
  echo "bench: server not answering after 30 s" >&2
  exit 1
}

# start CONFIG: starts the app under CONFIG on a free port; sets SERVER_PORT
# and SERVER_PID (empty for PM2, whose daemon is stopped with pm2 kill).
start() {
  local cfg=$1
  COUNTS="$WORKDIR/counts.$cfg"
  rm -rf "$COUNTS"
  mkdir -p "$COUNTS"
  SERVER_PORT=$(free_port)
  SERVER_PID=
  case $cfg in
    herd-*)
      env COUNT_DIR="$COUNTS" HERD_RUNTIME_DIR="$WORKDIR/rt" "$HERD" run -w "$WORKERS" \
        --sched "${cfg#herd-}" -l "127.0.0.1:$SERVER_PORT" --name "bench-$cfg" -- node "$APP" \
        >"$WORKDIR/$cfg.out" 2>"$WORKDIR/$cfg.err" </dev/null &
      SERVER_PID=$!
      ;;
    node-*)
      env COUNT_DIR="$COUNTS" PORT="$SERVER_PORT" WORKERS="$WORKERS" \
        NODE_CLUSTER_SCHED_POLICY="${cfg#node-}" node "$CLUSTER_APP" \
        >"$WORKDIR/$cfg.out" 2>"$WORKDIR/$cfg.err" </dev/null &
      SERVER_PID=$!
      ;;
    pm2)
      cat >"$WORKDIR/ecosystem.config.js" <<JS
module.exports = { apps: [{ name: 'hello', script: '$APP', instances: $WORKERS, exec_mode: 'cluster',
  env: { PORT: '$SERVER_PORT', COUNT_DIR: '$COUNTS' } }] };
JS
      "$PM2" start "$WORKDIR/ecosystem.config.js" >"$WORKDIR/pm2.out" 2>&1
      ;;
  esac
  [ -z "$SERVER_PID" ] || SERVER_PIDS+=("$SERVER_PID")
  wait_http "$SERVER_PORT" "$SERVER_PID"
}

stop() {
  if [ -n "$SERVER_PID" ]; then stop_pid "$SERVER_PID"; else pm2_stop; fi
}

# counts: "PID REQUESTS CONNECTIONS" per worker, from the app's files.
counts() {
  local f
  for f in "$COUNTS"/*; do
    [ -f "$f" ] && echo "$(basename "$f") $(cat "$f")"
  done
}

# spread BEFORE AFTER [COLUMN]: max/min over the workers of what they
# counted between the two: requests (column 2, the default) or connections
# accepted (column 3: where the run's connections were placed).
spread() {
  awk -v c="${3:-2}" 'NR == FNR { b[$1] = $c; next } { d = $c - b[$1]; n++; if (n == 1 || d < lo) lo = d; if (d > hi) hi = d }
    END { if (n < 2 || lo <= 0) print "inf"; else printf "%.2f\n", hi / lo }' "$1" "$2"
}

declare -A KA CL SPK SPC PLK ERRS
machine_note
echo "# $WORKERS workers, wrk -t1 -c$CONNS -d${DURATION}s, keep-alive and 'Connection: close', $ROUNDS round(s) (median)"
echo "# pm2 $("$PM2" --version 2>/dev/null | tail -1)"
for ((round = 1; round <= ROUNDS; round++)); do
  for cfg in "${CONFIGS[@]}"; do
    start "$cfg"
    for mode in ka close; do
      hdr=()
      [ "$mode" = close ] && hdr=(-H 'Connection: close')
      run_wrk "$WORKDIR/warmup" -t1 -c"$CONNS" -d"${WARMUP}s" "${hdr[@]}"
      sleep 0.5
      counts >"$WORKDIR/before"
      run_wrk "$WORKDIR/$cfg.$mode.$round.wrk" -t1 -c"$CONNS" -d"${DURATION}s" "${hdr[@]}"
      sleep 0.5
      counts >"$WORKDIR/after"
      sp=$(spread "$WORKDIR/before" "$WORKDIR/after")
      placed=$(spread "$WORKDIR/before" "$WORKDIR/after" 3)
      ERRS[$cfg]=$((${ERRS[$cfg]:-0} + WRK_ERRORS))
      if [ "$mode" = ka ]; then
        KA[$cfg]="${KA[$cfg]:-} $WRK_RPS"; SPK[$cfg]="${SPK[$cfg]:-} $sp"; PLK[$cfg]="${PLK[$cfg]:-} $placed"
      else
        CL[$cfg]="${CL[$cfg]:-} $WRK_RPS"; SPC[$cfg]="${SPC[$cfg]:-} $sp"
      fi
      echo "# round $round $cfg $mode: $WRK_RPS req/s, spread $sp, connections placed $placed, $WRK_ERRORS errors" >&2
    done
    stop
  done
done

med_f() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
printf '%-15s %12s %10s %10s %12s %10s %7s\n' config "keep-alive" spread placed "new-conn" spread errors
for cfg in "${CONFIGS[@]}"; do
  # shellcheck disable=SC2086
  ka=$(median ${KA[$cfg]}); cl=$(median ${CL[$cfg]})
  # shellcheck disable=SC2086
  spk=$(med_f ${SPK[$cfg]}); spc=$(med_f ${SPC[$cfg]}); plk=$(med_f ${PLK[$cfg]})
  declare "ka_${cfg//-/_}=$ka" "cl_${cfg//-/_}=$cl" "spk_${cfg//-/_}=$spk" "plk_${cfg//-/_}=$plk"
  printf '%-15s %12s %10s %10s %12s %10s %7s\n' "$cfg" "$ka" "$spk" "$plk" "$cl" "$spc" "${ERRS[$cfg]}"
done

best() { printf '%s\n' "$@" | sort -n | tail -1; }
herd_ka=$(best "$ka_herd_shared" "$ka_herd_reuseport")
node_ka=$(best "$ka_node_rr" "$ka_node_none" "$ka_pm2")
herd_cl=$(best "$cl_herd_shared" "$cl_herd_reuseport")
node_cl=$(best "$cl_node_rr" "$cl_node_none" "$cl_pm2")
echo "foreign-new-connection: herd $herd_cl node $node_cl ratio $(ratio "$herd_cl" "$node_cl")"
echo "foreign-placement-keepalive: herd-reuseport $plk_herd_reuseport herd-shared $plk_herd_shared node-rr $plk_node_rr node-none $plk_node_none pm2 $plk_pm2"
echo "foreign-spread-keepalive: herd-reuseport $spk_herd_reuseport herd-shared $spk_herd_shared node-rr $spk_node_rr node-none $spk_node_none pm2 $spk_pm2"
echo "foreign: herd $herd_ka node $node_ka ratio $(ratio "$herd_ka" "$node_ka")"
