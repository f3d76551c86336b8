"""An ASGI app served by uvicorn in a background thread, until closed.

The socket is bound in the constructor, so a port in use is an :class:`OSError` there and
then (uvicorn binding it itself would exit the process), and port 0 picks a free one
(:attr:`BackgroundServer.port`). The server leaves signals and logging configuration to
the process: Ctrl-C reaches the main thread, not uvicorn. :meth:`close` stops accepting,
lets requests in flight finish (up to ``graceful``) and joins the thread.

>>> import httpx
>>> from fastapi import FastAPI
>>> with BackgroundServer(FastAPI(), port=0) as server:  # doctest: +SKIP
...     httpx.get(server.url + "/docs").status_code
200
"""

from __future__ import annotations

import asyncio
import socket
import threading
from datetime import timedelta
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp

__all__ = ["BackgroundServer"]


class BackgroundServer:
    """Serves ``app`` on ``host:port`` from a daemon thread; see the module.

    Args:
        app: The ASGI application.
        host: The address to listen on (``0.0.0.0`` or ``::`` for every interface).
        port: The port; 0 picks a free one.
        name: The thread's name, for stack dumps.
        graceful: How long :meth:`close` lets requests in flight finish.
        access_log: Log every request at INFO to the ``uvicorn.access`` logger.
    """

    def __init__(
        self,
        app: ASGIApp,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        name: str = "http server",
        graceful: timedelta = timedelta(seconds=5),
        access_log: bool = False,
    ) -> None:
        self.host = host
        self.socket = _bind(host, port)
        self.port: int = self.socket.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_config=None,  # the process's logging stays as it is
            access_log=access_log,
            lifespan="auto",
            timeout_graceful_shutdown=max(1, round(graceful.total_seconds())),
        )
        self._server = uvicorn.Server(config)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)

    @property
    def url(self) -> str:
        """The base URL clients reach it at (the loopback for a wildcard address)."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def start(self, timeout: timedelta = timedelta(seconds=30)) -> BackgroundServer:
        """Start serving; returns once the server accepts requests."""
        self._thread.start()
        deadline = timeout.total_seconds()
        step = 0.005
        waited = 0.0
        while not self._server.started:
            if not self._thread.is_alive():
                msg = f"the HTTP server on {self.url} stopped while starting"
                raise RuntimeError(msg) from self._error
            if waited >= deadline:
                msg = f"the HTTP server on {self.url} did not start within {timeout}"
                raise RuntimeError(msg)
            self._thread.join(step)
            waited += step
        return self

    def _serve(self) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[self.socket]))
        except BaseException as error:  # reported by start()
            self._error = error

    def close(self) -> None:
        """Stop accepting, let requests in flight finish, and wait for the thread."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join()
        self.socket.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket, as uvicorn would bind it (address reuse, so a restart can rebind)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only for a socket
    # that says it is TCP, and without it Nagle's algorithm holds each answer back ~40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock
