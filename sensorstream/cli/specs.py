"""The pipelines the CLI defines itself: a replay's default one, and the demo.

A replay is named after its file (``replay r.ndjson`` runs ``replay_r_ndjson``), so each
input has its own checkpoint (``.sensorstream/replay_r_ndjson``) and its own results, and
replaying one file never resumes from, or overwrites, another's. Files of the same name in
different folders still share a name: the runner then refuses to resume one from the other's
checkpoint, and ``--name`` gives each its own.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from sensorstream.cli.inference import infer_measurements
from sensorstream.errors import ConfigError
from sensorstream.pipeline.spec import PipelineSpec, load_spec
from sensorstream.sinks import ConsoleSinkSettings, DuckDBSinkSettings
from sensorstream.sources import FileSourceSettings

DEMO_DB = Path(".sensorstream/demo.duckdb")
DATASETS_DIR = Path(".sensorstream/datasets")  # where ``replay --dataset`` writes its payloads
_NOT_IN_NAMES = re.compile(r"[^A-Za-z0-9_-]+")


def default_replay_name(file: Path) -> str:
    """``replay_`` and the file's name, as a valid pipeline name.

    The extensions stay in it, so ``r.csv`` and ``r.ndjson`` beside it are two pipelines.

    >>> default_replay_name(Path("data/Fleet A (2024).ndjson.gz"))
    'replay_Fleet_A_2024_ndjson_gz'
    """
    cleaned = _NOT_IN_NAMES.sub("_", file.name).strip("_")
    return f"replay_{cleaned or 'file'}"


def replay_spec(
    file: Path,
    *,
    name: str | None,
    pipeline: Path | None,
    speed: float | None,
    window: str,
    db: Path,
) -> PipelineSpec:
    """The pipeline ``replay`` runs: ``pipeline``'s with ``file`` as its source, or the default.

    The default: per-device tumbling windows of ``window`` over the file's numeric fields
    (count, mean, min and max of each), stored in the DuckDB file ``db``.
    """
    source = FileSourceSettings(type="file", path=file, speed=speed)
    if pipeline is not None:
        spec = load_pipeline(pipeline).model_copy(update={"source": source})
        if name is None:
            return spec
        return PipelineSpec.model_validate({**dict(spec), "name": name})
    measurements = infer_measurements(file)
    aggregates = ["count"] + [f"{fn}({m})" for m in measurements for fn in ("mean", "min", "max")]
    return PipelineSpec.model_validate(
        {
            "name": name if name is not None else default_replay_name(file),
            "source": source,
            "readings": {"measurements": measurements},
            "steps": [
                {
                    "name": "per_device",
                    "window": {"type": "tumbling", "size": window},
                    "aggregates": aggregates,
                }
            ],
            "sinks": [DuckDBSinkSettings(type="duckdb", path=db)],
        }
    )


def load_pipeline(pipeline: Path) -> PipelineSpec:
    """``--pipeline``: a YAML file, or else the name of a scenario (``--pipeline weather``)."""
    if not pipeline.exists() and pipeline.suffix == "" and len(pipeline.parts) == 1:
        from sensorstream.scenarios import SCENARIOS

        if pipeline.name in SCENARIOS:
            return SCENARIOS[pipeline.name].spec()
    return load_spec(pipeline)


def dataset_replay_spec(
    name: str,
    *,
    pipeline: Path | None,
    pipeline_name: str | None,
    speed: float | None,
    folder: Path = DATASETS_DIR,
) -> PipelineSpec:
    """The pipeline ``replay --dataset`` runs: the dataset's scenario (or ``pipeline``) over it.

    The dataset is written as NDJSON payloads into ``folder`` (:mod:`~sensorstream.sources.
    datasets`) and becomes the pipeline's source; the zone of its local times becomes
    ``readings.time_zone``. The pipeline is named ``<pipeline>_<dataset>`` (``--name``
    otherwise) and checkpointed in ``.sensorstream/<that name>``, so a replay never resumes
    from, or writes over, the live scenario's state or results.
    """
    from sensorstream.sources.datasets import dataset

    chosen = dataset(name)
    base = load_pipeline(pipeline if pipeline is not None else Path(chosen.scenario))
    if base.source is None or base.readings is None:
        msg = (
            f"pipeline {base.name!r} reads several streams; a dataset is replayed into a "
            "pipeline of one (top-level source: and readings:)"
        )
        raise ConfigError(msg)
    file = chosen.write(folder)
    cleaned = re.sub(r"[^A-Za-z0-9]+", "_", chosen.name)  # a name results tables can carry
    checkpoint = base.checkpoint.model_copy(update={"dir": None})
    return PipelineSpec.model_validate(
        {
            **dict(base),
            "name": pipeline_name if pipeline_name is not None else f"{base.name}_{cleaned}",
            "source": FileSourceSettings(type="file", path=file, speed=speed),
            "readings": base.readings.model_copy(update={"time_zone": chosen.time_zone}),
            "checkpoint": checkpoint,
        }
    )


def demo_spec(
    devices: int = 20, window: str | timedelta = "5s", duration: str | None = None
) -> PipelineSpec:
    """The demo: a live simulated fleet -> per-device windows and two rules -> console, DuckDB."""
    return PipelineSpec.model_validate(
        {
            "name": "demo",
            "source": {
                "type": "simulator",
                "devices": devices,
                "rate_hz": 2.0,
                "live": True,
                "out_of_order": 0.05,
                "late_fraction": 0.01,
                "duplicate_fraction": 0.01,
                "malformed_fraction": 0.005,
                "anomaly_fraction": 0.002,
                "duration": duration,
            },
            "readings": {
                "measurements": {
                    "temperature": "float",
                    "humidity": "float",
                    "lat": "float",  # each device's fixed position: the dashboard's map
                    "lon": "float",
                }
            },
            "event_time": {
                "out_of_orderness": "2s",
                "allowed_lateness": "5s",
                "idle_timeout": "10s",
            },
            "steps": [
                {
                    "name": "per_device",
                    "window": {"type": "tumbling", "size": window},
                    "aggregates": [
                        "count",
                        "mean(temperature)",
                        "max(temperature)",
                        "p90(temperature)",
                        "mean(humidity)",
                    ],
                },
                {  # a device warm for two windows in a row; hysteresis keeps it from flapping
                    "name": "warm_device",
                    "input": "per_device",
                    "rule": {
                        "threshold": "temperature_mean",
                        "above": {"warning": 25, "critical": 28},
                        "clear": 0.5,
                    },
                    "consecutive": 2,
                },
                {  # a single reading far out of range: the simulator's anomalies
                    "name": "temperature_jump",
                    "rule": {"threshold": "temperature", "above": {"critical": 30}},
                },
            ],
            "sinks": [
                ConsoleSinkSettings(type="console"),
                DuckDBSinkSettings(type="duckdb", path=DEMO_DB),
            ],
            "checkpoint": {"dir": ".sensorstream/checkpoints/demo", "interval": "2s"},
        }
    )


def until_end(spec: PipelineSpec) -> PipelineSpec:
    """``run --until-end``: every Kafka stream reads to the end offsets it finds at start.

    Kafka has no end of stream; with this a run over a topic ends (closing its windows) like
    a file replay does. A pipeline without a Kafka stream has nothing to end: an error.
    """
    from sensorstream.sources.kafka import KafkaSourceSettings

    def ended(source: object) -> object:
        if isinstance(source, KafkaSourceSettings):
            return source.model_copy(update={"until_end": True})
        return source

    kinds = [s.source for s in spec.stream_specs().values()]
    if not any(isinstance(source, KafkaSourceSettings) for source in kinds):
        msg = "--until-end is for Kafka sources; this pipeline reads none"
        raise ConfigError(msg)
    update: dict[str, object] = {
        "streams": {
            name: stream.model_copy(update={"source": ended(stream.source)})
            for name, stream in spec.streams.items()
        }
    }
    if spec.source is not None:
        update["source"] = ended(spec.source)
    return spec.model_copy(update=update)
