"""The report's figures: per site and fleet, for a month (or a year), from a data source.

Energy per meter comes from :func:`greendc.energy.energy_by_meter` (water from
:func:`greendc.energy.water_series`) and every KPI from :func:`greendc.kpi.site_kpis` and
:func:`greendc.kpi.fleet_pue`; this module only reads, arranges and labels. The result is a
:class:`Report`: tidy :class:`Row` objects (one per site and KPI, with unit, coverage,
status and a note) and :class:`DailyRow` objects, which every renderer draws from, so the
CSV, XLSX, HTML and PDF show the same numbers.

Every figure carries a quality word (:class:`greendc.quality.Quality`): ``ok``,
``incomplete`` (its inputs cover less than the minimum coverage: shown with its coverage,
never filled in) or ``withheld`` (nothing to compute: no meter, no data), and its measured,
bridged and missing shares. Contracted energy is ``from contracts``. Counter events (spikes
dropped, resets, meter swaps, rollovers, gaps bridged) are listed in the site's notes.
"""

from __future__ import annotations

import math
import multiprocessing
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from enum import StrEnum

import numpy as np
import pandas as pd

from greendc._errors import KPIError
from greendc.config import KPISettings, Settings, Site
from greendc.energy import IntervalSeries, energy_by_meter, water_series
from greendc.exporters.report.periods import REPORT_INTERVAL_SECONDS, Period
from greendc.exporters.report.source import Source
from greendc.factors import (
    Factor,
    FactorTable,
    HourlyFactors,
    ZoneFactors,
    load_hourly_factors,
)
from greendc.kpi import (
    KPI,
    Measured,
    SiteKPIs,
    Window,
    contract_wh_in_window,
    fleet_pue,
    role_sum,
    site_kpis,
)
from greendc.model import Role
from greendc.quality import Quality
from greendc.steps import CounterEvent, counter_rules

FLEET = "fleet"
EMISSION_KPIS = ("scope2_location", "scope2_market", "cue", "cfe")
# Figures compared with the previous month and the same month last year.
DELTA_KPIS = ("E_DC", "E_IT", "pue", "ref", "scope2_location", "scope2_market", "cue")
OVERHEAD = (Role.COOLING, Role.LIGHTING, Role.OTHER_OVERHEAD)


class RowStatus(StrEnum):
    """Where a row's figure stands; the value is what the files print.

    The measured figures carry the quality words of :class:`greendc.quality.Quality` (the
    same words as /metrics and the EED export); contract figures are not measured.
    """

    OK = Quality.OK.value
    INCOMPLETE = Quality.INCOMPLETE.value  # computed, under the minimum coverage
    WITHHELD = Quality.WITHHELD.value  # nothing to compute (see the note, and not_metered)
    FROM_CONTRACTS = "from contracts"  # not measured: the site's GO/REC/PPA contracts


@dataclass(frozen=True)
class Row:
    """One tidy figure: a KPI of a site (or the fleet) over the period."""

    site: str
    kpi: str
    label: str
    value: float | None
    unit: str
    coverage: float | None
    status: RowStatus
    note: str = ""
    prev_month: float | None = None
    change_prev_month: float | None = None  # relative change, 0.05 = +5 %
    last_year: float | None = None
    change_last_year: float | None = None
    measured_share: float | None = None  # of the period: measured, bridged (missing = rest)
    bridged_share: float | None = None
    not_metered: bool = False  # withheld because the site has no meter for an input

    @property
    def missing_share(self) -> float | None:
        """The share of the period no reading accounts for."""
        if self.measured_share is None or self.bridged_share is None:
            return None
        return max(0.0, 1.0 - self.measured_share - self.bridged_share)


@dataclass(frozen=True)
class DailyRow:
    """One site's (or the fleet's) figures for one local calendar day (kWh, tCO2e, ratios)."""

    site: str
    day: date
    e_dc_kwh: float | None
    e_it_kwh: float | None
    cooling_kwh: float | None
    lighting_kwh: float | None
    other_overhead_kwh: float | None
    renewable_onsite_kwh: float | None
    certificates_kwh: float
    pue: float | None
    ref: float | None
    scope2_location_t: float | None
    scope2_market_t: float | None
    coverage_dc: float
    coverage_it: float


DAILY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("site", ""),
    ("day", ""),
    ("e_dc_kwh", "kWh"),
    ("e_it_kwh", "kWh"),
    ("cooling_kwh", "kWh"),
    ("lighting_kwh", "kWh"),
    ("other_overhead_kwh", "kWh"),
    ("renewable_onsite_kwh", "kWh"),
    ("certificates_kwh", "kWh"),
    ("pue", ""),
    ("ref", "ratio"),
    ("scope2_location_t", "tCO2e"),
    ("scope2_market_t", "tCO2e"),
    ("coverage_dc", "ratio"),
    ("coverage_it", "ratio"),
)


@dataclass
class SiteReport:
    """Everything the report says about one site."""

    site: Site
    window: Window
    rows: list[Row]
    daily: list[DailyRow]
    notes: list[str]
    kpis: SiteKPIs | None = None


@dataclass
class Report:
    """The whole report: period, per-site and fleet figures, notes."""

    period: Period
    source: str
    generated_utc: datetime
    sites: list[SiteReport]
    fleet_rows: list[Row]
    fleet_daily: list[DailyRow]
    notes: list[str] = field(default_factory=list)
    min_coverage: float = 0.9

    @property
    def rows(self) -> list[Row]:
        """All tidy rows: every site's, then the fleet's."""
        return [r for s in self.sites for r in s.rows] + self.fleet_rows

    @property
    def daily(self) -> list[DailyRow]:
        """All daily rows: every site's, then the fleet's."""
        return [d for s in self.sites for d in s.daily] + self.fleet_daily

    @property
    def computed(self) -> bool:
        """Whether at least one measured figure is ok (contract figures do not count)."""
        return any(r.value is not None and r.status == RowStatus.OK for r in self.rows)


# ---------------------------------------------------------------------------------------
# Energy from samples


def site_energies(
    site: Site,
    samples: pd.DataFrame,
    window: Window,
    *,
    max_gap_seconds: float,
    kpi: KPISettings | None = None,
) -> dict[str, IntervalSeries]:
    """Per-meter interval series over ``window`` (water meters in litres), with each
    meter's counter rules (plausibility bound, register width) from the configuration."""
    water = {m.name for m in site.meters if m.role is Role.WATER}
    if samples.empty:
        return {}
    settings = kpi or KPISettings(max_gap_seconds=max_gap_seconds)
    rules = {m.name: counter_rules(site, m, settings) for m in site.meters}
    is_water = samples["meter"].isin(water)
    energy = energy_by_meter(
        samples.loc[~is_water, ["meter", "ts_s", "energy_wh", "power_w"]],
        interval_seconds=REPORT_INTERVAL_SECONDS,
        max_gap_seconds=max_gap_seconds,
        start_s=window.start_s,
        end_s=window.end_s,
        rules=rules,
    )
    for meter, group in samples.loc[is_water].groupby("meter", sort=False):
        r = rules.get(str(meter))
        energy[str(meter)] = water_series(
            group["ts_s"].to_numpy(dtype=np.float64),
            group["water_l"].to_numpy(dtype=np.float64),
            interval_seconds=REPORT_INTERVAL_SECONDS,
            max_gap_seconds=max_gap_seconds,
            rollover_l=r.rollover if r else None,
            max_rate_l_per_h=r.max_power_w if r else None,
            start_s=window.start_s,
            end_s=window.end_s,
        )
    return energy


def read_energies(
    source: Source,
    site: Site,
    window: Window,
    *,
    max_gap_seconds: float,
    kpi: KPISettings | None = None,
) -> tuple[dict[str, IntervalSeries], list[str]]:
    """Read a site's samples around ``window`` and turn them into interval series.

    Samples up to ``max_gap_seconds`` outside the window are read too, so the steps that
    cross its edges are counted in proportion to time. Also returns hints: meters whose
    readings come further apart than ``kpi.max_gap_seconds`` (every step of theirs is a gap).
    """
    margin_ms = math.ceil(max_gap_seconds) * 1000
    frame = source.samples(
        site.name,
        [m.name for m in site.meters],
        window.start_s * 1000 - margin_ms,
        window.end_s * 1000 + margin_ms,
    )
    energies = site_energies(site, frame, window, max_gap_seconds=max_gap_seconds, kpi=kpi)
    return energies, sparse_hints(frame, max_gap_seconds)


def sparse_hints(frame: pd.DataFrame, max_gap_seconds: float) -> list[str]:
    """A hint per meter whose median time between readings exceeds ``max_gap_seconds``."""
    out: list[str] = []
    if frame.empty:
        return out
    for meter, group in frame.groupby("meter", sort=True):
        ts = np.sort(group["ts_s"].to_numpy(dtype=np.float64))
        if len(ts) < 2:
            continue
        median = float(np.median(np.diff(ts)))
        if median > max_gap_seconds:
            out.append(
                f"meter {meter} reports every {median:.0f} s, more than kpi.max_gap_seconds "
                f"({max_gap_seconds:.0f} s): each of its steps counts as a gap (power is "
                "not used, counters are only bridged); raise kpi.max_gap_seconds above its "
                "reporting interval"
            )
    return out


def counter_notes(energies: Mapping[str, IntervalSeries]) -> list[str]:
    """One note per meter with counter events: what happened, how often, first when."""
    out = []
    for meter in sorted(energies):
        events = energies[meter].events
        if not events:
            continue
        counts: dict[CounterEvent, list[float]] = {}
        for t, kind in events:
            counts.setdefault(kind, []).append(t)
        parts = []
        for kind in CounterEvent:
            times = counts.get(kind)
            if times:
                first = datetime.fromtimestamp(min(times), UTC).strftime("%Y-%m-%d %H:%M UTC")
                parts.append(f"{len(times)} {kind.value} (first {first})")
        out.append(f"meter {meter}: counter events: {', '.join(parts)}")
    return out


# ---------------------------------------------------------------------------------------
# KPIs with a missing emission factor


def _placeholder_zone(name: str) -> ZoneFactors:
    # Lets site_kpis run for the non-emission KPIs; every figure it derives from this factor
    # is replaced by a withheld KPI in kpis_for() before anyone sees it.
    f = Factor(
        value=0.0,
        unit="kgCO2e/kWh",
        year=2000,
        basis="direct",
        boundary="production",
        source="placeholder",
    )
    return ZoneFactors(name=name, grid_average=f)


def kpis_for(
    site: Site,
    energies: Mapping[str, IntervalSeries],
    window: Window,
    factors: FactorTable,
    min_coverage: float,
) -> tuple[SiteKPIs, str | None]:
    """``site_kpis`` for a window; when the site's grid zone has no factor, the emission
    KPIs are withheld with the reason (returned too) and the others are still computed."""
    try:
        factors.zone(site.grid_zone)
    except KPIError as exc:
        reason = str(exc)
        table = FactorTable(
            version=1, zones={**factors.zones, site.grid_zone: _placeholder_zone(site.grid_zone)}
        )
        out = site_kpis(
            site, energies, window, table, min_coverage, interval_seconds=REPORT_INTERVAL_SECONDS
        )
        kpis = dict(out.kpis)
        for name in EMISSION_KPIS:
            k = kpis[name]
            kpis[name] = KPI(name, None, k.unit, k.label, k.coverage, reason)
        return replace(out, kpis=kpis), reason
    hourly = _hourly_factors(site)
    out = site_kpis(
        site,
        energies,
        window,
        factors,
        min_coverage,
        interval_seconds=REPORT_INTERVAL_SECONDS,
        hourly_factors=hourly,
    )
    return out, None


_HOURLY_CACHE: dict[str, HourlyFactors] = {}


def _hourly_factors(site: Site) -> HourlyFactors | None:
    """The site's hourly grid factor series, read once per file (None when not configured)."""
    if site.hourly_factors_file is None:
        return None
    key = str(site.hourly_factors_file)
    if key not in _HOURLY_CACHE:
        _HOURLY_CACHE[key] = load_hourly_factors(site.hourly_factors_file)
    return _HOURLY_CACHE[key]


# ---------------------------------------------------------------------------------------
# Rows


NOT_METERED = "not metered: no meter with this role"


def _measured_row(
    site: str, key: str, label: str, m: Measured, scale: float, unit: str, min_cov: float
) -> Row:
    """A total: ok, incomplete (shown with its coverage and shares) or withheld."""
    if m.meters == 0:
        status = RowStatus.WITHHELD
        return Row(site, key, label, None, unit, None, status, NOT_METERED, not_metered=True)
    shares = m.shares
    if m.coverage <= 0:
        note = "no data in the period"
        return Row(
            site,
            key,
            label,
            None,
            unit,
            0.0,
            RowStatus.WITHHELD,
            note,
            measured_share=0.0,
            bridged_share=0.0,
        )
    quality = Quality.of(True, m.coverage, min_cov)
    notes = []
    if quality is Quality.INCOMPLETE:
        notes.append(f"coverage {m.coverage:.1%} is below the minimum {min_cov:.0%}")
    if m.bridged:
        notes.append(f"{m.bridged * scale:.1f} {unit} bridged across gaps")
    return Row(
        site,
        key,
        label,
        m.value * scale,
        unit,
        m.coverage,
        RowStatus(quality),
        "; ".join(notes),
        measured_share=shares.measured,
        bridged_share=shares.bridged,
    )


def _kpi_row(site: str, k: KPI, *, scale: float = 1.0, unit: str | None = None) -> Row:
    cov = k.covered if (k.shares is not None or k.coverage) else None
    u = k.unit if unit is None else unit
    measured = k.shares.measured if k.shares is not None else None
    bridged = k.shares.bridged if k.shares is not None else None
    if k.value is None:
        reason = k.withheld or ""
        if k.not_metered:
            reason = f"not metered: {reason}"
        return Row(
            site,
            k.name,
            k.label,
            None,
            u,
            cov,
            RowStatus.WITHHELD,
            reason,
            measured_share=measured,
            bridged_share=bridged,
            not_metered=k.not_metered,
        )
    return Row(
        site,
        k.name,
        k.label,
        k.value * scale,
        u,
        cov,
        RowStatus(k.quality),
        k.detail,
        measured_share=measured,
        bridged_share=bridged,
    )


def contract_kwh(site: Site, window: Window) -> dict[str, float]:
    """Contracted renewable energy in the window by kind: ``go_rec`` and ``ppa`` (kWh)."""
    out = {"go_rec": 0.0, "ppa": 0.0}
    for c in site.contracts:
        key = "ppa" if c.kind == "ppa" else "go_rec"
        out[key] += contract_wh_in_window(c, window, site.timezone) / 1000.0
    return out


def site_rows(
    site: Site, out: SiteKPIs, min_cov: float, factor_note: str | None, factors: FactorTable
) -> list[Row]:
    """The tidy rows of one site from its KPIs over the period."""
    s = site.name
    inp = out.inputs
    rows = [
        _measured_row(s, "E_DC", "total energy E_DC", inp["E_DC"], 1e-3, "kWh", min_cov),
        _measured_row(s, "E_IT", "IT energy E_IT", inp["E_IT"], 1e-3, "kWh", min_cov),
        _measured_row(s, "E_grid", "grid energy", inp["E_grid"], 1e-3, "kWh", min_cov),
        _measured_row(
            s, "E_generator", "backup generator energy", inp["E_generator"], 1e-3, "kWh", min_cov
        ),
    ]
    onsite = _measured_row(
        s,
        "E_renewable_onsite",
        "renewable energy, on-site",
        inp["E_renewable_onsite"],
        1e-3,
        "kWh",
        min_cov,
    )
    rows.append(onsite)
    kinds = contract_kwh(site, out.window)
    refs = {
        k: "; ".join(
            c.reference or f"{c.kind} {c.month}"
            for c in site.contracts
            if ("ppa" if c.kind == "ppa" else "go_rec") == k
        )
        for k in kinds
    }
    for key, label in (("go_rec", "renewable energy, GO/REC"), ("ppa", "renewable energy, PPA")):
        note = refs[key] + (" (prorated to the period)" if refs[key] else "no contract")
        rows.append(
            Row(
                s,
                f"E_renewable_{key}",
                label,
                kinds[key],
                "kWh",
                1.0,
                RowStatus.FROM_CONTRACTS,
                note,
            )
        )
    if onsite.value is not None or onsite.not_metered:
        total = (onsite.value or 0.0) + kinds["go_rec"] + kinds["ppa"]
        # Without an on-site meter the total is contracts only: not a measured figure.
        status = onsite.status if onsite.value is not None else RowStatus.FROM_CONTRACTS
        rows.append(
            Row(
                s,
                "E_renewable",
                "renewable energy, total",
                total,
                "kWh",
                onsite.coverage,
                status,
                "on-site + GO/REC + PPA",
                measured_share=onsite.measured_share,
                bridged_share=onsite.bridged_share,
            )
        )
    else:
        rows.append(
            Row(
                s,
                "E_renewable",
                "renewable energy, total",
                None,
                "kWh",
                onsite.coverage,
                RowStatus.WITHHELD,
                "on-site renewable energy withheld",
            )
        )
    k = out.kpis
    rows.append(_kpi_row(s, k["pue"]))
    rows.extend(_kpi_row(s, v) for v in k.values() if v.zone is not None)
    rows.append(_kpi_row(s, k["ref"]))
    cite_loc = cite_mkt = ""
    if factor_note is None:
        zone = factors.zone(site.grid_zone)
        cite_loc = f"factor {zone.grid_average.value} {zone.grid_average.unit}: " + (
            zone.grid_average.citation
        )
        rm = zone.residual_mix or zone.grid_average
        cite_mkt = f"; rest at {rm.value} {rm.unit}: {rm.citation}"
    loc = _kpi_row(s, k["scope2_location"], scale=1e-3, unit="tCO2e")
    mkt = _kpi_row(s, k["scope2_market"], scale=1e-3, unit="tCO2e")
    if loc.value is not None:
        # The factor's citation, and what the KPI says about coverage and bridged energy.
        said = [p for p in k["scope2_location"].detail.split("; ") if "bridged" in p or "%" in p]
        hourly = "hourly factors; hours without one at the annual " if "hourly" in loc.label else ""
        loc = replace(loc, note="; ".join([hourly + cite_loc, *said]))
    if mkt.value is not None:
        mkt = replace(mkt, note=mkt.note + cite_mkt)
    rows.extend([loc, mkt, _kpi_row(s, k["cue"]), _kpi_row(s, k["cfe"])])
    for name, key, label, m in (
        ("erf", "E_heat_reuse", "heat energy reused", inp["E_heat_reuse"]),
        ("wue", "water_l", "water input", inp["water_l"]),
    ):
        unit, scale = ("L", 1.0) if key == "water_l" else ("kWh", 1e-3)
        rows.append(_measured_row(s, key, label, m, scale, unit, min_cov))
        if name in k:
            rows.append(_kpi_row(s, k[name]))
        else:
            label_k = "ERF (energy reuse factor)" if name == "erf" else "WUE"
            unit_k = "ratio" if name == "erf" else "L/kWh"
            rows.append(
                Row(
                    s,
                    name,
                    label_k,
                    None,
                    unit_k,
                    None,
                    RowStatus.WITHHELD,
                    NOT_METERED,
                    not_metered=True,
                )
            )
    return rows


def _change(now: float | None, before: float | None) -> float | None:
    if now is None or before is None or before == 0:
        return None
    return (now - before) / abs(before)


def with_deltas(
    rows: Sequence[Row],
    prev: Mapping[str, float | None],
    last: Mapping[str, float | None],
    keys: Sequence[str] = DELTA_KPIS,
) -> list[Row]:
    """Rows with previous-month and last-year values and relative changes where known."""
    out = []
    for r in rows:
        if r.kpi in keys:
            p, y = prev.get(r.kpi), last.get(r.kpi)
            r = replace(
                r,
                prev_month=p,
                change_prev_month=_change(r.value, p),
                last_year=y,
                change_last_year=_change(r.value, y),
            )
        out.append(r)
    return out


def _values(rows: Sequence[Row]) -> dict[str, float | None]:
    # An earlier period's figure is compared only when it is complete: a month that covers
    # a quarter of an hour, set against a full one, reads as a jump of thousands of percent.
    return {r.kpi: r.value for r in rows if r.status != RowStatus.INCOMPLETE}


# ---------------------------------------------------------------------------------------
# Daily


def _ok(m: Measured, min_cov: float, scale: float = 1e-3) -> float | None:
    return m.value * scale if m.meters and m.coverage >= min_cov else None


def site_daily(
    site: Site,
    energies: Mapping[str, IntervalSeries],
    period: Period,
    factors: FactorTable,
    min_cov: float,
) -> list[DailyRow]:
    """One row per local calendar day of the period."""
    out = []
    for day, w in period.days(site.timezone):
        k, _ = kpis_for(site, energies, w, factors, min_cov)

        def role(r: Role, _w: Window = w) -> float | None:
            return _ok(role_sum(site, energies, _w, [r], REPORT_INTERVAL_SECONDS).total, min_cov)

        loc, mkt = k.kpis["scope2_location"].value, k.kpis["scope2_market"].value
        out.append(
            DailyRow(
                site=site.name,
                day=day,
                e_dc_kwh=_ok(k.inputs["E_DC"], min_cov),
                e_it_kwh=_ok(k.inputs["E_IT"], min_cov),
                cooling_kwh=role(Role.COOLING),
                lighting_kwh=role(Role.LIGHTING),
                other_overhead_kwh=role(Role.OTHER_OVERHEAD),
                renewable_onsite_kwh=role(Role.RENEWABLE_ONSITE),
                certificates_kwh=k.inputs["E_certificates"].value / 1000.0,
                pue=k.kpis["pue"].value,
                ref=k.kpis["ref"].value,
                scope2_location_t=None if loc is None else loc / 1000.0,
                scope2_market_t=None if mkt is None else mkt / 1000.0,
                coverage_dc=k.inputs["E_DC"].coverage if k.inputs["E_DC"].meters else 0.0,
                coverage_it=k.inputs["E_IT"].coverage if k.inputs["E_IT"].meters else 0.0,
            )
        )
    return out


def _weighted(
    pairs: Sequence[tuple[float | None, float | None]], total: float | None
) -> float | None:
    """Σ value x weight / total, or None if any value or weight is missing or total is 0."""
    if not total or not pairs:
        return None
    acc = 0.0
    for v, w in pairs:
        if v is None or w is None:
            return None
        acc += v * w
    return acc / total


def fleet_daily(sites: Sequence[SiteReport]) -> list[DailyRow]:
    """Fleet days: sums over sites, a day's value withheld if any site's is (by local date)."""
    by_day: dict[date, list[DailyRow]] = {}
    for s in sites:
        for d in s.daily:
            by_day.setdefault(d.day, []).append(d)

    def total(rows: list[DailyRow], attr: str) -> float | None:
        vals = [getattr(r, attr) for r in rows]
        return None if any(v is None for v in vals) else float(sum(vals))

    out = []
    for day in sorted(by_day):
        rows = by_day[day]
        dc, it = total(rows, "e_dc_kwh"), total(rows, "e_it_kwh")
        ref_v = _weighted([(r.ref, r.e_dc_kwh) for r in rows], dc)
        out.append(
            DailyRow(
                site=FLEET,
                day=day,
                e_dc_kwh=dc,
                e_it_kwh=it,
                cooling_kwh=total(rows, "cooling_kwh"),
                lighting_kwh=total(rows, "lighting_kwh"),
                other_overhead_kwh=total(rows, "other_overhead_kwh"),
                renewable_onsite_kwh=total(rows, "renewable_onsite_kwh"),
                certificates_kwh=float(sum(r.certificates_kwh for r in rows)),
                pue=dc / it if dc is not None and it else None,
                ref=ref_v,
                scope2_location_t=total(rows, "scope2_location_t"),
                scope2_market_t=total(rows, "scope2_market_t"),
                coverage_dc=min(r.coverage_dc for r in rows),
                coverage_it=min(r.coverage_it for r in rows),
            )
        )
    return out


# ---------------------------------------------------------------------------------------
# Fleet


def _sum_rows(
    sites: Sequence[SiteReport], key: str, label: str, unit: str, *, skip_unmetered: bool = False
) -> Row:
    rows = [r for s in sites for r in s.rows if r.kpi == key]
    if skip_unmetered:
        rows = [r for r in rows if not r.not_metered]
    if not rows:
        note = "not metered: no site meters it"
        return Row(FLEET, key, label, None, unit, None, RowStatus.WITHHELD, note, not_metered=True)
    missing = [r.site for r in rows if r.value is None]
    covs = [r.coverage for r in rows if r.coverage is not None]
    cov = min(covs) if covs else None
    if missing:
        note = f"no figure for {', '.join(missing)}"
        return Row(FLEET, key, label, None, unit, cov, RowStatus.WITHHELD, note)
    measured = [Quality(r.status) for r in rows if r.status != RowStatus.FROM_CONTRACTS]
    status = RowStatus(Quality.worst(measured)) if measured else RowStatus.FROM_CONTRACTS
    note = f"sum over {len(rows)} sites"
    return Row(FLEET, key, label, float(sum(r.value for r in rows)), unit, cov, status, note)  # type: ignore[misc]


def fleet_rows(sites: Sequence[SiteReport], min_cov: float) -> list[Row]:
    """Fleet figures: sums of site figures; fleet PUE = ΣE_DC/ΣE_IT, labelled so."""
    rows = [
        _sum_rows(sites, "E_DC", "total energy ΣE_DC", "kWh"),
        _sum_rows(sites, "E_IT", "IT energy ΣE_IT", "kWh"),
        _sum_rows(sites, "E_grid", "grid energy", "kWh"),
        _sum_rows(sites, "E_generator", "backup generator energy", "kWh", skip_unmetered=True),
        _sum_rows(
            sites, "E_renewable_onsite", "renewable energy, on-site", "kWh", skip_unmetered=True
        ),
        _sum_rows(sites, "E_renewable_go_rec", "renewable energy, GO/REC", "kWh"),
        _sum_rows(sites, "E_renewable_ppa", "renewable energy, PPA", "kWh"),
        _sum_rows(sites, "E_renewable", "renewable energy, total", "kWh"),
    ]
    kpis = [s.kpis for s in sites if s.kpis is not None]
    if kpis:
        rows.append(_kpi_row(FLEET, fleet_pue(kpis, min_coverage=min_cov)))
    by_key = {r.kpi: r for r in rows}
    dc = by_key["E_DC"].value
    dcs = {r.site: r.value for s in sites for r in s.rows if r.kpi == "E_DC"}
    refs = [(r.value, dcs.get(r.site)) for s in sites for r in s.rows if r.kpi == "ref"]
    label = "fleet REF (Σ renewable counted / ΣE_DC)"
    v = _weighted(refs, dc)
    if v is not None:
        ref_status = RowStatus(
            Quality.worst(
                [Quality(r.status) for s in sites for r in s.rows if r.kpi == "ref"]
                + [Quality(by_key["E_DC"].status)]
            )
        )
        rows.append(Row(FLEET, "ref", label, v, "ratio", by_key["E_DC"].coverage, ref_status))
    else:
        rows.append(
            Row(
                FLEET,
                "ref",
                label,
                None,
                "ratio",
                None,
                RowStatus.WITHHELD,
                "a site's REF is withheld",
            )
        )
    loc = _sum_rows(sites, "scope2_location", "Scope 2 location-based", "tCO2e")
    mkt = _sum_rows(sites, "scope2_market", "Scope 2 market-based", "tCO2e")
    rows += [loc, mkt]
    it = by_key["E_IT"].value
    label = "fleet CUE (Σ location-based CO2e / ΣE_IT)"
    if loc.value is not None and it:
        cue_status = Quality.worst([Quality(loc.status), Quality(by_key["E_IT"].status)])
        rows.append(
            Row(
                FLEET,
                "cue",
                label,
                loc.value * 1000 / it,
                "kgCO2e/kWh",
                loc.coverage,
                RowStatus(cue_status),
            )
        )
    else:
        rows.append(
            Row(
                FLEET,
                "cue",
                label,
                None,
                "kgCO2e/kWh",
                None,
                RowStatus.WITHHELD,
                "emissions or E_IT withheld",
            )
        )
    return rows


def fleet_history(
    sites: Sequence[SiteReport], min_cov: float, attr: str
) -> dict[str, float | None]:
    """The fleet's figures for an earlier period (``attr``: ``prev_month`` or ``last_year``).

    Built from the sites' figures of that period by the same rules as the fleet's own
    (:func:`fleet_rows`, :func:`greendc.kpi.fleet_pue`), so the comparison is like with like.
    """
    past = [
        SiteReport(s.site, s.window, [replace(r, value=getattr(r, attr)) for r in s.rows], [], [])
        for s in sites
    ]
    values = _values(fleet_rows(past, min_cov))
    kpis: list[SiteKPIs] = []
    for s, p in zip(sites, past, strict=True):
        by = _values(p.rows)
        dc, it = by.get("E_DC"), by.get("E_IT")
        if dc is None or it is None:
            kpis = []
            break
        inputs = {"E_DC": Measured(dc * 1000.0, 1.0, 1), "E_IT": Measured(it * 1000.0, 1.0, 1)}
        kpis.append(SiteKPIs(s.site.name, s.window, s.site.pue_category, inputs, {}))
    values["fleet_pue"] = fleet_pue(kpis, min_coverage=min_cov).value if kpis else None
    return values


# ---------------------------------------------------------------------------------------
# The whole report


def _notes_for(
    site: Site,
    rows: Sequence[Row],
    factor_note: str | None,
    min_cov: float,
    *,
    residual_published: bool,
) -> list[str]:
    notes = []
    if not any(m.role is Role.IT for m in site.meters):
        notes.append("no IT meter is configured: PUE, CUE and WUE cannot be computed")
    if factor_note:
        notes.append(f"emission factor missing: {factor_note}")
    for r in rows:
        if r.status == RowStatus.WITHHELD and r.note:
            notes.append(f"{r.kpi} withheld: {r.note}")
        elif r.status == RowStatus.INCOMPLETE:
            notes.append(f"{r.kpi} incomplete: {r.note}")
        elif r.coverage is not None and r.status == RowStatus.OK and r.coverage < 1.0:
            notes.append(f"{r.kpi}: inputs cover {r.coverage:.1%} of the period (gaps not filled)")
        elif r.kpi == "cfe" and r.note and r.value is not None:
            notes.append(f"cfe: {r.note}")
        if r.kpi == "scope2_market" and r.value is not None and not residual_published:
            # Said whatever the row's coverage: it is where the figure's factor came from.
            notes.append(
                "market-based: no residual mix is published for the zone; grid average used"
            )
    return list(dict.fromkeys(notes))


def site_report(
    settings: Settings,
    source: Source,
    site: Site,
    period: Period,
    factors: FactorTable,
    *,
    with_history: bool = True,
) -> SiteReport:
    """One site's figures for ``period``, with deltas to the previous and last year's period."""
    min_cov = settings.kpi.min_coverage
    gap = settings.kpi.max_gap_seconds
    w = period.window(site.timezone)
    energies, hints = read_energies(source, site, w, max_gap_seconds=gap, kpi=settings.kpi)
    out, factor_note = kpis_for(site, energies, w, factors, min_cov)
    rows = site_rows(site, out, min_cov, factor_note, factors)
    if with_history:
        history = []
        for p in (period.previous(), period.last_year()):
            pw = p.window(site.timezone)
            e, _ = read_energies(source, site, pw, max_gap_seconds=gap, kpi=settings.kpi)
            hk, _ = kpis_for(site, e, pw, factors, min_cov)
            history.append(_values(site_rows(site, hk, min_cov, factor_note, factors)))
        rows = with_deltas(rows, history[0], history[1])
    daily = site_daily(site, energies, period, factors, min_cov) if period.month else []
    residual = factor_note is None and factors.zone(site.grid_zone).residual_mix is not None
    notes = _notes_for(site, rows, factor_note, min_cov, residual_published=residual)
    notes += hints + counter_notes(energies)
    measured = [r for r in rows if r.status != RowStatus.FROM_CONTRACTS]
    if not any(r.value is not None for r in measured):
        notes.insert(0, f"no data for {site.name} in {period.label}: nothing could be computed")
    elif not any(r.value is not None and r.status == RowStatus.OK for r in measured):
        notes.insert(
            0,
            f"no measured figure for {site.name} in {period.label} reached the minimum "
            f"coverage of {min_cov:.0%}: every figure is incomplete or withheld",
        )
    return SiteReport(site, w, rows, daily, notes, out)


def _site_job(
    job: tuple[Callable[[], Source], Settings, Site, Period, FactorTable, bool],
) -> SiteReport:
    """Worker-process entry: open a source of its own and compute one site."""
    factory, settings, site, period, factors, with_history = job
    source = factory()
    try:
        return site_report(settings, source, site, period, factors, with_history=with_history)
    finally:
        source.close()


def build_report(
    settings: Settings,
    source: Source,
    period: Period,
    factors: FactorTable,
    *,
    sites: Sequence[Site] | None = None,
    with_deltas_from_history: bool = True,
    now: datetime | None = None,
    workers: int = 1,
    source_factory: Callable[[], Source] | None = None,
) -> Report:
    """Compute the report for ``period`` (a month, or a year) from ``source``.

    With ``workers > 1`` and a picklable ``source_factory``, sites are computed in that many
    processes (each with its own source): reading samples is CPU-bound Python work.
    """
    chosen = list(settings.sites if sites is None else sites)
    if workers > 1 and source_factory is not None and len(chosen) > 1:
        jobs = [
            (source_factory, settings, s, period, factors, with_deltas_from_history) for s in chosen
        ]
        # spawn, not fork: a forked child of a threaded parent can deadlock.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            reports = list(pool.map(_site_job, jobs, chunksize=max(1, len(jobs) // (4 * workers))))
    else:
        reports = [
            site_report(settings, source, s, period, factors, with_history=with_deltas_from_history)
            for s in chosen
        ]
    min_cov = settings.kpi.min_coverage
    notes = []
    if period.month and reports:
        notes.append(
            "PUE for a month is an interim figure (ISO/IEC 30134-2 asks for a year);"
            " the fleet PUE is ΣE_DC/ΣE_IT, not an average of site PUEs"
        )
    fleet = fleet_rows(reports, min_cov) if reports else []
    if fleet and with_deltas_from_history:
        prev = fleet_history(reports, min_cov, "prev_month")
        last = fleet_history(reports, min_cov, "last_year")
        fleet = with_deltas(fleet, prev, last, (*DELTA_KPIS, "fleet_pue"))
    return Report(
        period=period,
        source=source.name,
        generated_utc=now or datetime.now(UTC),
        sites=reports,
        fleet_rows=fleet,
        fleet_daily=fleet_daily(reports),
        notes=notes,
        min_coverage=min_cov,
    )


__all__ = [
    "DAILY_COLUMNS",
    "FLEET",
    "DailyRow",
    "Report",
    "Row",
    "RowStatus",
    "SiteReport",
    "build_report",
    "contract_kwh",
    "counter_notes",
    "fleet_history",
    "kpis_for",
    "read_energies",
    "site_energies",
    "site_report",
    "sparse_hints",
]
