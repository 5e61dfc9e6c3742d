#!/usr/bin/env bash
# ipc: messages between a primary and one worker, herd against Node's cluster.
#   (a) worker -> primary messages per second, pipelined (a small serde
#       struct / JS object, decoded on arrival), timed first to last arrival;
#   (b) sequential round trips primary -> worker -> primary (mean, p50, p99);
#   (c) a bare Unix-socket ping-pong (two processes, tokio, herd's framing,
#       the same bytes, no serde) measured in the same run as herd's.
# Each measurement runs IPC_REPEAT times (herd and node alternating); the
# table shows the median of each figure.
#
# Run through bench/run.sh (which builds the binaries):  bench/run.sh ipc
# Knobs: IPC_N (messages, default 400000), IPC_M (round trips, 20000),
#        IPC_WARMUP (untimed round trips first, 2000), IPC_REPEAT (3).
# Goals (issue 2): herd >= 5x Node's msgs/s; herd's round trip <= 1.2x bare.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${HERD_BENCH_BIN:?run this through bench/run.sh}/ipc
n=${IPC_N:-400000}
m=${IPC_M:-20000}
warmup=${IPC_WARMUP:-2000}
repeat=${IPC_REPEAT:-3}
args=(--n "$n" --m "$m" --warmup "$warmup")

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "ipc: n=$n messages, m=$m round trips (+$warmup warm-up), median of $repeat runs"
echo "ipc: $(nproc) cpus, load average $(cut -d' ' -f1-3 /proc/loadavg), node $(node --version)"
for i in $(seq "$repeat"); do
  "$bin" "${args[@]}" >"$out/herd.$i"
  node "$here/node/ipc.js" "${args[@]}" >"$out/node.$i"
done

# median KEY: the median over the runs of the figure printed as "KEY VALUE".
median() {
  cat "$out"/*.[0-9]* | awk -v k="$1" '$1 == k { print $2 }' | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) { print "nan"; exit 1 } print v[int((NR + 1) / 2)] }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

h_tput=$(median herd.tput); n_tput=$(median node.tput); b_tput=$(median bare.tput)
row() { # LABEL KEY-SUFFIX [HERD/BARE-CELL]
  local h n b
  h=$(median "herd.$2"); n=$(median "node.$2"); b=$(median "bare.$2")
  printf '| %-32s | %10s | %10s | %10s | %9s | %9s |\n' "$1" "$h" "$n" "$b" \
    "$(ratio "$h" "$n")" "${3:-$(ratio "$h" "$b")}"
}
echo
printf '| %-32s | %10s | %10s | %10s | %9s | %9s |\n' metric herd node "bare unix" herd/node herd/bare
printf '|%s|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..34})" "$(printf -- '-%.0s' {1..12})" \
  "$(printf -- '-%.0s' {1..12})" "$(printf -- '-%.0s' {1..12})" "$(printf -- '-%.0s' {1..11})" \
  "$(printf -- '-%.0s' {1..11})"
# The bare flood writes prebuilt frames 1024 at a time and only counts them
# (no serde, no events): the wire's ceiling, not a rival, hence no ratio.
row "msgs/s worker->primary (higher)" tput "-"
row "round trip mean, us (lower)" rtt.mean
row "round trip p50, us" rtt.p50
row "round trip p99, us" rtt.p99
echo

h_rtt=$(median herd.rtt.mean); b_rtt=$(median bare.rtt.mean)
tput_ratio=$(ratio "$h_tput" "$n_tput")
rtt_ratio=$(ratio "$h_rtt" "$b_rtt")
verdict() { awk -v r="$1" -v op="$2" -v g="$3" 'BEGIN { ok = (op == ">=") ? r >= g : r <= g; print ok ? "met" : "MISSED" }'; }
echo "goal: herd msgs/s >= 5x node: $(verdict "$tput_ratio" ">=" 5) (${tput_ratio}x)"
echo "goal: herd round trip <= 1.2x bare unix: $(verdict "$rtt_ratio" "<=" 1.2) (${rtt_ratio}x)"
echo "ipc-rtt: herd $h_rtt bare $b_rtt ratio $rtt_ratio"
echo "ipc: herd $h_tput node $n_tput ratio $tput_ratio"
