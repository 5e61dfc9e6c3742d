# One RESP client's GET and SET rate against a Unix socket, with redis-py:
#   python3 resp_client.py SOCKET N
# One round trip per command. Prints `set <ops/s> get <ops/s> set.p50 <us>
# set.p99 <us> get.p50 <us> get.p99 <us>` (the latencies from a second
# pass, timing each command).
import sys
import time

import redis

path, n = sys.argv[1], int(sys.argv[2])
r = redis.Redis(unix_socket_path=path)
value = b"x" * 64


def rate(op):
    start = time.perf_counter()
    for i in range(n):
        op(f"k{i % 1000}")
    return n / (time.perf_counter() - start)


def latency(op):
    lat = []
    for i in range(n):
        k = f"k{i % 1000}"
        t = time.perf_counter()
        op(k)
        lat.append((time.perf_counter() - t) * 1e6)
    lat.sort()
    return lat[round((n - 1) * 0.5)], lat[round((n - 1) * 0.99)]


def set_(k):
    r.set(k, value)


rate(set_)  # warm-up
s = rate(set_)
g = rate(r.get)
s50, s99 = latency(set_)
g50, g99 = latency(r.get)
print(f"set {s:.0f} get {g:.0f} set.p50 {s50:.1f} set.p99 {s99:.1f} get.p50 {g50:.1f} get.p99 {g99:.1f}")
