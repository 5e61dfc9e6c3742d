# Helpers shared by the HTTP scenarios (connrate, fairness, keepalive).
# Sourced, not run: bench/run.sh lists only bench/scenarios/*.sh.
#
# Servers are herd's bench/src/bin/hello.rs and Node's
# bench/node/cluster_hello.js: both print `ready port=P ... pid=PID` once
# every worker listens, and a `{"counts":{...}}` line on SIGUSR2.

here_http=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_DIR=$(cd "$here_http/../.." && pwd)
HELLO_BIN="${HERD_BENCH_BIN:?run through bench/run.sh}/hello"
NODE_HELLO="$BENCH_DIR/node/cluster_hello.js"
WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/herd-bench.XXXXXX")
CLK_TCK=$(getconf CLK_TCK)

# Every server we start, with the workers it forked, is killed at exit.
# Long commands run in the background and are waited for, so that a signal
# to this script is handled at once, not after them.
SERVER_PIDS=()
WRK_PID=
cleanup() {
  local pid
  [ -z "$WRK_PID" ] || kill -KILL "$WRK_PID" 2>/dev/null || true
  for pid in "${SERVER_PIDS[@]}"; do stop_pid "$pid"; done
  rm -rf "$WORKDIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ensure_wrk() {
  command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) >&2
  command -v wrk >/dev/null || { echo "bench: wrk is required and could not be installed" >&2; exit 1; }
}

# stop_pid PID: TERM the server and its workers, KILL what is left after 5 s.
stop_pid() {
  local pid=$1 kids k i
  kill -0 "$pid" 2>/dev/null || return 0
  kids=$(pgrep -P "$pid" || true)
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  for k in $kids; do kill -KILL "$k" 2>/dev/null || true; done
  wait "$pid" 2>/dev/null || true
}

# start_server NAME CMD...: starts a server in the background and waits for
# its ready line. Sets SERVER_PID, SERVER_PORT and SERVER_OUT.
start_server() {
  local name=$1 i
  shift
  SERVER_OUT="$WORKDIR/$name.out"
  : >"$SERVER_OUT"
  "$@" >"$SERVER_OUT" 2>"$WORKDIR/$name.err" </dev/null &
  SERVER_PID=$!
  SERVER_PIDS+=("$SERVER_PID")
  for ((i = 0; i < 300; i++)); do
    if grep -q '^ready port=' "$SERVER_OUT"; then
      SERVER_PORT=$(sed -n 's/^ready port=\([0-9]*\).*/\1/p' "$SERVER_OUT" | head -1)
      return 0
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "bench: $name exited before it was ready:" >&2
      cat "$WORKDIR/$name.err" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "bench: $name not ready after 30 s" >&2
  cat "$WORKDIR/$name.err" >&2
  exit 1
}

stop_server() {
  stop_pid "$SERVER_PID"
}

# herd_server NAME POLICY WORKERS [--plain]
herd_server() {
  local name=$1 policy=$2 workers=$3
  shift 3
  start_server "$name" env HERD_SCHED_POLICY="$policy" HERD_WORKERS="$workers" \
    "$HELLO_BIN" 127.0.0.1:0 "$@"
}

# node_server NAME POLICY(rr|none) WORKERS
node_server() {
  start_server "$1" env NODE_CLUSTER_SCHED_POLICY="$2" HERD_WORKERS="$3" \
    node "$NODE_HELLO" 127.0.0.1:0
}

# cpu_ticks PID: user + system clock ticks of the process, all threads.
cpu_ticks() {
  # Fields after the command name (which may hold spaces): utime is the 12th,
  # stime the 13th.
  sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

# run_wrk OUTFILE WRK-ARGS...: runs wrk against the current server; sets
# WRK_RPS, WRK_REQUESTS and WRK_ERRORS (socket errors plus non-2xx).
run_wrk() {
  local out=$1
  shift
  wrk "$@" "http://127.0.0.1:$SERVER_PORT/" >"$out" 2>&1 &
  WRK_PID=$!
  wait "$WRK_PID" || {
    echo "bench: wrk failed:" >&2
    cat "$out" >&2
    exit 1
  }
  WRK_PID=
  parse_wrk "$out"
}

# parse_wrk OUTFILE: sets WRK_RPS, WRK_REQUESTS and WRK_ERRORS from wrk's
# output.
parse_wrk() {
  local out=$1
  WRK_RPS=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$out")
  WRK_REQUESTS=$(awk '/ requests in / { print $1 }' "$out")
  WRK_ERRORS=$(awk '
    /Socket errors:/ { gsub(",", ""); n += $4 + $6 + $8 + $10 }
    /Non-2xx/ { n += $NF }
    END { print n + 0 }' "$out")
}

# server_counts: asks the current server for its per-worker counts; prints
# the JSON line.
server_counts() {
  local before i
  before=$(grep -c '^{"counts"' "$SERVER_OUT" || true)
  kill -USR2 "$SERVER_PID"
  for ((i = 0; i < 100; i++)); do
    if [ "$(grep -c '^{"counts"' "$SERVER_OUT" || true)" -gt "$before" ]; then
      grep '^{"counts"' "$SERVER_OUT" | tail -1
      return 0
    fi
    sleep 0.1
  done
  echo "bench: no counts from the server" >&2
  exit 1
}

# counts_values JSON: the counts, one per line.
counts_values() {
  echo "$1" | sed 's/^{"counts":{//; s/}}$//' | tr ',' '\n' | sed 's/^.*://'
}

# median N...: the median of integers.
median() {
  printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# ratio A B [DIGITS]: A/B.
ratio() {
  awk -v a="$1" -v b="$2" -v d="${3:-2}" 'BEGIN { if (b == 0) print "inf"; else printf "%.*f\n", d, a / b }'
}

machine_note() {
  echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load$(uptime | sed 's/.*load average//')"
  echo "# herd-bench hello ($HELLO_BIN), node $(node --version), $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)"
}
