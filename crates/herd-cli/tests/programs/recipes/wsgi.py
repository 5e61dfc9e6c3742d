# The gunicorn recipe's app (docs/recipes.md): gunicorn's default sync
# worker answers every request with `Connection: close`, so a reload never
# catches a keep-alive connection idle.
import os


def app(environ, start_response):
    pid = os.getpid()
    body = (f"{pid}" if environ["PATH_INFO"] == "/pid" else f"hello from {pid}\n").encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
