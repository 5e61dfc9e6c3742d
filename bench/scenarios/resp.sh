#!/usr/bin/env bash
# resp: herd's services socket (the cluster's cache over RESP, issue 16)
# against a plain redis-server on a Unix socket, from the same clients in
# one run: Node with ioredis (one command in flight, and 16 pipelined) and
# Python with redis-py (one in flight). GET and SET of 64-byte values over
# 1000 keys. Rounds alternate herd and redis; the table shows medians. The
# measurement is bench/scenarios/lib/resp.sh's, which the cache scenario
# runs too.
#
#   bench/run.sh resp
#   env: N (commands per measurement, 20000), ROUNDS (3)
# Goal: the RESP socket at least as fast as Redis for GET and SET.
# The last line is `resp: herd <GETs/s> redis <GETs/s> ratio <herd/redis>`
# for ioredis, one command in flight.
set -euo pipefail
. "$(dirname "$0")/lib/resp.sh"
work=$(mktemp -d "${TMPDIR:-/tmp}/herd-bench-resp.XXXXXX")
trap 'resp_stop; rm -rf "$work"' EXIT
resp_run "$work" "${N:-20000}" "${ROUNDS:-3}"
resp_table
echo "$RESP_LAST"
