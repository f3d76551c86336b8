"""The HTTP API: ingest, queries over the store, the live event stream, Prometheus metrics.

Routers are built per pipeline by factories (no module-level state), and composed by
:mod:`~sensorstream.api.app`.
"""
