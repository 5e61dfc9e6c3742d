"""A Python HTTP server for the start-up tests: it serves the socket herd
passes at descriptor 3 and tells who and where it runs.

Responses: the worker's uid (path /uid), its working directory (path
/cwd), the value of environment variable NAME or `<unset>` (path
/env/NAME). It never uses NOTIFY_SOCKET (run it with the default --ready
listening), so it also works as a user that cannot reach herd's runtime
directory.
"""
import http.server
import os
import signal
import socket
import sys
import threading


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path == "/uid":
            body = str(os.getuid())
        elif self.path == "/cwd":
            body = os.getcwd()
        elif self.path.startswith("/env/"):
            body = os.environ.get(self.path[len("/env/"):], "<unset>")
        else:
            body = str(os.getpid())
        body = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    sock = socket.socket(fileno=3)
    server = http.server.ThreadingHTTPServer(
        sock.getsockname()[:2], Handler, bind_and_activate=False
    )
    server.socket.close()
    server.socket = sock
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever(poll_interval=0.05)
    sys.exit(0)


main()
