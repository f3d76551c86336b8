"""The HTTP API: readings in (ingest), and later results, alerts and live events out.

- :mod:`~sensorstream.api.tokens`: what a token is, in a pipeline's settings and in
  ``SENSORSTREAM_TOKENS`` (no FastAPI: the settings import it);
- :mod:`~sensorstream.api.auth`: bearer tokens with scopes, and the loopback rule without
  them; ``Auth.require(scope)`` is the FastAPI dependency every router uses;
- :mod:`~sensorstream.api.bodies`: request bodies as JSON lines (gzip, arrays, objects);
- :mod:`~sensorstream.api.ingest`: ``POST /api/v1/readings`` into the ingest log;
- :mod:`~sensorstream.api.server`: an ASGI app served by uvicorn in a background thread.

Importing this package loads nothing: FastAPI is imported by the modules that need it.
"""
