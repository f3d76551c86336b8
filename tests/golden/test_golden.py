"""Golden tests: every folder here is a case, run end to end; a new case is new files, not code.

A case holds ``pipeline.yaml``, ``input.ndjson`` and ``expected.ndjson`` (or, for a pipeline
that must be rejected, ``expected_error.txt``), and a ``README.md`` with the hand computation
behind the expected file. How a case runs and the format of the expected files are in
``README.md`` in this folder. ``pytest tests/golden --update-golden`` writes expected files
from actual runs: check each one by hand before committing it, or the case cannot fail.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sensorstream.errors import ConfigError, SensorstreamError
from sensorstream.pipeline.spec import PipelineSpec, load_spec
from sensorstream.runtime.runner import Runner
from sensorstream.sinks import DuckDBSink
from sensorstream.sources import FileSource, FileSourceSettings
from sensorstream.store import Store
from sensorstream.testing import ManualClock
from tests.golden.expected_files import (
    EXPECTED,
    JsonValue,
    Record,
    alert_record,
    compare,
    counters_record,
    dead_letter_record,
    dump,
    fail_with_diff,
    late_record,
    read_expected,
    result_record,
)

HERE = Path(__file__).parent
PIPELINE, INPUT, EXPECTED_ERROR = "pipeline.yaml", "input.ndjson", "expected_error.txt"
CASES = sorted(p for p in HERE.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
OUTPUT_CASES = [case for case in CASES if not (case / EXPECTED_ERROR).exists()]
ERROR_CASES = [case for case in CASES if (case / EXPECTED_ERROR).exists()]

# Processing time stands still: arrival times (dead letters' arrived_at, the max_future check)
# are reproducible, and idleness never moves a watermark, so windows close by event time.
PROCESSING_TIME = datetime(2024, 1, 1, 1, tzinfo=UTC)
# What depends on how the input is cut into batches: emissions, hence revisions.
BATCHING_DEPENDENT = {"counters": ("batches", "results"), "result": ("revision",)}


# -- the tests ----------------------------------------------------------------------------------


def test_every_case_folder_is_complete() -> None:
    for case in CASES:
        files = {path.name for path in case.iterdir()}
        assert {PIPELINE, "README.md"} <= files, f"{case.name}: needs {PIPELINE} and README.md"
        if EXPECTED_ERROR in files:
            assert EXPECTED not in files, f"{case.name}: both {EXPECTED} and {EXPECTED_ERROR}"
        else:
            assert {INPUT, EXPECTED} <= files, f"{case.name}: needs {INPUT} and {EXPECTED}"


@pytest.mark.parametrize("case", OUTPUT_CASES, ids=lambda case: case.name)
def test_the_pipeline_produces_the_expected_output(
    case: Path, tmp_path: Path, update_golden: bool
) -> None:
    actual = run_case(case, tmp_path, one_line_per_batch=True)
    percentiles = percentile_outputs(load_spec(case / PIPELINE))
    expected_file = case / EXPECTED
    expected = read_expected(expected_file) if expected_file.exists() else []
    merged, matches = compare(expected, actual, percentiles)
    if matches and expected_file.exists():
        return
    if update_golden:
        expected_file.write_text("".join(f"{dump(record)}\n" for record in merged))
        pytest.skip(f"wrote {case.name}/{EXPECTED}: check it by hand before committing it")
    fail_with_diff(case, expected, merged, percentiles)


@pytest.mark.parametrize("case", OUTPUT_CASES, ids=lambda case: case.name)
def test_the_final_state_does_not_depend_on_how_the_input_is_batched(
    case: Path, tmp_path: Path
) -> None:
    actual = run_case(case, tmp_path, one_line_per_batch=False)
    percentiles = percentile_outputs(load_spec(case / PIPELINE))
    expected = read_expected(case / EXPECTED)
    unbatched = [without_batching(record) for record in expected]
    merged, matches = compare(unbatched, [without_batching(r) for r in actual], percentiles)
    if not matches:
        how = "with the whole input in one batch"
        hint = "The final state must not depend on batching: this is a bug in the package."
        fail_with_diff(case, unbatched, merged, percentiles, how=how, hint=hint)


@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda case: case.name)
def test_the_pipeline_is_rejected_with_the_expected_error(
    case: Path, tmp_path: Path, update_golden: bool
) -> None:
    with pytest.raises(SensorstreamError) as raised:
        run_case(case, tmp_path, one_line_per_batch=True)
    message = str(raised.value).replace(f"{case}{os.sep}", "")
    if isinstance(raised.value, ConfigError):
        assert re.search(rf"{PIPELINE} line \d+, \S", message), (
            f"a config error must name the YAML line and field: {message}"
        )
    expected_file = case / EXPECTED_ERROR
    expected, *notes = expected_file.read_text().splitlines() or [""]
    if expected and expected in message:
        return
    if update_golden:
        expected_file.write_text("".join(f"{line}\n" for line in [message.splitlines()[0], *notes]))
        pytest.skip(f"wrote {case.name}/{EXPECTED_ERROR}: check it by hand before committing it")
    pytest.fail(f"{case.name}: the error\n  {message}\ndoes not contain\n  {expected}")


# -- running a case -------------------------------------------------------------------------


def run_case(case: Path, tmp_path: Path, *, one_line_per_batch: bool) -> list[Record]:
    """Run the case's pipeline over its input into a DuckDB file; everything stored, as records."""
    spec = load_spec(case / PIPELINE)
    clock = ManualClock(PROCESSING_TIME)
    store_path = tmp_path / "golden.duckdb"
    runner = Runner(
        spec,
        source=file_source(case, spec, one_line_per_batch=one_line_per_batch),
        sinks=[DuckDBSink(store_path, clock=clock)],
        clock=clock,
        checkpoint_dir=tmp_path / "checkpoints",
        fresh=True,
    )
    summary = runner.run()
    assert summary.balanced, f"payloads are not all accounted for: {summary.counters}"
    records = [counters_record(summary.counters)]
    with Store(store_path) as store:
        for step in runner.plan.windows:
            results = store.results(spec.name, step.name, limit=None)
            records += [result_record(step, row) for row in results.iter_rows(named=True)]
        transitions = store.alert_transitions(spec.name, limit=None)
        records += [alert_record(row) for row in transitions.iter_rows(named=True)]
        late = store.late_readings(spec.name, limit=None)
        records += [late_record(row) for row in late.iter_rows(named=True)]
        dead = store.dead_letters(spec.name, limit=None)
        records += [dead_letter_record(row) for row in dead.iter_rows(named=True)]
    return records


def file_source(case: Path, spec: PipelineSpec, *, one_line_per_batch: bool) -> FileSource:
    """The case's own input, one line per batch (as readings arrive live) or all at once."""
    settings = spec.source
    if not isinstance(settings, FileSourceSettings) or settings.path != Path(INPUT):
        pytest.fail(f"{case.name}: a golden case reads source: {{type: file, path: {INPUT}}}")
    # A 1-byte grid cuts a chunk at every line end: one reading per batch, so every emission
    # and correction happens as it would live, and revisions count them.
    chunk_bytes = 1 if one_line_per_batch else settings.chunk_bytes
    return FileSource(case / INPUT, settings.format, chunk_bytes=chunk_bytes)


def percentile_outputs(spec: PipelineSpec) -> set[tuple[str, str]]:
    """(step, output) of every percentile aggregate: estimates, compared within the accuracy."""
    return {
        (step.name, aggregate.name)
        for step in spec.to_plan().windows
        for aggregate in step.aggregates
        if aggregate.quantile is not None
    }


def without_batching(record: Mapping[str, JsonValue]) -> Record:
    dropped = BATCHING_DEPENDENT.get(str(record.get("kind")), ())
    return {name: value for name, value in record.items() if name not in dropped}
