"""Prometheus metrics of a running pipeline, read off the runner when scraped.

Counts come from the runner's own counters at scrape time (a custom collector), so
``/metrics`` and the run summary can never disagree: lines in per stream and partition,
accepted, duplicates, late (for every step, and per step), dead letters by reason code,
records a step refused, results, alert transitions (also by rule and the state entered).
Gauges: each partition's watermark and its lag behind processing time, the state each
partition held at its last checkpoint (rows of its snapshot frames), and how many alerts
of each rule are in each state (pending, firing, flapping, resolved). The alert figures
are counters of the partition too (:meth:`Counters.count_alerts`), moved by the
transitions it emits and checkpointed with it, so a restored run shows what an
uninterrupted one would, and they always agree with the alerts the sinks stored.
Histograms are observed as the runner works: batch sizes, how long a batch takes from its
arrival to its output reaching the sinks, and checkpoint durations.

Each runner has its own registry (no process-wide state), so several pipelines in one
process, or in one test session, never mix their figures.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from sensorstream.engine.outputs import OutputKind
from sensorstream.engine.rules.lifecycle import ALERT_STATES
from sensorstream.engine.task import PartitionTask
from sensorstream.runtime.counters import DEAD_FOR, LATE_FOR, REJECTED_FOR, STREAM_FOR, Counters

PREFIX = "sensorstream"
# Seconds from a batch's arrival to its output in the sinks: a live pipeline's latency.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 10, 100, 1_000, 10_000, 100_000, 1_000_000)
CHECKPOINT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class Observed(Protocol):
    """What the metrics read off a runner (:class:`~sensorstream.runtime.runner.Runner`)."""

    @property
    def name(self) -> str:
        """The pipeline's name."""

    @property
    def counters(self) -> Mapping[int, Counters]:
        """Each partition's counters."""

    @property
    def tasks(self) -> Mapping[int, PartitionTask]:
        """Each partition's task."""

    @property
    def state_rows(self) -> Mapping[int, int]:
        """Each partition's state rows at the last checkpoint."""

    def now_us(self) -> int:
        """Processing time now."""


class PipelineMetrics:
    """One runner's metrics: its registry, the histograms it observes, the text to serve."""

    def __init__(self, runner: Observed) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_RunnerCollector(runner))
        pipeline = runner.name
        self.batch_rows = Histogram(
            f"{PREFIX}_batch_rows",
            "Records per source batch",
            ["pipeline", "stream"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.latency = Histogram(
            f"{PREFIX}_batch_latency_seconds",
            "From a batch's arrival to its results and alerts reaching the sinks",
            ["pipeline", "stream"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.checkpoint = Histogram(
            f"{PREFIX}_checkpoint_seconds",
            "How long a checkpoint takes (sinks flushed, state saved)",
            ["pipeline"],
            buckets=CHECKPOINT_BUCKETS,
            registry=self.registry,
        )
        self.assignments = Counter(
            f"{PREFIX}_partition_assignments",
            "Partitions a consumer group assigned to this worker or revoked from it",
            ["pipeline", "stream", "change"],
            registry=self.registry,
        )
        self.step_rows = Counter(
            f"{PREFIX}_step_rows",
            "Rows each step emitting a stream produced (a join's, a derive's)",
            ["pipeline", "step"],
            registry=self.registry,
        )
        self.pipeline = pipeline

    def observe_steps(self, rows: Mapping[str, int]) -> None:
        """The rows each stream step emitted in one round (a batch, a watermark, a tick)."""
        for step, count in rows.items():
            self.step_rows.labels(self.pipeline, step).inc(count)

    def observe_batch(self, stream: str, rows: int, latency_s: float) -> None:
        """One source batch handled: its size, and how long since it arrived."""
        self.batch_rows.labels(self.pipeline, stream).observe(rows)
        self.latency.labels(self.pipeline, stream).observe(max(0.0, latency_s))

    def observe_assignment(self, stream: str, assigned: int, revoked: int) -> None:
        """A consumer group assigned or revoked some of a stream's partitions."""
        self.assignments.labels(self.pipeline, stream, "assigned").inc(assigned)
        self.assignments.labels(self.pipeline, stream, "revoked").inc(revoked)

    def observe_checkpoint(self, seconds: float) -> None:
        """One checkpoint taken."""
        self.checkpoint.labels(self.pipeline).observe(seconds)

    def text(self) -> bytes:
        """The exposition format Prometheus scrapes."""
        return generate_latest(self.registry)


class _RunnerCollector(Collector):
    """The runner's counters and watermarks, as they are when scraped."""

    def __init__(self, runner: Observed) -> None:
        self.runner = runner

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        runner = self.runner
        name = runner.name
        labels = ["pipeline", "partition"]
        simple = {
            "lines": "Lines read (records, rows, messages), each accounted for below",
            "accepted": "Records accepted by at least one step in time",
            "duplicates": "Exact repeats dropped",
            "late": "Records too late for every time-sensitive step",
            "dead_letters": "Records that are no valid reading (see the reason codes)",
            "blank": "Blank lines",
            "results": "Window results emitted (corrections included)",
            "alert_transitions": "Alert state changes emitted",
            "rejected": "Records a step refused after intake (a join's missing reference)",
        }
        for counter, help_text in simple.items():
            family = CounterMetricFamily(f"{PREFIX}_{counter}", help_text, labels=labels)
            for partition, counts in list(runner.counters.items()):
                family.add_metric([name, str(partition)], counts.get(counter))
            yield family
        per_stream = CounterMetricFamily(
            f"{PREFIX}_stream_lines",
            "Lines read per stream (a pipeline of several)",
            labels=["pipeline", "partition", "stream", "outcome"],
        )
        by_reason = CounterMetricFamily(
            f"{PREFIX}_dead_letters_by_reason",
            "Dead letters per reason code",
            labels=["pipeline", "partition", "reason_code"],
        )
        by_step = CounterMetricFamily(
            f"{PREFIX}_late_by_step",
            "Records too late for one step (perhaps taken by another)",
            labels=["pipeline", "partition", "step"],
        )
        refused = CounterMetricFamily(
            f"{PREFIX}_rejected_by_step",
            "Records one step refused",
            labels=["pipeline", "partition", "step"],
        )
        for partition, counts in list(runner.counters.items()):
            part = str(partition)
            for key, value in counts.items():
                if key.startswith(DEAD_FOR):
                    by_reason.add_metric([name, part, key[len(DEAD_FOR) :]], value)
                elif key.startswith(LATE_FOR):
                    by_step.add_metric([name, part, key[len(LATE_FOR) :]], value)
                elif key.startswith(REJECTED_FOR):
                    refused.add_metric([name, part, key[len(REJECTED_FOR) :]], value)
                elif key.startswith(STREAM_FOR):
                    stream, _, outcome = key[len(STREAM_FOR) :].rpartition(":")
                    per_stream.add_metric([name, part, stream, outcome], value)
        yield from (per_stream, by_reason, by_step, refused)
        yield from self._alerts(name)
        yield from self._watermarks(name)

    def _alerts(self, name: str) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        labels = ["pipeline", "partition", "rule", "state"]
        alerts = GaugeMetricFamily(
            f"{PREFIX}_alerts",
            "Alerts of each rule in each state now (their latest transition's state)",
            labels=labels,
        )
        moved = CounterMetricFamily(
            f"{PREFIX}_alert_transitions_by_rule",
            "Alert transitions of each rule by the state entered (and corrections)",
            labels=labels,
        )
        for partition, task in list(self.runner.tasks.items()):
            part = str(partition)
            # A copy (in C, under the GIL): the runner's thread adds names as it counts.
            counts = self.runner.counters.get(partition, Counters()).copy()
            current = counts.alerts_by_state()
            rules = [step for step, kind in task.kinds.items() if kind is OutputKind.EVENTS]
            for rule in rules:
                for state in ALERT_STATES:
                    alerts.add_metric([name, part, rule, state], current.get((rule, state), 0))
            for (rule, entered), value in counts.transitions_by_state().items():
                moved.add_metric([name, part, rule, entered], value)
        yield from (alerts, moved)

    def _watermarks(self, name: str) -> Iterator[GaugeMetricFamily]:
        runner = self.runner
        now_us = runner.now_us()
        watermark = GaugeMetricFamily(
            f"{PREFIX}_watermark_seconds",
            "Each partition's watermark per stream, as seconds since the epoch",
            labels=["pipeline", "partition", "stream"],
        )
        lag = GaugeMetricFamily(
            f"{PREFIX}_watermark_lag_seconds",
            "How far each partition's watermark is behind processing time",
            labels=["pipeline", "partition", "stream"],
        )
        state = GaugeMetricFamily(
            f"{PREFIX}_state_rows",
            "Rows of state each partition held at its last checkpoint (windows, tables, ...)",
            labels=["pipeline", "partition"],
        )
        for partition, task in list(runner.tasks.items()):
            for stream in task.streams:
                mark = task.watermark_of(stream)
                if abs(mark) >= 2**61:  # not started, or closed at the end of input
                    continue
                labels = [name, str(partition), stream]
                watermark.add_metric(labels, mark / 1e6)
                lag.add_metric(labels, max(0.0, (now_us - mark) / 1e6))
            if partition in runner.state_rows:
                state.add_metric([name, str(partition)], runner.state_rows[partition])
        yield from (watermark, lag, state)
