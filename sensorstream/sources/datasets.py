"""Real sensor datasets shipped inside PyPI packages, as a scenario's payloads to replay.

``vega_datasets`` (``pip install 'sensorstream[datasets]'``) holds a year (2010) of hourly
temperatures in °F for Seattle and San Francisco, ``date`` as local wall time without a
zone. A :class:`Dataset` turns one into the weather scenario's payloads, the PyFlink
document's shape::

    {"client": "seattle", "ts": "2010-01-01 00:00:00", "temperature": 4.11}

``client`` is the station, ``ts`` the zone-less local time as the document writes it (the
dataset says its zone, which the replay declares as ``readings.time_zone``), and
``temperature`` in °C, two decimals as the feed's. There is no humidity in these data, so
the payloads have none: a measurement a payload lacks is null, and its average is null.

The CSV is read from the installed wheel's files through :mod:`importlib.resources`,
without running ``vega_datasets/__init__.py``, which imports pandas: sensorstream never
needs it. The payloads are written as NDJSON (:meth:`Dataset.write`) that the file source
replays at full speed or at the recorded pace, with its progress bar and checkpoints; the
file is rewritten only when its bytes would change, so a replay resumes after a restart.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import polars as pl

from sensorstream.errors import ConfigError

__all__ = ["DATASETS", "Dataset", "dataset", "weather_payloads"]

_TS_FORMAT = "%Y-%m-%d %H:%M:%S"  # the document's: 2024-05-12 02:11:37
_INSTALL = "pip install 'sensorstream[datasets]'"


@dataclass(frozen=True)
class Dataset:
    """One station's recorded temperatures inside an installed package.

    ``resource`` is the file's path inside ``package``; ``date_format`` how its ``date``
    column writes a time; ``time_zone`` the zone those local times are in.
    """

    name: str
    title: str
    package: str
    resource: str
    station: str
    date_format: str
    time_zone: str
    scenario: str = "weather"

    def csv_bytes(self) -> bytes:
        """The dataset's CSV as shipped; ConfigError saying what to install if it is absent.

        The package is found, not imported: a module made from its spec, never executed,
        is all :func:`importlib.resources.files` needs to reach the package's files.
        """
        spec = importlib.util.find_spec(self.package)
        if spec is None:
            msg = f"dataset {self.name!r} ships in the {self.package} package: {_INSTALL}"
            raise ConfigError(msg)
        package = importlib.util.module_from_spec(spec)
        try:
            return resources.files(package).joinpath(self.resource).read_bytes()
        except OSError as error:
            msg = f"dataset {self.name!r}: cannot read {self.resource} in {self.package}: {error}"
            raise ConfigError(msg) from None

    def payloads(self) -> pl.DataFrame:
        """The station's readings as the weather payloads (:func:`weather_payloads`)."""
        return weather_payloads(self.csv_bytes(), self.station, self.date_format)

    def write(self, folder: Path) -> Path:
        """Write the payloads as ``folder/NAME.ndjson``, unless it already holds them; its path.

        An unchanged file keeps its modification time, so a checkpoint of a replay of it
        still matches it and the next replay resumes instead of refusing a changed input.
        """
        data = self.payloads().write_ndjson().encode()
        path = folder / f"{self.name}.ndjson"
        if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
            return path
        folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_bytes(data)
        partial.replace(path)
        return path


DATASETS: dict[str, Dataset] = {
    item.name: item
    for item in (
        Dataset(
            "seattle-temps",
            "Seattle, hourly temperatures of 2010 (vega_datasets)",
            "vega_datasets",
            "_data/seattle-temps.csv",
            station="seattle",
            date_format="%Y/%m/%d %H:%M",
            time_zone="America/Los_Angeles",
        ),
        Dataset(
            "sf-temps",
            "San Francisco, hourly temperatures of 2010 (vega_datasets)",
            "vega_datasets",
            "_data/sf-temps.csv",
            station="san-francisco",
            date_format="%Y/%m/%d %H:%M:%S",
            time_zone="America/Los_Angeles",
        ),
    )
}


def weather_payloads(csv: bytes, station: str, date_format: str) -> pl.DataFrame:
    r"""A temperature CSV (``date``, ``temp`` in °F) as weather payloads: client, ts, °C.

    ``ts`` is the ``date`` rewritten as the document writes times; a ``date`` that is no
    time in ``date_format`` is kept as written, and a ``temp`` that is no number becomes
    null, so the pipeline makes them dead letters (``bad_timestamp``, ``no_measurements``)
    rather than this dropping them.

    >>> csv = b"date,temp\n2010/01/01 00:00,50.0\n"
    >>> weather_payloads(csv, "seattle", "%Y/%m/%d %H:%M").row(0)
    ('seattle', '2010-01-01 00:00:00', 10.0)
    """
    raw = pl.read_csv(csv, infer_schema=False)
    parsed = pl.col("date").str.strptime(pl.Datetime("us"), date_format, strict=False)
    fahrenheit = pl.col("temp").cast(pl.Float64, strict=False)
    return raw.select(
        pl.lit(station).alias("client"),
        pl.coalesce(parsed.dt.to_string(_TS_FORMAT), pl.col("date")).alias("ts"),
        ((fahrenheit - 32) * 5 / 9).round(2).alias("temperature"),
    )


def dataset(name: str) -> Dataset:
    """A dataset by name; ConfigError listing the ones there are."""
    if name not in DATASETS:
        msg = f"no dataset {name!r}; there are: {', '.join(DATASETS)}"
        raise ConfigError(msg)
    return DATASETS[name]
