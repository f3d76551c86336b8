"""The CLI end to end: simulate a dataset, replay it, query it, and run the live demo."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from sensorstream.store import Store

pytestmark = pytest.mark.e2e

ENV = {"COLUMNS": "200", "PATH": "/usr/bin:/bin"}


def sensorstream(
    *args: str, cwd: Path, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sensorstream", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env if env is not None else ENV,
    )


def row(output: str, label: str) -> list[str]:
    """The cells of the summary row ``label``."""
    [line] = [line for line in output.splitlines() if f" {label} " in line]
    return [cell.strip() for cell in line.strip().strip("│").split("│")]


def simulate(folder: Path, name: str, readings: int = 300, devices: int = 5) -> None:
    made = sensorstream(
        "simulate", name, "--devices", str(devices), "--readings", str(readings), cwd=folder
    )
    assert made.returncode == 0, made.stderr


def test_simulate_replay_and_query_a_dataset(tmp_path: Path) -> None:
    simulate(tmp_path, "r.ndjson", readings=5000, devices=20)
    replayed = sensorstream("replay", "r.ndjson", "--window", "30s", cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    assert row(replayed.stdout, "lines in") == ["lines in", "5,000"]
    assert row(replayed.stdout, "all lines accounted for")[1] == "yes"
    assert "sensorstream query --pipeline replay_r_ndjson" in replayed.stdout
    queried = sensorstream("query", "--pipeline", "replay_r_ndjson", "--limit", "3", cwd=tmp_path)
    assert queried.returncode == 0, queried.stderr
    assert "dev-000" in queried.stdout
    counted = sensorstream("query", "SELECT count(*) AS n FROM readings", cwd=tmp_path)
    assert "5000" in counted.stdout


def test_a_bad_pipeline_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("name: x\nsource: {type: file, path: r.ndjson}\n")
    ran = sensorstream("run", "p.yaml", cwd=tmp_path)
    assert ran.returncode == 2
    assert "p.yaml" in ran.stderr
    assert "readings" in ran.stderr


def test_the_demo_shows_live_window_results_within_seconds(tmp_path: Path) -> None:
    demo = sensorstream(
        "demo", "--devices", "5", "--window", "2s", "--duration", "8s", cwd=tmp_path
    )
    assert demo.returncode == 0, demo.stderr
    assert "per_device" in demo.stdout
    assert "dev-00004" in demo.stdout
    assert "all lines accounted for" in demo.stdout
    assert (tmp_path / ".sensorstream" / "demo.duckdb").exists()


# -- every bad value or path: one error line, exit 2 ------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["replay", "nonexistent.ndjson"], "cannot read nonexistent.ndjson: no such file"),
        (["replay", "r.ndjson", "--window", "0s"], "--window 0s: a tumbling window's size"),
        (["replay", "r.ndjson", "--window", "soon"], "--window soon: invalid duration 'soon'"),
        (["replay", "r.ndjson", "--speed", "0"], "--speed 0.0: input should be greater than 0"),
        (["replay", "r.ndjson", "--name", "9lives"], "--name 9lives: string should match"),
        (["replay", "r.ndjson", "--db", f"r.ndjson/{'deep/' * 12}x.duckdb"], "deep/x.duckdb"),
        (["demo", "--devices", "0"], "--devices 0: input should be greater than or equal to 1"),
        (["simulate", "out.ndjson", "--readings", "-5"], "readings must be zero or more"),
        (["simulate", "out.ndjson", "--disorder", "x"], "--disorder x: invalid duration 'x'"),
        (["query", "--format", "xml"], "--format xml: not a format; choose one of table, csv"),
        (["query", "--limit", "-1"], "--limit -1: must be zero or more"),
        (["query", "--db", "none.duckdb"], "no store at none.duckdb"),
        (["run", "none.yaml"], "cannot read pipeline file none.yaml"),
    ],
)
def test_every_bad_value_or_path_is_one_error_line_and_exit_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "r.ndjson").write_text('{"device_id": "a", "ts": 1, "temperature": 1.5}\n')
    duckdb.connect(str(tmp_path / "sensorstream.duckdb")).close()
    failed = sensorstream(*args, cwd=tmp_path)
    assert failed.returncode == 2, failed.stdout + failed.stderr
    [line] = failed.stderr.splitlines()
    assert line.startswith("error: ")
    assert message in line
    assert not (tmp_path / "out.ndjson").exists()


def test_a_bad_option_value_is_never_a_traceback(tmp_path: Path) -> None:
    failed = sensorstream("simulate", "out.ndjson", "--readings", "many", cwd=tmp_path)
    assert failed.returncode == 2
    assert "Traceback" not in failed.stderr
    assert "--readings" in failed.stderr


# -- replay: its own pipeline per file, readings inferred from any format ------------------


@pytest.mark.parametrize("name", ["r.csv", "r.parquet"])
def test_replay_infers_the_readings_of_csv_and_parquet_files_simulate_wrote(
    tmp_path: Path, name: str
) -> None:
    simulate(tmp_path, name)
    replayed = sensorstream("replay", name, cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    assert row(replayed.stdout, "accepted")[1] == "300"


def test_replaying_a_csv_with_a_ragged_row_dead_letters_only_that_row(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text(
        "device_id,ts,temperature\ndev-1,1700000000000,20.5\ndev-3,1700000003000,22.5,99\n"
    )
    replayed = sensorstream("replay", "x.csv", cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    assert row(replayed.stdout, "accepted")[1] == "1"
    queried = sensorstream(
        "query", "SELECT reason_code, origin FROM dead_letters", "--format", "csv", cwd=tmp_path
    )
    assert queried.stdout.splitlines()[1:] == ["wrong_field_count,row 2 of x.csv"]


def test_each_replayed_file_has_its_own_pipeline_and_checkpoint(tmp_path: Path) -> None:
    simulate(tmp_path, "r.ndjson")
    simulate(tmp_path, "r.csv")
    for name in ("r.ndjson", "r.csv"):
        replayed = sensorstream("replay", name, cwd=tmp_path)
        assert replayed.returncode == 0, replayed.stderr
        assert row(replayed.stdout, "accepted")[1] == "300"  # not resumed from the other
    named = sensorstream("replay", "r.csv", "--name", "mine", cwd=tmp_path)
    assert row(named.stdout, "accepted")[1] == "300"
    checkpoints = sorted(p.name for p in (tmp_path / ".sensorstream").iterdir())
    assert checkpoints == ["mine", "replay_r_csv", "replay_r_ndjson"]
    stored = sensorstream("query", "--format", "csv", cwd=tmp_path)
    pipelines = {line.split(",")[0] for line in stored.stdout.splitlines()[1:]}
    assert pipelines == {"mine", "replay_r_csv", "replay_r_ndjson"}


def test_replaying_a_finished_file_again_says_it_is_already_complete(tmp_path: Path) -> None:
    simulate(tmp_path, "r.ndjson")
    assert sensorstream("replay", "r.ndjson", cwd=tmp_path).returncode == 0
    again = sensorstream("replay", "r.ndjson", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "already completed its input" in again.stdout
    assert "--fresh" in again.stdout
    assert "resumed" not in again.stdout
    assert "readings/s" not in again.stdout
    fresh = sensorstream("replay", "r.ndjson", "--fresh", cwd=tmp_path)
    assert row(fresh.stdout, "accepted")[1] == "300"


def test_a_file_replaced_by_another_is_not_resumed_into(tmp_path: Path) -> None:
    simulate(tmp_path, "r.ndjson")
    assert sensorstream("replay", "r.ndjson", cwd=tmp_path).returncode == 0
    (tmp_path / "r.ndjson").unlink()
    simulate(tmp_path, "r.ndjson", readings=200, devices=3)  # another file, the same name
    again = sensorstream("replay", "r.ndjson", cwd=tmp_path)
    assert again.returncode == 2
    assert "r.ndjson changed since the checkpoint" in again.stderr
    assert "--fresh" in again.stderr
    fresh = sensorstream("replay", "r.ndjson", "--fresh", cwd=tmp_path)
    assert row(fresh.stdout, "lines in")[1] == "200"


def test_a_file_appended_to_after_its_replay_completed_is_refused(tmp_path: Path) -> None:
    simulate(tmp_path, "r.ndjson")
    assert sensorstream("replay", "r.ndjson", cwd=tmp_path).returncode == 0
    with (tmp_path / "r.ndjson").open("a") as appended:
        appended.write('{"device_id": "dev-x", "ts": 1700000900000, "temperature": 1.0}\n')
    again = sensorstream("replay", "r.ndjson", cwd=tmp_path)
    assert again.returncode == 2
    assert "would all be late" in again.stderr


# -- the summary: late readings per step, dead letters, exit codes --------------------------

TWO_STEPS = """\
name: two
source: {type: file, path: late.ndjson}
readings: {measurements: {temperature: float}}
steps:
  - {name: avg_1m, window: {type: tumbling, size: 1m}, aggregates: [count]}
  - {name: hop_5m, window: {type: hopping, size: 5m, slide: 1m}, aggregates: [count]}
sinks: [{type: duckdb, path: two.duckdb}]
"""


def test_readings_too_late_for_one_step_show_per_step_in_the_summary(tmp_path: Path) -> None:
    start = 1_700_000_040_000  # ms; 40 s into a minute
    readings = [{"device_id": "d", "ts": start + s * 1000, "temperature": 1.0} for s in range(200)]
    readings.append({"device_id": "d", "ts": start + 5_000, "temperature": 9.0})  # 195 s late
    (tmp_path / "late.ndjson").write_text("".join(json.dumps(r) + "\n" for r in readings))
    (tmp_path / "two.yaml").write_text(TWO_STEPS)
    ran = sensorstream("run", "two.yaml", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert row(ran.stdout, "late (for every step)")[1] == "0"  # the hopping step took it
    assert row(ran.stdout, "late for avg_1m")[1] == "1"
    assert row(ran.stdout, "late for hop_5m")[1] == "0"


MISMATCHED = """\
name: mismatched
source: {type: file, path: r.ndjson}
readings: {measurements: {temp: float}}
steps: [{name: avg_1m, window: {type: tumbling, size: 1m}, aggregates: [count]}]
"""


def test_a_pipeline_that_accepts_nothing_warns_and_exits_1(tmp_path: Path) -> None:
    simulate(tmp_path, "r.ndjson")
    (tmp_path / "p.yaml").write_text(MISMATCHED)
    ran = sensorstream("run", "p.yaml", "--no-serve", cwd=tmp_path)
    assert ran.returncode == 1
    assert row(ran.stdout, "dead-lettered")[1] == "300"
    assert row(ran.stdout, "no_measurements")[1] == "300"
    warning, error = ran.stderr.splitlines()
    assert warning.startswith("warning: 100% of the lines (300 of 300) were dead letters")
    assert "readings.measurements" in warning
    assert error.startswith("error: not one reading of 300 lines was accepted")


# -- safe printing ----------------------------------------------------------------------------

HOSTILE = "[bold red]X[/bold red][link=https://evil.example]y[/link]\x1b[2J\u202e"
SHOWN = "[bold red]X[/bold red][link=https://evil.example]y[/link]\\x1b[2J\\u202e"
CONSOLE = """\
name: hostile
source: {type: file, path: r.ndjson}
readings: {measurements: {temperature: float}}
steps: [{name: avg_1m, window: {type: tumbling, size: 1m}, aggregates: [count]}]
sinks: [{type: console}, {type: duckdb, path: sensorstream.duckdb}]
"""


def test_device_ids_from_the_data_print_literally_in_results_and_queries(tmp_path: Path) -> None:
    lines = [
        {"device_id": HOSTILE, "ts": 1_700_000_000_000, "temperature": 1.0},
        "{not json " + HOSTILE,
    ]
    (tmp_path / "r.ndjson").write_text(
        "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    )
    (tmp_path / "p.yaml").write_text(CONSOLE)
    ran = sensorstream("run", "p.yaml", cwd=tmp_path)
    queried = sensorstream("query", "SELECT device_id FROM readings", cwd=tmp_path)
    raw = sensorstream("query", "SELECT raw FROM dead_letters", cwd=tmp_path)
    for done in (ran, queried, raw):
        assert done.returncode == 0, done.stderr
        assert SHOWN in done.stdout
        assert "\x1b" not in done.stdout + done.stderr
        assert "\u202e" not in done.stdout + done.stderr


def test_a_file_name_in_an_error_prints_literally(tmp_path: Path) -> None:
    failed = sensorstream("replay", "[red]x\x1b[2J.ndjson", cwd=tmp_path)
    assert failed.stderr == "error: cannot read [red]x\\x1b[2J.ndjson: no such file\n"


# -- query output ---------------------------------------------------------------------------

WIDE_QUERY = "SELECT repeat('x', 150) AS note, 1 / 3 AS third, '\\x1B[2J'::BLOB AS raw"


def test_a_piped_query_table_is_not_cut_to_80_columns_nor_rounded(tmp_path: Path) -> None:
    duckdb.connect(str(tmp_path / "sensorstream.duckdb")).close()
    queried = sensorstream("query", WIDE_QUERY, cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
    assert queried.returncode == 0, queried.stderr
    assert "x" * 150 in queried.stdout
    assert "0.3333333333333333" in queried.stdout
    assert "\\x1b[2J" in queried.stdout


@pytest.mark.parametrize("format_name", ["csv", "json", "ndjson"])
def test_query_writes_csv_json_and_ndjson(tmp_path: Path, format_name: str) -> None:
    duckdb.connect(str(tmp_path / "sensorstream.duckdb")).close()
    queried = sensorstream("query", WIDE_QUERY, "--format", format_name, cwd=tmp_path)
    assert queried.returncode == 0, queried.stderr
    if format_name == "csv":
        header, values = queried.stdout.splitlines()
        assert header == "note,third,raw"
        assert values == f"{'x' * 150},0.3333333333333333,\\x1b[2J"
        return
    records = (
        json.loads(queried.stdout)
        if format_name == "json"
        else [json.loads(line) for line in queried.stdout.splitlines()]
    )
    assert records == [{"note": "x" * 150, "third": 1 / 3, "raw": "\\x1b[2J"}]


# -- version, help, Ctrl-C -----------------------------------------------------------------


def test_version_and_exit_codes_in_help(tmp_path: Path) -> None:
    version = sensorstream("--version", cwd=tmp_path)
    assert version.returncode == 0
    assert version.stdout.startswith("sensorstream 0.")
    helped = sensorstream("--help", cwd=tmp_path)
    assert "Exit codes: 0 ok; 1 the pipeline ran but accepted no reading" in helped.stdout
    assert "130 interrupted" in helped.stdout


def test_ctrl_c_stops_cleanly_prints_the_summary_and_exits_130(tmp_path: Path) -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "sensorstream", "demo", "--devices", "3", "--window", "1s"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    assert demo.stdout is not None
    deadline = time.monotonic() + 60
    for line in demo.stdout:  # wait until it is running: its first results printed
        if "per_device" in line or time.monotonic() > deadline:
            break
    demo.send_signal(signal.SIGINT)
    out, errors = demo.communicate(timeout=60)
    assert demo.returncode == 130, errors
    assert row(out, "all lines accounted for")[1] == "yes"
    assert "interrupted: stopped cleanly" in errors
    assert "Traceback" not in errors


ACCESS = Path(__file__).parent / "access"


def test_a_pipeline_of_two_streams_and_a_table_runs_and_accounts_for_each_stream(
    tmp_path: Path,
) -> None:
    for item in ACCESS.iterdir():
        (tmp_path / item.name).write_bytes(item.read_bytes())
    ran = sensorstream("run", "pipeline.yaml", "--no-progress", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert row(ran.stdout, "lines in")[1] == "621"
    assert row(ran.stdout, "stream devices")[1] == "21 lines: 20 accepted, 1 dead-lettered"
    assert row(ran.stdout, "stream events")[1] == "600 lines: 600 accepted, 0 dead-lettered"
    # Events at doors 20-24, which no announcement names: 24 each, refused as dead letters.
    assert row(ran.stdout, "refused by located (dead letters)")[1] == "120"
    assert row(ran.stdout, "all lines accounted for")[1] == "yes"
    with duckdb.connect(str(tmp_path / "access.duckdb"), read_only=True) as con:
        reasons = con.execute(
            "SELECT reason_code, count(*) FROM dead_letters GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        districts = con.execute(
            "SELECT DISTINCT district FROM results_access_per_district ORDER BY ALL"
        ).fetchall()
    with Store(tmp_path / "access.duckdb") as store:  # raw records: a view over segments
        stored = store.sql("SELECT stream, count(*) FROM readings GROUP BY ALL ORDER BY ALL")
    assert reasons == [("bad_timestamp", 1), ("missing_reference", 120)]
    assert districts == [("Enge",), ("Wiedikon",)]
    assert stored.rows() == [("devices", 20), ("events", 600)]  # the raw records, as they came
