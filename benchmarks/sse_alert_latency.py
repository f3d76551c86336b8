"""From POST to the alert on the SSE stream, at a steady 10,000 readings/s: p50 and p99.

Starts ``sensorstream run`` on a pipeline reading the HTTP source, with a threshold rule
(critical above 90) and a one-minute window per device, a DuckDB sink and the API, all in
the default configuration (raw readings stored, a checkpoint every 5 s). A pacer posts
``--rate`` readings/s of ``--devices`` devices in NDJSON bodies of ``--lines`` lines, each
reading stamped with the time it is sent (microseconds, in order; no out-of-orderness is
allowed, so what is measured is the pipeline, not a wait for late data), all of them
normal (below 90). Every
``--probe-every`` seconds one body also carries a probe: a reading of 99 for a device never
seen before, whose alert must appear on ``GET /api/v1/events``. Its latency is from just
before its POST to the moment its ``firing`` transition is read from the stream, both
on this process's clock. Beside it, in the same run, the reference: each POST's round
trip (until its 2xx, when the readings are durable), what any ingest costs before the
pipeline even starts on it. Prints p50/p99 of both, their ratio, and the rate achieved.
Target: p99 <= 50 ms.

    python benchmarks/sse_alert_latency.py [--rate 10000] [--seconds 30] [--lines 100]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
PIPELINE = """
name: sse_latency
source: {{type: http}}
readings: {{measurements: {{temperature: float}}, time_unit: us}}
event_time: {{out_of_orderness: 0s, idle_timeout: 1s}}
steps:
  - name: per_device_1m
    window: {{type: tumbling, size: 1m}}
    aggregates: [count, mean(temperature)]
  - name: hot
    rule: {{threshold: temperature, above: {{critical: 90}}}}
sinks:
  - {{type: duckdb, path: "{db}"}}
checkpoint: {{dir: "{checkpoints}"}}
api: {{port: {port}}}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def histogram_quantiles(scraped: str, name: str) -> tuple[float, float]:
    """The bucket bounds holding the p50 and p99 of a scraped histogram (all its series)."""
    from prometheus_client.parser import text_string_to_metric_families

    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(scraped):
        if family.name == name.removesuffix("_seconds") or family.name == name:
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    bound = float(sample.labels["le"])
                    buckets[bound] = buckets.get(bound, 0.0) + sample.value
    ordered = sorted(buckets.items())
    total = ordered[-1][1] if ordered else 0.0

    def upper(share: float) -> float:
        return next((b for b, count in ordered if count >= share * total), float("nan"))

    return upper(0.5), upper(0.99)


class Probes:
    """When each probe was sent, and when its alert arrived."""

    def __init__(self) -> None:
        self.sent: dict[str, float] = {}
        self.seen: dict[str, float] = {}
        self.lock = threading.Lock()

    def latencies_ms(self) -> list[float]:
        """Each probe's, from before its POST to its alert on the stream."""
        with self.lock:
            return [1000 * (self.seen[k] - self.sent[k]) for k in self.seen if k in self.sent]


def listen(base: str, probes: Probes, stop: threading.Event, ready: threading.Event) -> None:
    """Read the SSE stream, noting when each probe's alert fires."""
    with (
        httpx.Client(base_url=base, timeout=httpx.Timeout(5, read=None)) as client,
        client.stream("GET", "/api/v1/events") as events,
    ):
        ready.set()
        kind = ""
        for line in events.iter_lines():
            if stop.is_set():
                return
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind == "alert":
                arrived = time.perf_counter()
                event = json.loads(line[6:])
                device = str(json.loads(event.get("key") or "{}").get("device_id", ""))
                if device.startswith("probe-") and event.get("state") == "firing":
                    with probes.lock:
                        probes.seen.setdefault(device, arrived)


def body(devices: int, lines: int, start: int, probe: str | None) -> bytes:
    """NDJSON of ``lines`` normal readings (and the probe first), stamped now, in order.

    Each reading's time is one microsecond after the one before it: with no
    out-of-orderness allowed, a reading at the same time as the newest one seen is late.
    """
    now_us = time.time_ns() // 1000
    rows = [
        f'{{"device_id":"d{(start + n) % devices}","ts":{now_us + n + 1},'
        f'"temperature":{20 + n % 50}}}'
        for n in range(lines)
    ]
    if probe is not None:
        rows.insert(0, f'{{"device_id":"{probe}","ts":{now_us},"temperature":99}}')
    return ("\n".join(rows) + "\n").encode()


def drive(base: str, args: argparse.Namespace, probes: Probes) -> tuple[list[float], int]:
    """Post at the target rate for ``args.seconds``; the POST round trips (ms) and lines sent."""
    interval = args.lines / args.rate
    round_trips: list[float] = []
    sent = 0
    next_probe = time.perf_counter() + 1.0
    headers = {"Content-Type": "application/x-ndjson"}
    with httpx.Client(base_url=base, timeout=30) as client:
        started = time.perf_counter()
        due = started
        number = 0
        while (now := time.perf_counter()) < started + args.seconds:
            if now < due:
                time.sleep(due - now)
            probe = None
            if time.perf_counter() >= next_probe:
                probe = f"probe-{number}"
                next_probe += args.probe_every
            content = body(args.devices, args.lines, sent, probe)
            before = time.perf_counter()
            if probe is not None:
                with probes.lock:
                    probes.sent[probe] = before
            answer = client.post("/api/v1/readings", content=content, headers=headers)
            round_trips.append(1000 * (time.perf_counter() - before))
            if answer.status_code != 200:
                msg = f"POST answered {answer.status_code}: {answer.text[:200]}"
                raise RuntimeError(msg)
            sent += args.lines + (probe is not None)
            number += 1
            due += interval
        elapsed = time.perf_counter() - started
    return round_trips, round(sent / elapsed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=10_000, help="readings/s")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--lines", type=int, default=100, help="readings per POST")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--probe-every", type=float, default=0.1, help="seconds")
    parser.add_argument(
        "--command",
        default=f"{sys.executable} -m sensorstream",
        help="what runs sensorstream (a profiler's wrapper, say)",
    )
    args = parser.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        spec = folder / "pipeline.yaml"
        spec.write_text(
            PIPELINE.format(db=folder / "out.duckdb", checkpoints=folder / "ckpt", port=port)
        )
        path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        pipeline = subprocess.Popen(
            [*args.command.split(), "run", str(spec), "--no-progress"],
            cwd=folder,
            env={**os.environ, "PYTHONPATH": path},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert pipeline.stderr is not None
            announced = pipeline.stderr.readline()
            if "API: " not in announced:
                msg = f"the pipeline did not serve: {announced}{pipeline.stderr.read()}"
                raise RuntimeError(msg)
            probes, stop, ready = Probes(), threading.Event(), threading.Event()
            listener = threading.Thread(
                target=listen, args=(base, probes, stop, ready), daemon=True
            )
            listener.start()
            ready.wait(10)
            round_trips, rate = drive(base, args, probes)
            deadline = time.monotonic() + 5
            while len(probes.seen) < len(probes.sent) and time.monotonic() < deadline:
                time.sleep(0.05)
            stop.set()
            scraped = httpx.get(f"{base}/metrics", timeout=10).text
        finally:
            pipeline.send_signal(signal.SIGINT)
            _, said = pipeline.communicate(timeout=60)
            if "Traceback" in said:
                print(said, file=sys.stderr)
    alerts = probes.latencies_ms()
    if not alerts:
        msg = f"no probe's alert was seen ({len(probes.sent)} sent)"
        raise RuntimeError(msg)
    missing = len(probes.sent) - len(alerts)
    p50, p99 = percentile(alerts, 0.5), percentile(alerts, 0.99)
    r50, r99 = percentile(round_trips, 0.5), percentile(round_trips, 0.99)
    print(f"rate achieved: {rate:,} readings/s (target {args.rate:,}), {len(round_trips):,} POSTs")
    print(f"POST -> 2xx (reference):   p50 {r50:6.1f} ms   p99 {r99:6.1f} ms")
    print(
        f"POST -> SSE alert:         p50 {p50:6.1f} ms   p99 {p99:6.1f} ms   "
        f"({len(alerts)} probes, {missing} never seen)"
    )
    print(f"ratio alert / 2xx:         p50 {p50 / r50:5.2f}x    p99 {p99 / r99:5.2f}x")
    for name, label in (
        ("sensorstream_batch_latency_seconds", "pipeline: arrival -> sinks"),
        ("sensorstream_checkpoint_seconds", "pipeline: checkpoint"),
    ):
        p50_s, p99_s = histogram_quantiles(scraped, name)
        print(f"{label:27s}p50 <= {1000 * p50_s:4.0f} ms   p99 <= {1000 * p99_s:4.0f} ms (buckets)")
    print(f"target p99 <= 50 ms: {'met' if p99 <= 50 and not missing else 'NOT met'}")


if __name__ == "__main__":
    main()
