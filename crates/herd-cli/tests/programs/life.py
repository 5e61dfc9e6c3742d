"""A worker whose life the test steers with files in $LIFE_DIR: it serves
(waits in select on descriptor 3, which herd's `listening` rule counts as
ready) until `crash-ID` appears (then exits 1, removing it); while `loop`
exists it exits 3 at once, before ever being ready (a crash loop)."""
import os, sys, time, socket, signal, select
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
d = os.environ["LIFE_DIR"]; wid = os.environ["HERD_WORKER_ID"]
if os.path.exists(os.path.join(d, "loop")):
    print("worker %s failing at boot" % wid, flush=True)
    sys.exit(3)
s = socket.socket(fileno=3)
print("worker %s serving" % wid, flush=True)
while True:
    if os.path.exists(os.path.join(d, "crash-" + wid)):
        os.unlink(os.path.join(d, "crash-" + wid))
        print("worker %s crashing" % wid, flush=True)
        os._exit(1)
    select.select([s], [], [], 0.05)
