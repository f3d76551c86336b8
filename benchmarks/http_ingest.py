"""HTTP ingest: readings/s posted as NDJSON to a running pipeline, against a bare endpoint.

Starts ``sensorstream run`` on a pipeline reading the HTTP source (a one-minute tumbling
mean per device, a DuckDB sink) and posts ``--lines``-line NDJSON bodies from ``--clients``
concurrent clients (httpx, in this process) for ``--seconds`` after a one-second warm-up.
Then the same clients post the same bodies to a bare endpoint: uvicorn serving one FastAPI
route that reads the body and answers 200, each server in a process of its own. Prints
the acknowledged readings/s of each and their ratio (what validating, logging, fsyncing and
processing cost), and checks that the pipeline stored every reading it acknowledged.

    python benchmarks/http_ingest.py [--clients 8] [--seconds 5] [--lines 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import uvicorn
from fastapi import FastAPI, Request, Response

from sensorstream.store import Store

REPO = Path(__file__).resolve().parent.parent
PIPELINE = """
name: http_bench
source: {{type: http}}
api: {{port: {port}}}
readings: {{measurements: {{temperature: float, humidity: float}}}}
steps:
  - name: per_device_1m
    window: {{type: tumbling, size: 1m}}
    aggregates: [count, mean(temperature), max(humidity)]
sinks:
  - {{type: duckdb, path: "{db}"}}
checkpoint: {{dir: "{checkpoints}", interval: 1s}}
"""
DEVICES = 1000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def serve_bare(port: int) -> None:
    """The reference: an endpoint that only reads the body."""
    app = FastAPI()

    @app.post("/api/v1/readings")
    async def readings(request: Request) -> Response:
        await request.body()
        return Response(b'{"accepted": 0}', media_type="application/json")

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


class Bodies:
    """NDJSON bodies of distinct readings, their times (epoch us) one microsecond apart.

    So event time moves about as fast as the clock: clients that overtake each other by a
    few requests stay well within the pipeline's out-of-orderness, and nothing is late.
    """

    def __init__(self, lines: int) -> None:
        self.lines = lines
        self.next_us = int(time.time() * 1e6)

    def next(self) -> bytes:
        """The next body, its readings after the last body's."""
        first, self.next_us = self.next_us, self.next_us + self.lines
        return "".join(
            f'{{"device_id":"device-{n % DEVICES:04d}","ts":{first + n},'
            f'"temperature":{20 + n % 97 / 10},"humidity":{40 + n % 31}}}\n'
            for n in range(self.lines)
        ).encode()


@dataclass
class Posted:
    """What the clients saw, and what the server's process spent meanwhile."""

    acknowledged: int = 0  # readings, within the measured seconds
    refused: int = 0  # requests
    in_all: int = 0  # readings acknowledged, warm-up included
    server_cpu_s: float = 0.0  # within the measured seconds


async def post_for(
    url: str, clients: int, seconds: float, bodies: Bodies, server: psutil.Process
) -> Posted:
    """Post for ``seconds`` after a one-second warm-up; see :class:`Posted`."""
    posted = Posted()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def one_client(until: float, counting: bool) -> None:
            while time.perf_counter() < until:
                answer = await client.post(
                    url, content=bodies.next(), headers={"Content-Type": "application/x-ndjson"}
                )
                good = answer.status_code in (200, 207)
                posted.in_all += bodies.lines if good else 0
                if counting:
                    posted.acknowledged += bodies.lines if good else 0
                    posted.refused += 0 if good else 1

        warm = time.perf_counter() + 1.0
        await asyncio.gather(*(one_client(warm, counting=False) for _ in range(clients)))
        cpu = _cpu(server)
        until = time.perf_counter() + seconds
        await asyncio.gather(*(one_client(until, counting=True) for _ in range(clients)))
        posted.server_cpu_s = _cpu(server) - cpu
    return posted


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def wait_until_serving(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    msg = f"the server on {url} never answered"
    raise RuntimeError(msg)


def checkpointed_position(folder: Path) -> int | None:
    """The HTTP source's position in the pipeline's current checkpoint, if any."""
    try:
        current = (folder / "CURRENT").read_text()
        manifest = json.loads((folder / current / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    position: int | None = manifest["positions"].get("0")
    return position


def wait_until_caught_up(folder: Path) -> None:
    """Wait until the checkpointed position has held still for two checkpoint intervals."""
    last, since = checkpointed_position(folder), time.monotonic()
    deadline = since + 120
    while time.monotonic() - since < 2.0 and time.monotonic() < deadline:
        time.sleep(0.05)
        if (now := checkpointed_position(folder)) != last:
            last, since = now, time.monotonic()


def environment() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def run_pipeline(folder: Path, args: argparse.Namespace) -> tuple[Posted, int]:
    port = free_port()
    db = folder / "out.duckdb"
    spec = folder / "pipeline.yaml"
    spec.write_text(PIPELINE.format(port=port, db=db, checkpoints=folder / "checkpoints"))
    command = [sys.executable, "-m", "sensorstream", "run", str(spec), "--no-progress"]
    process = subprocess.Popen(
        command, cwd=folder, env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}/api/v1/readings"
    try:
        wait_until_serving(url, process)
        bodies = Bodies(args.lines)
        server = psutil.Process(process.pid)
        posted = asyncio.run(post_for(url, args.clients, args.seconds, bodies, server))
        wait_until_caught_up(folder / "checkpoints")  # else the next run would read the rest
    finally:
        process.send_signal(signal.SIGINT)
        _, errors = process.communicate(timeout=120)
    if process.returncode not in (0, 130):
        raise RuntimeError(errors.decode())
    with Store(db) as store:
        stored = int(store.sql("SELECT count(*) AS n FROM readings")["n"][0])
        stored += int(store.sql("SELECT count(*) AS n FROM late_readings")["n"][0])
    return posted, stored


def run_bare(args: argparse.Namespace) -> Posted:
    port = free_port()
    command = [sys.executable, __file__, "--serve-bare", str(port)]
    process = subprocess.Popen(command, env=environment())
    url = f"http://127.0.0.1:{port}/api/v1/readings"
    try:
        wait_until_serving(url, process)
        server = psutil.Process(process.pid)
        posted = asyncio.run(post_for(url, args.clients, args.seconds, Bodies(args.lines), server))
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(60)
    return posted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--serve-bare", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare is not None:
        serve_bare(args.serve_bare)
        return
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as scratch:
        pipeline, stored = run_pipeline(Path(scratch), args)
    bare = run_bare(args)
    rate, bare_rate = pipeline.acknowledged / args.seconds, bare.acknowledged / args.seconds
    print(
        f"pipeline: {rate:,.0f} readings/s acknowledged ({rate / args.lines:,.0f} requests/s "
        f"of {args.lines} lines, {args.clients} clients), {pipeline.refused} refused, "
        f"{_cpu_per_request(pipeline, args.lines):.2f} ms of server CPU a request; "
        f"{stored:,} of the {pipeline.in_all:,} acknowledged (warm-up included) stored, "
        "late ones included"
    )
    print(
        f"bare endpoint (reads the body, answers 200): {bare_rate:,.0f} readings/s, "
        f"{_cpu_per_request(bare, args.lines):.2f} ms of server CPU a request"
    )
    print(f"ratio: {rate / bare_rate:.2f}")


def _cpu_per_request(posted: Posted, lines: int) -> float:
    return posted.server_cpu_s / max(1, posted.acknowledged // lines) * 1e3


if __name__ == "__main__":
    main()
