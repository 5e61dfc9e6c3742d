#!/usr/bin/env bash
# reload: rolling restarts under load, herd against PM2's cluster mode.
#
# Two clients run all along: wrk over keep-alive connections, and wrk with
# `Connection: close` (a new connection per request). Meanwhile each server
# is reloaded RELOADS times, each reload replacing all WORKERS workers:
#   herd: bench/src/bin/hello_supervised.rs (Primary::supervise), SIGHUP;
#         the reload time is the supervisor's own (first successor started
#         to last predecessor asked to leave).
#   pm2:  bench/node/pm2_hello.js, `pm2 start -i WORKERS --wait-ready`,
#         `pm2 reload`; the reload time is the wall time of `pm2 reload`
#         (which includes starting the pm2 CLI: see "pm2 CLI" below).
# PM2 is installed from npm into a temporary prefix, with PM2_HOME there
# too; its daemon is killed at the end (pm2 kill), whatever happens.
# Failed requests: wrk's socket errors (connect, read, write, timeout) plus
# non-2xx answers, for both clients.
#
#   bench/run.sh reload
#   env: RELOADS (50), WORKERS (2), CONNS per client (16), WARMUP s (2),
#        PACE s (1): pause after each reload, for both servers, so that both
#        spend about as long under load with reloads going on (0: back to
#        back), PM2_VERSION (latest)
# The last line is
#   reload: herd <failed requests> pm2 <failed requests> replacements <n>
set -euo pipefail
. "$(dirname "$0")/lib/http.sh"
ensure_wrk
command -v npm >/dev/null || { echo "bench: npm is required (apt-get install npm)" >&2; exit 1; }

RELOADS=${RELOADS:-50}
WORKERS=${WORKERS:-2}
CONNS=${CONNS:-16}
WARMUP=${WARMUP:-2}
PACE=${PACE:-1}
PM2_VERSION=${PM2_VERSION:-latest}
SUP_BIN="$HERD_BENCH_BIN/hello_supervised"
PM2_APP="$BENCH_DIR/node/pm2_hello.js"
export PM2_HOME="$WORKDIR/pm2-home"
PM2="$WORKDIR/pm2/node_modules/.bin/pm2"
LOAD_PIDS=()

# PM2's daemon (and the app workers it forked) go first, then what the
# shared helpers started, then the temporary directory.
reload_cleanup() {
  local pid f
  for pid in "${LOAD_PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  if [ -x "$PM2" ] && [ -e "$PM2_HOME/pm2.pid" ]; then
    timeout 20 "$PM2" kill >/dev/null 2>&1 || true
  fi
  for f in "$PM2_HOME"/pm2.pid "$PM2_HOME"/pids/*.pid; do
    [ -f "$f" ] && kill -KILL "$(cat "$f")" 2>/dev/null || true
  done
  cleanup
}
trap reload_cleanup EXIT

# wait_lines FILE PATTERN COUNT SECONDS: waits until FILE holds COUNT lines
# matching PATTERN; fails after SECONDS.
wait_lines() {
  local file=$1 pattern=$2 count=$3 i
  for ((i = 0; i < $4 * 100; i++)); do
    [ "$(grep -c "$pattern" "$file" || true)" -ge "$count" ] && return 0
    sleep 0.01
  done
  echo "bench: no $count lines /$pattern/ in $file after $4 s" >&2
  tail -5 "$file" >&2
  exit 1
}

# start_load NAME PORT: both clients, until stop_load.
start_load() {
  local url="http://127.0.0.1:$2/"
  LOAD_PIDS=()
  wrk -t1 -c"$CONNS" -d3600s --timeout 10s "$url" >"$WORKDIR/$1.keepalive.wrk" 2>&1 &
  LOAD_PIDS+=($!)
  wrk -t1 -c"$CONNS" -d3600s --timeout 10s -H 'Connection: close' "$url" \
    >"$WORKDIR/$1.close.wrk" 2>&1 &
  LOAD_PIDS+=($!)
}

# stop_load: wrk prints its summary on SIGINT.
stop_load() {
  local pid
  kill -INT "${LOAD_PIDS[@]}" 2>/dev/null || true
  for pid in "${LOAD_PIDS[@]}"; do wait "$pid" || true; done
  LOAD_PIDS=()
}

# wrk_counts FILE: "REQUESTS FAILED SECONDS DETAIL" from a wrk summary.
wrk_counts() {
  awk '
    / requests in / { req = $1; secs = $4; sub(/,$/, "", secs); sub(/s$/, "", secs) }
    /Socket errors:/ { gsub(",", ""); c = $4; r = $6; w = $8; t = $10 }
    /Non-2xx/ { n = $NF }
    END {
      if (req == "") { print "? ? ? no-summary"; exit }
      printf "%d %d %s connect=%d,read=%d,write=%d,timeout=%d,non2xx=%d\n", req, c + r + w + t + n, secs, c, r, w, t, n
    }' "$1"
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# The same load and reloads for each server; results in R_* by name.
declare -A R_SECS R_REQ_KA R_FAIL_KA R_DET_KA R_REQ_CL R_FAIL_CL R_DET_CL R_FAILED R_REPL R_MEAN R_MAX

record() { # NAME REPLACEMENTS RELOAD-TIMES-MS...
  local name=$1 repl=$2
  shift 2
  read -r R_REQ_KA[$name] R_FAIL_KA[$name] R_SECS[$name] R_DET_KA[$name] < <(wrk_counts "$WORKDIR/$name.keepalive.wrk")
  read -r R_REQ_CL[$name] R_FAIL_CL[$name] _ R_DET_CL[$name] < <(wrk_counts "$WORKDIR/$name.close.wrk")
  R_FAILED[$name]=$((${R_FAIL_KA[$name]} + ${R_FAIL_CL[$name]}))
  R_REPL[$name]=$repl
  R_MEAN[$name]=$(printf '%s\n' "$@" | awk '{ s += $1 } END { printf "%.1f", s / NR }')
  R_MAX[$name]=$(printf '%s\n' "$@" | sort -g | tail -1)
}

machine_note
echo "# $WORKERS workers, $RELOADS reloads each, ${PACE}s pause after each; load: wrk -t1 -c$CONNS keep-alive + wrk -t1 -c$CONNS 'Connection: close'"

# ---- herd ----
HERD_SCHED_POLICY=rr start_server herd "$SUP_BIN" 127.0.0.1:0 --workers "$WORKERS"
start_load herd "$SERVER_PORT"
sleep "$WARMUP" # load before the first reload
times=()
replaced=0
for ((i = 1; i <= RELOADS; i++)); do
  done_before=$(grep -c '^reload \(finished\|aborted\)' "$SERVER_OUT" || true)
  kill -HUP "$SERVER_PID"
  wait_lines "$SERVER_OUT" '^reload \(finished\|aborted\)' $((done_before + 1)) 60
  line=$(grep '^reload \(finished\|aborted\)' "$SERVER_OUT" | tail -1)
  case $line in
    "reload finished"*)
      replaced=$((replaced + $(echo "$line" | sed 's/.*replaced=\([0-9]*\).*/\1/')))
      times+=("$(echo "$line" | sed 's/.*ms=\([0-9.]*\).*/\1/')")
      ;;
    *) echo "# herd: $line" >&2 ;;
  esac
  sleep "$PACE"
done
sleep "$WARMUP" # load after the last reload
stop_load
stop_server
record herd "$replaced" "${times[@]}"
echo "# herd: ${R_FAILED[herd]} failed, $replaced replacements, mean reload ${R_MEAN[herd]} ms" >&2

# ---- pm2 ----
echo "# installing pm2@$PM2_VERSION from npm" >&2
npm install --prefix "$WORKDIR/pm2" "pm2@$PM2_VERSION" --no-audit --no-fund --loglevel=error \
  >"$WORKDIR/npm.log" 2>&1 || { cat "$WORKDIR/npm.log" >&2; exit 1; }
PM2_V=$("$PM2" --version 2>/dev/null | tail -1)
port=$(node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })')
PORT=$port "$PM2" start "$PM2_APP" --name hello -i "$WORKERS" --wait-ready --listen-timeout 10000 \
  >"$WORKDIR/pm2.start" 2>&1 || { cat "$WORKDIR/pm2.start" >&2; exit 1; }
for ((i = 0; i < 300; i++)); do
  curl -fs "http://127.0.0.1:$port/" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fs "http://127.0.0.1:$port/" >/dev/null || { echo "bench: pm2's app does not answer" >&2; exit 1; }
# pm2's restart counts, summed over the app's instances.
pm2_restarts() {
  "$PM2" jlist 2>/dev/null | node -e '
    let s = ""; process.stdin.on("data", d => s += d).on("end", () => {
      const l = JSON.parse(s.slice(s.indexOf("[")));
      console.log(l.filter(p => p.name === "hello").reduce((n, p) => n + p.pm2_env.restart_time, 0));
    });'
}
restarts0=$(pm2_restarts)
# What starting the pm2 CLI costs, included in each reload time below.
cli=()
for i in 1 2 3; do
  t0=$(now_ms)
  "$PM2" ping >/dev/null 2>&1
  cli+=($(($(now_ms) - t0)))
done
PM2_CLI_MS=$(median "${cli[@]}")
start_load pm2 "$port"
sleep "$WARMUP"
times=()
for ((i = 1; i <= RELOADS; i++)); do
  t0=$(now_ms)
  "$PM2" reload hello >"$WORKDIR/pm2.reload" 2>&1 &
  wait $! || { echo "bench: pm2 reload failed:" >&2; cat "$WORKDIR/pm2.reload" >&2; exit 1; }
  times+=($(($(now_ms) - t0)))
  sleep "$PACE"
done
sleep "$WARMUP"
stop_load
replaced=$(($(pm2_restarts) - restarts0))
"$PM2" kill >/dev/null 2>&1 || true
record pm2 "$replaced" "${times[@]}"
echo "# pm2 $PM2_V: ${R_FAILED[pm2]} failed, $replaced replacements, mean reload ${R_MEAN[pm2]} ms" >&2

echo "# pm2 $PM2_V; pm2 CLI round trip (pm2 ping, median of 3): $PM2_CLI_MS ms, part of each pm2 reload time"
printf '%-6s %8s %6s %7s %10s %8s %10s %8s %8s %12s %11s  %s\n' server reloads repl "load s" "ka reqs" "ka fail" "close reqs" "cl fail" failed "reload ms" "max ms" "errors (keep-alive | close)"
for s in herd pm2; do
  printf '%-6s %8s %6s %7s %10s %8s %10s %8s %8s %12s %11s  %s | %s\n' "$s" "$RELOADS" "${R_REPL[$s]}" "${R_SECS[$s]}" \
    "${R_REQ_KA[$s]}" "${R_FAIL_KA[$s]}" "${R_REQ_CL[$s]}" "${R_FAIL_CL[$s]}" "${R_FAILED[$s]}" \
    "${R_MEAN[$s]}" "${R_MAX[$s]}" "${R_DET_KA[$s]}" "${R_DET_CL[$s]}"
done
echo "reload-time-ms: herd ${R_MEAN[herd]} pm2 ${R_MEAN[pm2]} (mean per reload of $WORKERS workers)"
if [ "${R_REPL[herd]}" != "${R_REPL[pm2]}" ]; then
  echo "# replacements differ: herd ${R_REPL[herd]}, pm2 ${R_REPL[pm2]}" >&2
fi
echo "reload: herd ${R_FAILED[herd]} pm2 ${R_FAILED[pm2]} replacements ${R_REPL[herd]}"
