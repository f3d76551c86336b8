from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sensorstream.actions.actions_file import actions_path
from sensorstream.actions.alert_actions import AlertActions
from sensorstream.actions.silences import SilenceWatcher
from sensorstream.errors import StoreError
from sensorstream.sinks import DuckDBSink
from sensorstream.store import Store
from sensorstream.store.alerts import with_actions
from sensorstream.testing import ManualClock, duckdb_held_elsewhere
from tests.unit.sinks.webhook_helpers import PIPELINE, batch, info, transition

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
KEY_A = '{"device_id": "a"}'


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def actions(tmp_path: Path, clock: ManualClock) -> AlertActions:
    return AlertActions.beside(tmp_path / "out.duckdb", clock=clock)


# -- acknowledgements -----------------------------------------------------------------------


def test_acknowledgements_are_kept_in_order_with_who_when_and_why(
    actions: AlertActions, clock: ManualClock
) -> None:
    first = actions.acknowledge("a1", by="ana", note="looking", pipeline=PIPELINE)
    clock.advance(timedelta(minutes=5))
    actions.acknowledge("a1", by="ben", note="fan replaced")
    actions.acknowledge("b1", by="ana")

    history = actions.acknowledgements("a1")
    assert [(a.by, a.note, a.at, a.pipeline) for a in history] == [
        ("ana", "looking", NOW, PIPELINE),
        ("ben", "fan replaced", NOW + timedelta(minutes=5), None),
    ]
    assert history[0] == first
    assert len(actions.acknowledgements()) == 3


@pytest.mark.parametrize(
    ("by", "note", "message"),
    [
        ("  ", "", "--by must name who acts"),
        ("x" * 201, "", "--by must name who acts"),
        ("ana", "n" * 2001, "2000 characters long at most"),
    ],
)
def test_an_acknowledgement_needs_a_name_and_a_short_note(
    actions: AlertActions, by: str, note: str, message: str
) -> None:
    with pytest.raises(StoreError, match=message):
        actions.acknowledge("a1", by=by, note=note)
    assert not actions.path.exists()


def test_reading_a_store_with_no_actions_yet_creates_nothing(actions: AlertActions) -> None:
    assert actions.acknowledgements() == []
    assert actions.silences() == []
    assert actions.outboxes() == []
    assert not actions.path.exists()


def test_the_actions_file_sits_beside_the_store(tmp_path: Path) -> None:
    assert actions_path(tmp_path / "out.duckdb") == tmp_path / "out.duckdb.alerts.sqlite"


# -- silences -------------------------------------------------------------------------------


def test_a_silence_mutes_matching_alerts_from_its_creation_until_it_ends(
    actions: AlertActions,
) -> None:
    silence = actions.silence(rule="hot", key={"device_id": "a"}, until=NOW + HOUR, by="ana")

    assert silence.active(NOW)
    assert not silence.active(NOW + HOUR)
    assert silence.matches(PIPELINE, "hot", KEY_A)
    assert silence.matches("other pipeline", "hot", '{"device_id": "a", "site": "x"}')
    assert not silence.matches(PIPELINE, "dry", KEY_A)
    assert not silence.matches(PIPELINE, "hot", '{"device_id": "b"}')
    assert silence.scope() == 'rule hot, key {"device_id": "a"}'


def test_a_notification_is_muted_if_the_silence_held_at_any_moment_while_it_waited(
    actions: AlertActions,
) -> None:
    silence = actions.silence(rule="hot", until=NOW + HOUR, by="ana")

    def mutes(since: datetime, now: datetime) -> bool:
        return silence.mutes(PIPELINE, "hot", KEY_A, since=since, now=now)

    assert mutes(NOW, NOW)
    assert mutes(NOW - HOUR, NOW)  # queued before, still waiting when the silence came
    assert mutes(NOW + HOUR / 2, NOW + 2 * HOUR)  # queued during it, sent after it ended
    assert not mutes(NOW - 2 * HOUR, NOW - HOUR)  # sent before it began
    assert not mutes(NOW + HOUR, NOW + 2 * HOUR)  # queued after it ended


def test_unsilencing_ends_a_silence_now_and_keeps_it_in_the_history(
    actions: AlertActions, clock: ManualClock
) -> None:
    silence = actions.silence(rule="hot", until=NOW + HOUR, by="ana", note="maintenance")
    clock.advance(timedelta(minutes=10))
    ended = actions.unsilence(silence.id, by="ben")

    assert ended.ends_at == NOW + timedelta(minutes=10)
    assert ended.removed_by == "ben"
    assert actions.silences() == []
    assert actions.silences(include_ended=True) == [ended]
    with pytest.raises(StoreError, match="already ended"):
        actions.unsilence(silence.id)
    with pytest.raises(StoreError, match=r"no silence 99 in .*alerts silences --all"):
        actions.unsilence(99)


def test_expired_silences_are_listed_only_with_the_ended_ones(
    actions: AlertActions, clock: ManualClock
) -> None:
    short = actions.silence(rule="hot", until=NOW + timedelta(minutes=1), by="ana")
    long = actions.silence(key={"device_id": "b"}, until=NOW + HOUR, by="ana")
    clock.advance(timedelta(minutes=2))

    assert actions.silences() == [long]
    assert actions.silences(include_ended=True) == [short, long]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "needs a rule, a key or both"),
        ({"rule": "hot", "until": NOW - HOUR}, "is not in the future"),
        ({"rule": "hot", "until": datetime(2030, 1, 1)}, "has no time zone"),  # noqa: DTZ001
        ({"key": {"room": ["r1"]}}, "must be text, a number, true/false or null"),
    ],
)
def test_a_silence_must_say_what_it_mutes_and_until_when(
    actions: AlertActions, options: dict[str, object], message: str
) -> None:
    settings: dict[str, object] = {"until": NOW + HOUR, "by": "ana", **options}
    with pytest.raises(StoreError, match=message):
        actions.silence(**settings)  # type: ignore[arg-type]


def test_a_watcher_sees_a_silence_another_connection_adds(actions: AlertActions) -> None:
    watcher = SilenceWatcher(actions.path, recheck_s=0.0)
    try:
        assert watcher.muting(PIPELINE, "hot", KEY_A, since=NOW, now=NOW) is None
        silence = actions.silence(rule="hot", until=NOW + HOUR, by="ana")
        assert watcher.muting(PIPELINE, "hot", KEY_A, since=NOW, now=NOW) == silence
        actions.unsilence(silence.id)
        assert watcher.muting(PIPELINE, "hot", KEY_A, since=NOW, now=NOW) is None
        assert watcher.problem is None
    finally:
        watcher.close()


def test_a_watcher_of_an_unreadable_file_keeps_what_it_knew_and_says_why(
    actions: AlertActions,
) -> None:
    silence = actions.silence(rule="hot", until=NOW + HOUR, by="ana")
    watcher = SilenceWatcher(actions.path, recheck_s=0.0)
    try:
        assert watcher.current() == [silence]
        con = sqlite3.connect(actions.path)
        con.execute("DROP TABLE silences")
        con.close()
        assert watcher.current() == [silence]
        assert watcher.problem is not None
        assert "no such table: silences" in watcher.problem
    finally:
        watcher.close()


def test_acks_and_silences_are_written_while_a_pipeline_holds_the_store(
    tmp_path: Path, clock: ManualClock
) -> None:
    store = tmp_path / "out.duckdb"
    sink = DuckDBSink(store)
    sink.open(info())
    sink.close()
    actions = AlertActions.beside(store, clock=clock)
    with duckdb_held_elsewhere(store):
        with pytest.raises(StoreError, match="a running pipeline has it open"):
            Store(store)
        actions.acknowledge("a1", by="ana")
        actions.silence(rule="hot", until=NOW + HOUR, by="ana")
    assert len(actions.acknowledgements()) == 1
    assert len(actions.silences()) == 1


def test_a_file_of_another_format_is_refused(actions: AlertActions) -> None:
    actions.acknowledge("a1", by="ana")
    con = sqlite3.connect(actions.path)
    con.execute("PRAGMA user_version = 7")
    con.close()
    with pytest.raises(StoreError, match="another version of sensorstream"):
        actions.acknowledgements()


# -- beside the alerts ----------------------------------------------------------------------


@pytest.fixture
def stored(tmp_path: Path) -> Path:
    """A store with alerts a1 (hot, device a, firing), b1 (hot, b, resolved), d1 (dry, a)."""
    path = tmp_path / "out.duckdb"
    sink = DuckDBSink(path)
    sink.open(info())
    sink.write(batch(1, transition("a1", 0, "pending"), transition("a1", 1, "firing")))
    sink.write(
        batch(
            2,
            transition("b1", 0, "firing", device="b", severity="critical"),
            transition("b1", 1, "resolved", device="b"),
            transition("d1", 0, "firing", rule="dry", minute=3),
        )
    )
    sink.close()
    return path


def test_alerts_filter_by_state_severity_and_key(stored: Path) -> None:
    with Store(stored) as store:
        assert store.alerts(PIPELINE)["alert_id"].to_list() == ["a1", "b1", "d1"]
        assert store.alerts(PIPELINE, state="firing")["alert_id"].to_list() == ["a1", "d1"]
        assert store.alerts(PIPELINE, severity="warning")["alert_id"].to_list() == ["a1", "d1"]
        assert store.alerts(PIPELINE, key={"device_id": "a"})["alert_id"].to_list() == [
            "a1",
            "d1",
        ]
        assert store.alerts(PIPELINE, rule="hot", key={"device_id": "b"}).height == 1
        assert store.pipelines_of_alert("a1") == [PIPELINE]
        assert store.pipelines_of_alert("zz") == []


def test_alerts_are_shown_with_their_last_acknowledgement_and_silence(
    stored: Path, clock: ManualClock
) -> None:
    actions = AlertActions.beside(stored, clock=clock)
    actions.acknowledge("a1", by="ana")
    clock.advance(timedelta(minutes=1))
    actions.acknowledge("a1", by="ben")
    silence = actions.silence(rule="dry", until=NOW + HOUR, by="ana")

    with Store(stored) as store:
        alerts = with_actions(store.alerts(PIPELINE), actions, pipeline=PIPELINE, now=clock())

    shown = alerts.select("alert_id", "state", "acknowledged_by", "silence_id").rows()
    assert shown == [
        ("a1", "firing", "ben", None),  # acknowledged: still firing
        ("b1", "resolved", None, None),
        ("d1", "firing", None, silence.id),
    ]
    assert alerts["silenced_until"][2] == NOW + HOUR
