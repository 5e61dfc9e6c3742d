#!/usr/bin/env bash
# emitter: fan-out of events from the primary to every worker, herd's
# Emitter (emit_to(Target::AllWorkers, ..), decoded by each worker's
# subscription) against Node's cluster (worker.send to each worker, as
# cluster2's emitter does). Deliveries per second: N events x W workers,
# timed from the first emit until every worker has all N.
#
# Run through bench/run.sh (which builds the binaries):  bench/run.sh emitter
# (bench/run.sh cache calls it too.)
# Knobs: EMITTER_N (events, default 100000), EMITTER_WORKERS (8),
#        EMITTER_REPEAT (3; the median is shown).
# Goal (issue 15): herd >= 5x Node's deliveries per second.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${HERD_BENCH_BIN:?run this through bench/run.sh}/emitter
n=${EMITTER_N:-100000}
workers=${EMITTER_WORKERS:-8}
repeat=${EMITTER_REPEAT:-3}
args=(--n "$n" --workers "$workers")

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "emitter: $n events to each of $workers workers, median of $repeat runs"
echo "emitter: $(nproc) cpus, load average $(cut -d' ' -f1-3 /proc/loadavg), node $(node --version)"
for i in $(seq "$repeat"); do
  "$bin" "${args[@]}" >"$out/herd.$i"
  node "$here/node/emitter.js" "${args[@]}" >"$out/node.$i"
done

median() {
  cat "$out"/*.[0-9]* | awk -v k="$1" '$1 == k { print $2 }' | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) { print "nan"; exit 1 } print v[int((NR + 1) / 2)] }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

h=$(median herd.fanout); nd=$(median node.fanout)
echo
printf '| %-40s | %12s | %12s | %9s |\n' metric herd node herd/node
printf '|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..42})" "$(printf -- '-%.0s' {1..14})" \
  "$(printf -- '-%.0s' {1..14})" "$(printf -- '-%.0s' {1..11})"
printf '| %-40s | %12s | %12s | %9s |\n' "deliveries/s, primary -> $workers workers" "$h" "$nd" "$(ratio "$h" "$nd")"
echo
r=$(ratio "$h" "$nd")
echo "goal: herd fan-out >= 5x node: $(awk -v r="$r" 'BEGIN { print (r >= 5) ? "met" : "MISSED" }') (${r}x)"
echo "emitter: herd $h node $nd ratio $r"
