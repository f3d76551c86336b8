"""Synthetic readings: a fleet of devices with drifting measurements and realistic faults.

Generation is columnar (Polars expressions over Arrow's seeded random numbers) and
stateless: a block of readings depends only on the fleet, its time span and its own seed,
so any block can be regenerated exactly. That is what makes the simulator resumable and
the dataset writer fast (about a million readings a second, no per-reading Python).

Each device reports every ``1 / rate_hz`` seconds at its own phase. A measurement has a
per-device base that drifts slowly (a sine of a few hours' period) plus noise; faults are
out-of-order and late event times, duplicated payloads, malformed payloads and spikes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import polars as pl
import pyarrow.compute as pc

from sensorstream.errors import ConfigError

DEFAULT_START = datetime.fromtimestamp(1_700_000_000, UTC)
DEFAULT_MEASUREMENTS = ("temperature", "humidity")

# What a malformed payload looks like, one kind chosen at random for each.
MALFORMED_KINDS = ("broken JSON", "missing time", "text for a number", "NaN", "far-future time")
_MASK64 = (1 << 64) - 1
# Internal columns of generated readings; the leading underscore keeps them apart from
# measurement names.
DEVICE, DEVICE_ID, SCHEDULED, EVENT_TIME = "_device", "_device_id", "_scheduled_us", "_ts_us"
MALFORMED, COPIES = "_malformed", "_copies"


@dataclass(frozen=True)
class Profile:
    """How one measurement behaves: a per-device base, a slow drift, noise and bounds."""

    mean: float
    spread: float  # per-device base: normal with this deviation, or uniform within +-spread
    uniform: bool
    drift: float  # largest slow swing around the base
    noise: float
    decimals: int
    low: float | None = None
    high: float | None = None
    fixed: bool = False  # a device's position: never drifts, never spikes


# Devices spread over a city (Zurich): a fixed position per device, for maps.
_LATITUDE = Profile(47.3769, 0.03, uniform=True, drift=0.0, noise=0.0, decimals=5, fixed=True)
_LONGITUDE = Profile(8.5417, 0.045, uniform=True, drift=0.0, noise=0.0, decimals=5, fixed=True)


PROFILES: dict[str, Profile] = {
    "temperature": Profile(20.0, 3.0, uniform=False, drift=1.5, noise=0.3, decimals=2),
    "humidity": Profile(
        50.0, 15.0, uniform=True, drift=4.0, noise=1.0, decimals=1, low=0, high=100
    ),
    "pressure": Profile(1013.0, 5.0, uniform=False, drift=2.0, noise=0.3, decimals=1),
    "co2": Profile(600.0, 150.0, uniform=True, drift=50.0, noise=10.0, decimals=0, low=0),
    "lat": _LATITUDE,
    "latitude": _LATITUDE,
    "lon": _LONGITUDE,
    "longitude": _LONGITUDE,
}
GENERIC_PROFILE = Profile(50.0, 10.0, uniform=False, drift=2.0, noise=1.0, decimals=2)


@dataclass(frozen=True)
class Faults:
    """How imperfect the stream is; every fraction is a probability per reading."""

    out_of_order: float = 0.05
    max_disorder: timedelta = timedelta(seconds=3)
    late_fraction: float = 0.0
    lateness: timedelta = timedelta(seconds=60)
    duplicate_fraction: float = 0.0
    malformed_fraction: float = 0.0
    anomaly_fraction: float = 0.0

    def __post_init__(self) -> None:
        for name in (
            "out_of_order",
            "late_fraction",
            "duplicate_fraction",
            "malformed_fraction",
            "anomaly_fraction",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                msg = f"{name} is a fraction of readings, between 0 and 1; got {value}"
                raise ConfigError(msg)
        for name in ("max_disorder", "lateness"):
            if getattr(self, name) < timedelta(0):
                msg = f"{name} must not be negative; got {getattr(self, name)}"
                raise ConfigError(msg)


def mix_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (SplitMix64 steps), stable across runs.

    >>> mix_seed(7, 1) == mix_seed(7, 1) != mix_seed(7, 2)
    True
    """
    state = 0x9E3779B97F4A7C15
    for part in parts:
        state = (state ^ (part & _MASK64)) + 0x9E3779B97F4A7C15 & _MASK64
        state = (state ^ (state >> 30)) * 0xBF58476D1CE4E5B9 & _MASK64
        state = (state ^ (state >> 27)) * 0x94D049BB133111EB & _MASK64
        state ^= state >> 31
    return state >> 1


def uniform(count: int, seed: int) -> pl.Series:
    """``count`` numbers uniform in [0, 1), always the same for the same seed."""
    return pl.Series(pc.random(count, initializer=seed))


def normal_pair(count: int, seed: int) -> tuple[pl.Series, pl.Series]:
    """Two independent standard normal series (Box-Muller on two uniform ones)."""
    radius = (-2.0 * (1.0 - uniform(count, mix_seed(seed, 0))).log()).sqrt()
    angle = uniform(count, mix_seed(seed, 1)) * (2 * math.pi)
    return radius * angle.cos(), radius * angle.sin()


class Fleet:
    """Simulated devices: when each one reports and how its measurements behave."""

    def __init__(
        self,
        devices: int,
        rate_hz: float,
        measurements: Sequence[str],
        seed: int,
        faults: Faults | None = None,
    ) -> None:
        if devices < 1:
            msg = f"devices must be at least 1, got {devices}"
            raise ConfigError(msg)
        if not rate_hz > 0:
            msg = f"rate_hz (readings a second per device) must be above 0, got {rate_hz}"
            raise ConfigError(msg)
        if not measurements:
            msg = "a simulated fleet needs at least one measurement"
            raise ConfigError(msg)
        self.devices, self.rate_hz, self.seed = devices, rate_hz, seed
        self.measurements = tuple(measurements)
        self.faults = faults or Faults()
        self.period_us = max(1, round(1e6 / rate_hz))
        width = max(5, len(str(devices - 1)))
        index = pl.int_range(devices, eager=True)
        phase = uniform(devices, mix_seed(seed, 1)) * self.period_us
        self.phase_us = phase.floor().cast(pl.Int64)
        # One row per device: its id and, per measurement, base, swing, period and phase.
        self.device_table = pl.concat(
            [
                pl.DataFrame({DEVICE_ID: "dev-" + index.cast(pl.String).str.zfill(width)}),
                *(self._device_params(m, i) for i, m in enumerate(self.measurements)),
            ],
            how="horizontal",
        )

    def _device_params(self, name: str, number: int) -> pl.DataFrame:
        profile = PROFILES.get(name, GENERIC_PROFILE)
        seed = mix_seed(self.seed, 2, number)
        if profile.uniform:
            base = (
                profile.mean + (uniform(self.devices, mix_seed(seed, 0)) * 2 - 1) * profile.spread
            )
        else:
            base = profile.mean + normal_pair(self.devices, mix_seed(seed, 1))[0] * profile.spread
        hours = 1 + uniform(self.devices, mix_seed(seed, 2)) * 5
        return pl.DataFrame(
            {
                f"_base{number}": base,
                f"_swing{number}": profile.drift
                * (0.5 + uniform(self.devices, mix_seed(seed, 3)) / 2),
                f"_period{number}": hours * 3600.0,
                f"_phase{number}": uniform(self.devices, mix_seed(seed, 4)) * (2 * math.pi),
            }
        )

    def _due(self, start_us: int, end_us: int) -> pl.DataFrame:
        """Per device, the report numbers k (at phase + k * period) due in [start, end)."""
        period = self.period_us
        devices = pl.DataFrame(
            {DEVICE: pl.int_range(self.devices, eager=True), "phase": self.phase_us}
        )
        return devices.with_columns(
            first=-((pl.col("phase") - start_us) // period),
            stop=-((pl.col("phase") - end_us) // period),
        )

    def count(self, start_us: int, end_us: int) -> int:
        """How many reports are due in [start, end) (microseconds since the epoch)."""
        if end_us <= start_us:
            return 0
        due = self._due(start_us, end_us)
        return int(due.select((pl.col("stop") - pl.col("first")).clip(0).sum()).item())

    def schedule(self, start_us: int, end_us: int, limit: int | None = None) -> pl.DataFrame:
        """The first ``limit`` reports due in [start, end), in time order (device, time)."""
        if end_us <= start_us:
            return pl.DataFrame(schema={DEVICE: pl.Int64, SCHEDULED: pl.Int64})
        due = self._due(start_us, end_us).filter(pl.col("stop") > pl.col("first"))
        reports = (
            due.select(DEVICE, "phase", k=pl.int_ranges("first", "stop"))
            .explode("k")
            .select(DEVICE, (pl.col("phase") + pl.col("k") * self.period_us).alias(SCHEDULED))
            .sort(SCHEDULED, maintain_order=True)  # stable: ties stay in device order
        )
        return reports if limit is None else reports.head(limit)

    def readings(self, schedule: pl.DataFrame, seed: int) -> pl.DataFrame:
        """Readings for scheduled reports: typed values and fault markers, same seed same data.

        Columns: the internal ``DEVICE``, ``DEVICE_ID``, ``SCHEDULED`` and ``EVENT_TIME``
        (after disorder, in microseconds), one float column per measurement, ``MALFORMED``
        (an index into :data:`MALFORMED_KINDS`, or null) and ``COPIES`` (2 for a duplicate).
        """
        n, faults = schedule.height, self.faults
        draws: dict[str, pl.Series] = {}

        def draw(name: str, *stream: int) -> pl.Expr:
            draws[name] = uniform(n, mix_seed(seed, *stream))
            return pl.col(name)

        def chance(fraction: float, name: str, stream: int) -> pl.Expr:
            return pl.lit(False) if fraction <= 0 else draw(name, stream) < fraction

        delay: pl.Expr = pl.lit(0.0)
        if faults.out_of_order > 0:
            amount = draw("_disorder", 101) * _us(faults.max_disorder)
            delay = pl.when(chance(faults.out_of_order, "_ooo", 100)).then(amount).otherwise(delay)
        if faults.late_fraction > 0:
            amount = (1 + draw("_lateness", 103)) * _us(faults.lateness)
            delay = (
                pl.when(chance(faults.late_fraction, "_late", 102)).then(amount).otherwise(delay)
            )
        # Which measurement spikes (-1: none), and by 5 to 10 spreads up or down: plainly an
        # anomaly, never a subtle one.
        spiked: pl.Expr = pl.lit(-1)
        spike: pl.Expr = pl.lit(0.0)
        if faults.anomaly_fraction > 0:
            which = (draw("_which", 105) * len(self.measurements)).floor()
            spiked = (
                pl.when(chance(faults.anomaly_fraction, "_spike", 104)).then(which).otherwise(-1)
            )
            size = draw("_size", 106)
            spike = pl.when(size < 0.5).then(-1.0).otherwise(1.0) * (5 + (size * 10) % 5)
        seconds = pl.col(SCHEDULED).cast(pl.Float64) / 1e6
        values: list[pl.Expr] = []
        for number, name in enumerate(self.measurements):
            profile = PROFILES.get(name, GENERIC_PROFILE)
            pair = number // 2
            radius = (-2.0 * (1.0 - draw(f"_r{pair}", 10, pair)).log()).sqrt()
            angle = draw(f"_a{pair}", 11, pair) * (2 * math.pi)
            noise = radius * (angle.cos() if number % 2 == 0 else angle.sin()) * profile.noise
            drift = (seconds / pl.col(f"_period{number}") * (2 * math.pi)) + pl.col(
                f"_phase{number}"
            )
            value = pl.col(f"_base{number}") + pl.col(f"_swing{number}") * drift.sin() + noise
            if profile.low is not None or profile.high is not None:
                value = value.clip(profile.low, profile.high)
            if faults.anomaly_fraction > 0 and not profile.fixed:
                value = value + pl.when(spiked == number).then(spike * profile.spread).otherwise(0)
            values.append(value.round(profile.decimals).alias(name))
        malformed: pl.Expr = pl.lit(None, pl.Int64)
        if faults.malformed_fraction > 0:
            kind = (draw("_kind", 108) * len(MALFORMED_KINDS)).floor().cast(pl.Int64)
            malformed = pl.when(chance(faults.malformed_fraction, "_malformed", 107)).then(kind)
        duplicated = chance(faults.duplicate_fraction, "_duplicated", 109)
        devices = self.device_table.select(pl.all().gather(schedule[DEVICE]))
        frame = pl.concat([schedule, devices, pl.DataFrame(draws)], how="horizontal")
        return frame.select(
            DEVICE,
            DEVICE_ID,
            SCHEDULED,
            (pl.col(SCHEDULED) - delay.round(0).cast(pl.Int64)).alias(EVENT_TIME),
            *values,
            malformed.alias(MALFORMED),
            (duplicated.cast(pl.UInt32) + 1).alias(COPIES),
        )


def _us(value: timedelta) -> float:
    return value / timedelta(microseconds=1)
