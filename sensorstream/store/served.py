"""Where a running pipeline serves the store it holds: a small file beside the store.

DuckDB lets no other process open a store while a pipeline writes it, so ``sensorstream
query`` asks the pipeline's API instead. To find it, the pipeline's server writes
``out.duckdb.served.json`` (``{"url", "pid", "pipeline"}``) when it starts and removes it
when it stops; a file left by a process that died names a pid no longer running, and is
ignored. It holds no secret: a client still needs a token when the API requires one.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Served", "announce", "served_at", "withdraw"]


@dataclass(frozen=True)
class Served:
    """A running pipeline's API serving a store."""

    url: str
    pid: int
    pipeline: str


def marker(store: Path) -> Path:
    """The file beside ``store`` naming the API that serves it."""
    return store.with_name(store.name + ".served.json")


def announce(store: Path, url: str, pipeline: str) -> None:
    """Say that this process serves ``store`` at ``url`` (written whole, then renamed)."""
    path = marker(store)
    path.parent.mkdir(parents=True, exist_ok=True)  # the sink makes it too, a moment later
    scratch = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    scratch.write_text(json.dumps({"url": url, "pid": os.getpid(), "pipeline": pipeline}))
    scratch.replace(path)


def withdraw(store: Path) -> None:
    """Remove the marker, if it is still this process's."""
    found = served_at(store)
    if found is not None and found.pid == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            marker(store).unlink()


def served_at(store: Path) -> Served | None:
    """The API serving ``store``, if a live process says it serves it."""
    try:
        recorded = json.loads(marker(store).read_text())
        served = Served(str(recorded["url"]), int(recorded["pid"]), str(recorded["pipeline"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return served if _alive(served.pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True
