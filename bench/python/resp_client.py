# One RESP client's GET and SET rate against a Unix socket, with redis-py:
#   python3 resp_client.py SOCKET N
# One round trip per command. Prints `set <ops/s> get <ops/s>`.
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


rate(lambda k: r.set(k, value))  # warm-up
s = rate(lambda k: r.set(k, value))
g = rate(lambda k: r.get(k))
print(f"set {s:.0f} get {g:.0f}")
