"""Data-centre KPIs as pure functions of energy over a window.

Every KPI is computed on **energy summed over the window** (e.g. PUE = ΣE_DC / ΣE_IT), never as
a mean of instantaneous ratios: a quiet minute must not weigh like a busy one (The Green Grid;
ISO/IEC 30134-2; EU Delegated Regulation 2024/1364 Annex III). Every result is a :class:`KPI`
carrying the coverage of each input (share of the window with data); below ``min_coverage``
the value is withheld (None) with the reason, never filled in.

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
  ``zone``.
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
* ERF = E_heat_reuse / E_DC; WUE = water (L) / E_IT (kWh).
* Fleet PUE = ΣE_DC / ΣE_IT across sites, labelled as such (not an average of site PUEs).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from operator import sub
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from greendc._errors import KPIError
from greendc.config import Contract, Site
from greendc.factors import HOUR_SECONDS, Factor, FactorTable, HourlyFactors
from greendc.model import Role

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
    """A quantity summed over a window, with its coverage (0..1).

    ``meters`` is how many meters contributed; 0 means the site has none for this input.
    """

    value: float
    coverage: float
    meters: int = 1


@dataclass(frozen=True)
class KPI:
    """One KPI result: the value (None when withheld), unit, label and input coverage."""

    name: str
    value: float | None
    unit: str
    label: str
    coverage: Mapping[str, float] = field(default_factory=dict)
    withheld: str | None = None
    detail: str = ""
    not_metered: bool = False  # withheld because the site has no meter for an input
    zone: str | None = None  # the zone of a per-zone KPI (pPUE), None for a site KPI


def _gate(
    name: str,
    unit: str,
    label: str,
    inputs: Mapping[str, Measured],
    min_coverage: float,
) -> tuple[dict[str, float], KPI | None]:
    """Coverage per input, and a withheld KPI if an input is absent or under-covered."""
    cov = {k: m.coverage for k, m in inputs.items()}
    for key, m in inputs.items():
        if m.meters == 0:
            return cov, KPI(name, None, unit, label, cov, f"no meter for {key}", not_metered=True)
    low = [k for k, m in inputs.items() if m.coverage < min_coverage]
    if low:
        worst = min(cov[k] for k in low)
        reason = (
            f"coverage of {', '.join(low)} is {worst:.1%}, below the minimum {min_coverage:.0%}"
        )
        return cov, KPI(name, None, unit, label, cov, reason)
    return cov, None


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
        return KPI(name, None, unit, label, cov, zero_reason or f"{denominator} is zero")
    return KPI(name, numerator / (den / denominator_per), unit, label, cov)


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
        return KPI("ref", None, "ratio", label, cov, "E_DC is zero")
    raw = (max(e_res_onsite.value, 0.0) + certificates_wh) / e_dc.value
    detail = f"capped at 1 (uncapped {raw:.3f})" if raw > 1 else ""
    return KPI("ref", min(raw, 1.0), "ratio", label, cov, detail=detail)


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
        return KPI("scope2_location", kg, "kgCO2e", label + " (hourly)", cov, detail=detail)
    cov, held = _gate("scope2_location", "kgCO2e", label, inputs, min_coverage)
    if held:
        return held
    kg = e_grid.value / 1000.0 * factor.value
    return KPI("scope2_location", kg, "kgCO2e", label, cov, detail=detail)


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
    cov, held = _gate("scope2_market", "kgCO2e", label, {"E_grid": e_grid}, min_coverage)
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
    return KPI("scope2_market", kg, "kgCO2e", label, cov, detail=detail)


def cue(emissions: KPI, e_it: Measured, *, min_coverage: float) -> KPI:
    """CUE = CO2e (of the given emissions KPI) / E_IT kWh, in kgCO2e/kWh."""
    label = f"CUE ({emissions.label})"
    cov, held = _gate("cue", "kgCO2e/kWh", label, {"E_IT": e_it}, min_coverage)
    cov = {**emissions.coverage, **cov}
    if held:
        return replace(held, coverage=cov)
    if emissions.value is None:
        return KPI(
            "cue", None, "kgCO2e/kWh", label, cov, f"emissions withheld: {emissions.withheld}"
        )
    if e_it.value <= 0:
        return KPI("cue", None, "kgCO2e/kWh", label, cov, "E_IT is zero")
    return KPI("cue", emissions.value / (e_it.value / 1000.0), "kgCO2e/kWh", label, cov)


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
        return KPI("cfe", None, "ratio", label, cov, "no published carbon-free share for the zone")
    load = _clipped(consumption_wh)
    total = sum(load)
    if total <= 0:
        return KPI("cfe", None, "ratio", label, cov, "E_DC is zero")
    cfe_wh = 0.0
    for hour_load, clean in zip(load, clean_wh, strict=True):
        matched = min(max(clean, 0.0), hour_load)
        cfe_wh += matched + (hour_load - matched) * grid_cfe_share
    return KPI("cfe", float(cfe_wh / total), "ratio", label, cov)


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
    total over the meters of ``roles`` (in ``zone`` if given), its per-interval form, the
    lowest coverage among those meters and how many there are.
    """

    def sum_role(self, roles: Sequence[Role], zone: str | None) -> tuple[Measured, list[float]]:
        """Signed sum over the meters of ``roles`` (in ``zone``): total and per interval."""
        ...


def role_sum(
    site: Site,
    energies: Mapping[str, IntervalSeries] | RoleSums,
    window: Window,
    roles: Sequence[Role],
    interval_seconds: int,
    zone: str | None = None,
) -> tuple[Measured, list[float]]:
    """Signed sum over the meters of ``roles`` (in ``zone`` if given): total and per interval.

    The one role sum: the KPIs, the live path (through :class:`RoleSums`) and the report's
    daily rows all take it from here. The per-meter series hold numpy arrays and are summed
    as such (a month of minutes per meter); the result is a plain list, the form the live
    path gives, and everything below is plain Python over it.
    """
    if not isinstance(energies, Mapping):
        return energies.sum_role(roles, zone)
    summed: Any = None  # an array of the series' amounts once a meter has one
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
        signed = m.sign * part.amount
        summed = signed if summed is None else summed + signed
        coverages.append(part.coverage())
    coverage = min(coverages) if coverages else 1.0
    per_interval: list[float] = (
        summed.tolist() if summed is not None else [0.0] * (window.seconds // interval_seconds)
    )
    return Measured(sum(per_interval, 0.0), coverage, count), per_interval


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


RoleTotal = Callable[[Sequence[Role]], tuple[Measured, list[float]]]


def grid_energy(total: RoleTotal) -> tuple[Measured, list[float]]:
    """E_grid of a site over a window: total and per interval, from its role sums.

    ``total(roles)`` is the signed sum over the site's meters of ``roles`` (as
    :func:`site_kpis` computes it, or :class:`RoleSums` in the live path). The site's
    ``grid_import`` meters when it has any; otherwise, per interval, max(0, E_DC −
    E_renewable_onsite − E_generator): an interval of surplus exports nothing to the
    grid figure, and it does not cancel the grid energy of another interval. The live
    figures and the report both take E_grid from here.
    """
    e_import, import_i = total([Role.GRID_IMPORT])
    if e_import.meters:
        return e_import, import_i
    e_dc, dc_i = total([Role.FACILITY])
    e_ren, ren_i = total([Role.RENEWABLE_ONSITE])
    e_gen, gen_i = total([Role.GENERATOR])
    grid_i = _clipped(map(sub, map(sub, dc_i, ren_i), gen_i))
    parts = [e_dc] + [m for m in (e_ren, e_gen) if m.meters]
    return Measured(sum(grid_i, 0.0), min(p.coverage for p in parts), e_dc.meters), grid_i


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
    """
    if interval_seconds is None:
        if not isinstance(energies, Mapping):
            raise KPIError("interval_seconds is required with summed energies")
        first = next(iter(energies.values()), None)
        interval_seconds = first.interval_seconds if first is not None else 60
    step = interval_seconds

    sums: dict[tuple[tuple[Role, ...], str | None], tuple[Measured, list[float]]] = {}

    def total(roles: Sequence[Role], zone: str | None = None) -> tuple[Measured, list[float]]:
        key = (tuple(roles), zone)
        if key not in sums:  # grid_energy asks again for the roles summed here
            sums[key] = role_sum(site, energies, window, roles, step, zone)
        return sums[key]

    e_dc, dc_i = total([Role.FACILITY])
    e_it, _ = total([Role.IT])
    e_ren, ren_i = total([Role.RENEWABLE_ONSITE])
    e_gen, _ = total([Role.GENERATOR])
    e_reuse, _ = total([Role.HEAT_REUSE])
    water, _ = total([Role.WATER])
    e_grid, grid_i = grid_energy(total)

    tz = site.timezone
    contract_wh = {id(c): contract_wh_in_window(c, window, tz) for c in site.contracts}
    certificates_wh = sum(contract_wh.values())
    inputs = {
        "E_DC": e_dc,
        "E_IT": e_it,
        "E_grid": e_grid,
        "E_renewable_onsite": e_ren,
        "E_generator": e_gen,
        "E_heat_reuse": e_reuse,
        "water_l": water,
        "E_certificates": Measured(certificates_wh, 1.0, len(site.contracts)),
    }

    kpis: dict[str, KPI] = {}
    kpis["pue"] = pue(
        e_dc,
        e_it,
        category=site.pue_category,
        window_seconds=window.seconds,
        min_coverage=min_coverage,
    )
    zones = sorted({m.zone for m in site.meters if m.role is Role.IT and m.zone is not None})
    for z in zones:
        z_it, _ = total([Role.IT], z)
        z_oh, _ = total(OVERHEAD_ROLES, z)
        if z_oh.meters == 0:
            # A zone without its own overhead meters has pPUE 1 by construction; say so.
            k = ppue(z, z_it, Measured(0.0, 1.0, 1), min_coverage=min_coverage)
            k = replace(k, detail="no overhead meter in this zone")
        else:
            k = ppue(z, z_it, z_oh, min_coverage=min_coverage)
        kpis[k.name] = k
    kpis["ref"] = ref(e_dc, e_ren, certificates_wh, min_coverage=min_coverage)
    r = kpis["ref"]
    kpis["renewable_share"] = replace(r, name="renewable_share", label="renewable share (= REF)")

    zone = factors.zone(site.grid_zone)
    if hourly_factors is not None:
        loc = location_emissions(
            e_grid,
            zone.grid_average,
            min_coverage=min_coverage,
            grid_wh_per_interval=grid_i,
            factors_per_interval=interval_factors(window, step, hourly_factors),
        )
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
    kpis["cue"] = cue(loc, e_it, min_coverage=min_coverage)

    dc_start, dc_h = _hourly(dc_i, window, step)
    _, clean_h = _hourly(_clipped(ren_i), window, step)
    cfe_inputs = {"E_DC": e_dc}
    if e_ren.meters:
        cfe_inputs["E_renewable_onsite"] = e_ren
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
    kpis["cfe"] = replace(c, detail=cfe_detail)

    if e_reuse.meters:
        kpis["erf"] = erf(e_reuse, e_dc, min_coverage=min_coverage)
    if water.meters:
        kpis["wue"] = wue(water, e_it, min_coverage=min_coverage)
    return SiteKPIs(site.name, window, site.pue_category, inputs, kpis, grid_i)


def fleet_pue(sites: Sequence[SiteKPIs], *, min_coverage: float) -> KPI:
    """Fleet PUE = ΣE_DC / ΣE_IT over sites (not an average of site PUEs), labelled as such."""
    cats = sorted({s.category for s in sites})
    cat = f"PUE{cats[0]}" if len(cats) == 1 else "mixed categories"
    label = f"fleet PUE (ΣE_DC/ΣE_IT over {len(sites)} sites, {cat})"
    inputs = {}
    for s in sites:
        inputs[f"{s.site}.E_DC"] = s.inputs["E_DC"]
        inputs[f"{s.site}.E_IT"] = s.inputs["E_IT"]
    cov, held = _gate("fleet_pue", "", label, inputs, min_coverage)
    if held:
        return held
    if not sites:
        return KPI("fleet_pue", None, "", label, cov, "no sites")
    dc = sum(s.inputs["E_DC"].value for s in sites)
    it = sum(s.inputs["E_IT"].value for s in sites)
    if it <= 0:
        return KPI("fleet_pue", None, "", label, cov, "E_IT is zero")
    return KPI("fleet_pue", dc / it, "", label, cov)


__all__ = [
    "KPI",
    "Instrument",
    "Measured",
    "SiteKPIs",
    "Window",
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
    "ppue",
    "pue",
    "pue_label",
    "ref",
    "role_sum",
    "site_kpis",
    "wue",
]
