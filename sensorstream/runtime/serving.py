"""Serving a running pipeline's API from its own process, beside the runner.

:class:`PipelineServer` composes one app for the run: the query API over the store (read
through the DuckDB sink's own connection, since DuckDB lets no other process in while it
writes; a file beside the store says where the API is, for ``sensorstream query``:
:mod:`sensorstream.store.served`), live events (fed by a live sink added to the runner),
the runner's ``/metrics``, the live dashboard at ``/`` (:mod:`sensorstream.dashboard`),
acknowledging and silencing alerts in the actions file beside the store (the ``admin``
scope), and ``POST`` for every stream whose source is ``http`` (appending to that
source's ingest log). It runs the app in a background uvicorn thread,
where the pipeline's ``api:`` section says (loopback by default), with its tokens and
``SENSORSTREAM_TOKENS``'; with none configured only clients on this machine may call it.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from types import TracebackType

import duckdb
from fastapi import APIRouter, Depends

from sensorstream.actions.alert_actions import AlertActions
from sensorstream.api.app import Serving, create_app
from sensorstream.api.auth import Auth
from sensorstream.api.ingest import ingest_path, ingest_router
from sensorstream.api.queries import ActionsOpener
from sensorstream.api.server import BackgroundServer
from sensorstream.dashboard import dashboard_router
from sensorstream.errors import ConfigError, SinkError, StoreBusy, StoreError
from sensorstream.runtime.runner import Runner
from sensorstream.sinks.duckdb import DuckDBSink
from sensorstream.sinks.live import LiveHub, LiveSink
from sensorstream.sources.http import HttpSource
from sensorstream.store.readers import StoreReaders
from sensorstream.store.served import announce, withdraw


class PipelineServer:
    """The API of one running pipeline; start it before :meth:`Runner.run`, close it after.

    ``host`` and ``port`` override the pipeline's ``api:`` section (port 0: a free one).
    """

    def __init__(
        self,
        runner: Runner,
        *,
        host: str | None = None,
        port: int | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        settings = runner.spec.api.overridden(host=host, port=port)
        name = runner.spec.name
        auth = Auth.configure(settings.tokens, environ)
        self.hub = LiveHub()
        runner.sinks.insert(0, LiveSink(self.hub))
        self.ingest = ingest_paths(runner)
        self.readers = _store_readers(runner)
        read = [Depends(auth.require("read"))]
        page = dashboard_router(runner.spec.views(), auth, read)
        app = create_app(
            Serving(
                name,
                self.readers.open,
                self.hub,
                runner.metrics,
                routers=[*_ingest_routers(runner, auth), page],
                actions=_actions_opener(runner),
            ),
            read=read,
            admin=auth.require("admin"),
        )
        self.server = BackgroundServer(app, settings.host, settings.port, name=f"api-{name}")
        self.stores = [sink.path for sink in runner.sinks if isinstance(sink, DuckDBSink)]
        self.pipeline = name

    @property
    def url(self) -> str:
        """Where the API listens."""
        return self.server.url

    def start(self) -> PipelineServer:
        """Start serving (in a background thread), and say so beside each store."""
        self.server.start()
        for store in self.stores:
            announce(store, self.url, self.pipeline)
        return self

    def close(self) -> None:
        """Stop serving, letting requests in flight finish."""
        for store in self.stores:
            withdraw(store)
        self.hub.close()  # the event streams end, rather than be cancelled mid-wait
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


def ingest_paths(runner: Runner) -> dict[str, str]:
    """Each stream that takes posts on the API, and its path."""
    return {
        name: ingest_path(name)
        for name, stream in runner.streams.items()
        if isinstance(stream.source, HttpSource) and stream.source.serve
    }


def check_served(runner: Runner, serve: bool) -> None:
    """A ConfigError if a stream takes posts on an API the run will not serve."""
    taking = ingest_paths(runner)
    if taking and not serve:
        names = ", ".join(taking)
        msg = (
            f"stream {names} takes posts on the pipeline's API, which this run does not "
            "serve: drop --no-serve (or api.serve: false), or set serve: false on its source "
            "to read an ingest log that another process writes"
        )
        raise ConfigError(msg)


def _ingest_routers(runner: Runner, auth: Auth) -> list[APIRouter]:
    routers = []
    for name, path in ingest_paths(runner).items():
        stream = runner.streams[name]
        source = stream.source
        assert isinstance(source, HttpSource)  # ingest_paths took only these
        routers.append(
            ingest_router(
                source.log(),
                stream.format,
                auth,
                path=path,
                max_request_bytes=source.max_request_bytes,
                cache=source.decoded,
            )
        )
    return routers


def _actions_opener(runner: Runner) -> ActionsOpener | None:
    """Acknowledgements and silences: the file beside the store, writable meanwhile."""
    store = next((sink for sink in runner.sinks if isinstance(sink, DuckDBSink)), None)
    return partial(AlertActions.beside, store.path) if store is not None else None


def _store_readers(runner: Runner) -> StoreReaders:
    """The store as the DuckDB sink's reader sees it, kept between requests.

    A store made per request would bind its readings view anew each time.
    """
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
            raise StoreBusy(msg) from None

    return StoreReaders(store.path if store is not None else Path(), cursor)
