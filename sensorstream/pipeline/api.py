"""Where a running pipeline serves its API, and who may call it: the ``api:`` section.

One HTTP server per pipeline run serves everything: the query API, live events,
``/metrics``, and ``POST`` for each stream whose source is ``http``. ``sensorstream run``'s
``--host``, ``--port`` and ``--no-serve`` override what is written here::

    api:
      host: 127.0.0.1            # the default: loopback only; 0.0.0.0 needs a token
      port: 8000
      tokens:
        - {token_env: GATEWAY_TOKEN, scopes: [ingest]}
        - {token_env: DASHBOARD_TOKEN, scopes: [read, admin]}

``SENSORSTREAM_TOKENS`` adds tokens from the environment (:mod:`sensorstream.tokens`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from sensorstream.tokens import TokenSettings

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000


class ApiSpec(BaseModel):
    """The ``api:`` section: where to listen, the tokens, and whether to serve at all."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    serve: bool = True
    host: str = DEFAULT_HOST
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    tokens: tuple[TokenSettings, ...] = ()

    def overridden(
        self, *, serve: bool | None = None, host: str | None = None, port: int | None = None
    ) -> ApiSpec:
        """These settings with the command line's choices (None keeps the written one)."""
        changes = {"serve": serve, "host": host, "port": port}
        return self.model_copy(update={k: v for k, v in changes.items() if v is not None})
