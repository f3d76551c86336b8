"""``sensorstream serve --db FILE``: a stopped pipeline's store over the HTTP API.

The app is :func:`~sensorstream.api.app.stored_app` (queries, ``/compute/metrics``, SQL),
served in a background thread while the main thread waits for Ctrl-C, which stops it
after the requests in flight. Tokens come from ``SENSORSTREAM_TOKENS``; with none, only
clients on this machine may call it.
"""

from __future__ import annotations

import threading
from pathlib import Path

from rich.console import Console
from rich.text import Text

from sensorstream.display import safe_text
from sensorstream.errors import ConfigError


def serve_store(
    db: Path,
    pipeline: str | None,
    host: str,
    port: int,
    *,
    console: Console,
    stop: threading.Event | None = None,
) -> None:
    """Serve ``db``'s ``pipeline`` (its only one by default) until Ctrl-C (or ``stop``)."""
    from sensorstream.api.app import stored_app
    from sensorstream.api.auth import Auth
    from sensorstream.api.server import BackgroundServer
    from sensorstream.cli.alert_options import pipeline_of
    from sensorstream.store import Store

    with Store(db) as store:  # fails now if the file is missing, locked, or has no pipeline
        name = pipeline_of(store, pipeline)
    app = stored_app(db, name, Auth.configure())
    try:
        server = BackgroundServer(app, host, port, name=f"api-{name}")
    except OSError as error:
        msg = f"cannot serve on {host}:{port}: {error.strerror or error}; choose another --port"
        raise ConfigError(msg) from error
    with server:
        console.print(
            Text.assemble(
                ("API: ", "bold"),
                safe_text(server.url),
                " serving pipeline ",
                safe_text(name),
                " of ",
                safe_text(str(db)),
                " (OpenAPI docs at /docs). Ctrl-C to stop.",
            )
        )
        waiting = stop if stop is not None else threading.Event()
        try:
            while not waiting.wait(0.5):
                pass
        except KeyboardInterrupt:
            console.print("stopped")
