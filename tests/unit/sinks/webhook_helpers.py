"""What the alert sink, store and CLI tests share: a pipeline, its transitions, a webhook sink."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from sensorstream.engine.rules.lifecycle import key_text, transitions_frame
from sensorstream.readings import ReadingFormat
from sensorstream.sinks import WebhookSink
from sensorstream.sinks.base import PipelineInfo, SinkBatch, StepInfo
from sensorstream.sinks.webhook_outbox import Delivery, read_deliveries

PIPELINE = "fleet"
T0_US = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z
MINUTE_US = 60_000_000


def info(*, stores: tuple[Path, ...] = (), checkpoint_dir: Path | None = None) -> PipelineInfo:
    """A pipeline with two rules, ``hot`` and ``dry``, keyed by device."""
    return PipelineInfo(
        PIPELINE,
        (
            StepInfo("hot", ("device_id",), (), kind="alerts"),
            StepInfo("dry", ("device_id",), (), kind="alerts"),
        ),
        ReadingFormat(measurements={"temperature": "float"}).canonical_schema(),
        checkpoint_dir=checkpoint_dir,
        stores=stores,
    )


def transition(
    alert: str,
    sequence: int,
    state: str,
    *,
    device: str = "a",
    rule: str = "hot",
    minute: int = 0,
    severity: str | None = "warning",
) -> dict[str, Any]:
    """One transition record of alert ``alert`` (times as microseconds, as the engine has them)."""
    previous = {"pending": "ok", "firing": "pending", "resolved": "firing"}.get(state, "firing")
    return {
        "transition_id": f"{alert}-{sequence}",
        "alert_id": alert,
        "rule": rule,
        "key": key_text({"device_id": device}),
        "state": state,
        "previous_state": previous,
        "severity": None if state == "resolved" else severity,
        "event_time": T0_US + minute * MINUTE_US + sequence,
        "started_at": T0_US + minute * MINUTE_US,
        "value": 30.5,
        "reason": f"temperature 30.5 above 30 ({state})",
        "sequence": sequence,
        "kind": "transition",
    }


def batch(position: int, *records: dict[str, Any], partition: int = 0) -> SinkBatch:
    """A batch holding these transitions, by rule."""
    by_rule: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_rule.setdefault(str(record["rule"]), []).append(record)
    alerts = {rule: transitions_frame(rows) for rule, rows in by_rule.items()}
    return SinkBatch(partition, position, alerts=alerts)


def episode(alert: str, *, device: str = "a", rule: str = "hot", minute: int = 0) -> SinkBatch:
    """An alert pending, firing, then resolved, in one batch at position ``minute``."""
    return batch(
        minute,
        *(
            transition(alert, n, state, device=device, rule=rule, minute=minute)
            for n, state in enumerate(("pending", "firing", "resolved"))
        ),
    )


def webhook(url: str, folder: Path, **options: Any) -> WebhookSink:
    """A webhook sink with quick retries, its outbox in ``folder``."""
    settings: dict[str, Any] = {
        "outbox": folder / "outbox.sqlite",
        "backoff": timedelta(milliseconds=20),
        "max_backoff": timedelta(milliseconds=100),
        "timeout": timedelta(seconds=5),
        "drain": timedelta(seconds=5),
        **options,
    }
    return WebhookSink(url, **settings)


@contextmanager
def running(
    sink: WebhookSink,
    positions: Mapping[int, int] | None = None,
    *,
    stores: tuple[Path, ...] = (),
) -> Iterator[WebhookSink]:
    """The sink opened and restored as a (re)started run does; closed after."""
    sink.open(info(stores=stores))
    try:
        sink.restore(dict(positions or {}))
        yield sink
    finally:
        sink.close()


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    """Whether ``condition`` came true within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def deliveries(outbox: Path) -> dict[str, Delivery]:
    """The outbox's rows by transition id."""
    return {row.transition_id: row for row in read_deliveries(outbox)}


def statuses(outbox: Path) -> dict[str, str]:
    """Each transition's delivery status."""
    return {key: row.status for key, row in deliveries(outbox).items()}
