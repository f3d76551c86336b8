"""Several pipelines live at once in one process, each served, with an index of them all.

``sensorstream demo all`` runs every scenario this way. Each :class:`Member` is a pipeline
of its own: its own :class:`~sensorstream.runtime.runner.Runner` (its own store and
checkpoint, as its YAML says) in a thread of its own, and its own
:class:`~sensorstream.runtime.serving.PipelineServer` (the dashboard reads its API from the
root of its origin, so each needs a port). The :class:`Ensemble` serves an index of them
(:mod:`sensorstream.dashboard.scenarios`) on the main port, and stops them all together:
each runner checkpoints and returns, then its server closes.

A member that fails (its pipeline does not build, its port is taken, its run raises) is
marked failed with the error, shown on the index; the others go on.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sensorstream.api.server import BackgroundServer
from sensorstream.dashboard.scenarios import ScenarioStatus, State, index_app
from sensorstream.pipeline.spec import PipelineSpec
from sensorstream.runtime.counters import ALERTS_IN, Counters, RunSummary
from sensorstream.runtime.runner import Runner
from sensorstream.runtime.serving import PipelineServer

__all__ = ["Ensemble", "Listing", "Member"]

OPEN_STATES = ("pending", "firing", "flapping")
RATE_OVER_S = 10.0  # lines/s is the mean over the last this many seconds...
SAMPLE_EVERY_S = 1.0  # ...of samples taken at most this often


@dataclass(frozen=True)
class Listing:
    """What the index says of a pipeline besides how it runs (a scenario's description)."""

    name: str
    title: str
    document: str
    job: str


class Member:
    """One pipeline of the ensemble: built, served, run in its thread; or why it failed."""

    def __init__(self, listing: Listing, spec: PipelineSpec, *, fresh: bool) -> None:
        self.listing = listing
        self.spec = spec
        self.fresh = fresh
        self.runner: Runner | None = None
        self.server: PipelineServer | None = None
        self.summary: RunSummary | None = None
        self.error: BaseException | None = None
        self.state: State = "starting"
        self.views: list[str] = []
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._samples: deque[tuple[float, int]] = deque([(time.monotonic(), 0)])
        self._lock = threading.Lock()

    def start(self) -> None:
        """Build the runner, serve it and run it in a thread; a failure marks it failed."""
        try:
            views = self.spec.views()
            self.views = [
                name
                for name, present in (
                    ("gauges", bool(views.gauges)),
                    ("heatmap", bool(views.heatmaps)),
                    ("map", views.map is not None),
                    ("series", bool(views.series)),
                )
                if present
            ]
            self.runner = Runner(self.spec, fresh=self.fresh)
            if self._stopping:  # Ctrl-C came while the members before it started
                self.runner.stop()
            if self.spec.api.serve:
                self.server = PipelineServer(self.runner).start()
        except Exception as error:  # shown on the index; the others go on
            self._failed(error)
            return
        self.state = "running"
        self._thread = threading.Thread(target=self._run, name=f"run-{self.spec.name}")
        self._thread.start()

    def _run(self) -> None:
        assert self.runner is not None  # started only once built
        try:
            self.summary = self.runner.run()
        except Exception as error:
            self._failed(error)
            return
        self.state = "stopped" if self._stopping else "finished"

    def _failed(self, error: BaseException) -> None:
        self.error = error
        self.state = "failed"

    def stop(self) -> None:
        """Ask the runner to checkpoint and return after its current batch."""
        self._stopping = True
        if self.runner is not None:
            self.runner.stop()

    def alive(self) -> bool:
        """Whether its runner still runs."""
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        """Wait for its runner to return."""
        if self._thread is not None:
            self._thread.join(timeout)

    def close(self) -> None:
        """Stop serving it (once its runner returned)."""
        if self.server is not None:
            self.server.close()
            self.server = None

    def counters(self) -> Counters:
        """Its counters now, summed over partitions (read while it runs)."""
        if self.summary is not None:
            return self.summary.counters
        if self.runner is None:
            return Counters()
        # Copies: the runner's thread adds names while this one reads.
        return Counters.sum([Counters(dict(c)) for c in list(self.runner.counters.values())])

    def _rate(self, lines: int) -> float:
        """Lines per second over the last :data:`RATE_OVER_S` seconds (a slow feed's too)."""
        with self._lock:
            now = time.monotonic()
            if now - self._samples[-1][0] >= SAMPLE_EVERY_S:
                self._samples.append((now, lines))
            while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_OVER_S:
                self._samples.popleft()
            then, before = self._samples[0]
            return max(0.0, (lines - before) / (now - then)) if now > then else 0.0

    def status(self) -> ScenarioStatus:
        """How it runs now, for the index."""
        counters = self.counters()
        lines = counters.get("lines")
        rate = self._rate(lines) if self.state == "running" else 0.0
        open_alerts = sum(
            count
            for name, count in counters.items()
            if name.startswith(ALERTS_IN) and name.rsplit(":", 1)[-1] in OPEN_STATES
        )
        return ScenarioStatus(
            name=self.listing.name,
            title=self.listing.title,
            document=self.listing.document,
            job=self.listing.job,
            state=self.state,
            url=self.server.url + "/" if self.server is not None else None,
            views=self.views,
            lines=lines,
            lines_per_second=round(rate, 1),
            results=counters.get("results"),
            open_alerts=open_alerts,
            dead_letters=counters.get("dead_letters"),
            error=_described(self.error) if self.error is not None else None,
        )


class Ensemble:
    """Pipelines run together, with an index of them on ``host:port`` (see the module)."""

    def __init__(
        self,
        members: Sequence[Member],
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        title: str = "sensorstream scenarios",
    ) -> None:
        self.members = list(members)
        self.index = BackgroundServer(
            index_app(self.statuses, title), host, port, name="scenarios-index"
        )

    @property
    def url(self) -> str:
        """Where the index listens."""
        return self.index.url

    def statuses(self) -> list[ScenarioStatus]:
        """Every member's status, in order."""
        return [member.status() for member in self.members]

    def start(self, on_started: Callable[[Member], None] | None = None) -> Ensemble:
        """Serve the index, then start every member (a failed one stays listed)."""
        self.index.start()
        for member in self.members:
            member.start()
            if on_started is not None:
                on_started(member)
        return self

    def stop(self) -> None:
        """Ask every member to checkpoint and stop."""
        for member in self.members:
            member.stop()

    def wait(self, poll_s: float = 0.2) -> None:
        """Return once every member's runner returned (a signal handler may run meanwhile)."""
        while any(member.alive() for member in self.members):
            for member in self.members:
                member.join(poll_s)

    def close(self) -> None:
        """Stop every member, wait for their checkpoints, then stop serving."""
        self.stop()
        self.wait()
        try:
            for member in self.members:
                member.close()
        finally:
            self.index.close()


def _described(error: BaseException) -> str:
    """An error as one line: its message, or its type when it has none."""
    text = str(error).strip() or type(error).__name__
    return text if not isinstance(error, OSError) else f"{type(error).__name__}: {text}"
