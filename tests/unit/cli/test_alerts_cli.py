"""``sensorstream alerts``: list, show, ack, silence, unsilence and silences, over a real store.

The commands are thin over the store's functions (tested in ``tests/unit/store``): these
tests check what reaches the user: the columns, the JSON, one ``error:`` line and exit 2
for a mistake, data printed escaped, and acks and silences while a pipeline holds the store.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sensorstream.actions.alert_actions import AlertActions
from sensorstream.cli import app
from sensorstream.sinks import DuckDBSink
from sensorstream.testing import duckdb_held_elsewhere
from sensorstream.testing.webhooks import WebhookReceiver
from tests.unit.sinks.webhook_helpers import (
    batch,
    episode,
    info,
    running,
    statuses,
    transition,
    wait_until,
    webhook,
)

runner = CliRunner()


def alerts(*args: str) -> tuple[int, str]:
    """Run ``sensorstream alerts ARGS``; its exit code and what it printed (stderr too)."""
    done = runner.invoke(app, ["alerts", *args], env={"COLUMNS": "200"})
    return done.exit_code, done.output


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A store with alerts a1 (hot, device a, firing) and d1 (dry, device b, resolved)."""
    path = tmp_path / "out.duckdb"
    sink = DuckDBSink(path)
    sink.open(info())
    sink.write(batch(1, transition("a1", 0, "pending"), transition("a1", 1, "firing")))
    sink.write(
        batch(
            2,
            transition("d1", 0, "firing", rule="dry", device="b"),
            transition("d1", 1, "resolved", rule="dry", device="b"),
        )
    )
    sink.close()
    return path


def test_list_shows_each_alert_with_its_state_ack_and_silence(db: Path) -> None:
    assert alerts("ack", "a1", "--by", "ana", "--note", "on it", "--db", str(db))[0] == 0
    code, _ = alerts("silence", "--rule", "dry", "--for", "2h", "--by", "ben", "--db", str(db))
    assert code == 0

    code, output = alerts("list", "--db", str(db), "--format", "json")

    assert code == 0, output
    rows = {row["alert_id"]: row for row in json.loads(output)}
    assert rows["a1"]["state"] == "firing"
    assert rows["a1"]["acknowledged_by"] == "ana"
    assert rows["a1"]["silenced_until"] is None
    assert rows["d1"]["state"] == "resolved"
    assert rows["d1"]["silenced_until"] is not None


def test_list_filters_by_state_rule_and_key(db: Path) -> None:
    def ids(*options: str) -> list[str]:
        code, output = alerts("list", "--db", str(db), "--format", "json", *options)
        assert code == 0, output
        return [row["alert_id"] for row in json.loads(output)]

    assert ids("--state", "firing") == ["a1"]
    assert ids("--rule", "dry") == ["d1"]
    assert ids("--key", '{"device_id": "b"}') == ["d1"]
    code, output = alerts("list", "--db", str(db), "--state", "hot")
    assert code == 2
    assert "error: --state hot: not a state" in output


def test_show_gives_transitions_acks_silences_and_webhook_deliveries(
    db: Path, tmp_path: Path
) -> None:
    actions = AlertActions.beside(db)
    actions.acknowledge("a1", by="ana")
    with WebhookReceiver() as receiver:
        sink = webhook(receiver.url, tmp_path)
        with running(sink, stores=(db,)):
            sink.write(episode("a1"))
            assert wait_until(lambda: sink.waiting() == 0)
    assert set(statuses(tmp_path / "outbox.sqlite").values()) == {"delivered"}

    code, output = alerts("show", "a1", "--db", str(db), "--format", "json")

    assert code == 0, output
    shown = json.loads(output)
    assert shown["pipeline"] == "fleet"
    assert [row["state"] for row in shown["transitions and corrections"]] == ["pending", "firing"]
    assert [row["by"] for row in shown["acknowledgements"]] == ["ana"]
    assert shown["silences"] == []
    deliveries = shown["deliveries"]
    assert {row["transition_id"] for row in deliveries} == {"a1-1", "a1-2"}  # pending is left out
    assert {row["status"] for row in deliveries} == {"delivered"}
    assert {row["endpoint"] for row in deliveries} == {f"http://127.0.0.1:{receiver.port}"}

    code, table = alerts("show", "a1", "--db", str(db))
    assert code == 0, table
    assert "alert a1: rule hot" in table
    assert "deliveries" in table


def test_show_of_an_unknown_alert_says_where_to_look(db: Path) -> None:
    code, output = alerts("show", "zz", "--db", str(db))
    assert code == 2
    assert "error: no alert zz" in output
    assert "sensorstream alerts list" in output


def test_silence_silences_and_unsilence(db: Path) -> None:
    code, output = alerts(
        "silence", "--key", '{"device_id": "a"}', "--for", "30m", "--by", "ana", "--db", str(db)
    )
    assert code == 0, output
    assert output.startswith('silence 1: key {"device_id": "a"} muted until')

    code, output = alerts("silences", "--db", str(db), "--format", "json")
    assert code == 0, output
    [listed] = json.loads(output)
    assert (listed["id"], listed["active"], listed["by"]) == (1, True, "ana")

    code, output = alerts("unsilence", "1", "--by", "ben", "--db", str(db))
    assert code == 0, output
    assert alerts("silences", "--db", str(db)) == (0, "no silences in effect\n")
    code, output = alerts("silences", "--all", "--db", str(db), "--format", "json")
    assert [(row["active"], row["ended_by"]) for row in json.loads(output)] == [(False, "ben")]
    code, output = alerts("unsilence", "1", "--db", str(db))
    assert code == 2
    assert "error: silence 1 already ended" in output


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--rule", "hot", "--by", "ana"], "give either --for"),
        (["--rule", "hot", "--for", "1h", "--until", "2099-01-01T00:00Z", "--by", "a"], "either"),
        (["--for", "1h", "--by", "ana"], "name what to mute"),
        (["--key", "room", "--for", "1h", "--by", "ana"], "not a JSON object"),
        (["--rule", "hot", "--until", "2099-01-01T00:00", "--by", "ana"], "time zone"),
        (["--rule", "hot", "--until", "2001-01-01T00:00Z", "--by", "ana"], "not in the future"),
        (["--rule", "hot", "--for", "0s", "--by", "ana"], "longer than zero"),
        (["--rule", "hot", "--for", "1h", "--by", " "], "--by must name who acts"),
    ],
)
def test_a_mistaken_silence_is_one_error_line(db: Path, options: list[str], message: str) -> None:
    code, output = alerts("silence", *options, "--db", str(db))
    assert code == 2
    [line] = output.strip().splitlines()
    assert line.startswith("error: ")
    assert message in line


def test_ack_and_silence_work_while_a_pipeline_holds_the_store(db: Path) -> None:
    with duckdb_held_elsewhere(db):
        code, output = alerts("ack", "a1", "--by", "ana", "--db", str(db))
        assert code == 0, output
        assert "not checked against the store" in output
        code, output = alerts(
            "silence", "--rule", "hot", "--for", "1h", "--by", "a", "--db", str(db)
        )
        assert code == 0, output
    assert [ack.by for ack in AlertActions.beside(db).acknowledgements("a1")] == ["ana"]


def test_ack_of_an_unknown_alert_is_refused_when_the_store_can_tell(db: Path) -> None:
    code, output = alerts("ack", "zz", "--by", "ana", "--db", str(db))
    assert code == 2
    assert "error: no alert zz" in output
    assert AlertActions.beside(db).acknowledgements() == []


def test_without_a_store_the_commands_say_how_to_get_one(tmp_path: Path) -> None:
    missing = tmp_path / "none.duckdb"
    code, output = alerts(
        "silence", "--rule", "hot", "--for", "1h", "--by", "a", "--db", str(missing)
    )
    assert code == 2
    assert f"no store at {missing}" in output


def test_data_is_printed_escaped(db: Path) -> None:
    code, output = alerts("ack", "a1", "--by", "eve\x1b[31m", "--db", str(db))
    assert code == 0, output
    assert "\x1b" not in output
    assert "\\x1b" in output
    code, output = alerts(
        "silence", "--rule", "r\x1b]0;x\x07", "--for", "1h", "--by", "a", "--db", str(db)
    )
    assert code == 0, output
    assert "\x1b" not in output
    assert "\x07" not in output
