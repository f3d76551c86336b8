from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sensorstream.errors import SinkError
from sensorstream.sinks.base import FROM_START
from sensorstream.sinks.webhook_outbox import Outbox, Queued, read_deliveries
from sensorstream.testing.webhooks import WebhookReceiver
from tests.unit.sinks.webhook_helpers import episode, running, statuses, webhook

REPOSITORY = Path(__file__).parents[3]


def _queued(alert: str, sequence: int, position: int = 1, partition: int = 0) -> Queued:
    return Queued(
        transition_id=f"{alert}-{sequence}",
        alert_id=alert,
        rule="hot",
        key='{"device_id": "a"}',
        state="firing",
        partition=partition,
        position=position,
        payload=b"{}",
    )


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    opened = Outbox(tmp_path / "outbox.sqlite", "fleet")
    yield opened
    opened.close()


def test_queuing_a_transition_again_changes_nothing(outbox: Outbox) -> None:
    assert outbox.enqueue([_queued("a1", 0), _queued("a1", 1)], now_us=10) == 2
    outbox.delivered(outbox.due(10, 10)[0].seq, attempts=1, status=200, now_us=11)

    assert outbox.enqueue([_queued("a1", 0), _queued("a1", 1), _queued("b1", 0)], now_us=20) == 1
    assert statuses(outbox.path) == {"a1-0": "delivered", "a1-1": "queued", "b1-0": "queued"}


def test_due_rows_come_in_queue_order_one_per_alert(outbox: Outbox) -> None:
    outbox.enqueue([_queued("a1", 0), _queued("a1", 1), _queued("b1", 0)], now_us=10)

    assert [row.transition_id for row in outbox.due(10, 10)] == ["a1-0", "b1-0"]
    assert outbox.due(9, 10) == []


def test_a_row_waiting_for_a_retry_holds_back_only_its_own_alert(outbox: Outbox) -> None:
    outbox.enqueue([_queued("a1", 0), _queued("a1", 1), _queued("b1", 0)], now_us=10)
    first = outbox.due(10, 10)[0]
    outbox.retry(first.seq, attempts=1, error="HTTP 503", status=503, at_us=100)

    assert [row.transition_id for row in outbox.due(50, 10)] == ["b1-0"]
    assert outbox.next_due_us() == 10  # b1-0; a1-1 waits behind a1-0, due at 100
    outbox.failed(first.seq, attempts=2, error="HTTP 404", status=404)
    assert [row.transition_id for row in outbox.due(50, 10)] == ["a1-1", "b1-0"]


def test_restore_drops_only_rows_still_queued_after_the_positions(outbox: Outbox) -> None:
    outbox.enqueue(
        [
            _queued("a1", 0, position=1),
            _queued("b1", 0, position=5),
            _queued("c1", 0, position=6),
            _queued("d1", 0, position=7),
            _queued("e1", 0, position=1, partition=1),
            _queued("f1", 0, position=1, partition=2),
        ],
        now_us=10,
    )
    rows = {row.transition_id: row.seq for row in outbox.due(10, 10)}
    outbox.delivered(rows["c1-0"], attempts=1, status=200, now_us=11)
    outbox.silenced(rows["d1-0"], silence_id=3)

    # b1-0 after position 4; e1-0 of a partition started over; f1-0's partition is not named
    assert outbox.restore({0: 4, 1: FROM_START}) == 2
    assert statuses(outbox.path) == {
        "a1-0": "queued",
        "c1-0": "delivered",
        "d1-0": "silenced",
        "f1-0": "queued",
    }


def test_flush_syncs_what_was_queued(outbox: Outbox) -> None:
    outbox.flush()  # nothing to sync
    outbox.enqueue([_queued("a1", 0)], now_us=10)
    outbox.flush()
    with sqlite3.connect(outbox.path) as con:
        assert con.execute("SELECT value FROM outbox_meta WHERE name = 'flushes'").fetchall() == [
            (1,)
        ]
    con.close()


def test_the_outbox_reads_while_a_sink_holds_it_open(outbox: Outbox) -> None:
    outbox.enqueue([_queued("a1", 0)], now_us=10)
    [row] = read_deliveries(outbox.path, alert_id="a1")
    assert (row.transition_id, row.status, row.queued_us) == ("a1-0", "queued", 10)
    assert read_deliveries(outbox.path, pipeline="other") == []
    assert read_deliveries(outbox.path.with_name("absent.sqlite")) == []


def test_an_outbox_of_another_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    with sqlite3.connect(path) as con:
        con.execute("PRAGMA user_version = 99")
    con.close()
    with pytest.raises(SinkError, match="another version of sensorstream"):
        Outbox(path, "fleet")


# -- a crash -----------------------------------------------------------------------------------

_CRASHING_RUN = """
import os, signal, sys
from pathlib import Path
from tests.unit.sinks.webhook_helpers import episode, info, webhook

url, folder, flush = sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "flush"
sink = webhook(url, folder)
sink.open(info())
sink.restore({})
for minute in range(3):
    sink.write(episode(f"a{minute}", device=f"d{minute}", minute=minute))
if flush:
    sink.flush()
os.kill(os.getpid(), signal.SIGKILL)  # no close, no drain: the sink is abandoned
"""


def _dead_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/hook"


@pytest.mark.parametrize("flushed", [True, False], ids=["flushed", "not-flushed"])
def test_after_kill_9_a_new_sink_on_the_same_outbox_sends_what_the_old_one_queued(
    tmp_path: Path, flushed: bool
) -> None:
    crashed = subprocess.run(
        [
            sys.executable,
            "-c",
            _CRASHING_RUN,
            _dead_url(),
            str(tmp_path),
            "flush" if flushed else "-",
        ],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    if flushed:
        crashed_statuses = statuses(tmp_path / "outbox.sqlite")
        assert set(crashed_statuses.values()) == {"queued"}
        assert len(crashed_statuses) == 6

    with WebhookReceiver() as receiver:
        # The checkpoint covered minutes 0 and 1; the replay writes minute 2 again.
        with running(webhook(receiver.url, tmp_path), {0: 1}) as sink:
            sink.write(episode("a2", device="d2", minute=2))
            assert receiver.wait_for(6)
        assert sorted(receiver.keys()) == ["a0-1", "a0-2", "a1-1", "a1-2", "a2-1", "a2-2"]
    assert set(statuses(tmp_path / "outbox.sqlite").values()) == {"delivered"}
