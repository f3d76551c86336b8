"""Sending queued transitions: the webhook sink's background thread, its HTTP and its retries.

One thread per webhook sink takes due rows from the outbox in queue order (an alert's
transitions in their order: one waiting for a retry holds back its alert's later ones, no
other alert's) and POSTs each body, with ``Idempotency-Key: <transition_id>``, over one
kept-alive connection. What becomes of an attempt::

    2xx                                  delivered (delivered_us records when)
    408, 429, 5xx, timeout, no answer    sent again after a backoff (RetryPolicy); failed
                                         once out of retries, if they are limited
    any other status (4xx, a redirect)   failed at once: resending gets the same answer
    a silence matches it                 silenced, not sent (actions/silences.py)

Every attempt counts in ``attempts`` and leaves its error (the status and the start of the
answer, or what went wrong on the network) in ``last_error``. The pipeline's thread never
waits for any of this: it only adds rows to the outbox and wakes this thread. Redirects are
not followed: a POST redirected would be resent somewhere else, body and token included.
"""

from __future__ import annotations

import http.client
import random
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from sensorstream.actions.actions_file import from_us
from sensorstream.actions.silences import SilenceWatcher
from sensorstream.display import visible
from sensorstream.sinks.webhook_outbox import Delivery, Outbox

Verdict = Literal["delivered", "retry", "failed"]
USER_AGENT = "sensorstream-webhook/1"
MAX_ANSWER_BYTES = 64 * 1024  # of an answer's body read; past that the connection is dropped
ERROR_CHARS = 200  # of an answer's body kept in last_error
BATCH = 32  # due rows taken from the outbox at a time
IDLE_WAIT_S = 30.0  # longest sleep between looks at the outbox (a write wakes it sooner)
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


def verdict(status: int) -> Verdict:
    """What an HTTP status means for a delivery.

    >>> verdict(204), verdict(503), verdict(429), verdict(404), verdict(301)
    ('delivered', 'retry', 'retry', 'failed', 'failed')
    """
    if 200 <= status < 300:
        return "delivered"
    if status in (408, 429) or status >= 500:
        return "retry"
    return "failed"


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait before sending a failed delivery again."""

    retries: int | None  # None: until delivered (or failed for good)
    backoff: timedelta  # the first wait
    max_backoff: timedelta

    def delay_s(
        self, attempt: int, rng: random.Random, retry_after_s: float | None = None
    ) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1 for the first).

        The wait doubles from ``backoff`` up to ``max_backoff``, and its second half is
        random, so sinks that failed together do not all retry together. A longer
        ``Retry-After`` from the server is honoured, up to ``max_backoff`` too.

        >>> policy = RetryPolicy(None, timedelta(seconds=1), timedelta(seconds=10))
        >>> rng = random.Random(7)
        >>> [round(policy.delay_s(attempt, rng), 2) for attempt in range(1, 7)]
        [0.66, 1.15, 3.3, 4.29, 7.68, 6.83]
        >>> policy.delay_s(1, rng, retry_after_s=120)
        10.0
        """
        cap = self.max_backoff.total_seconds()
        full = min(cap, self.backoff.total_seconds() * 2.0 ** min(attempt - 1, 60))
        delay = full / 2 + rng.uniform(0, full / 2)
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, cap))
        return delay

    def gives_up(self, attempts: int) -> bool:
        """Whether a delivery tried ``attempts`` times has had all its tries."""
        return self.retries is not None and attempts > self.retries


def origin(url: str) -> str:
    """A URL's scheme, host and port, to name it in errors: its path or query may be a secret.

    >>> origin("https://hooks.example.com/services/T000/B000/XXXX?token=abc")
    'https://hooks.example.com'
    """
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


@dataclass(frozen=True)
class Answer:
    """What the endpoint answered: its status, an error text unless 2xx, any Retry-After."""

    status: int
    error: str
    retry_after_s: float | None = None


class Poster:
    """POSTs JSON bodies to one URL over one kept-alive HTTP/1.1 connection; no redirects."""

    def __init__(self, url: str, *, timeout_s: float, headers: dict[str, str]) -> None:
        parts = urlsplit(url)
        self.endpoint = origin(url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._timeout_s = timeout_s
        self._headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers}
        self._connection: http.client.HTTPConnection | None = None

    def post(self, body: bytes, idempotency_key: str) -> Answer:
        """Send one body; raises ``OSError`` or ``HTTPException`` when no answer came."""
        headers = {**self._headers, "Idempotency-Key": idempotency_key}
        while True:
            reused = self._connection is not None
            connection = self._connection or self._connect()
            try:
                connection.request("POST", self._target, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read(MAX_ANSWER_BYTES)
            except _STALE:
                self.close()
                if reused:
                    continue  # the server closed a kept-alive connection: one fresh try
                raise
            except BaseException:
                self.close()
                raise
            if not response.isclosed():  # an answer too long to read: drop the connection
                self.close()
            return _answer(response, data)

    def describe(self, error: BaseException) -> str:
        """What went wrong on the network, in a few words."""
        if isinstance(error, TimeoutError | socket.timeout):
            return f"no answer from {self.endpoint} within {self._timeout_s:g} s"
        if isinstance(error, ConnectionRefusedError):
            return f"connection refused by {self.endpoint}"
        if isinstance(error, socket.gaierror):
            return f"cannot resolve {self._host}: {error.strerror}"
        if isinstance(error, ssl.SSLError):
            return f"TLS with {self.endpoint} failed: {error.reason or error}"
        return f"{type(error).__name__} talking to {self.endpoint}: {error}"

    def close(self) -> None:
        """Drop the connection, if any."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _connect(self) -> http.client.HTTPConnection:
        if self._https:
            self._connection = http.client.HTTPSConnection(
                self._host,
                self._port,
                timeout=self._timeout_s,
                context=ssl.create_default_context(),
            )
        else:
            self._connection = http.client.HTTPConnection(
                self._host, self._port, timeout=self._timeout_s
            )
        return self._connection


def _answer(response: http.client.HTTPResponse, data: bytes) -> Answer:
    status = response.status
    if verdict(status) == "delivered":
        return Answer(status, "")
    text = visible(data[:ERROR_CHARS].decode("utf-8", "replace").strip())
    error = f"HTTP {status} {visible(response.reason)}" + (f": {text}" if text else "")
    if 300 <= status < 400:
        location = visible(response.getheader("Location") or "?")
        error += f" (redirects are not followed: set url to {location})"
    retry_after = (response.getheader("Retry-After") or "").strip()
    seconds = float(retry_after) if retry_after.isdigit() else None
    return Answer(status, error, seconds)


class DeliveryThread:
    """Sends one pipeline's queued transitions in the background until stopped.

    It opens its own outbox connection (and silence watcher) in its thread. An unexpected
    error stops it and waits in :attr:`failure` for the sink to report.
    """

    def __init__(
        self,
        outbox: Path,
        pipeline: str,
        poster: Poster,
        policy: RetryPolicy,
        *,
        silences: Path | None,
        rng: random.Random | None = None,
    ) -> None:
        self.outbox = outbox
        self.pipeline = pipeline
        self.poster = poster
        self.policy = policy
        self.silences = silences
        self.failure: Exception | None = None
        self._rng = rng if rng is not None else random.Random()
        self._wake = threading.Event()
        self._stop_at: float | None = None  # wall time after which no attempt starts
        self._in_flight = False
        self._thread = threading.Thread(
            target=self._run, name=f"sensorstream-webhook-{pipeline}", daemon=True
        )

    def start(self) -> None:
        """Start sending."""
        self._thread.start()

    def wake(self) -> None:
        """Look at the outbox now: something was queued."""
        self._wake.set()

    def stop(self, drain_s: float) -> bool:
        """Send what falls due within ``drain_s`` more seconds, then stop; True if it stopped.

        A request still on its way then is not waited for (the thread is a daemon): its row
        stays queued, and the next run sends it again under the same idempotency key.
        """
        self._stop_at = time.time() + drain_s
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=drain_s)
            if self._thread.is_alive() and not self._in_flight:
                self._thread.join(timeout=1.0)  # between two rows: it stops in a moment
        return not self._thread.is_alive()

    def _stopping(self) -> bool:
        return self._stop_at is not None and time.time() >= self._stop_at

    def _run(self) -> None:
        try:
            outbox = Outbox(self.outbox, self.pipeline)
        except Exception as error:
            self.failure = error
            return
        watcher = SilenceWatcher(self.silences) if self.silences is not None else None
        try:
            self._loop(outbox, watcher)
        except Exception as error:  # the sink's next flush reports it
            self.failure = error
        finally:
            self.poster.close()
            outbox.close()
            if watcher is not None:
                watcher.close()

    def _loop(self, outbox: Outbox, watcher: SilenceWatcher | None) -> None:
        while not self._stopping():
            self._wake.clear()  # before looking: a row queued after the look wakes the wait
            due = outbox.due(_micros(time.time()), BATCH)
            for row in due:
                if self._stopping():
                    return
                self._deliver(outbox, watcher, row)
            if due:
                continue
            next_due = outbox.next_due_us()
            now = time.time()
            wait = IDLE_WAIT_S if next_due is None else max(0.0, next_due / 1e6 - now)
            if self._stop_at is not None:
                if next_due is None or next_due / 1e6 >= self._stop_at:
                    return  # nothing more falls due before the drain ends
                wait = min(wait, self._stop_at - now)
            self._wake.wait(min(wait, IDLE_WAIT_S))

    def _deliver(self, outbox: Outbox, watcher: SilenceWatcher | None, row: Delivery) -> None:
        if watcher is not None:
            silence = watcher.muting(
                self.pipeline,
                row.rule,
                row.key,
                since=from_us(row.queued_us),
                now=datetime.now(UTC),
            )
            if silence is not None:
                outbox.silenced(row.seq, silence.id)
                return
        attempts = row.attempts + 1
        self._in_flight = True
        try:
            answer = self.poster.post(row.payload, row.transition_id)
        except (OSError, http.client.HTTPException) as error:
            self._again(outbox, row, attempts, self.poster.describe(error), None, None)
            return
        except Exception as error:  # a bug must not stop every other delivery
            outbox.failed(row.seq, attempts, f"unexpected {type(error).__name__}: {error}", None)
            return
        finally:
            self._in_flight = False
        outcome = verdict(answer.status)
        if outcome == "delivered":
            outbox.delivered(row.seq, attempts, answer.status, _micros(time.time()))
        elif outcome == "failed":
            outbox.failed(row.seq, attempts, answer.error, answer.status)
        else:
            self._again(outbox, row, attempts, answer.error, answer.status, answer.retry_after_s)

    def _again(
        self,
        outbox: Outbox,
        row: Delivery,
        attempts: int,
        error: str,
        status: int | None,
        retry_after_s: float | None,
    ) -> None:
        if self.policy.gives_up(attempts):
            outbox.failed(row.seq, attempts, f"{error} (gave up after {attempts} attempts)", status)
            return
        delay = self.policy.delay_s(attempts, self._rng, retry_after_s)
        outbox.retry(row.seq, attempts, error, status, _micros(time.time() + delay))


def _micros(seconds: float) -> int:
    return round(seconds * 1_000_000)
