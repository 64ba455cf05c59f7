"""Live KPIs over rolling windows, fed reading by reading by the collector.

:class:`LiveKPIs` keeps, per configured meter, an :class:`~greendc.energy.IntervalAccumulator`
(the incremental form of :func:`greendc.energy.interval_series`, same rules, tested equal) with
just enough intervals for the longest window, plus monotonic energy totals and the last power.
:meth:`LiveKPIs.snapshot` runs the same :func:`greendc.kpi.site_kpis` as the monthly report on
the completed intervals of each window, so a live PUE and a reported PUE cannot disagree on
method.

Windows end at the start of the current (incomplete) interval: a 5-minute window at 12:03:30
with 60 s intervals covers 11:58:00-12:03:00.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from greendc._errors import KPIError
from greendc.config import Settings, Site
from greendc.energy import IntervalAccumulator, IntervalSeries
from greendc.factors import FactorTable, load_factors
from greendc.kpi import SiteKPIs, Window, site_kpis
from greendc.model import Reading, Role


class _MeterState:
    __slots__ = ("acc", "counter_field", "last_power_ts_s", "last_power_w", "total")

    def __init__(self, acc: IntervalAccumulator, counter_field: str, total: list[float]) -> None:
        self.acc = acc
        self.counter_field = counter_field
        self.total = total  # shared one-element cell of the (site, role) total it feeds
        self.last_power_w: float | None = None
        self.last_power_ts_s = -math.inf


@dataclass(frozen=True)
class LiveSnapshot:
    """What the exporter and the store read from :meth:`LiveKPIs.snapshot`.

    ``kpis[site][window_seconds]`` are the KPIs of each rolling window.
    ``energy_totals_wh[(site, role)]`` is the energy counted since start for meters of that role
    with sign +1, and ``subtracted_energy_wh[(site, role)]`` for sub-meters with sign -1 (net =
    the difference); both only grow, for Prometheus counters. ``water_totals_l[site]`` likewise
    for water meters. ``last_power_w[(site, meter)]`` is ``(ts_s, watts)`` of the newest power.
    """

    end_s: int
    kpis: Mapping[str, Mapping[int, SiteKPIs]]
    energy_totals_wh: Mapping[tuple[str, str], float]
    subtracted_energy_wh: Mapping[tuple[str, str], float]
    water_totals_l: Mapping[str, float]
    last_power_w: Mapping[tuple[str, str], tuple[float, float]]
    ignored_samples: int


class LiveKPIs:
    """Rolling-window KPIs per site, from every accepted reading.

    Not thread-safe: the collector holds one lock around :meth:`add` and :meth:`snapshot`.
    Memory is bounded: per configured meter one ring of ``longest window / interval + 1``
    intervals; readings of meters not in the configuration only update their last power (up to
    ``settings.validation.max_meters`` of them).
    """

    def __init__(self, settings: Settings, factors: FactorTable | None = None) -> None:
        kpi = settings.kpi
        if not kpi.windows_seconds:
            raise KPIError("kpi.windows_seconds is empty: nothing to compute")
        self._interval = kpi.interval_seconds
        for w in kpi.windows_seconds:
            if w % self._interval:
                raise KPIError(
                    f"kpi.windows_seconds: {w} is not a multiple of interval_seconds "
                    f"{self._interval}"
                )
        self._windows = sorted(set(kpi.windows_seconds))
        self._min_coverage = kpi.min_coverage
        self._sites: list[Site] = list(settings.sites)
        if factors is None:
            factors = load_factors(settings.emission_factors_file)
        for site in self._sites:
            factors.zone(site.grid_zone)  # fail at start, not at the first scrape
        self._factors = factors
        self._capacity = max(self._windows) // self._interval + 1
        self._meters: dict[tuple[str, str], _MeterState] = {}
        self._totals: dict[tuple[str, str], list[float]] = {}
        self._subtracted: dict[tuple[str, str], list[float]] = {}
        self._water: dict[str, list[float]] = {}
        for site in self._sites:
            for m in site.meters:
                acc = IntervalAccumulator(self._interval, kpi.max_gap_seconds, self._capacity)
                if m.role is Role.WATER:
                    cell = self._water.setdefault(site.name, [0.0])
                    field = "water_l"
                else:
                    book = self._totals if m.sign == 1 else self._subtracted
                    cell = book.setdefault((site.name, m.role.value), [0.0])
                    field = "energy_wh"
                self._meters[(site.name, m.name)] = _MeterState(acc, field, cell)
        self._unknown_power: dict[tuple[str, str], tuple[float, float]] = {}
        self._max_unknown = settings.validation.max_meters

    def add(self, reading: Reading) -> None:
        """Account one accepted reading (the hot path: O(1), a few microseconds)."""
        key = (reading.site, reading.meter)
        fields = reading.fields
        t_s = reading.ts_ms / 1000.0
        power = fields.get("power_w")
        state = self._meters.get(key)
        if state is None:
            if power is not None and (
                key in self._unknown_power or len(self._unknown_power) < self._max_unknown
            ):
                self._unknown_power[key] = (t_s, power)
            return
        if power is not None and t_s > state.last_power_ts_s:
            state.last_power_w = power
            state.last_power_ts_s = t_s
        if state.counter_field == "water_l":
            e = state.acc.add(t_s, fields.get("water_l"), None)
        else:
            e = state.acc.add(t_s, fields.get("energy_wh"), power)
        if e > 0:
            # A step of negative power (export) would make the counter go down; Prometheus
            # counters must not, so the totals count consumption only.
            state.total[0] += e

    def series(self, site: str, meter: str, start_s: int, end_s: int) -> IntervalSeries:
        """The interval series of one configured meter over ``[start_s, end_s)`` (for tests)."""
        state = self._meters.get((site, meter))
        if state is None:
            raise KPIError(f"meter {site}/{meter} is not configured")
        return state.acc.series(start_s, end_s)

    def snapshot(self, now_s: float) -> LiveSnapshot:
        """KPIs of every site for every window ending at the last completed interval."""
        step = self._interval
        end_s = math.floor(now_s / step) * step
        longest = self._windows[-1]
        out: dict[str, dict[int, SiteKPIs]] = {}
        for site in self._sites:
            energies = {
                m.name: self._meters[(site.name, m.name)].acc.series(end_s - longest, end_s)
                for m in site.meters
            }
            out[site.name] = {
                w: site_kpis(
                    site,
                    energies,
                    Window(end_s - w, end_s),
                    self._factors,
                    self._min_coverage,
                    interval_seconds=step,
                )
                for w in self._windows
            }
        last_power = dict(self._unknown_power)
        ignored = 0
        for key, state in self._meters.items():
            ignored += state.acc.ignored
            if state.last_power_w is not None:
                last_power[key] = (state.last_power_ts_s, state.last_power_w)
        return LiveSnapshot(
            end_s=end_s,
            kpis=out,
            energy_totals_wh={k: v[0] for k, v in self._totals.items()},
            subtracted_energy_wh={k: v[0] for k, v in self._subtracted.items()},
            water_totals_l={k: v[0] for k, v in self._water.items()},
            last_power_w=last_power,
            ignored_samples=ignored,
        )


__all__ = ["LiveKPIs", "LiveSnapshot"]
