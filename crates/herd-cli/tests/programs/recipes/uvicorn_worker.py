# gunicorn's worker class for the ASGI app in asgi.py: uvicorn's
# UvicornWorker running asgi.Server, which stops without dropping a
# keep-alive request (docs/recipes.md).
from uvicorn.workers import UvicornWorker

import asgi


class Worker(UvicornWorker):
    async def _serve(self):  # UvicornWorker._serve (uvicorn 0.38), with asgi.Server
        self.config.app = self.wsgi
        server = asgi.Server(config=self.config)
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            raise SystemExit(3)  # gunicorn's WORKER_BOOT_ERROR
