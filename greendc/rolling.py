"""Live KPIs over rolling windows, fed reading by reading by the collector.

Per configured meter :class:`LiveKPIs` keeps only its last sample and the runs of time its
steps covered; each step's energy (:func:`greendc.steps.step_energy`, the batch rules) goes
into one :class:`~greendc.steps.EnergyRing` per site, role, zone and sign, holding just
enough intervals for the longest window (and a meter clock running ahead). Memory and
snapshot time therefore grow with the number of such groups, plus a few hundred bytes per
meter: 100,000 meters with a ring each took 3.5 GB and a 10 s snapshot.
:meth:`LiveKPIs.snapshot` runs the same :func:`greendc.kpi.site_kpis` as the monthly report,
through :class:`greendc.kpi.RoleSums`, so a live PUE and a reported PUE cannot disagree on
method (tested equal). The location-based emissions counter comes from the same rules:
per interval, :func:`greendc.kpi.grid_energy` (through ``site_kpis``) and
:func:`greendc.kpi.interval_emissions_kg` (the site's hourly factors where it has them), so
its increase over a period equals the report's Scope 2 for that period on the same
readings (tested to 1e-9).

Windows end at the start of the current (incomplete) interval: a 5-minute window at 12:03:30
with 60 s intervals covers 11:58:00-12:03:00.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from operator import add, sub

from greendc.config import Settings, Site
from greendc.factors import FactorTable, load_grid_factors
from greendc.kpi import (
    Measured,
    RoleSeries,
    SiteKPIs,
    Window,
    grid_energy,
    interval_emissions_kg,
    interval_factors,
    site_kpis,
)
from greendc.model import Reading, Role
from greendc.steps import (
    CounterTrack,
    EnergyRing,
    Step,
    counter_rules,
    covered_seconds,
)


class _Group:
    """The rings of the meters of one site, role, zone and sign: energy (measured and
    bridged), its bridged part, and the seconds covered (and bridged), summed over them."""

    __slots__ = ("bridged", "bridged_s", "covered", "energy", "meters")

    def __init__(self, interval_seconds: int, capacity: int) -> None:
        self.energy = EnergyRing(interval_seconds, capacity)
        self.covered = EnergyRing(interval_seconds, capacity)
        self.bridged = EnergyRing(interval_seconds, capacity)
        self.bridged_s = EnergyRing(interval_seconds, capacity)
        self.meters = 0


class _MeterState:
    __slots__ = (
        "counter_field",
        "group",
        "horizon_s",
        "quick_bound_w",
        "runs",
        "total",
        "track",
    )

    def __init__(
        self,
        group: _Group,
        counter_field: str,
        total: list[float],
        track: CounterTrack,
        horizon_s: float,
    ) -> None:
        self.group = group  # shared by the meters of one site, role, zone and sign
        self.counter_field = counter_field
        self.total = total  # shared one-element cell of the (site, role) total it feeds
        self.track = track
        self.horizon_s = horizon_s
        # A power every step may show whatever its readings say: below it no bound is needed.
        if track.max_power_w is not None:
            self.quick_bound_w = track.max_power_w
        elif track.power_factor is not None:
            self.quick_bound_w = track.power_factor * track.floor_w
        else:
            self.quick_bound_w = math.inf
        self.runs: list[list[float]] = []  # covered [start, end] runs, oldest first

    def emit(self, t0: float, t1: float, e: float, kind: Step) -> None:
        """Account one step decided by the meter's :class:`CounterTrack`."""
        if kind is Step.MISSING:
            return
        g = self.group
        g.energy.spread(t0, t1, e)
        g.covered.spread(t0, t1, t1 - t0)
        if kind is Step.BRIDGED:
            g.bridged.spread(t0, t1, e)
            g.bridged_s.spread(t0, t1, t1 - t0)
        self.cover(t0, t1)
        if e > 0:
            # A step of negative power (export) would make the counter go down;
            # Prometheus counters must not, so the totals count consumption only.
            self.total[0] += e

    def cover(self, t0: float, t1: float) -> None:
        """Add ``[t0, t1]`` to the covered runs, dropping runs older than the rings hold."""
        runs = self.runs
        if runs and runs[-1][1] == t0:
            runs[-1][1] = t1
        else:
            runs.append([t0, t1])
            horizon = t1 - self.horizon_s
            while runs[0][1] < horizon:
                del runs[0]


_GroupKey = tuple[Role, str | None, int]  # role, zone, sign


class _WindowSums:
    """:class:`greendc.kpi.RoleSums` of one site over one window, from the shared rings."""

    def __init__(
        self,
        groups: Mapping[_GroupKey, _Group],
        members: Mapping[tuple[Role, str | None], Sequence[_MeterState]],
        window: Window,
        interval_seconds: int,
    ) -> None:
        self._groups = groups
        self._members = members
        self._window = window
        self._step = interval_seconds
        self._coverage: dict[int, float] = {}
        # each ring read once per window
        self._amounts: dict[tuple[_GroupKey, str], list[float]] = {}

    def _meter_coverage(self, state: _MeterState) -> float:
        c = self._coverage.get(id(state))
        if c is None:
            w = self._window
            c = covered_seconds(state.runs, w.start_s, w.end_s) / w.seconds
            self._coverage[id(state)] = c
        return c

    def _read(self, key: _GroupKey, what: str) -> list[float]:
        part = self._amounts.get((key, what))
        if part is None:
            w = self._window
            ring = getattr(self._groups[key], what)
            part = self._amounts[(key, what)] = ring.amounts(w.start_s, w.end_s)
        return part

    def sum_role(self, roles: Sequence[Role], zone: str | None) -> RoleSeries:
        w = self._window
        n = w.seconds // self._step
        energy = [0.0] * n
        bridged = [0.0] * n
        covered = [0.0] * n
        bridged_s = [0.0] * n
        count = 0
        for key, group in self._groups.items():
            role, z, sign = key
            if role in roles and (zone is None or z == zone):
                op = add if sign > 0 else sub
                energy = list(map(op, energy, self._read(key, "energy")))
                bridged = list(map(op, bridged, self._read(key, "bridged")))
                covered = list(map(add, covered, self._read(key, "covered")))
                bridged_s = list(map(add, bridged_s, self._read(key, "bridged_s")))
                count += group.meters
        coverage = 1.0
        for (role, z), states in self._members.items():
            if role in roles and (zone is None or z == zone):
                for state in states:
                    coverage = min(coverage, self._meter_coverage(state))
        if count == 0:
            zeros = [0.0] * n
            return RoleSeries(Measured(0.0, 1.0, 0), zeros, zeros, [1.0] * n, zeros)
        per = count * self._step
        total = Measured(
            sum(energy, 0.0),
            coverage,
            count,
            sum(bridged_s, 0.0) / (count * w.seconds),
            sum(bridged, 0.0),
        )
        return RoleSeries(
            total, energy, bridged, [c / per for c in covered], [b / per for b in bridged_s]
        )


class _IntervalLedger:
    """A per-interval quantity of one site (grid Wh, emissions kg) summed since start.

    Each snapshot recomputes the intervals of the longest window and the current one (late
    readings still change them) and freezes those that left. Intervals newer than the last
    snapshot's window and older than this one's (no snapshot for longer than the longest
    window) were never held by a snapshot and are not counted.
    """

    __slots__ = ("_frozen_kg", "_start_s", "_step", "_window_kg")

    def __init__(self, interval_seconds: int) -> None:
        self._step = interval_seconds
        self._frozen_kg = 0.0
        self._start_s: int | None = None
        self._window_kg: list[float] = []

    def update(self, window: Window, kg_per_interval: list[float]) -> float:
        """Take the window's per-interval amounts; the total since start."""
        start_s = window.start_s
        if self._start_s is not None and start_s < self._start_s:
            # The clock went back: intervals before the last window are frozen already.
            skip = min((self._start_s - start_s) // self._step, len(kg_per_interval))
            kg_per_interval, start_s = kg_per_interval[skip:], self._start_s
        if self._start_s is not None:
            left = (start_s - self._start_s) // self._step  # intervals that left the window
            self._frozen_kg += sum(self._window_kg[:left], 0.0)
        self._start_s, self._window_kg = start_s, kg_per_interval
        return self._frozen_kg + sum(kg_per_interval, 0.0)


@dataclass(frozen=True)
class LiveSnapshot:
    """What the exporter and the store read from :meth:`LiveKPIs.snapshot`.

    ``kpis[site][window_seconds]`` are the KPIs of each rolling window.
    ``energy_totals_wh[(site, role)]`` is the energy counted since start for meters of that
    role with sign +1, and ``subtracted_energy_wh[(site, role)]`` for sub-meters with sign -1
    (net = the difference); both only grow, for Prometheus counters. ``water_totals_l[site]``
    likewise for water meters. ``grid_energy_wh[site]`` is E_grid
    (:func:`greendc.kpi.grid_energy`) and ``emissions_kg[site]`` its location-based CO2e, of
    every interval up to the end of the current one (see :class:`_IntervalLedger`);
    ``grid_factor_kg_per_kwh[site]`` is the factor of the last completed interval (its
    hourly factor where known). (A meter's last power is the agent's: it has every meter,
    configured or not.)
    """

    end_s: int
    kpis: Mapping[str, Mapping[int, SiteKPIs]]
    energy_totals_wh: Mapping[tuple[str, str], float]
    subtracted_energy_wh: Mapping[tuple[str, str], float]
    water_totals_l: Mapping[str, float]
    ignored_samples: int
    # (site, meter, event) -> how many times since start: spikes dropped, resets and jumps
    # (new baselines), rollovers, gaps bridged (see greendc.steps.CounterEvent).
    counter_events: Mapping[tuple[str, str, str], int] = field(default_factory=dict)
    emissions_kg: Mapping[str, float] = field(default_factory=dict)
    grid_energy_wh: Mapping[str, float] = field(default_factory=dict)
    grid_factor_kg_per_kwh: Mapping[str, float] = field(default_factory=dict)


class LiveKPIs:
    """Rolling-window KPIs per site, from every accepted reading.

    Not thread-safe: the collector holds one lock around :meth:`add` and :meth:`snapshot`.
    Memory is bounded: one ring of ``(longest window + max_future_seconds) / interval + 1``
    intervals per site, role, zone and sign, and per configured meter its last sample and
    covered runs (older than the longest window dropped); readings of meters not in the
    configuration are ignored.
    """

    def __init__(self, settings: Settings, factors: FactorTable | None = None) -> None:
        kpi = settings.kpi
        # kpi.windows_seconds and kpi.interval_seconds are checked by the config schema
        # (non-empty, whole intervals, an interval that divides an hour).
        self._interval = kpi.interval_seconds
        self._windows = sorted(set(kpi.windows_seconds))
        self._min_coverage = kpi.min_coverage
        self._sites: list[Site] = list(settings.sites)
        # The factor file, every site's zone in it and every hourly factor file, checked
        # as check-config checks them; a problem stops the start with the setting named.
        grid = load_grid_factors(settings, factors)
        self._factors = grid.table
        self._hourly = grid.hourly
        self._ledgers = {
            site.name: (_IntervalLedger(self._interval), _IntervalLedger(self._interval))
            for site in self._sites
        }  # (grid Wh, emissions kg) per site
        # The longest window, the current interval, and as far ahead as a meter's clock may
        # run (validation.max_future_seconds): a meter ahead of the others must not push the
        # start of the longest window out of its group's ring.
        ahead = math.ceil(settings.validation.max_future_seconds / self._interval)
        self._capacity = max(self._windows) // self._interval + 1 + ahead
        self._horizon_s = float(self._capacity * self._interval)
        self._max_gap_s = kpi.max_gap_seconds
        self._ignored = 0
        self._meters: dict[tuple[str, str], _MeterState] = {}
        self._groups: dict[str, dict[_GroupKey, _Group]] = {}
        self._members: dict[str, dict[tuple[Role, str | None], list[_MeterState]]] = {}
        self._totals: dict[tuple[str, str], list[float]] = {}
        self._subtracted: dict[tuple[str, str], list[float]] = {}
        self._water: dict[str, list[float]] = {}
        for site in self._sites:
            groups = self._groups.setdefault(site.name, {})
            members = self._members.setdefault(site.name, {})
            for m in site.meters:
                group = groups.get((m.role, m.zone, m.sign))
                if group is None:
                    group = groups[(m.role, m.zone, m.sign)] = _Group(
                        self._interval, self._capacity
                    )
                group.meters += 1
                if m.role is Role.WATER:
                    cell = self._water.setdefault(site.name, [0.0])
                    field_name = "water_l"
                else:
                    book = self._totals if m.sign == 1 else self._subtracted
                    cell = book.setdefault((site.name, m.role.value), [0.0])
                    field_name = "energy_wh"
                track = counter_rules(site, m, kpi).track(self._max_gap_s)
                state = _MeterState(group, field_name, cell, track, self._horizon_s)
                self._meters[(site.name, m.name)] = state
                members.setdefault((m.role, m.zone), []).append(state)

    def add(self, reading: Reading) -> None:
        """Account one accepted reading."""
        self.add_many((reading,))

    def add_many(self, readings: Iterable[Reading]) -> None:
        """Account accepted readings (the hot path: O(1) each, a few microseconds)."""
        meters = self._meters
        max_gap = self._max_gap_s
        for site, meter, _role, ts_ms, fields in readings:
            state = meters.get((site, meter))
            if state is None:  # not configured: in no KPI
                continue
            t_s = ts_ms / 1000.0
            power = fields.get("power_w")
            if state.counter_field == "water_l":
                counter, power = fields.get("water_l"), None
            else:
                counter = fields.get("energy_wh")
            track = state.track
            last_t = track.t
            c0 = track.c
            if (
                counter is not None
                and c0 is not None
                and track.pending is None
                and counter >= c0
                and 0 < (dt := t_s - last_t) <= max_gap  # type: ignore[operator]
                and (e := counter - c0) * 3600.0 <= state.quick_bound_w * dt
            ):
                # Rule 1, the common case, inlined: a plausible counter step within the gap.
                track.t, track.c, track.p = t_s, counter, power
                g = state.group
                g.energy.spread(last_t, t_s, e)  # type: ignore[arg-type]
                g.covered.spread(last_t, t_s, dt)  # type: ignore[arg-type]
                runs = state.runs
                if runs and runs[-1][1] == last_t:
                    runs[-1][1] = t_s
                else:
                    state.cover(last_t, t_s)  # type: ignore[arg-type]
                if e > 0:
                    state.total[0] += e
                continue
            if not track.feed(t_s, counter, power, state.emit):
                self._ignored += 1  # not newer than the last sample, as in the batch rules

    def snapshot(self, now_s: float) -> LiveSnapshot:
        """KPIs of every site for every window ending at the last completed interval."""
        step = self._interval
        end_s = math.floor(now_s / step) * step
        out: dict[str, dict[int, SiteKPIs]] = {}
        emissions: dict[str, float] = {}
        grid_factor: dict[str, float] = {}
        grid_wh: dict[str, float] = {}
        for site in self._sites:
            groups, members = self._groups[site.name], self._members[site.name]
            hourly = self._hourly.get(site.name)
            out[site.name] = {
                w: site_kpis(
                    site,
                    _WindowSums(groups, members, Window(end_s - w, end_s), step),
                    Window(end_s - w, end_s),
                    self._factors,
                    self._min_coverage,
                    interval_seconds=step,
                    hourly_factors=hourly,
                )
                for w in self._windows
            }
            longest = self._windows[-1]
            # The counters run to the end of the current interval, so they move with every
            # reading as the energy counters do (a later reading may still lower the current
            # interval: the exporter holds a counter at its high-water mark).
            window = Window(end_s - longest, end_s + step)
            # E_grid per interval as the longest window's KPIs computed it (grid_energy), and
            # the current interval's by the same function.
            current = _WindowSums(groups, members, Window(end_s, end_s + step), step)
            grid_now = grid_energy(partial(current.sum_role, zone=None)).per_interval
            grid_i = [*out[site.name][longest].grid_wh_per_interval, *grid_now]
            static = self._factors.zone(site.grid_zone).grid_average
            factors_i = interval_factors(window, step, hourly) if hourly is not None else None
            kg_i = interval_emissions_kg(grid_i, factors_i, static)
            grid_ledger, kg_ledger = self._ledgers[site.name]
            grid_wh[site.name] = grid_ledger.update(window, grid_i)
            emissions[site.name] = kg_ledger.update(window, kg_i)
            last = factors_i[-2] if factors_i else math.nan  # the last completed interval
            grid_factor[site.name] = static.value if math.isnan(last) else last
        return LiveSnapshot(
            end_s=end_s,
            kpis=out,
            energy_totals_wh={k: v[0] for k, v in self._totals.items()},
            subtracted_energy_wh={k: v[0] for k, v in self._subtracted.items()},
            water_totals_l={k: v[0] for k, v in self._water.items()},
            ignored_samples=self._ignored,
            counter_events={
                (site, meter, kind.value): n
                for (site, meter), st in self._meters.items()
                for kind, n in st.track.events.items()
            },
            emissions_kg=emissions,
            grid_energy_wh=grid_wh,
            grid_factor_kg_per_kwh=grid_factor,
        )


__all__ = ["LiveKPIs", "LiveSnapshot"]
