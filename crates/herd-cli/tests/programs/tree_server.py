"""A worker that is a process tree, for `herd ctl status` tests: the
master forks one child that holds memory and serves HTTP on the socket
herd passes at descriptor 3; the master only waits for it (and forwards
SIGTERM). The child, on SIGTERM, stops accepting, finishes the requests
under way, then exits 0.

Paths: /pid answers the child's pid; /hold answers only once the file
HOLD_GATE names exists (a slow request the test ends).

Environment:
  FAIL_GATE=PATH exit 1 at once if PATH exists (a new build that fails)
  CHILD_MB=N     the child allocates and touches N MiB (default 0)
  HOLD_GATE=PATH see /hold
"""
import http.server
import os
import signal
import socket
import sys
import threading
import time


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path == "/hold":
            gate = os.environ.get("HOLD_GATE", "")
            while gate and not os.path.exists(gate):
                time.sleep(0.02)
        body = str(os.getpid()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def child(sock):
    mb = int(os.environ.get("CHILD_MB", "0"))
    held = bytearray(mb << 20)
    for i in range(0, len(held), 4096):
        held[i] = 1
    server = http.server.ThreadingHTTPServer(
        sock.getsockname()[:2], Handler, bind_and_activate=False
    )
    server.socket.close()
    server.socket = sock
    # Requests under way finish before the process exits.
    server.daemon_threads = False
    server.block_on_close = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever(poll_interval=0.05)
    server.server_close()
    os._exit(0 if held is not None else 1)


def main():
    gate = os.environ.get("FAIL_GATE", "")
    if gate and os.path.exists(gate):
        sys.exit(1)
    sock = socket.socket(fileno=3)
    pid = os.fork()
    if pid == 0:
        child(sock)
    print(f"master {os.getpid()} forked child {pid}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGTERM))
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status) if status else 0)


main()
