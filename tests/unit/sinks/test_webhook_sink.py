from __future__ import annotations

import re
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from sensorstream.actions.alert_actions import AlertActions
from sensorstream.errors import ConfigError
from sensorstream.pipeline.spec import parse_spec
from sensorstream.sinks import WebhookSink, WebhookSinkSettings
from sensorstream.sinks.base import FROM_START
from sensorstream.testing.webhooks import WebhookReceiver
from tests.unit.sinks.webhook_helpers import (
    batch,
    deliveries,
    episode,
    running,
    statuses,
    transition,
    wait_until,
    webhook,
)


def _closed_port() -> str:
    """A loopback URL nothing listens on: every attempt is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


# -- what is sent ------------------------------------------------------------------------------


def test_each_transition_is_posted_once_as_json_with_its_id_as_idempotency_key(
    tmp_path: Path,
) -> None:
    with WebhookReceiver() as receiver:
        with running(webhook(receiver.url, tmp_path)) as sink:
            sink.write(episode("a1"))
            assert receiver.wait_for(2)
        [firing, resolved] = receiver.received

    assert [firing.key, resolved.key] == ["a1-1", "a1-2"]  # pending does not notify
    assert firing.headers["content-type"] == "application/json"
    assert firing.body == {
        "pipeline": "fleet",
        "transition_id": "a1-1",
        "alert_id": "a1",
        "rule": "hot",
        "key": {"device_id": "a"},
        "state": "firing",
        "previous_state": "pending",
        "severity": "warning",
        "event_time": "2024-01-01T00:00:00.000001+00:00",
        "started_at": "2024-01-01T00:00:00+00:00",
        "value": 30.5,
        "reason": "temperature 30.5 above 30 (firing)",
        "sequence": 1,
        "kind": "transition",
    }
    rows = deliveries(tmp_path / "outbox.sqlite")
    assert {key: (row.status, row.attempts) for key, row in rows.items()} == {
        "a1-1": ("delivered", 1),
        "a1-2": ("delivered", 1),
    }
    assert all(row.delivered_us is not None and row.last_status == 200 for row in rows.values())


def test_states_choose_which_transitions_notify(tmp_path: Path) -> None:
    with WebhookReceiver() as receiver:
        with running(webhook(receiver.url, tmp_path, states=["pending", "resolved"])) as sink:
            sink.write(episode("a1"))
        assert receiver.keys() == ["a1-0", "a1-2"]


def test_a_token_from_the_environment_is_sent_as_a_bearer_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_TOKEN", "s3cret")
    with WebhookReceiver() as receiver:
        settings = WebhookSinkSettings(
            url=receiver.url,
            token_env="HOOK_TOKEN",
            headers={"X-Team": "cold-chain"},
            outbox=tmp_path / "outbox.sqlite",
        )
        with running(settings.build()) as sink:
            sink.write(episode("a1"))
        hit = receiver.received[0]
    assert hit.headers["authorization"] == "Bearer s3cret"
    assert hit.headers["x-team"] == "cold-chain"


# -- failures ---------------------------------------------------------------------------------


def test_a_failing_endpoint_is_retried_with_backoff_until_it_answers(tmp_path: Path) -> None:
    with WebhookReceiver(fail_first=3) as receiver:
        with running(webhook(receiver.url, tmp_path)) as sink:
            sink.write(batch(1, transition("a1", 1, "firing")))
            assert receiver.wait_for(1)
        assert receiver.requests == 4
    [row] = deliveries(tmp_path / "outbox.sqlite").values()
    assert (row.status, row.attempts, row.last_error) == ("delivered", 4, None)


@pytest.mark.parametrize("status", [408, 429, 500, 503])
def test_timeouts_throttling_and_server_errors_are_retried(tmp_path: Path, status: int) -> None:
    with (
        WebhookReceiver(fail_first=1, fail_status=status) as receiver,
        running(webhook(receiver.url, tmp_path)) as sink,
    ):
        sink.write(batch(1, transition("a1", 1, "firing")))
        assert receiver.wait_for(1)
    assert statuses(tmp_path / "outbox.sqlite") == {"a1-1": "delivered"}


@pytest.mark.parametrize("status", [400, 401, 404, 410, 301])
def test_a_permanent_failure_is_recorded_and_not_retried(tmp_path: Path, status: int) -> None:
    with WebhookReceiver(status=status) as receiver:
        with running(webhook(receiver.url, tmp_path)) as sink:
            sink.write(batch(1, transition("a1", 1, "firing")))
            outbox = tmp_path / "outbox.sqlite"
            assert wait_until(lambda: statuses(outbox) == {"a1-1": "failed"})
            time.sleep(0.3)  # many backoffs long: no second attempt comes
        assert receiver.requests == 1
    [row] = deliveries(tmp_path / "outbox.sqlite").values()
    assert (row.attempts, row.last_status) == (1, status)
    assert row.last_error is not None
    assert row.last_error.startswith(f"HTTP {status} ")


def test_retries_stop_at_the_limit_and_the_failure_is_recorded(tmp_path: Path) -> None:
    with WebhookReceiver(status=503) as receiver:
        with running(webhook(receiver.url, tmp_path, retries=2)) as sink:
            sink.write(batch(1, transition("a1", 1, "firing")))
            outbox = tmp_path / "outbox.sqlite"
            assert wait_until(lambda: statuses(outbox) == {"a1-1": "failed"})
        assert receiver.requests == 3
    [row] = deliveries(tmp_path / "outbox.sqlite").values()
    assert row.attempts == 3
    assert row.last_error == "HTTP 503 Service Unavailable: not now (gave up after 3 attempts)"


def test_a_dead_endpoint_records_each_refused_attempt_and_keeps_the_transition(
    tmp_path: Path,
) -> None:
    with running(webhook(_closed_port(), tmp_path, drain=timedelta(0))) as sink:
        sink.write(batch(1, transition("a1", 1, "firing")))
        outbox = tmp_path / "outbox.sqlite"
        assert wait_until(lambda: deliveries(outbox)["a1-1"].attempts >= 3)
        assert sink.waiting() == 1
    row = deliveries(outbox)["a1-1"]
    assert row.status == "queued"
    assert row.last_error is not None
    assert "connection refused by http://127.0.0.1:" in row.last_error


def test_retry_after_from_the_server_is_honoured(tmp_path: Path) -> None:
    with (
        WebhookReceiver(fail_first=1, fail_status=429, retry_after="1") as receiver,
        running(webhook(receiver.url, tmp_path, max_backoff=timedelta(seconds=5))) as sink,
    ):
        started = time.monotonic()
        sink.write(batch(1, transition("a1", 1, "firing")))
        assert receiver.wait_for(1)
        waited = time.monotonic() - started
    assert waited >= 1.0


def test_an_alert_s_transitions_keep_their_order_while_one_waits_for_a_retry(
    tmp_path: Path,
) -> None:
    with WebhookReceiver(fail_first=1) as receiver:
        sink = webhook(receiver.url, tmp_path, backoff=timedelta(milliseconds=300))
        with running(sink) as sink:
            sink.write(
                batch(
                    1,
                    transition("a1", 1, "firing"),
                    transition("a1", 2, "resolved"),
                    transition("b1", 1, "firing", device="b", minute=1),
                )
            )
            assert receiver.wait_for(3)
    # a1-1 failed once: a1-2 waited for it; b1, another alert, did not.
    assert receiver.keys() == ["b1-1", "a1-1", "a1-2"]


# -- the outbox: restarts, replays, closing ---------------------------------------------------


def test_a_transition_replayed_after_a_restart_is_not_queued_or_sent_again(
    tmp_path: Path,
) -> None:
    with WebhookReceiver() as receiver:
        with running(webhook(receiver.url, tmp_path)) as sink:
            sink.write(episode("a1"))
        with running(webhook(receiver.url, tmp_path), {0: 0}) as sink:
            sink.write(episode("a1"))  # the replay after the checkpoint at position 0
            sink.write(episode("b1", device="b", minute=1))
            assert receiver.wait_for(4)
            time.sleep(0.1)
        assert sorted(receiver.keys()) == ["a1-1", "a1-2", "b1-1", "b1-2"]


def test_restore_drops_what_is_still_queued_for_later_positions(tmp_path: Path) -> None:
    dead = _closed_port()
    with running(webhook(dead, tmp_path, drain=timedelta(0))) as sink:
        sink.write(batch(1, transition("a1", 1, "firing")))
        sink.write(batch(2, transition("b1", 1, "firing", device="b")))
        sink.write(batch(3, transition("c1", 1, "firing", device="c"), partition=1))
    with running(webhook(dead, tmp_path, drain=timedelta(0)), {0: 1, 1: FROM_START}) as sink:
        assert sink.waiting() == 1
    assert set(statuses(tmp_path / "outbox.sqlite")) == {"a1-1"}


def test_close_keeps_sending_for_the_drain_at_most_then_leaves_the_rest_queued(
    tmp_path: Path,
) -> None:
    records = [transition(f"a{n}", 1, "firing", device=f"d{n}") for n in range(10)]
    with WebhookReceiver(delay_s=0.3) as slow:
        sink = webhook(slow.url, tmp_path, drain=timedelta(seconds=1))
        with running(sink) as sink:
            sink.write(batch(1, *records))
            closing = time.monotonic()
        closed_in = time.monotonic() - closing
    assert 0.9 < closed_in < 2.0
    left = [
        key for key, status in statuses(tmp_path / "outbox.sqlite").items() if status == "queued"
    ]
    assert 3 <= len(left) <= 8

    with (  # the next run sends the rest
        WebhookReceiver() as fast,
        running(webhook(fast.url, tmp_path), {0: 1}),
    ):
        assert fast.wait_for(len(left))
    assert set(statuses(tmp_path / "outbox.sqlite").values()) == {"delivered"}


def test_write_and_flush_never_wait_for_a_slow_endpoint(tmp_path: Path) -> None:
    with (
        WebhookReceiver(delay_s=2.0) as slow,
        running(webhook(slow.url, tmp_path, drain=timedelta(0))) as sink,
    ):
        started = time.perf_counter()
        for minute in range(20):
            sink.write(episode(f"a{minute}", device=f"d{minute}", minute=minute))
            sink.flush()
        spent = time.perf_counter() - started
        assert sink.waiting() >= 38
    assert spent < 1.0, f"20 writes and flushes took {spent:.2f} s"


# -- silences ---------------------------------------------------------------------------------


def test_a_silence_added_while_running_mutes_later_deliveries_which_are_recorded(
    tmp_path: Path,
) -> None:
    store = tmp_path / "out.duckdb"
    actions = AlertActions.beside(store)
    outbox = tmp_path / "outbox.sqlite"
    with WebhookReceiver() as receiver:
        with running(webhook(receiver.url, tmp_path), stores=(store,)) as sink:
            sink.write(batch(1, transition("a1", 1, "firing")))
            assert receiver.wait_for(1)
            silence = actions.silence(
                rule="hot", until=datetime.now(UTC) + timedelta(hours=1), by="ana"
            )
            sink.write(batch(2, transition("a1", 2, "resolved")))
            sink.write(batch(3, transition("d1", 1, "firing", rule="dry")))
            assert wait_until(lambda: len(statuses(outbox)) == 3 and sink.waiting() == 0)
            actions.unsilence(silence.id, by="ana")
            sink.write(batch(4, transition("a2", 1, "firing", minute=5)))
            assert receiver.wait_for(3)
        assert receiver.keys() == ["a1-1", "d1-1", "a2-1"]
    rows = deliveries(outbox)
    assert (rows["a1-2"].status, rows["a1-2"].silence_id) == ("silenced", silence.id)
    assert rows["a1-2"].attempts == 0


def test_a_key_silence_mutes_only_alerts_of_that_key(tmp_path: Path) -> None:
    store = tmp_path / "out.duckdb"
    AlertActions.beside(store).silence(
        key={"device_id": "b"}, until=datetime.now(UTC) + timedelta(hours=1), by="ana"
    )
    with WebhookReceiver() as receiver:
        with running(webhook(receiver.url, tmp_path), stores=(store,)) as sink:
            sink.write(
                batch(1, transition("a1", 1, "firing"), transition("b1", 1, "firing", device="b"))
            )
            assert receiver.wait_for(1)
            assert wait_until(lambda: sink.waiting() == 0)
        assert receiver.keys() == ["a1-1"]
    assert statuses(tmp_path / "outbox.sqlite") == {"a1-1": "delivered", "b1-1": "silenced"}


def test_a_silence_set_while_a_transition_waits_for_a_retry_mutes_it(tmp_path: Path) -> None:
    store = tmp_path / "out.duckdb"
    outbox = tmp_path / "outbox.sqlite"
    with WebhookReceiver(status=503) as receiver:
        with running(webhook(receiver.url, tmp_path), stores=(store,)) as sink:
            sink.write(batch(1, transition("a1", 1, "firing")))
            assert wait_until(lambda: receiver.requests >= 2)
            AlertActions.beside(store).silence(
                rule="hot", until=datetime.now(UTC) + timedelta(minutes=5), by="ana"
            )
            receiver.status = 200
            assert wait_until(lambda: statuses(outbox) == {"a1-1": "silenced"})
        assert receiver.received == []


# -- settings ---------------------------------------------------------------------------------


def test_the_settings_read_from_yaml_with_their_defaults() -> None:
    spec = parse_spec(
        """
name: p
source: {type: simulator}
readings: {measurements: {temperature: float}}
sinks:
  - {type: webhook, url: "https://hooks.example.com/x", retries: 5, max_backoff: 1m}
"""
    )
    [settings] = spec.sinks
    assert isinstance(settings, WebhookSinkSettings)
    assert settings.timeout == timedelta(seconds=5)
    assert settings.retries == 5
    assert settings.max_backoff == timedelta(minutes=1)
    assert settings.states == ["firing", "resolved", "flapping", "correction"]
    assert isinstance(settings.build(), WebhookSink)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": "ftp://example.com/x"}, "is not an http:// or https:// URL with a host"),
        ({"url": "http:///x"}, "is not an http:// or https:// URL with a host"),
        ({"url": "https://u:p@example.com/x"}, "put credentials in token_env or headers"),
        ({"headers": {"Idempotency-Key": "x"}}, "is set by the sink itself"),
        ({"headers": {"X-A": "1\r\nX-B: 2"}}, "holds a line break"),
        ({"headers": {"bad name": "1"}}, "not a valid HTTP header name"),
        ({"url": "http://example.com/x", "token_env": "T"}, "would send the token in clear"),
        ({"states": []}, "at least 1 item"),
        ({"states": ["firing", "firing"]}, "lists a state twice"),
        ({"states": ["ok"]}, "Input should be"),
        ({"timeout": "0s"}, "timeout and backoff must be positive"),
        ({"backoff": "10s", "max_backoff": "1s"}, "max_backoff must be at least backoff"),
    ],
)
def test_settings_refuse_what_cannot_work(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        WebhookSinkSettings.model_validate({"url": "https://example.com/x", **options})


def test_a_token_over_plain_http_is_fine_to_this_machine_only() -> None:
    settings = WebhookSinkSettings(url="http://127.0.0.1:9000/x", token_env="T")
    assert settings.token_env == "T"


def test_a_missing_token_variable_fails_when_the_sink_is_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NO_SUCH_TOKEN", raising=False)
    settings = WebhookSinkSettings(url="https://example.com/x", token_env="NO_SUCH_TOKEN")
    with pytest.raises(ConfigError, match="environment variable NO_SUCH_TOKEN"):
        settings.build()


_ROOT = Path(__file__).parents[3]


def _sink_examples() -> list[tuple[str, str]]:
    """Every ``sinks:`` YAML block of the alert docs and the README, by where it is."""
    found = []
    for name in ("docs/alert-delivery.md", "README.md"):
        text = (_ROOT / name).read_text(encoding="utf-8")
        for index, block in enumerate(re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)):
            if block.startswith("sinks:") and "webhook" in block:
                found.append((f"{name}#{index}", block))
    return found


@pytest.mark.parametrize(("where", "block"), _sink_examples(), ids=lambda value: str(value)[:40])
def test_the_webhook_examples_in_the_docs_load(
    where: str, block: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERT_HOOK_TOKEN", "t")
    spec = parse_spec(
        "name: docs\nsource: {type: simulator}\nreadings: {measurements: {temperature: float}}\n"
        + block,
        origin=where,
    )
    webhooks = [s for s in spec.sinks if isinstance(s, WebhookSinkSettings)]
    assert webhooks, where
    assert all(isinstance(settings.build(), WebhookSink) for settings in webhooks)


def test_the_docs_have_webhook_examples() -> None:
    assert {where.split("#")[0] for where, _ in _sink_examples()} == {
        "docs/alert-delivery.md",
        "README.md",
    }
