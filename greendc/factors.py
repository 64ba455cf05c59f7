"""Grid emission factors: the shipped data file, its validation, and hourly factor series.

The file (``greendc/data/emission_factors.yaml`` by default, or ``emission_factors_file`` in
the settings) holds, per grid zone, a location-based ``grid_average`` factor, a market-based
``residual_mix`` factor where one is published, and the grid's ``carbon_free_share`` where
known. Each figure carries its unit, year, basis (direct or lifecycle), boundary
(production or consumption) and source, so a report can print where every number came from.

An hourly series (CSV with columns ``ts`` and ``kg_per_kwh``; ``ts`` in Unix seconds or
RFC 3339, the start of the hour) can be passed to the location-based computation instead of
the static annual factor.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from greendc._errors import ConfigError, KPIError

if TYPE_CHECKING:
    from greendc.config import Settings

HOUR_SECONDS = 3600
# Both are kilograms per kWh; the unit records whether the publisher counted CO2 only.
FACTOR_UNITS = ("kgCO2e/kWh", "kgCO2/kWh")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Factor(_Frozen):
    """One published emission factor with its provenance."""

    value: float = Field(ge=0, le=2.0)  # no grid exceeds ~1.2 kg/kWh: catches g/kWh typos
    unit: Literal["kgCO2e/kWh", "kgCO2/kWh"]
    year: int = Field(ge=1990, le=2100)
    basis: Literal["direct", "lifecycle"]
    boundary: Literal["production", "consumption"]
    method: str = ""
    source: str = Field(min_length=3)
    url: str = ""
    note: str = ""

    @property
    def citation(self) -> str:
        """A one-line citation: source, year, basis."""
        return f"{self.source} ({self.year}; {self.basis}, {self.boundary}; {self.unit})"


class Share(_Frozen):
    """A published share (0..1), e.g. the carbon-free share of a grid's generation."""

    value: float = Field(ge=0, le=1)
    year: int = Field(ge=1990, le=2100)
    source: str = Field(min_length=3)
    url: str = ""


class ZoneFactors(_Frozen):
    """Everything greendc knows about one grid zone."""

    name: str
    grid_average: Factor
    residual_mix: Factor | None = None
    carbon_free_share: Share | None = None


class FactorTable(_Frozen):
    """The whole factor file."""

    version: Literal[1]
    zones: dict[str, ZoneFactors]

    def zone(self, zone: str) -> ZoneFactors:
        """The factors of a zone; raises :class:`KPIError` naming the known zones if absent."""
        try:
            return self.zones[zone]
        except KeyError:
            known = ", ".join(sorted(self.zones))
            raise KPIError(
                f"no emission factors for grid zone {zone!r}; known zones: {known}. "
                "Add it to your emission_factors_file with its published source."
            ) from None


def default_factors_path() -> Path:
    """Path of the factor file shipped with greendc."""
    return Path(str(resources.files("greendc").joinpath("data/emission_factors.yaml")))


def parse_factors(data: object, *, where: str = "emission factors") -> FactorTable:
    """Validate raw (YAML-loaded) factor data; errors name the field path and value."""
    try:
        return FactorTable.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            path = ".".join(str(p) for p in err["loc"])
            problems.append(f"{where}: {path}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError("\n  ".join(problems), problems) from None


def load_factors(path: str | Path | None = None) -> FactorTable:
    """Load and validate a factor file (the shipped one when ``path`` is None)."""
    p = Path(path) if path is not None else default_factors_path()
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the emission factor file: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    return parse_factors(data, where=str(p))


@dataclass(frozen=True)
class HourlyFactors:
    """An hourly factor series (kg/kWh), hour-aligned; NaN where an hour has no factor.

    A year is 8,760 values: plain Python, so the collector (which loads this module for the
    static factors) never loads numpy.
    """

    start_s: int
    kg_per_kwh: tuple[float, ...]
    source: str = ""

    def __post_init__(self) -> None:
        if self.start_s % HOUR_SECONDS:
            raise KPIError(f"hourly factors must start on the hour, got {self.start_s}")

    def values_for(self, start_s: int, hours: int) -> list[float]:
        """Factors for ``hours`` hours from ``start_s`` (hour-aligned), NaN where unknown."""
        out = [math.nan] * hours
        offset = (start_s - self.start_s) // HOUR_SECONDS
        lo = max(0, -offset)
        hi = min(hours, len(self.kg_per_kwh) - offset)
        if hi > lo:
            out[lo:hi] = self.kg_per_kwh[offset + lo : offset + hi]
        return out

    @classmethod
    def from_pairs(
        cls, ts_s: Sequence[float], kg_per_kwh: Sequence[float], source: str = ""
    ) -> HourlyFactors:
        """Build from (hour start, factor) pairs; timestamps must be on the hour."""
        ts = [float(t) for t in ts_s]
        vals = [float(v) for v in kg_per_kwh]
        if len(ts) != len(vals) or not ts:
            raise KPIError("hourly factors need equal, non-empty ts and kg_per_kwh columns")
        if any(t % HOUR_SECONDS for t in ts):
            raise KPIError("hourly factor timestamps must be on the hour")
        if not all(math.isfinite(v) and 0 <= v <= 2.0 for v in vals):
            raise KPIError("hourly factors must be finite, in kg/kWh between 0 and 2")
        hours = [int(t // HOUR_SECONDS) for t in ts]
        if len(set(hours)) != len(hours):
            raise KPIError("hourly factor series repeats an hour")
        first = min(hours)
        series = [math.nan] * (max(hours) - first + 1)
        for hour, value in zip(hours, vals, strict=True):
            series[hour - first] = value
        return cls(first * HOUR_SECONDS, tuple(series), source)


def _parse_ts(text: str) -> float:
    """Unix seconds, or an RFC 3339 time with its offset (``Z`` or ``+02:00``)."""
    try:
        return float(text)
    except ValueError:
        pass
    when = datetime.fromisoformat(text)  # ValueError if neither
    if when.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset")
    return when.timestamp()


def load_hourly_factors(path: str | Path) -> HourlyFactors:
    """Read an hourly factor CSV (``ts``, ``kg_per_kwh``); raises :class:`KPIError` if bad.

    ``ts`` is the start of the hour in Unix seconds or RFC 3339 with an offset. Plain
    Python (the csv module): the collector reads these files at start-up and never loads
    numpy or pandas.
    """
    p = Path(path)
    try:
        with p.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
            columns = set(rows[0]) if rows else set()
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise KPIError(f"{p}: cannot read the hourly factor CSV: {exc}") from exc
    missing = {"ts", "kg_per_kwh"} - columns
    if missing:
        raise KPIError(f"{p}: missing column(s) {', '.join(sorted(missing))}")
    ts: list[float] = []
    values: list[float] = []
    for line, row in enumerate(rows, start=2):
        try:
            ts.append(_parse_ts((row["ts"] or "").strip()))
        except ValueError as exc:
            raise KPIError(
                f"{p}, line {line}: ts {row['ts']!r} is neither Unix seconds nor RFC 3339 "
                f"with an offset ({exc})"
            ) from None
        try:
            values.append(float(row["kg_per_kwh"] or ""))
        except ValueError:
            raise KPIError(
                f"{p}, line {line}: kg_per_kwh {row['kg_per_kwh']!r} is not a number"
            ) from None
    if not all(math.isfinite(x) for x in ts):
        raise KPIError(f"{p}: ts has empty or invalid values")
    try:
        return HourlyFactors.from_pairs(ts, values, str(p))
    except KPIError as exc:
        raise KPIError(f"{p}: {exc}") from None


@dataclass(frozen=True)
class GridFactors:
    """The emission factors a collector computes with: the zone table, each site's hourly
    series (by site name, where configured)."""

    table: FactorTable
    hourly: dict[str, HourlyFactors]


def load_grid_factors(settings: Settings, table: FactorTable | None = None) -> GridFactors:
    """Read and check every factor input of ``settings``, as the collector does at start-up
    (and ``check-config`` with it): the factor file parses, every site's grid zone is in it,
    every hourly factor file parses. Raises :class:`ConfigError` naming the setting.

    ``table`` replaces the file (tests and the demo bring their own table).
    """
    problems: list[str] = []
    if table is None:
        try:
            table = load_factors(settings.emission_factors_file)
        except ConfigError as exc:
            named = [f"emission_factors_file: {p}" for p in exc.problems]
            raise ConfigError("\n  ".join(named), named) from None
    by_file: dict[str, HourlyFactors] = {}
    hourly: dict[str, HourlyFactors] = {}
    for i, site in enumerate(settings.sites):
        if site.grid_zone not in table.zones:
            known = ", ".join(sorted(table.zones))
            where = settings.emission_factors_file or "the shipped emission factors"
            problems.append(
                f"sites[{i}].grid_zone: {site.grid_zone!r} has no emission factors in {where}; "
                f"known zones: {known}. Use one of them, or add the zone to your "
                "emission_factors_file with its published source."
            )
        if site.hourly_factors_file is not None:
            key = str(site.hourly_factors_file)
            try:
                if key not in by_file:
                    by_file[key] = load_hourly_factors(site.hourly_factors_file)
                hourly[site.name] = by_file[key]
            except KPIError as exc:
                problems.append(f"sites[{i}].hourly_factors_file: {exc}")
    if problems:
        raise ConfigError("\n  ".join(problems), problems)
    return GridFactors(table, hourly)


__all__ = [
    "Factor",
    "FactorTable",
    "GridFactors",
    "HourlyFactors",
    "Share",
    "ZoneFactors",
    "default_factors_path",
    "load_factors",
    "load_grid_factors",
    "load_hourly_factors",
    "parse_factors",
]
