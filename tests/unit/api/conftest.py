"""A stopped store of one pipeline, and apps serving it (with actions, too), for the API's tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sensorstream.actions.alert_actions import AlertActions
from sensorstream.api.app import Serving, create_app
from sensorstream.api.auth import LOOPBACK, Grant
from sensorstream.pipeline.spec import PipelineSpec
from sensorstream.runtime.runner import Runner
from sensorstream.store import Store

START = datetime(2020, 1, 13, 15, 10, tzinfo=UTC)


@pytest.fixture(scope="session")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five minutes of one sensor at 1 Hz, a window step and a rule, in a DuckDB store."""
    folder = tmp_path_factory.mktemp("api")
    lines = [
        f'{{"device_id": "s1", "ts": "{(START + timedelta(seconds=s)).isoformat()}", '
        f'"temperature": {s % 30}, "humidity": {40 + s % 60}}}'
        for s in range(300)
    ]
    (folder / "r.ndjson").write_text("\n".join([*lines, "{broken"]) + "\n")
    spec = PipelineSpec.model_validate(
        {
            "name": "sensors",
            "source": {"type": "file", "path": str(folder / "r.ndjson")},
            "readings": {"measurements": {"temperature": "int", "humidity": "float"}},
            "steps": [
                {
                    "name": "per_minute",
                    "window": {"type": "tumbling", "size": "1m"},
                    "aggregates": ["count", "mean(temperature)"],
                },
                {"name": "hot", "rule": {"threshold": "temperature", "above": {"warning": 28}}},
            ],
            "sinks": [{"type": "duckdb", "path": str(folder / "s.duckdb")}],
            "checkpoint": {"dir": str(folder / "ckpt")},
        }
    )
    Runner(spec).run()
    return folder / "s.duckdb"


def opener(path: Path) -> Callable[[], AbstractContextManager[Store]]:
    @contextmanager
    def open_store() -> Iterator[Store]:
        with Store(path) as store:
            yield store

    return open_store


@pytest.fixture(scope="session")
def query_app(stored: Path) -> FastAPI:
    return create_app(Serving("sensors", opener(stored)))


@pytest.fixture
def client(query_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(query_app) as test_client:
        yield test_client


def anyone() -> Grant:
    """An ``admin`` dependency letting every request in, as loopback does without tokens."""
    return Grant(LOOPBACK, frozenset(("ingest", "read", "admin")))


@pytest.fixture
def actions(tmp_path: Path) -> AlertActions:
    """An empty actions file of this test's own (the stored store is shared)."""
    return AlertActions(tmp_path / "s.duckdb.alerts.sqlite")


@pytest.fixture
def actions_app(stored: Path, actions: AlertActions) -> FastAPI:
    """The app with its actions: acknowledging and silencing, open to every request."""
    return create_app(Serving("sensors", opener(stored), actions=lambda: actions), admin=anyone)


@pytest.fixture
def acting(actions_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(actions_app) as test_client:
        yield test_client
