"""A local webhook receiver for tests: a real HTTP server on the loopback that records each POST.

>>> import http.client
>>> with WebhookReceiver() as receiver:
...     connection = http.client.HTTPConnection("127.0.0.1", receiver.port)
...     connection.request("POST", "/hook", b'{"a": 1}', {"Idempotency-Key": "k1"})
...     print(connection.getresponse().status)
...     connection.close()
...     print([(hit.key, hit.body) for hit in receiver.received])
200
[('k1', {'a': 1})]

Its answers can be set: ``delay_s`` before each answer (a slow endpoint), ``fail_first``
requests answered with ``fail_status`` (a flaky one), or ``status`` for every request.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class Received:
    """One request the receiver answered with a 2xx: its idempotency key, body and headers."""

    key: str  # "" when the request had none
    body: Any
    headers: dict[str, str]


class WebhookReceiver:
    """Records webhooks POSTed to it; answers as told. Use it as a context manager."""

    def __init__(
        self,
        *,
        status: int = 200,
        fail_first: int = 0,
        fail_status: int = 503,
        delay_s: float = 0.0,
        retry_after: str | None = None,
    ) -> None:
        self.status = status
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.delay_s = delay_s
        self.retry_after = retry_after
        self.received: list[Received] = []
        self.requests = 0  # every request, answered with a 2xx or not
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def port(self) -> int:
        """The port it listens on (on 127.0.0.1)."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Where to POST: ``http://127.0.0.1:<port>/hook``."""
        return f"http://127.0.0.1:{self.port}/hook"

    def keys(self) -> list[str]:
        """The idempotency keys received, in arrival order (repeats included)."""
        with self._lock:
            return [hit.key for hit in self.received]

    def wait_for(self, count: int, timeout_s: float = 10.0) -> bool:
        """Wait until ``count`` webhooks were received; False if they were not in time."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= count:
                    return True
            time.sleep(0.01)
        return False

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        self._server.serve_forever(poll_interval=0.02)  # shutting down waits one interval

    def _answer(self, key: str, body: bytes, headers: dict[str, str]) -> int:
        with self._lock:
            self.requests += 1
            failing = self.requests <= self.fail_first
        if self.delay_s:
            time.sleep(self.delay_s)
        status = self.fail_status if failing else self.status
        if 200 <= status < 300:
            with self._lock:
                self.received.append(Received(key, json.loads(body), headers))
        return status


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True  # a slow answer in progress does not hold up shutting down

    def handle_error(self, request: object, client_address: object) -> None:
        del request, client_address  # a client gone mid-answer (a sink closing) is no news


def _handler(receiver: WebhookReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keeps connections alive, as real endpoints do

        def do_POST(self) -> None:  # the name http.server dispatches to
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            headers = {name.lower(): value for name, value in self.headers.items()}
            status = receiver._answer(headers.get("idempotency-key", ""), body, headers)
            answer = b"" if 200 <= status < 300 else b"not now"
            self.send_response(status)
            if receiver.retry_after is not None and status >= 400:
                self.send_header("Retry-After", receiver.retry_after)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            del format, args  # quiet: tests read what was received, not a log

    return Handler
