"""A Python server for `herd run`: it serves the socket herd passes at
descriptor 3 and tells herd when it is ready (sd_notify READY=1).

    herd run -w 2 -l 127.0.0.1:8080 --ready notify -- python3 examples/server.py
"""
import http.server
import os
import signal
import socket
import threading


class Hello(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = f"hello from worker {os.environ['HERD_WORKER_ID']}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def notify(message):
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(message.encode(), os.environ["NOTIFY_SOCKET"])


sock = socket.socket(fileno=3)  # LISTEN_FDS=1: the socket herd bound
server = http.server.ThreadingHTTPServer(sock.getsockname()[:2], Hello, bind_and_activate=False)
server.socket = sock
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
notify("READY=1\nSTATUS=serving")  # after the warm-up: now herd counts it ready
server.serve_forever()
