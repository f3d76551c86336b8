"""Reading back what the sinks wrote, for the CLI and the HTTP API; and alerts' acks and silences.

- :mod:`~sensorstream.store.query`: :class:`Store`, a read-only view of a DuckDB store;
- :mod:`~sensorstream.store.alerts`: its alert queries (transitions, current alerts);
- :mod:`~sensorstream.store.readings`: raw readings (devices, series), dead letters, late;
- :mod:`~sensorstream.store.segments`: raw readings straight from the Parquet segments
  beside the store, readable while a pipeline writes it (:func:`scan_readings`);
- :mod:`~sensorstream.store.metrics`: ``/compute/metrics`` over a time range;
- :mod:`~sensorstream.store.readers`: stores kept from one API request to the next;
- :mod:`~sensorstream.store.reads_only`: the statements ``Store.sql`` refuses;
- :mod:`~sensorstream.store.catalog`: what the sink recorded (pipelines, steps, counts);
- acknowledgements and silences (:mod:`sensorstream.actions`, a SQLite file beside the store
  that stays writable while a pipeline runs), re-exported here for the CLI and the API.

The names load on first use, so a sink or command that only needs silences does not load
DuckDB and Polars.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sensorstream.actions.alert_actions import AlertActions
    from sensorstream.actions.silences import Silence, SilenceWatcher
    from sensorstream.store.catalog import StoreCounts, StoredPipeline, StoredStep
    from sensorstream.store.query import Store
    from sensorstream.store.segments import scan_readings

_HOMES = {
    "AlertActions": "sensorstream.actions.alert_actions",
    "Silence": "sensorstream.actions.silences",
    "SilenceWatcher": "sensorstream.actions.silences",
    "Store": "sensorstream.store.query",
    "StoreCounts": "sensorstream.store.catalog",
    "StoredPipeline": "sensorstream.store.catalog",
    "StoredStep": "sensorstream.store.catalog",
    "scan_readings": "sensorstream.store.segments",
}

if not TYPE_CHECKING:  # type checkers resolve the names through the imports above

    def __getattr__(name: str) -> object:
        home = _HOMES.get(name)
        if home is None:
            msg = f"module 'sensorstream.store' has no attribute {name!r}"
            raise AttributeError(msg)
        value = getattr(import_module(home), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})


__all__ = [
    "AlertActions",
    "Silence",
    "SilenceWatcher",
    "Store",
    "StoreCounts",
    "StoredPipeline",
    "StoredStep",
    "scan_readings",
]
