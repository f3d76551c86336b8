"""The dashboard under 1,000 devices at 1 reading/s each, beside the same page idle.

Starts ``sensorstream run`` twice, with the same steps and so the same dashboard:

- **live**: the simulator's 1,000 devices at 1 reading/s, one-second windows per device
  (1,000 window results a second on the event stream), a threshold rule, a DuckDB sink;
- **idle**: the same steps reading an HTTP source that nobody posts to: no events.

For each, headless Chromium (Debian's, as in the tests) opens the page, shows one view,
waits ``--warmup`` seconds, then for ``--seconds`` reads what the page measures itself
(``window.sensorstream.stats()``): the time between animation frames, and the delay from
an event's arrival on the stream to the first frame after it was drawn, and the time the
page's own script took per frame with events (applying and drawing). Prints p50/p99 per
view, and the ratio of the live frame time to the idle one (1.0: the updates cost
no frames). Views: gauges (1,000 tiles), heatmap (1,000 keys x windows), overview.

    python benchmarks/dashboard_frames.py [--devices 1000] [--seconds 20] [--warmup 8]
"""

from __future__ import annotations

import argparse
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parent.parent
STEPS = """
readings: {{measurements: {{temperature: float}}}}
event_time: {{out_of_orderness: 1s, idle_timeout: 5s}}
steps:
  - name: per_device
    window: {{type: tumbling, size: 1s}}
    aggregates: [mean(temperature), max(temperature)]
  - name: warm
    input: per_device
    rule: {{threshold: temperature_mean, above: {{warning: 25, critical: 28}}, clear: 0.5}}
    consecutive: 2
sinks: [{{type: duckdb, path: {store}}}]
"""
LIVE = "name: frames\nsource: {{type: simulator, devices: {devices}, rate_hz: 1, live: true}}\n"
IDLE = "name: frames\nsource: {{type: http}}\n"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve(text: str, folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    spec = folder / "pipeline.yaml"
    spec.write_text(text)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "sensorstream", "run", str(spec), "--port", str(port)],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    for _ in range(30):
        if process.stderr.readline().startswith(b"Dashboard: "):
            return process, f"http://127.0.0.1:{port}/"
    process.kill()
    msg = "the pipeline announced no dashboard"
    raise SystemExit(msg)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(browser: Any, url: str, view: str, warmup: float, seconds: float) -> dict[str, float]:
    context = browser.new_context(viewport={"width": 1280, "height": 850})
    page = context.new_page()
    page.goto(f"{url}#{view}")
    page.wait_for_selector("#status.live", timeout=30_000)
    page.wait_for_timeout(warmup * 1000)
    page.evaluate("window.sensorstream.reset()")
    page.wait_for_timeout(seconds * 1000)
    stats = page.evaluate("window.sensorstream.stats()")
    context.close()
    frames, delays = stats["frames"], stats["delays"]
    return {
        "frame_p50": percentile(frames, 0.5),
        "frame_p99": percentile(frames, 0.99),
        "frame_mean": statistics.fmean(frames) if frames else float("nan"),
        "delay_p50": percentile(delays, 0.5),
        "delay_p99": percentile(delays, 0.99),
        "events_per_s": stats["events"] / seconds,
        "work_p99": percentile(stats["work"], 0.99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--views", default="gauges,heatmap,overview")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    views = args.views.split(",")
    results: dict[tuple[str, str], dict[str, float]] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        for kind, head in (("idle", IDLE), ("live", LIVE)):
            with tempfile.TemporaryDirectory() as folder:
                text = head.format(devices=args.devices) + STEPS.format(store="store.duckdb")
                process, url = serve(text, Path(folder))
                try:
                    time.sleep(2)
                    for view in views:
                        results[kind, view] = measure(browser, url, view, args.warmup, args.seconds)
                finally:
                    process.send_signal(signal.SIGINT)
                    process.wait(timeout=60)
        browser.close()
    print(f"dashboard, {args.devices} devices at 1 reading/s, {args.seconds:.0f} s per view")
    print(
        f"{'view':10} {'page':5} {'frame p50':>10} {'frame p99':>10} {'delay p50':>10} "
        f"{'delay p99':>10} {'events/s':>9} {'script p99':>10}"
    )
    for view in views:
        for kind in ("idle", "live"):
            r = results[kind, view]
            print(
                f"{view:10} {kind:5} {r['frame_p50']:8.1f}ms {r['frame_p99']:8.1f}ms "
                f"{r['delay_p50']:8.1f}ms {r['delay_p99']:8.1f}ms {r['events_per_s']:9.0f} "
                f"{r['work_p99']:8.1f}ms"
            )
        live, idle = results["live", view], results["idle", view]
        print(
            f"{view:10} ratio live/idle: frame p50 {live['frame_p50'] / idle['frame_p50']:.2f}, "
            f"frame p99 {live['frame_p99'] / idle['frame_p99']:.2f}"
        )


if __name__ == "__main__":
    main()
