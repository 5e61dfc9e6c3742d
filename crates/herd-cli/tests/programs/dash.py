"""A foreign worker for the dashboard's test: serves the socket herd passes
at descriptor 3 (`PID` on every path), tells herd what it has handled
(`HERD_HANDLED=N`, so its requests/s show) and what it is doing
(`STATUS=served N`) every 200 ms over sd_notify, and takes WARMUP_SECS
(default 0.5) before READY=1, so a reload's progress can be seen.

With redis-py importable (PYTHONPATH from .deps) and HERD_SERVICES_SOCKET
set, each request also uses the cluster's cache through that socket: a GET
that hits (`dash:last`, set by the previous request), two SETs (one a
key of its own, `dash:seen:PID`), and a GET that misses, so the dashboard's cache card has counters that move. A
failed cache call answers the request with a 500 saying why."""
import http.server
import os
import signal
import socket
import sys
import threading
import time

handled = 0
lock = threading.Lock()

try:
    import redis  # noqa: E402 - optional: the page's cache card only

    cache = (
        redis.Redis(unix_socket_path=os.environ["HERD_SERVICES_SOCKET"], decode_responses=True)
        if os.environ.get("HERD_SERVICES_SOCKET")
        else None
    )
except ImportError:
    cache = None


def use_cache():
    if cache is None:
        return
    pid = str(os.getpid())
    cache.get("dash:last")
    cache.set("dash:last", pid)
    cache.set(f"dash:seen:{pid}", "1")
    cache.get(f"dash:never:{pid}")


def notify(msg):
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.sendto(msg.encode(), path)
    finally:
        s.close()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        global handled
        with lock:
            handled += 1
        code, body = 200, str(os.getpid()).encode()
        try:
            use_cache()
        except Exception as e:  # noqa: BLE001 - the client reads why
            code, body = 500, f"cache: {e!r}".encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def report():
    while True:
        with lock:
            n = handled
        notify(f"HERD_HANDLED={n}\nSTATUS=served {n}")
        time.sleep(0.2)


def main():
    sock = socket.socket(fileno=3)
    server = http.server.ThreadingHTTPServer(
        sock.getsockname()[:2], Handler, bind_and_activate=False
    )
    server.socket.close()
    server.socket = sock
    server.daemon_threads = True
    notify("STATUS=warming up")
    time.sleep(float(os.environ.get("WARMUP_SECS", "0.5")))
    # Before it says it is ready: herd may stop it at once after that.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    notify("READY=1\nSTATUS=serving")
    threading.Thread(target=report, daemon=True).start()
    server.serve_forever(poll_interval=0.05)
    sys.exit(0)


main()
