# The uvicorn recipe's app (docs/recipes.md), also run by gunicorn with
# UvicornWorker (uvicorn_worker.py). `python3 asgi.py` serves fd 3 with a
# uvicorn.Server that stops without dropping a keep-alive request:
# `uvicorn --fd 3 asgi:app` works too, but closes idle keep-alive
# connections at once on SIGTERM.
import asyncio
import os

import uvicorn

LINGER = 1.0  # seconds to keep answering open connections once stopping
closing = False


async def hello(scope, receive, send):
    if scope["type"] != "http":
        return
    pid = os.getpid()
    body = f"{pid}" if scope["path"] == "/pid" else f"hello from {pid}\n"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body.encode()})


async def app(scope, receive, send):
    # Once stopping, every answer says `Connection: close`: the client
    # moves to another worker instead of reusing a connection about to close.
    async def send_closing(message):
        if closing and message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), (b"connection", b"close")]
        await send(message)
    await hello(scope, receive, send_closing if scope["type"] == "http" else send)


class Server(uvicorn.Server):
    """uvicorn.Server whose shutdown first stops accepting and answers with
    `Connection: close` for up to LINGER seconds: uvicorn's own shutdown
    closes idle keep-alive connections at once, racing a client that just
    sent its next request on one."""

    async def shutdown(self, sockets=None):
        global closing
        closing = True
        for server in self.servers:
            server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LINGER
        while self.server_state.connections and loop.time() < deadline:
            await asyncio.sleep(0.05)
        await super().shutdown(sockets)


if __name__ == "__main__":
    Server(uvicorn.Config(app, fd=3, log_level="warning")).run()
