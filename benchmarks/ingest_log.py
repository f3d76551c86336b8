"""The ingest log alone: what a durable append costs, and what group commit saves.

Appends 1-line bodies (a device posting one reading) and 1,000-line bodies (a gateway's
batch, about 80 KB) from 1, 4, 16 and 64 threads, each append synced to disk before it
returns, and prints appends/s, mean latency and fsyncs per append. Group commit shows as
fsyncs per append well below 1 with many threads. The reference is the same run with the
fsync left out (what durability costs: the ratio). Run it on the disk the log will live on;
``--sync-delay-ms`` adds that much to every fsync, to see a slower disk's (a virtual disk
with a write-back cache syncs in 0.1 ms, a consumer SSD in 1 to 5 ms):

    python benchmarks/ingest_log.py [--folder .] [--seconds 2] [--sync-delay-ms 0]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from sensorstream.sources import ingest_log
from sensorstream.sources.ingest_log import IngestLog

NOW = datetime(2024, 6, 1, tzinfo=UTC)
LINE = b'{"device_id":"device-00042","ts":1717200000000,"temperature":21.5,"humidity":40.1}\n'


def run(folder: Path, threads: int, lines: int, seconds: float) -> tuple[float, float, float]:
    """Appends/s, mean latency (ms) and fsyncs per append of ``threads`` appending for a while."""
    body = LINE * lines
    latencies: list[float] = []
    lock = threading.Lock()
    stop = threading.Event()
    with (
        tempfile.TemporaryDirectory(dir=folder) as scratch,
        IngestLog(scratch, max_unconsumed_bytes=1 << 40, segment_bytes=64 << 20) as log,
    ):

        def append() -> None:
            mine = []
            while not stop.is_set():
                started = time.perf_counter()
                log.append(body, NOW)
                mine.append(time.perf_counter() - started)
            with lock:
                latencies.extend(mine)

        workers = [threading.Thread(target=append) for _ in range(threads)]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        time.sleep(seconds)
        stop.set()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - started
        appends, syncs = log.appends, log.syncs
    return appends / elapsed, sum(latencies) / len(latencies) * 1e3, syncs / appends


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=Path())
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--sync-delay-ms", type=float, default=0.0)
    args = parser.parse_args()
    real_sync = ingest_log._sync
    if args.sync_delay_ms:
        delay = args.sync_delay_ms / 1e3

        def slower_sync(fd: int) -> None:
            time.sleep(delay)
            disk_sync(fd)

        disk_sync, real_sync = real_sync, slower_sync
        ingest_log._sync = slower_sync
    for lines in (1, 1000):
        for threads in (1, 4, 16, 64):
            rate, latency, per_append = run(args.folder, threads, lines, args.seconds)
            ingest_log._sync = lambda fd: None  # the reference: no fsync at all
            try:
                bare, _, _ = run(args.folder, threads, lines, args.seconds / 2)
            finally:
                ingest_log._sync = real_sync
            print(
                f"{lines:>4}-line bodies, {threads:>2} threads: {rate:>8,.0f} appends/s "
                f"({rate * lines:>10,.0f} lines/s), {latency:6.2f} ms each, "
                f"{per_append:.3f} fsyncs per append; without fsync {bare:>8,.0f} appends/s "
                f"(ratio {rate / bare:.3f})"
            )


if __name__ == "__main__":
    main()
