"""A Python HTTP server for `herd run`: it serves the socket herd passes at
descriptor 3 (systemd socket activation) and speaks sd_notify on the
NOTIFY_SOCKET herd gives each worker.

Responses: `hello from PID` (path /), `PID` (path /pid), the accepted
connection's TCP_NODELAY as getsockopt reports it (path /nodelay: this
server never sets it itself).

Environment (all optional):
  READY_GATE=PATH      accept nothing and stay unready until PATH exists
                       (a warm-up the test controls), then send READY=1
  WATCHDOG_STOP=PATH   send WATCHDOG=1 (every WATCHDOG_USEC/4, as herd sets
                       it) until PATH exists, then stop sending it while
                       still serving: a hung worker, as the nanny sees it
Without READY_GATE it sends READY=1 as soon as it serves. In both paths
`{id}` stands for the worker's HERD_WORKER_ID.
"""
import http.server
import os
import signal
import socket
import sys
import threading
import time


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


def wait_for(path):
    while not os.path.exists(path):
        time.sleep(0.02)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        pid = str(os.getpid())
        if self.path == "/nodelay":
            body = str(self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)).encode()
        else:
            body = (pid if self.path == "/pid" else f"hello from {pid}\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    assert os.environ.get("LISTEN_PID") == str(os.getpid()), "LISTEN_PID is not my pid"
    assert os.environ.get("LISTEN_FDS") == "1", "expected one socket"
    sock = socket.socket(fileno=3)
    server = http.server.ThreadingHTTPServer(
        sock.getsockname()[:2], Handler, bind_and_activate=False
    )
    server.socket.close()
    server.socket = sock
    server.daemon_threads = True

    wid = os.environ.get("HERD_WORKER_ID", "")
    gate = os.environ.get("READY_GATE", "").replace("{id}", wid)
    if gate:
        notify("STATUS=warming up")
        wait_for(gate)
    # Warmed up, and before it says it is ready: herd may stop it at once
    # after that. A shutdown asked before serve_forever runs ends it at its
    # start.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"worker {os.environ.get('HERD_WORKER_ID')} (pid {os.getpid()}) serving fd 3", flush=True)
    notify("READY=1\nSTATUS=serving")

    usec = int(os.environ.get("WATCHDOG_USEC", "0"))
    if usec:
        stop = os.environ.get("WATCHDOG_STOP", "").replace("{id}", wid)

        def ping():
            while not (stop and os.path.exists(stop)):
                notify("WATCHDOG=1")
                time.sleep(usec / 4e6)
            notify("STATUS=hung (no more WATCHDOG=1)")

        threading.Thread(target=ping, daemon=True).start()

    server.serve_forever(poll_interval=0.05)
    sys.exit(0)


main()
