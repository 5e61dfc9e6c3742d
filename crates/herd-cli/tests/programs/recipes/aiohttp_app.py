# The aiohttp recipe (docs/recipes.md): serves fd 3 and stops without
# dropping a keep-alive request. aiohttp's own shutdown (web.run_app's)
# closes idle keep-alive connections at once, whatever shutdown_timeout
# says: this one stops accepting, answers with `Connection: close` for up
# to LINGER seconds, then cleans up.
import asyncio
import os
import signal
import socket

from aiohttp import web

LINGER = 1.0


async def hello(request):
    pid = os.getpid()
    return web.Response(text=f"{pid}" if request.path == "/pid" else f"hello from {pid}\n")


async def main():
    closing = asyncio.Event()

    @web.middleware
    async def close_when_stopping(request, handler):
        response = await handler(request)
        if closing.is_set():
            response.force_close()  # answers with `Connection: close`
        return response

    app = web.Application(middlewares=[close_when_stopping])
    app.router.add_get("/{tail:.*}", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket(fileno=3)
    site = web.SockSite(runner, sock)
    await site.start()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, closing.set)
    await closing.wait()
    # Stop accepting, and let what was just accepted become a connection
    # before the server closes: asyncio makes a connection's transport in
    # a task of its own, and loses one made after the close (Server._attach
    # asserts the server is open, Python 3.11 here), unread, and resets it.
    loop.remove_reader(sock.fileno())
    await asyncio.sleep(0)
    await site.stop()  # open connections keep being served
    # A new transport's connection joins runner.server's list a loop tick
    # later: look only after the loop has run.
    deadline = loop.time() + LINGER
    while loop.time() < deadline:
        await asyncio.sleep(0.05)
        if not runner.server.connections:
            break
    await runner.cleanup()


asyncio.run(main())
