"""The live hub: events in order with ids, resumable, bounded, and readers that wait."""

from __future__ import annotations

import threading
import time

import polars as pl

from sensorstream.sinks.base import PipelineInfo, SinkBatch
from sensorstream.sinks.live import LiveHub, LiveSink


def test_events_after_an_id_resume_where_a_reader_stopped() -> None:
    hub = LiveHub()
    hub.publish("result", [{"n": 1}, {"n": 2}])
    hub.publish("alert", [{"n": 3}])
    events, missed = hub.after(1)
    assert [(e.id, e.kind) for e in events] == [(2, "result"), (3, "alert")]
    assert missed is None
    assert events[0].sse() == b'id: 2\nevent: result\ndata: {"n":2}\n\n'


def test_a_reader_behind_the_ring_is_told_how_many_it_missed() -> None:
    hub = LiveHub(capacity=3)
    hub.publish("result", [{"n": n} for n in range(10)])
    events, missed = hub.after(2)
    assert [e.id for e in events] == [8, 9, 10]
    assert missed is not None
    assert missed.count == 5  # ids 3..7 left the ring


def test_a_waiting_reader_wakes_when_an_event_comes() -> None:
    hub = LiveHub()
    got: list[int] = []

    def read() -> None:
        events, _ = hub.after(0, timeout=5)
        got.extend(e.id for e in events)

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.05)
    started = time.monotonic()
    hub.publish("alert", [{"state": "firing"}])
    reader.join(5)
    assert got == [1]
    assert time.monotonic() - started < 1


def test_the_sink_publishes_results_and_transitions_with_their_step() -> None:
    hub = LiveHub()
    sink = LiveSink(hub)
    sink.open(PipelineInfo("p", (), {}))
    results = pl.DataFrame({"device_id": ["a"], "count": [3], "revision": [1]})
    alerts = pl.DataFrame({"transition_id": ["t1"], "state": ["firing"]})
    sink.write(SinkBatch(0, 1, results={"w": results}, alerts={"hot": alerts}))
    events, _ = hub.after(0)
    assert [e.kind for e in events] == ["result", "alert"]
    assert b'"step":"w"' in events[0].data
    assert b'"revision":1' in events[0].data
    assert b'"rule":"hot"' in events[1].data
