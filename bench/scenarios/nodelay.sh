#!/usr/bin/env bash
# nodelay: uvicorn on keep-alive, on its own port against under `herd run`
# (uvicorn --fd 3), with herd's TCP_NODELAY on the socket it binds (the
# default) and without it (--no-tcp-nodelay). uvicorn wraps a passed
# descriptor as a Unix socket and never sets TCP_NODELAY on its
# connections; Linux passes it from the listening socket to each accepted
# connection, so without herd's it waits on Nagle's algorithm (delayed ACKs)
# for every small response: issue 13 saw 128 against 1,032 requests in 3 s.
#
#   bench/run.sh nodelay
#   env: DURATION seconds per run (3), CONNS (1), ROUNDS (3),
#        UVICORN (the command; default `python3 -m uvicorn` from the pinned
#        uvicorn that scripts/deps.sh installs into .deps/python, run first)
# The last line is `nodelay: herd <rps> uvicorn <rps> ratio <x>`: herd with
# TCP_NODELAY against uvicorn on its own port, the medians of the rounds,
# and the median of each round's ratio (the two run back to back, each
# first in turn: on a busy machine the runs' rates swing several-fold, and
# the paired ratio is what stays put). Before it, `nodelay-together`: the
# median ratio of rounds where uvicorn and herd-nodelay run at once, each
# under its own wrk, so that the same seconds' load weighs on both.
set -euo pipefail
. "$(dirname "$0")/lib/http.sh"
ensure_wrk

DURATION=${DURATION:-3}
CONNS=${CONNS:-1}
ROUNDS=${ROUNDS:-3}
if [ -z "${UVICORN:-}" ]; then
  # The pinned uvicorn the tests use (scripts/deps.sh does nothing when
  # .deps/ is already up to date).
  "$BENCH_DIR/../scripts/deps.sh"
  export PYTHONPATH="$(cd "$BENCH_DIR/.." && pwd)/.deps/python${PYTHONPATH:+:$PYTHONPATH}"
fi
read -r -a UVICORN <<<"${UVICORN:-python3 -m uvicorn}"
"${UVICORN[@]}" --version >/dev/null 2>&1 || {
  echo "bench: uvicorn is required (scripts/deps.sh installs it, or set UVICORN)" >&2
  exit 1
}
CONFIGS=(uvicorn herd-nodelay herd-no-nodelay)

cargo build --release -q -p herd-cli
HERD="$BENCH_DIR/../target/release/herd"
cat >"$WORKDIR/app.py" <<'PY'
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"6")]})
    await send({"type": "http.response.body", "body": b"hello\n"})
PY

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_http() {
  local i
  for ((i = 0; i < 300; i++)); do
    curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0
    kill -0 "$2" 2>/dev/null || { echo "bench: server exited" >&2; exit 1; }
    sleep 0.1
  done
  echo "bench: server not answering after 30 s" >&2
  exit 1
}

start() {
  local cfg=$1 flags=()
  SERVER_PORT=$(free_port)
  case $cfg in
    uvicorn)
      (cd "$WORKDIR" && exec "${UVICORN[@]}" --no-access-log --host 127.0.0.1 --port "$SERVER_PORT" app:app) \
        >"$WORKDIR/$cfg.out" 2>&1 </dev/null &
      ;;
    herd-*)
      [ "$cfg" = herd-no-nodelay ] && flags=(--no-tcp-nodelay)
      (cd "$WORKDIR" && exec env HERD_RUNTIME_DIR="$WORKDIR/rt" "$HERD" run -w 1 "${flags[@]}" \
        -l "127.0.0.1:$SERVER_PORT" --name "bench-$cfg" -- "${UVICORN[@]}" --no-access-log --fd 3 app:app) \
        >"$WORKDIR/$cfg.out" 2>&1 </dev/null &
      ;;
  esac
  SERVER_PID=$!
  SERVER_PIDS+=("$SERVER_PID")
  wait_http "$SERVER_PORT" "$SERVER_PID"
}

declare -A RPS
machine_note
echo "# uvicorn $("${UVICORN[@]}" --version 2>&1 | head -1), 1 worker, wrk -t1 -c$CONNS -d${DURATION}s keep-alive, $ROUNDS round(s) (median)"
RATIOS=()
for ((round = 1; round <= ROUNDS; round++)); do
  # uvicorn and herd-nodelay back to back, in turn first, so that a change
  # in the machine's load between runs weighs on both alike.
  if ((round % 2)); then order=(uvicorn herd-nodelay herd-no-nodelay); else order=(herd-nodelay uvicorn herd-no-nodelay); fi
  for cfg in "${order[@]}"; do
    start "$cfg"
    run_wrk "$WORKDIR/$cfg.$round.wrk" -t1 -c"$CONNS" -d"${DURATION}s"
    RPS[$cfg]="${RPS[$cfg]:-} $WRK_RPS"
    declare "last_${cfg//-/_}=$WRK_RPS"
    echo "# round $round $cfg: $WRK_RPS req/s, $WRK_REQUESTS requests, $WRK_ERRORS errors" >&2
    stop_pid "$SERVER_PID"
  done
  RATIOS+=("$(ratio "$last_herd_nodelay" "$last_uvicorn")")
  echo "# round $round herd-nodelay/uvicorn: ${RATIOS[-1]}" >&2
done

# Then both at once, each under its own wrk, in the same seconds: the
# machine's load (other builds, other benchmarks) weighs on both alike.
TOGETHER=()
for ((round = 1; round <= ROUNDS; round++)); do
  start uvicorn
  u_port=$SERVER_PORT u_pid=$SERVER_PID
  start herd-nodelay
  h_port=$SERVER_PORT h_pid=$SERVER_PID
  wrk -t1 -c"$CONNS" -d"${DURATION}s" "http://127.0.0.1:$u_port/" >"$WORKDIR/together-u.$round.wrk" 2>&1 &
  u_wrk=$!
  wrk -t1 -c"$CONNS" -d"${DURATION}s" "http://127.0.0.1:$h_port/" >"$WORKDIR/together-h.$round.wrk" 2>&1 &
  h_wrk=$!
  wait "$u_wrk" "$h_wrk"
  parse_wrk "$WORKDIR/together-u.$round.wrk"; u_rps=$WRK_RPS
  parse_wrk "$WORKDIR/together-h.$round.wrk"; h_rps=$WRK_RPS
  TOGETHER+=("$(ratio "$h_rps" "$u_rps")")
  echo "# together round $round: uvicorn $u_rps req/s, herd-nodelay $h_rps req/s, ratio ${TOGETHER[-1]}" >&2
  stop_pid "$h_pid"
  stop_pid "$u_pid"
done

printf '%-16s %12s\n' config "keep-alive"
for cfg in "${CONFIGS[@]}"; do
  # shellcheck disable=SC2086
  m=$(median ${RPS[$cfg]})
  declare "rps_${cfg//-/_}=$m"
  printf '%-16s %12s\n' "$cfg" "$m"
done
echo "nodelay-off: herd $rps_herd_no_nodelay uvicorn $rps_uvicorn ratio $(ratio "$rps_herd_no_nodelay" "$rps_uvicorn")"
echo "per-round ratios herd-nodelay/uvicorn: ${RATIOS[*]}"
echo "together (both at once) ratios herd-nodelay/uvicorn: ${TOGETHER[*]}"
together=$(printf '%s\n' "${TOGETHER[@]}" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
echo "nodelay-together: ratio $together"
paired=$(printf '%s\n' "${RATIOS[@]}" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
echo "nodelay: herd $rps_herd_nodelay uvicorn $rps_uvicorn ratio $paired"
