# A worker that uses the cluster's cache and channels through redis-py,
# pointed at HERD_SERVICES_SOCKET (crates/herd-cli/tests/services_resp.rs).
# It checks GET/SET/DEL/EXPIRE/TTL, then talks to the other worker over
# PUBLISH/SUBSCRIBE and writes what it heard into the cache.
import os
import signal
import sys
import time

import redis

path = os.environ["HERD_SERVICES_SOCKET"]
wid = os.environ["HERD_WORKER_ID"]
r = redis.Redis(unix_socket_path=path, decode_responses=True)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))


def eq(got, want, what):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


try:
    p = r.pubsub(ignore_subscribe_messages=True)
    p.subscribe("chat")
    eq(r.set(f"live:{wid}", str(os.getpid())), True, "SET")
    eq(r.get(f"live:{wid}"), str(os.getpid()), "GET")
    eq(r.expire(f"live:{wid}", 100), True, "EXPIRE")
    ttl = r.ttl(f"live:{wid}")
    if not 90 < ttl <= 100:
        raise AssertionError(f"TTL {ttl}")
    eq(r.set(f"gone:{wid}", "x", px=60000), True, "SET PX")
    eq(r.delete(f"gone:{wid}"), 1, "DEL")
    eq(r.get(f"gone:{wid}"), None, "GET after DEL")
    eq(r.exists(f"live:{wid}", f"gone:{wid}"), 1, "EXISTS")
    eq(r.keys(f"live:{wid}"), [f"live:{wid}"], "KEYS")
    eq(r.set(f"nx:{wid}", "a", nx=True), True, "SET NX")
    eq(r.set(f"nx:{wid}", "b", nx=True), None, "SET NX again")
    r.set(f"ok:{wid}", "1")
    beat = 0
    while True:
        beat += 1
        r.publish("chat", f"hello from {wid}")
        r.set(f"beat:{wid}", str(beat))
        # Read all that came (its own message and the other's), so the
        # subscription never falls behind.
        m = p.get_message(timeout=0.05)
        while m:
            if m["type"] == "message" and not m["data"].endswith(f" {wid}"):
                r.set(f"heard:{wid}", m["data"])
            m = p.get_message(timeout=0)
except Exception as e:  # noqa: BLE001 - the test reads why
    r.set(f"fail:{wid}", repr(e))
    sys.exit(1)
