"""Serving a running pipeline's API from its own process, beside the runner.

:class:`PipelineServer` adds a live sink to the runner (its events feed the SSE stream),
reads the store through the DuckDB sink's own connection (DuckDB lets no other process in
while it writes), in stores kept from one request to the next
(:mod:`~sensorstream.store.readers`), serves the runner's metrics, and runs the app in a
background uvicorn thread. With no token configured (``SENSORSTREAM_TOKENS``) only
clients on this machine may call it; it listens on loopback unless told otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import duckdb
from fastapi import Depends

from sensorstream.api.app import Serving, create_app
from sensorstream.api.auth import Auth
from sensorstream.api.server import BackgroundServer
from sensorstream.errors import SinkError, StoreError
from sensorstream.runtime.runner import Runner
from sensorstream.sinks.duckdb import DuckDBSink
from sensorstream.sinks.live import LiveHub, LiveSink
from sensorstream.store import Store
from sensorstream.store.readers import StoreReaders

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000


class PipelineServer:
    """The API of one running pipeline; start it before :meth:`Runner.run`, close it after."""

    def __init__(
        self,
        runner: Runner,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.hub = LiveHub()
        runner.sinks.append(LiveSink(self.hub))
        store = next((sink for sink in runner.sinks if isinstance(sink, DuckDBSink)), None)
        name = runner.spec.name

        def cursor() -> duckdb.DuckDBPyConnection:
            if store is None:
                msg = f"pipeline {name!r} has no duckdb sink: it stores nothing to query"
                raise StoreError(msg)
            try:
                return store.reader()
            except SinkError:
                msg = f"pipeline {name!r} has not opened its store yet; try again in a moment"
                raise StoreError(msg) from None

        # Kept between requests: a store made per request would bind its readings view anew.
        self.readers = StoreReaders(store.path if store else Path(), cursor)

        @contextmanager
        def open_store() -> Iterator[Store]:
            with self.readers.open() as opened:
                yield opened

        auth = Auth.configure((), environ, where="SENSORSTREAM_TOKENS")
        app = create_app(
            Serving(name, open_store, self.hub, runner.metrics),
            read=[Depends(auth.require("read"))],
        )
        self.server = BackgroundServer(app, host, port, name=f"api-{name}")

    @property
    def url(self) -> str:
        """Where the API listens."""
        return self.server.url

    def start(self) -> PipelineServer:
        """Start serving (in a background thread)."""
        self.server.start()
        return self

    def close(self) -> None:
        """Stop serving, letting requests in flight finish."""
        try:
            self.server.close()
        finally:
            self.readers.close()

    def __enter__(self) -> PipelineServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
