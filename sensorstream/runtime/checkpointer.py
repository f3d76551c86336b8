"""Checkpoints saved in the background, so that the pipeline keeps handling batches meanwhile.

A checkpoint has a quick part and a slow part. The quick part runs in the runner's thread,
between two batches: each sink starts making what it was given durable
(:meth:`Sink.flush_started`: the DuckDB sink commits its transaction and hands the
readings' last segment to its writer), and each partition's state is taken (Polars frames,
never changed in place afterwards, and a copy of the metadata). The slow part runs here,
in one background thread: wait until every sink says its part is durable, write and fsync
the checkpoint, then tell the sources (which may free their logs up to it).

Nothing is lost by the overlap. Batches handled meanwhile are written to the sinks after
the flush began, so they belong to the next checkpoint; if the process dies before this
one is saved, the previous checkpoint is the one restored, and the sinks forget what came
after it, as always. One checkpoint is in flight at a time: the next waits for it, and so
does the end of a run, so a run's last checkpoint is saved before it returns. A failure
in the background is raised in the runner's thread at the next checkpoint (or the end).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from sensorstream.runtime.checkpoints import Checkpoint, CheckpointStore

Wait = Callable[[], None]


class Checkpointer:
    """Saves one checkpoint at a time in a background thread; see the module."""

    def __init__(
        self, store: CheckpointStore, observe: Callable[[float], None] | None = None
    ) -> None:
        self.store = store
        self.observe = observe
        self._executor: ThreadPoolExecutor | None = None
        self._in_flight: Future[None] | None = None

    def submit(
        self, checkpoint: Checkpoint, waits: Sequence[Wait], then: Callable[[], None]
    ) -> None:
        """Save ``checkpoint`` once every wait returned, then call ``then``; at once returns.

        The checkpoint before it is finished first (its error, if any, is raised here).
        """
        self.wait()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="checkpoint")
        started = time.perf_counter()
        self._in_flight = self._executor.submit(self._save, checkpoint, waits, then, started)

    def _save(
        self,
        checkpoint: Checkpoint,
        waits: Sequence[Wait],
        then: Callable[[], None],
        started: float,
    ) -> None:
        for wait in waits:
            wait()
        self.store.save(checkpoint)
        then()
        if self.observe is not None:
            self.observe(time.perf_counter() - started)

    def wait(self) -> None:
        """Return once no checkpoint is in flight; raises the error of one that failed."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            in_flight.result()

    def close(self) -> None:
        """Wait for the checkpoint in flight (ignoring its error: it was raised or is moot)."""
        try:
            self.wait()
        except Exception:  # reported where it mattered (a run's end waits), or superseded
            pass
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None
