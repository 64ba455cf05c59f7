"""Data-centre KPIs as pure functions of energy over a window.

Every KPI is computed on **energy summed over the window** (e.g. PUE = ΣE_DC / ΣE_IT), never as
a mean of instantaneous ratios: a quiet minute must not weigh like a busy one (The Green Grid;
ISO/IEC 30134-2; EU Delegated Regulation 2024/1364 Annex III). Every result is a :class:`KPI`
carrying its :class:`~greendc.quality.Quality` (ok, incomplete, withheld), the measured,
bridged and missing shares of its window, and the coverage of each input.

**Ratios on common ground.** PUE, pPUE, REF, CUE, WUE and ERF are computed over the intervals
where every input is covered (measured or bridged), never from totals that each cover a
different part of the window: with the IT meter complete and the facility meter at 83 %, a
true PUE of 1.50 is 1.50 (incomplete, coverage 83 %), not 1.25. Totals (E_DC, E_grid,
Scope 2) keep their own coverage. A figure under ``min_coverage`` is ``incomplete`` and shown
with its coverage; with nothing to compute it is ``withheld`` with the reason.

Energy balance of a site (from its meters' roles, see ``greendc.config.Meter``):

* E_DC = signed sum of ``facility`` meters (sign -1 subtracts a sub-meter, e.g. an office
  outside the data-centre boundary).
* ``generator`` and ``renewable_onsite`` meters are sub-splits *inside* E_DC: the generator
  part (reported separately for the EU EED) and on-site renewable energy consumed (for REF).
* E_grid = Σ ``grid_import`` meters when the site has any; otherwise, per interval,
  max(0, E_DC − E_renewable_onsite − E_generator).
* E_IT = signed sum of ``it`` meters; the PUE category (PUE1/PUE2/PUE3 for IT measured at UPS
  output / PDU output / IT input) comes from ``site.pue_category``. A PUE over less than a
  year is labelled "interim".
* pPUE of a zone = (zone IT + zone cooling, lighting, other_overhead) / zone IT, by the meters'
  ``zone``; withheld where the zone has no overhead meter (never 1.0 by construction).
* REF = (E_renewable_onsite + GO/REC/PPA kWh of the site's contracts for the month, prorated to
  the window) / E_DC, capped at 1 (ISO/IEC 30134-3; EU 2024/1364 E_RES-TOT = GOO + PPA + OS).
  The renewable share shown is the same number.
* Scope 2 location-based = E_grid kWh × the zone's grid-average factor (or an hourly factor
  series when given). Market-based = contracted instruments first (their own factor, usually
  0) up to E_grid, the zone's residual mix for the rest; where no residual mix is published
  the grid average is used and the result says so (GHG Protocol Scope 2 hierarchy).
* CUE = location-based CO2e / E_IT (kgCO2e/kWh); it excludes generator fuel (Scope 1), for
  which greendc has no fuel data.
* Hourly CFE%: per hour, clean energy (on-site renewable + hourly PPA) counts up to that hour's
  E_DC with no carry-over; the rest of the hour counts at the grid's carbon-free share.
* Hourly figures (hourly location-based Scope 2, CFE) use measured energy only: bridged energy
  (timing unknown) is left out, and lowers their coverage, unless the site sets
  ``bridged_in_hourly``.
* ERF = E_heat_reuse / E_DC; WUE = water (L) / E_IT (kWh).
* Fleet PUE = ΣE_DC / ΣE_IT across sites, labelled as such (not an average of site PUEs).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from itertools import compress
from operator import sub
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from greendc._errors import KPIError
from greendc.config import Contract, Site
from greendc.factors import HOUR_SECONDS, Factor, FactorTable, HourlyFactors
from greendc.model import Role
from greendc.quality import Quality, Shares

if TYPE_CHECKING:  # the report's series; the collector's live path never loads numpy
    from greendc.energy import IntervalSeries

SECONDS_PER_YEAR = 365 * 86400
OVERHEAD_ROLES = (Role.COOLING, Role.LIGHTING, Role.OTHER_OVERHEAD)


@dataclass(frozen=True)
class Window:
    """A time window ``[start_s, end_s)`` in Unix seconds."""

    start_s: int
    end_s: int

    @property
    def seconds(self) -> int:
        """Length of the window."""
        return self.end_s - self.start_s


@dataclass(frozen=True)
class Measured:
    """A quantity summed over a window, with its coverage (0..1, measured or bridged).

    ``meters`` is how many meters contributed; 0 means the site has none for this input.
    ``bridged_share`` is the part of the coverage bridged across gaps, ``bridged`` the part
    of the value that came from there.
    """

    value: float
    coverage: float
    meters: int = 1
    bridged_share: float = 0.0
    bridged: float = 0.0

    @property
    def shares(self) -> Shares:
        """Measured, bridged and missing shares of the window."""
        b = min(self.bridged_share, self.coverage)
        return Shares(max(0.0, self.coverage - b), b)


@dataclass(frozen=True)
class RoleSeries:
    """One role's energy over a window: its total and its per-interval form.

    ``covered[i]`` is the share of interval ``i`` every meter of the role covered, measured
    or bridged (1.0 when each meter covered all of it); ``bridged_covered[i]`` the bridged
    part; ``bridged[i]`` the bridged energy inside ``per_interval[i]``.
    """

    total: Measured
    per_interval: list[float]
    bridged: list[float]
    covered: list[float]
    bridged_covered: list[float]

    def measured_only(self) -> list[float]:
        """Per interval, the energy without its bridged part (for hourly uses)."""
        return list(map(sub, self.per_interval, self.bridged))


@dataclass(frozen=True)
class KPI:
    """One KPI result: value (None when withheld), unit, label, quality and coverage.

    ``coverage`` maps each input to its coverage; ``shares`` are the measured, bridged and
    missing shares of the window the value stands on; ``withheld`` the reason when withheld.
    """

    name: str
    value: float | None
    unit: str
    label: str
    coverage: Mapping[str, float] = field(default_factory=dict)
    withheld: str | None = None
    detail: str = ""
    quality: Quality = Quality.OK
    shares: Shares | None = None
    not_metered: bool = False  # withheld because the site has no meter for an input
    zone: str | None = None  # the zone of a per-zone KPI (pPUE), None for a site KPI

    def __post_init__(self) -> None:
        if self.value is None and self.quality is not Quality.WITHHELD:
            object.__setattr__(self, "quality", Quality.WITHHELD)

    @property
    def covered(self) -> float:
        """The coverage the value stands on (0 when unknown)."""
        if self.shares is not None:
            return self.shares.covered
        return min(self.coverage.values()) if self.coverage else 0.0


def _gate(
    name: str,
    unit: str,
    label: str,
    inputs: Mapping[str, Measured],
    min_coverage: float,
) -> tuple[dict[str, float], KPI | None]:
    """Coverage per input, and a withheld KPI if an input is absent or has no data at all."""
    cov = {k: m.coverage for k, m in inputs.items()}
    shares = _worst_shares(inputs)
    for key, m in inputs.items():
        if m.meters == 0:
            reason = f"no meter for {key}"
            return cov, KPI(
                name, None, unit, label, cov, reason, shares=shares, not_metered=True
            )
    empty = [k for k, m in inputs.items() if m.coverage <= 0]
    if empty:
        reason = f"no data for {', '.join(empty)} in the window"
        if len(inputs) > 1:
            reason = f"no interval where {' and '.join(inputs)} are all covered"
        return cov, KPI(name, None, unit, label, cov, reason, shares=shares)
    return cov, None


def _worst_shares(inputs: Mapping[str, Measured]) -> Shares:
    if not inputs:
        return Shares(1.0, 0.0)
    return min((m.shares for m in inputs.values()), key=lambda s: (s.covered, -s.bridged))


def _graded(k: KPI, inputs: Mapping[str, Measured], min_coverage: float) -> KPI:
    """``k`` with its quality and shares: incomplete (with its coverage) under the minimum."""
    shares = _worst_shares(inputs)
    if k.value is None:
        return replace(k, shares=shares)
    quality = Quality.of(True, shares.covered, min_coverage)
    detail = k.detail
    if quality is Quality.INCOMPLETE:
        note = f"coverage {shares.covered:.1%} is below the minimum {min_coverage:.0%}"
        detail = f"{note}; {detail}" if detail else note
    return replace(k, quality=quality, shares=shares, detail=detail)


def _gated_ratio(
    name: str,
    unit: str,
    label: str,
    inputs: Mapping[str, Measured],
    numerator: float,
    denominator: str,
    min_coverage: float,
    *,
    denominator_per: float = 1.0,
    zero_reason: str = "",
) -> KPI:
    """``numerator / (inputs[denominator] / denominator_per)``, withheld by the coverage gate
    or when the denominator is not positive (``zero_reason``, default "<denominator> is zero").
    """
    cov, held = _gate(name, unit, label, inputs, min_coverage)
    if held:
        return held
    den = inputs[denominator].value
    if den <= 0:
        reason = zero_reason or f"{denominator} is zero"
        return _graded(KPI(name, None, unit, label, cov, reason), inputs, min_coverage)
    value = numerator / (den / denominator_per)
    return _graded(KPI(name, value, unit, label, cov), inputs, min_coverage)


def pue_label(category: int, window_seconds: int) -> str:
    """'PUE2', or 'PUE2 (interim)' for a window shorter than a year."""
    label = f"PUE{category}"
    return label if window_seconds >= SECONDS_PER_YEAR else f"{label} (interim)"


def pue(
    e_dc: Measured, e_it: Measured, *, category: int, window_seconds: int, min_coverage: float
) -> KPI:
    """PUE = E_DC / E_IT over the window (ISO/IEC 30134-2), labelled with its category."""
    label = pue_label(category, window_seconds)
    inputs = {"E_DC": e_dc, "E_IT": e_it}
    return _gated_ratio("pue", "", label, inputs, e_dc.value, "E_IT", min_coverage)


def ppue(zone: str, e_it: Measured, e_overhead: Measured, *, min_coverage: float) -> KPI:
    """Partial PUE of a zone = (zone IT + zone overhead) / zone IT."""
    name, label = f"ppue:{zone}", f"pPUE {zone}"
    k = _gated_ratio(
        name,
        "",
        label,
        {"E_IT": e_it, "E_overhead": e_overhead},
        e_it.value + e_overhead.value,
        "E_IT",
        min_coverage,
        zero_reason="zone E_IT is zero",
    )
    return replace(k, zone=zone)


def ref(
    e_dc: Measured, e_res_onsite: Measured, certificates_wh: float, *, min_coverage: float
) -> KPI:
    """REF = (on-site renewable + GO/REC/PPA energy) / E_DC, capped at 1 (ISO/IEC 30134-3)."""
    label = "REF (renewable energy factor)"
    inputs = {"E_DC": e_dc}
    if e_res_onsite.meters:
        inputs["E_renewable_onsite"] = e_res_onsite
    cov, held = _gate("ref", "ratio", label, inputs, min_coverage)
    if held:
        return held
    if e_dc.value <= 0:
        return _graded(KPI("ref", None, "ratio", label, cov, "E_DC is zero"), inputs, min_coverage)
    raw = (max(e_res_onsite.value, 0.0) + certificates_wh) / e_dc.value
    detail = f"capped at 1 (uncapped {raw:.3f})" if raw > 1 else ""
    k = KPI("ref", min(raw, 1.0), "ratio", label, cov, detail=detail)
    return _graded(k, inputs, min_coverage)


def interval_factors(window: Window, interval_seconds: int, hourly: HourlyFactors) -> list[float]:
    """Each interval's grid factor (kg/kWh) from an hourly series: its clock hour's value, NaN
    where the series has none (those intervals fall back to the static factor)."""
    if HOUR_SECONDS % interval_seconds:
        raise KPIError(f"interval {interval_seconds} s does not divide an hour")
    first = window.start_s // HOUR_SECONDS * HOUR_SECONDS
    n_hours = -(-window.end_s // HOUR_SECONDS) - first // HOUR_SECONDS
    per_hour = hourly.values_for(first, n_hours)
    offset = window.start_s - first
    return [
        per_hour[(offset + i * interval_seconds) // HOUR_SECONDS]
        for i in range(window.seconds // interval_seconds)
    ]


def interval_emissions_kg(
    grid_wh: Sequence[float], factors: Sequence[float] | None, static: Factor
) -> list[float]:
    """kgCO2e of each interval's grid energy (Wh): at the interval's own factor (kg/kWh) from
    ``factors``, the static annual ``static`` where that is NaN or no series is given.

    The one rule for location-based emissions: the report's Scope 2 is the sum of these over
    its period, the live emissions counter adds them up interval by interval.
    """
    if factors is None:
        return list(map((static.value / 1000.0).__mul__, grid_wh))
    return [
        wh / 1000.0 * (static.value if math.isnan(f) else f)
        for wh, f in zip(grid_wh, factors, strict=True)
    ]


def location_emissions(
    e_grid: Measured,
    factor: Factor,
    *,
    min_coverage: float,
    grid_wh_per_interval: Sequence[float] | None = None,
    factors_per_interval: Sequence[float] | None = None,
) -> KPI:
    """Scope 2 location-based kgCO2e: grid kWh × grid-average factor.

    With ``grid_wh_per_interval`` and ``factors_per_interval`` (same length, NaN where the
    hourly series has no factor, see :func:`interval_factors`), each interval uses its own
    factor (:func:`interval_emissions_kg`); the share of grid energy in intervals with a
    factor is reported as the coverage of "factor" and gated like any input; uncovered
    intervals use the static annual factor.
    """
    label = "Scope 2 location-based"
    inputs = {"E_grid": e_grid}
    detail = f"grid average {factor.value} {factor.unit}: {factor.citation}"
    if grid_wh_per_interval is not None and factors_per_interval is not None:
        pairs = list(zip(grid_wh_per_interval, factors_per_interval, strict=True))
        total = sum(wh for wh, _ in pairs)
        known_wh = sum(wh for wh, f in pairs if not math.isnan(f))
        share = float(known_wh / total) if total > 0 else 1.0
        inputs["factor"] = Measured(0.0, share)
        cov, held = _gate("scope2_location", "kgCO2e", label + " (hourly)", inputs, min_coverage)
        if held:
            return held
        kg = sum(interval_emissions_kg(grid_wh_per_interval, factors_per_interval, factor), 0.0)
        k = KPI("scope2_location", kg, "kgCO2e", label + " (hourly)", cov, detail=detail)
        return _graded(k, inputs, min_coverage)
    cov, held = _gate("scope2_location", "kgCO2e", label, inputs, min_coverage)
    if held:
        return held
    kg = e_grid.value / 1000.0 * factor.value
    return _graded(
        KPI("scope2_location", kg, "kgCO2e", label, cov, detail=detail), inputs, min_coverage
    )


@dataclass(frozen=True)
class Instrument:
    """A contractual instrument for market-based Scope 2 (GO, REC or PPA) over the window."""

    kind: str
    energy_wh: float
    factor_kg_per_kwh: float = 0.0


def market_emissions(
    e_grid: Measured,
    instruments: Sequence[Instrument],
    *,
    residual: Factor | None,
    grid_average: Factor,
    min_coverage: float,
) -> KPI:
    """Scope 2 market-based kgCO2e (GHG Protocol): instruments first, residual mix for the rest.

    Instruments are applied in the order given, each up to the grid energy not yet covered;
    the remainder is charged at the residual mix, or at the grid average (and said so in
    ``detail``) where the zone has no published residual mix.
    """
    label = "Scope 2 market-based"
    inputs = {"E_grid": e_grid}
    cov, held = _gate("scope2_market", "kgCO2e", label, inputs, min_coverage)
    if held:
        return held
    remaining_wh = max(e_grid.value, 0.0)
    kg = 0.0
    for inst in instruments:
        used_wh = min(remaining_wh, max(inst.energy_wh, 0.0))
        kg += used_wh / 1000.0 * inst.factor_kg_per_kwh
        remaining_wh -= used_wh
    rest = residual if residual is not None else grid_average
    kg += remaining_wh / 1000.0 * rest.value
    which = "residual mix" if residual is not None else "grid average (no residual mix published)"
    detail = f"{remaining_wh / 1000.0:.1f} kWh at {which} {rest.value} {rest.unit}"
    return _graded(
        KPI("scope2_market", kg, "kgCO2e", label, cov, detail=detail), inputs, min_coverage
    )


def cue(emissions: KPI, e_it: Measured, *, min_coverage: float) -> KPI:
    """CUE = CO2e (of the given emissions KPI) / E_IT kWh, in kgCO2e/kWh."""
    label = f"CUE ({emissions.label})"
    inputs = {"E_IT": e_it}
    cov, held = _gate("cue", "kgCO2e/kWh", label, inputs, min_coverage)
    cov = {**emissions.coverage, **cov}
    if held:
        return replace(held, coverage=cov)
    if emissions.value is None:
        return KPI(
            "cue", None, "kgCO2e/kWh", label, cov, f"emissions withheld: {emissions.withheld}"
        )
    if e_it.value <= 0:
        return _graded(
            KPI("cue", None, "kgCO2e/kWh", label, cov, "E_IT is zero"), inputs, min_coverage
        )
    k = KPI("cue", emissions.value / (e_it.value / 1000.0), "kgCO2e/kWh", label, cov)
    return _graded(k, inputs, min_coverage)


def hourly_cfe(
    consumption_wh: Sequence[float],
    clean_wh: Sequence[float],
    grid_cfe_share: float | None,
    *,
    inputs: Mapping[str, Measured],
    min_coverage: float,
) -> KPI:
    """24/7 CFE share: per hour min(clean, consumption) + rest × grid carbon-free share."""
    label = "hourly CFE"
    cov, held = _gate("cfe", "ratio", label, inputs, min_coverage)
    if held:
        return held
    if grid_cfe_share is None:
        reason = "no published carbon-free share for the zone"
        return _graded(KPI("cfe", None, "ratio", label, cov, reason), inputs, min_coverage)
    load = _clipped(consumption_wh)
    total = sum(load)
    if total <= 0:
        return _graded(KPI("cfe", None, "ratio", label, cov, "E_DC is zero"), inputs, min_coverage)
    cfe_wh = 0.0
    for hour_load, clean in zip(load, clean_wh, strict=True):
        matched = min(max(clean, 0.0), hour_load)
        cfe_wh += matched + (hour_load - matched) * grid_cfe_share
    return _graded(KPI("cfe", float(cfe_wh / total), "ratio", label, cov), inputs, min_coverage)


def erf(e_reuse: Measured, e_dc: Measured, *, min_coverage: float) -> KPI:
    """ERF = heat energy reused outside the boundary / E_DC (ISO/IEC 30134-6)."""
    label = "ERF (energy reuse factor)"
    inputs = {"E_reuse": e_reuse, "E_DC": e_dc}
    return _gated_ratio("erf", "ratio", label, inputs, e_reuse.value, "E_DC", min_coverage)


def wue(water_l: Measured, e_it: Measured, *, min_coverage: float) -> KPI:
    """WUE = site water (L) / E_IT (kWh) (ISO/IEC 30134-9)."""
    label = "WUE (water usage effectiveness)"
    # E_IT is in Wh; WUE is per kWh.
    inputs = {"water": water_l, "E_IT": e_it}
    return _gated_ratio(
        "wue", "L/kWh", label, inputs, water_l.value, "E_IT", min_coverage, denominator_per=1000.0
    )


# ---------------------------------------------------------------------------------------
# A whole site


@dataclass(frozen=True)
class SiteKPIs:
    """All KPIs of one site over one window, and the energy inputs they came from (Wh, L)."""

    site: str
    window: Window
    category: int
    inputs: Mapping[str, Measured]
    kpis: Mapping[str, KPI]
    grid_wh_per_interval: Sequence[float] = ()  # E_grid per interval (grid_energy)


class RoleSums(Protocol):
    """Energy already summed per role over one window (the live path; see greendc.rolling).

    ``sum_role`` answers what :func:`role_sum` computes from per-meter series: the signed
    total over the meters of ``roles`` (in ``zone`` if given) with its per-interval form,
    coverage and bridged part.
    """

    def sum_role(self, roles: Sequence[Role], zone: str | None) -> RoleSeries:
        """Signed sum over the meters of ``roles`` (in ``zone``), per interval too."""
        ...


def role_sum(
    site: Site,
    energies: Mapping[str, IntervalSeries] | RoleSums,
    window: Window,
    roles: Sequence[Role],
    interval_seconds: int,
    zone: str | None = None,
) -> RoleSeries:
    """Signed sum over the meters of ``roles`` (in ``zone`` if given): total and per interval.

    The one role sum: the KPIs, the live path (through :class:`RoleSums`) and the report's
    daily rows all take it from here. The per-meter series hold numpy arrays and are summed
    as such (a month of minutes per meter); the result holds plain lists, the form the live
    path gives, and everything below is plain Python over them.
    """
    if not isinstance(energies, Mapping):
        return energies.sum_role(roles, zone)
    n = window.seconds // interval_seconds
    summed: Any = None  # arrays of the series' amounts once a meter has one
    bridged: Any = None
    covered: Any = None
    bridged_s: Any = None
    coverages = []
    count = 0
    for m in site.meters:
        if m.role not in roles or (zone is not None and m.zone != zone):
            continue
        count += 1
        series = energies.get(m.name)
        if series is None:
            coverages.append(0.0)
            continue
        if series.interval_seconds != interval_seconds:
            raise KPIError(
                f"meter {m.name}: its series has {series.interval_seconds} s intervals, "
                f"the KPIs are computed on {interval_seconds} s"
            )
        part = series.slice(window.start_s, window.end_s)
        if summed is None:
            summed, bridged = m.sign * part.amount, m.sign * part.bridged
            covered, bridged_s = part.covered_seconds.copy(), part.bridged_covered.copy()
        else:
            summed = summed + m.sign * part.amount
            bridged = bridged + m.sign * part.bridged
            covered = covered + part.covered_seconds
            bridged_s = bridged_s + part.bridged_covered
        coverages.append(part.coverage())
    if summed is None:
        zeros = [0.0] * n
        full = 0.0 if count else 1.0
        return RoleSeries(Measured(0.0, 1.0 - bool(count), count), zeros, zeros, [full] * n, zeros)
    per = count * interval_seconds
    total_bridged_s = float(bridged_s.sum())
    per_interval: list[float] = summed.tolist()
    total = Measured(
        sum(per_interval, 0.0),
        min(coverages),
        count,
        total_bridged_s / (count * window.seconds) if window.seconds else 0.0,
        float(bridged.sum()),
    )
    return RoleSeries(
        total, per_interval, bridged.tolist(), (covered / per).tolist(), (bridged_s / per).tolist()
    )


_FULL = 1.0 - 1e-9  # an interval counts as covered when (nearly) all of it is


def common_ground(*series: RoleSeries) -> tuple[list[bool], Shares]:
    """The intervals every series covers (measured or bridged), and their shares.

    A series of a role without meters does not restrict the ground (its KPI is withheld for
    the missing meter anyway).
    """
    used = [s for s in series if s.total.meters]
    n = len(series[0].per_interval) if series else 0
    if not used or n == 0:
        return [True] * n, Shares(1.0 if n else 0.0, 0.0)
    # map() over several lists runs in C: a month of minutes is 44,640 intervals per call.
    covered = used[0].covered if len(used) == 1 else list(map(min, *(s.covered for s in used)))
    mask = [c >= _FULL for c in covered]
    n_covered = sum(mask)
    n_bridged = 0
    if any(s.total.bridged_share > 0 for s in used):
        bridged = (
            used[0].bridged_covered
            if len(used) == 1
            else list(map(max, *(s.bridged_covered for s in used)))
        )
        n_bridged = sum(1 for b in compress(bridged, mask) if b > 1e-12)
    return mask, Shares((n_covered - n_bridged) / n, n_bridged / n)


def on_ground(s: RoleSeries, mask: Sequence[bool], shares: Shares) -> Measured:
    """The part of ``s`` inside the common ground ``mask``, with the ground's shares."""
    if not s.total.meters:
        return s.total
    value = sum(compress(s.per_interval, mask), 0.0)
    bridged = sum(compress(s.bridged, mask), 0.0) if s.total.bridged else 0.0
    return Measured(value, shares.covered, s.total.meters, shares.bridged, bridged)


def _month_bounds(month: str, tz: ZoneInfo) -> tuple[float, float]:
    year, mon = (int(x) for x in month.split("-"))
    start = datetime(year, mon, 1, tzinfo=tz)
    nxt = datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=tz)
    return start.timestamp(), nxt.timestamp()


def contract_wh_in_window(contract: Contract, window: Window, timezone: str) -> float:
    """A contract's energy for its month (in the site's time zone), prorated to the window."""
    lo, hi = _month_bounds(contract.month, ZoneInfo(timezone))
    overlap = max(0.0, min(hi, window.end_s) - max(lo, window.start_s))
    return contract.energy_kwh * 1000.0 * overlap / (hi - lo)


def _clipped(values: Iterable[float]) -> list[float]:
    """Each value, or 0 where it is negative (per interval: exports do not count)."""
    return [0.0 if v < 0.0 else v for v in values]


def _hourly(
    per_interval: Sequence[float], window: Window, interval_seconds: int
) -> tuple[int, list[float]]:
    """Sums per clock hour (epoch-aligned) of the window's intervals, and the first hour's start.

    Hours clipped by the window hold only the part inside it.
    """
    if HOUR_SECONDS % interval_seconds:
        raise KPIError(f"interval {interval_seconds} s does not divide an hour")
    first = window.start_s // HOUR_SECONDS * HOUR_SECONDS
    n_hours = -(-window.end_s // HOUR_SECONDS) - first // HOUR_SECONDS
    per_hour = HOUR_SECONDS // interval_seconds
    skip = (window.start_s - first) // interval_seconds  # of the first hour, before the window
    ends = [h * per_hour - skip for h in range(1, n_hours + 1)]
    return first, [sum(per_interval[max(0, end - per_hour) : end]) for end in ends]


RoleTotal = Callable[[Sequence[Role]], RoleSeries]


def grid_energy(total: RoleTotal) -> RoleSeries:
    """E_grid of a site over a window: total and per interval, from its role sums.

    ``total(roles)`` is the signed sum over the site's meters of ``roles`` (as
    :func:`site_kpis` computes it, or :class:`RoleSums` in the live path). The site's
    ``grid_import`` meters when it has any; otherwise, per interval, max(0, E_DC −
    E_renewable_onsite − E_generator): an interval of surplus exports nothing to the
    grid figure, and it does not cancel the grid energy of another interval. The bridged
    part is E_DC's, capped at each interval's grid energy. The live figures and the report
    both take E_grid from here.
    """
    grid_import = total([Role.GRID_IMPORT])
    if grid_import.total.meters:
        return grid_import
    dc = total([Role.FACILITY])
    ren, gen = total([Role.RENEWABLE_ONSITE]), total([Role.GENERATOR])
    parts = [dc] + [p for p in (ren, gen) if p.total.meters]
    per = _clipped(map(sub, map(sub, dc.per_interval, ren.per_interval), gen.per_interval))
    # Bridged grid energy: the bridged part of E_DC, capped at the interval's grid energy.
    if dc.total.bridged:
        bridged = [min(max(b, 0.0), g) for b, g in zip(dc.bridged, per, strict=True)]
    else:
        bridged = dc.bridged
    covered = parts[0].covered if len(parts) == 1 else list(map(min, *(p.covered for p in parts)))
    bridged_cov = (
        parts[0].bridged_covered
        if len(parts) == 1
        else list(map(max, *(p.bridged_covered for p in parts)))
    )
    total_m = Measured(
        sum(per, 0.0),
        min(p.total.coverage for p in parts),
        dc.total.meters,
        max(p.total.bridged_share for p in parts),
        sum(bridged, 0.0),
    )
    return RoleSeries(total_m, per, bridged, covered, bridged_cov)


def site_kpis(
    site: Site,
    energies: Mapping[str, IntervalSeries] | RoleSums,
    window: Window,
    factors: FactorTable,
    min_coverage: float,
    *,
    interval_seconds: int | None = None,
    hourly_factors: HourlyFactors | None = None,
    ppa_hourly_wh: IntervalSeries | None = None,
) -> SiteKPIs:
    """Every KPI of a site over ``window`` from per-meter interval series (keyed by meter name)
    or, in the live path, from energy already summed per role (:class:`RoleSums`).

    Water meters' series are in litres. ``ppa_hourly_wh`` is the hourly delivery profile of
    the site's hourly PPAs (for CFE); ``hourly_factors`` replaces the static grid factor.
    Ratios stand on the intervals all their inputs cover (:func:`common_ground`).
    """
    if interval_seconds is None:
        if not isinstance(energies, Mapping):
            raise KPIError("interval_seconds is required with summed energies")
        first = next(iter(energies.values()), None)
        interval_seconds = first.interval_seconds if first is not None else 60
    step = interval_seconds

    sums: dict[tuple[tuple[Role, ...], str | None], RoleSeries] = {}

    def total(roles: Sequence[Role], zone: str | None = None) -> RoleSeries:
        key = (tuple(roles), zone)
        if key not in sums:  # grid_energy asks again for the roles summed here
            sums[key] = role_sum(site, energies, window, roles, step, zone)
        return sums[key]

    def ground(*series: RoleSeries) -> list[Measured]:
        mask, shares = common_ground(*series)
        return [on_ground(x, mask, shares) for x in series]

    dc, it = total([Role.FACILITY]), total([Role.IT])
    ren, gen = total([Role.RENEWABLE_ONSITE]), total([Role.GENERATOR])
    reuse, water = total([Role.HEAT_REUSE]), total([Role.WATER])
    grid = grid_energy(total)
    e_dc, e_it, e_ren, e_gen = dc.total, it.total, ren.total, gen.total
    e_grid = grid.total
    # The grid energy location-based Scope 2 counts, per interval (live emissions too).
    grid_i = grid.per_interval

    tz = site.timezone
    contract_wh = {id(c): contract_wh_in_window(c, window, tz) for c in site.contracts}
    certificates_wh = sum(contract_wh.values())
    inputs = {
        "E_DC": e_dc,
        "E_IT": e_it,
        "E_grid": e_grid,
        "E_renewable_onsite": e_ren,
        "E_generator": e_gen,
        "E_heat_reuse": reuse.total,
        "water_l": water.total,
        "E_certificates": Measured(certificates_wh, 1.0, len(site.contracts)),
    }

    kpis: dict[str, KPI] = {}
    pue_dc, pue_it = ground(dc, it)
    inputs["pue.E_DC"], inputs["pue.E_IT"] = pue_dc, pue_it
    kpis["pue"] = pue(
        pue_dc,
        pue_it,
        category=site.pue_category,
        window_seconds=window.seconds,
        min_coverage=min_coverage,
    )
    zones = sorted({m.zone for m in site.meters if m.role is Role.IT and m.zone is not None})
    for z in zones:
        z_it, z_oh = total([Role.IT], z), total(OVERHEAD_ROLES, z)
        if z_oh.total.meters == 0:
            # Without an overhead meter the zone's pPUE is unknown, not 1.0.
            k = ppue(z, z_it.total, Measured(0.0, 0.0, 0), min_coverage=min_coverage)
            k = replace(k, withheld="no overhead meter in this zone")
        else:
            g_it, g_oh = ground(z_it, z_oh)
            k = ppue(z, g_it, g_oh, min_coverage=min_coverage)
        kpis[k.name] = k
    ref_dc, ref_ren = ground(dc, ren)
    ref_certs = certificates_wh * ref_dc.coverage  # the certificates' share of the ground
    kpis["ref"] = ref(ref_dc, ref_ren, ref_certs, min_coverage=min_coverage)
    r = kpis["ref"]
    kpis["renewable_share"] = replace(r, name="renewable_share", label="renewable share (= REF)")

    zone = factors.zone(site.grid_zone)
    hourly_ok = site.bridged_in_hourly
    if hourly_factors is not None:
        # Hourly factors need the hour of the energy: bridged energy (timing unknown) is
        # left out unless the site opts in, and lowers the figure's coverage.
        if not hourly_ok:
            grid_i = grid.measured_only()
        grid_hourly = e_grid if hourly_ok else _measured_part(e_grid)
        loc = location_emissions(
            grid_hourly,
            zone.grid_average,
            min_coverage=min_coverage,
            grid_wh_per_interval=grid_i,
            factors_per_interval=interval_factors(window, step, hourly_factors),
        )
        if e_grid.bridged and not hourly_ok:
            note = f"{e_grid.bridged / 1000.0:.1f} kWh bridged grid energy not in the hourly figure"
            loc = replace(loc, detail=f"{loc.detail}; {note}" if loc.detail else note)
    else:
        loc = location_emissions(e_grid, zone.grid_average, min_coverage=min_coverage)
    kpis["scope2_location"] = loc
    instruments = [
        Instrument(c.kind, contract_wh[id(c)], c.factor_kg_per_kwh) for c in site.contracts
    ]
    kpis["scope2_market"] = market_emissions(
        e_grid,
        instruments,
        residual=zone.residual_mix,
        grid_average=zone.grid_average,
        min_coverage=min_coverage,
    )
    cue_grid, cue_it = ground(grid, it)
    loc_cg = loc
    if loc.value is not None:
        # The emissions of the common ground: the window's kg per grid kWh, times its grid kWh.
        per_wh = loc.value / e_grid.value if e_grid.value > 0 else 0.0
        loc_cg = replace(loc, value=per_wh * cue_grid.value)
    kpis["cue"] = cue(loc_cg, cue_it, min_coverage=min_coverage)

    dc_i = dc.per_interval if hourly_ok else dc.measured_only()
    ren_i = ren.per_interval if hourly_ok else ren.measured_only()
    dc_start, dc_h = _hourly(dc_i, window, step)
    _, clean_h = _hourly(_clipped(ren_i), window, step)
    cfe_inputs = {"E_DC": e_dc if hourly_ok else _measured_part(e_dc)}
    if e_ren.meters:
        cfe_inputs["E_renewable_onsite"] = e_ren if hourly_ok else _measured_part(e_ren)
    hourly_ppas = [c for c in site.contracts if c.kind == "ppa" and c.hourly]
    cfe_detail = ""
    if ppa_hourly_wh is not None:
        if ppa_hourly_wh.interval_seconds != HOUR_SECONDS:
            raise KPIError(
                f"ppa_hourly_wh has {ppa_hourly_wh.interval_seconds} s intervals; it must be hourly"
            )
        ppa = ppa_hourly_wh.slice(dc_start, dc_start + len(dc_h) * HOUR_SECONDS).amount.tolist()
        clean_h = [c + p for c, p in zip(clean_h, ppa, strict=True)]
    elif hourly_ppas:
        cfe_detail = "hourly PPA not counted: no hourly delivery profile given"
    share = zone.carbon_free_share.value if zone.carbon_free_share is not None else None
    c = hourly_cfe(dc_h, clean_h, share, inputs=cfe_inputs, min_coverage=min_coverage)
    if cfe_detail:
        c = replace(c, detail=f"{c.detail}; {cfe_detail}" if c.detail else cfe_detail)
    kpis["cfe"] = c

    if reuse.total.meters:
        g_reuse, g_dc = ground(reuse, dc)
        kpis["erf"] = erf(g_reuse, g_dc, min_coverage=min_coverage)
    if water.total.meters:
        g_water, g_it = ground(water, it)
        kpis["wue"] = wue(g_water, g_it, min_coverage=min_coverage)
    return SiteKPIs(site.name, window, site.pue_category, inputs, kpis, grid_i)


def _measured_part(m: Measured) -> Measured:
    """``m`` without its bridged part: what hourly figures may use."""
    shares = m.shares
    return Measured(m.value - m.bridged, shares.measured, m.meters)


def fleet_pue(sites: Sequence[SiteKPIs], *, min_coverage: float) -> KPI:
    """Fleet PUE = ΣE_DC / ΣE_IT over sites (not an average of site PUEs), labelled as such."""
    cats = sorted({s.category for s in sites})
    cat = f"PUE{cats[0]}" if len(cats) == 1 else "mixed categories"
    label = f"fleet PUE (ΣE_DC/ΣE_IT over {len(sites)} sites, {cat})"
    inputs = {}
    for s in sites:
        # Each site's PUE inputs on its own common ground.
        inputs[f"{s.site}.E_DC"] = s.inputs.get("pue.E_DC", s.inputs["E_DC"])
        inputs[f"{s.site}.E_IT"] = s.inputs.get("pue.E_IT", s.inputs["E_IT"])
    cov, held = _gate("fleet_pue", "", label, inputs, min_coverage)
    if held:
        return held
    if not sites:
        return KPI("fleet_pue", None, "", label, cov, "no sites")
    dc = sum(m.value for k, m in inputs.items() if k.endswith(".E_DC"))
    it = sum(m.value for k, m in inputs.items() if k.endswith(".E_IT"))
    if it <= 0:
        return _graded(KPI("fleet_pue", None, "", label, cov, "E_IT is zero"), inputs, min_coverage)
    return _graded(KPI("fleet_pue", dc / it, "", label, cov), inputs, min_coverage)


__all__ = [
    "KPI",
    "Instrument",
    "Measured",
    "RoleSeries",
    "RoleSums",
    "SiteKPIs",
    "Window",
    "common_ground",
    "contract_wh_in_window",
    "cue",
    "erf",
    "fleet_pue",
    "grid_energy",
    "hourly_cfe",
    "interval_emissions_kg",
    "interval_factors",
    "location_emissions",
    "market_emissions",
    "on_ground",
    "ppue",
    "pue",
    "pue_label",
    "ref",
    "role_sum",
    "site_kpis",
    "wue",
]
