"""A pre-fork server for `herd run`, as gunicorn is: the master takes the
socket herd passes at descriptor 3 (LISTEN_FDS) and never accepts on it;
what it does instead is chosen by PREFORK_MODE:

  fork (default)  fork one child that accepts on the socket and serves HTTP
                  (`PID` of the child at /pid); the master only waits for
                  it, and forwards SIGTERM to it
  notify          accept nothing, send READY=1 on NOTIFY_SOCKET and wait
  idle            accept nothing, say nothing, and wait (a program that
                  never becomes ready)
"""
import http.server
import os
import signal
import socket
import sys
import threading


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
        body = str(os.getpid()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def child(sock):
    server = http.server.ThreadingHTTPServer(
        sock.getsockname()[:2], Handler, bind_and_activate=False
    )
    server.socket.close()
    server.socket = sock
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever(poll_interval=0.05)
    os._exit(0)


def main():
    assert os.environ.get("LISTEN_PID") == str(os.getpid()), "LISTEN_PID is not my pid"
    assert os.environ.get("LISTEN_FDS") == "1", "expected one socket"
    sock = socket.socket(fileno=3)
    mode = os.environ.get("PREFORK_MODE", "fork")
    if mode == "notify":
        notify("READY=1\nSTATUS=ready, accepting nothing")
    if mode in ("notify", "idle"):
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while True:
            signal.pause()
    pid = os.fork()
    if pid == 0:
        child(sock)
    print(f"master {os.getpid()} forked child {pid}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGTERM))
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status) if status else 0)


main()
