"""The HTTP API: readings in (ingest), queries over the store, live events, metrics.

Routers are built per pipeline by factories (no module-level state), and composed by
:mod:`~sensorstream.api.app`.

- :mod:`~sensorstream.api.auth`: bearer tokens with scopes (what a token is, in a
  pipeline's settings and in ``SENSORSTREAM_TOKENS``, is :mod:`sensorstream.tokens`, which
  sources read too), and the loopback rule without them; ``Auth.require(scope)`` is the
  FastAPI dependency every router uses;
- :mod:`~sensorstream.api.bodies`: request bodies as JSON lines (gzip, arrays, objects);
- :mod:`~sensorstream.api.ingest`: ``POST /api/v1/readings`` into the ingest log;
- :mod:`~sensorstream.api.queries`: devices, series, results, alerts (one alert's history
  too), dead letters, late readings, and ``POST /compute/metrics``;
- :mod:`~sensorstream.api.actions`: acknowledging alerts and silencing their notifications
  (the ``admin`` scope), and listing silences;
- :mod:`~sensorstream.api.live`: the SSE stream of results and alerts, and ``/metrics``;
- :mod:`~sensorstream.api.app`: one pipeline's app;
- :mod:`~sensorstream.api.server`: an ASGI app served by uvicorn in a background thread.

Importing this package loads nothing: FastAPI is imported by the modules that need it.
"""
