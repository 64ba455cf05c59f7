"""Energy per meter per fixed interval: the one place greendc turns samples into energy.

Everything downstream (live KPIs, the monthly report, the stores' roll-ups) takes the
:class:`IntervalSeries` made here, so a counter reset or a gap is handled once, the same way.

Rules, applied to each *step* between two consecutive kept samples of one meter (t0 -> t1):

1. Both samples carry the cumulative counter (``energy_wh``, or ``water_l`` for water): the
   counter difference ``c1 - c0`` is the step's energy if it is **physically possible**:
   not negative, and at most the meter's maximum power times the elapsed time. The maximum
   is the meter's ``max_power_w``, or by default ``kpi.max_power_factor`` times the larger
   of the two samples' power readings and the site's installed IT power.

   * The counter went down, the meter has a register width (``register_bits`` or
     ``rollover_at``) and the wrapped difference ``c1 + rollover - c0`` is plausible and at
     most half the range: a **rollover**, energy is the wrapped difference.
   * Within ``max_gap_seconds`` the step is **measured**; across a longer gap it is
     **bridged**: energy the meter really measured whose timing is unknown. Bridged energy
     is spread over the gap and counted in daily, monthly and annual totals, but kept out
     of anything hourly (hourly emissions, CFE) unless the site sets ``bridged_in_hourly``.
2. A counter difference that is not possible is never energy. The new reading is held as a
   suspect: if the next reading is plausible from the reading before the suspect, the
   suspect was a **spike** and is dropped (one bad reading, not two resets); otherwise it
   is a **reset** (went down) or a **jump** (a meter swap to a higher register) and becomes
   the new baseline. Its own step falls back to power (rule 3), else it is missing: a
   swap loses at most one step. See :class:`greendc.steps.CounterTrack`.
3. Otherwise, within ``max_gap_seconds`` and both samples carrying ``power_w`` (within the
   bound when ``max_power_w`` is set): trapezoid, ``(p0 + p1) / 2 * dt / 3600`` Wh.
4. Otherwise the step is **missing** (no energy, no coverage).
5. Hence no interval's energy is ever negative through a counter, nor above maximum
   power times its length.

A step's energy (and its covered seconds) is spread over the intervals it spans in
proportion to time. Intervals are aligned to the Unix epoch (``start % interval == 0``), so
series of different meters line up. Coverage of an interval is
``covered_seconds / interval_seconds`` (measured and bridged); ``bridged_seconds`` and
``bridged_amount`` say how much of it was bridged.

Samples are sorted by time first; a sample repeating the previous timestamp is ignored
(the first one wins), so an out-of-order duplicate cannot create a zero-length step.

:func:`greendc.steps.step_energy` is the scalar form of rules 1-5, used step by step by the
live path (:mod:`greendc.rolling`) with :class:`greendc.steps.EnergyRing`, in plain Python so
the collector never loads numpy; live KPIs are tested equal to the batch result.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:  # the collector's hot path never needs pandas: keep it out of its memory
    import pandas as pd

from greendc._errors import KPIError
from greendc.steps import CounterEvent, CounterRules, CounterTrack, Step

FloatArray = npt.NDArray[np.float64]
ArrayLike = Sequence[float | None] | FloatArray


@dataclass(frozen=True)
class IntervalSeries:
    """Amount per fixed interval for one meter, with how much of each interval had data.

    ``amount[i]`` (Wh for energy, L for water) and ``covered_seconds[i]`` belong to the interval
    starting at ``start_s + i * interval_seconds``.
    """

    start_s: int
    interval_seconds: int
    amount: FloatArray
    covered_seconds: FloatArray
    unit: str = "Wh"
    bridged_amount: FloatArray | None = None  # part of amount bridged across gaps (None: 0)
    bridged_seconds: FloatArray | None = None  # part of covered_seconds bridged (None: 0)
    events: tuple[tuple[float, CounterEvent], ...] = ()  # (time, what) of counter events

    def __post_init__(self) -> None:
        if self.interval_seconds <= 0:
            raise KPIError(f"interval_seconds must be positive, got {self.interval_seconds}")
        if self.start_s % self.interval_seconds:
            raise KPIError(
                f"start_s {self.start_s} is not aligned to the {self.interval_seconds} s grid"
            )
        if self.amount.shape != self.covered_seconds.shape:
            raise KPIError("amount and covered_seconds must have the same length")
        for extra in (self.bridged_amount, self.bridged_seconds):
            if extra is not None and extra.shape != self.amount.shape:
                raise KPIError("bridged arrays must have the length of amount")

    @property
    def bridged(self) -> FloatArray:
        """Per interval, the part of ``amount`` bridged across gaps (zeros if none)."""
        return self.bridged_amount if self.bridged_amount is not None else np.zeros(len(self))

    @property
    def bridged_covered(self) -> FloatArray:
        """Per interval, the part of ``covered_seconds`` bridged across gaps (zeros if none)."""
        b = self.bridged_seconds
        return b if b is not None else np.zeros(len(self))

    @property
    def energy_wh(self) -> FloatArray:
        """The per-interval energy in Wh (only for an energy series)."""
        if self.unit != "Wh":
            raise KPIError(f"this series is in {self.unit}, not Wh")
        return self.amount

    @property
    def end_s(self) -> int:
        """End (exclusive) of the last interval."""
        return self.start_s + len(self.amount) * self.interval_seconds

    def __len__(self) -> int:
        return len(self.amount)

    def slice(self, start_s: int, end_s: int) -> IntervalSeries:
        """The intervals of ``[start_s, end_s)``, zero-filled (uncovered) outside this series.

        Both bounds must be on this series' grid.
        """
        step = self.interval_seconds
        if start_s % step or end_s % step or end_s < start_s:
            raise KPIError(f"window [{start_s}, {end_s}) is not on the {step} s grid")
        n = (end_s - start_s) // step
        amount = np.zeros(n)
        covered = np.zeros(n)
        b_amount = np.zeros(n)
        b_covered = np.zeros(n)
        lo = max(start_s, self.start_s)
        hi = min(end_s, self.end_s)
        if hi > lo:
            src = slice((lo - self.start_s) // step, (hi - self.start_s) // step)
            dst = slice((lo - start_s) // step, (hi - start_s) // step)
            amount[dst] = self.amount[src]
            covered[dst] = self.covered_seconds[src]
            b_amount[dst] = self.bridged[src]
            b_covered[dst] = self.bridged_covered[src]
        events = tuple(e for e in self.events if start_s <= e[0] < end_s)
        return IntervalSeries(
            start_s, step, amount, covered, self.unit, b_amount, b_covered, events
        )

    def total(self) -> float:
        """Sum of the amount over all intervals."""
        return float(self.amount.sum())

    def coverage(self) -> float:
        """Share of the series' time span that had data (0..1); 1 for an empty series."""
        span = len(self.amount) * self.interval_seconds
        return float(self.covered_seconds.sum()) / span if span else 1.0


def merge_intervals(series: IntervalSeries, factor: int) -> IntervalSeries:
    """Coarser intervals (``factor`` times longer), summing amounts and covered seconds.

    The series is padded with uncovered intervals so the result stays epoch-aligned.
    """
    if factor < 1:
        raise KPIError(f"factor must be >= 1, got {factor}")
    step = series.interval_seconds * factor
    start = (series.start_s // step) * step
    end = -(-series.end_s // step) * step
    padded = series.slice(start, end)
    n = (end - start) // step
    return IntervalSeries(
        start,
        step,
        padded.amount.reshape(n, factor).sum(axis=1),
        padded.covered_seconds.reshape(n, factor).sum(axis=1),
        series.unit,
        padded.bridged.reshape(n, factor).sum(axis=1),
        padded.bridged_covered.reshape(n, factor).sum(axis=1),
        series.events,
    )


def _as_float_array(values: ArrayLike | None, n: int, what: str) -> FloatArray:
    if values is None:
        return np.full(n, np.nan)
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (n,):
        raise KPIError(f"{what} has {arr.shape[0] if arr.ndim else 0} values, expected {n}")
    return arr


def _bound_w(
    power_w: FloatArray, max_power_w: float | None, power_factor: float | None, floor_w: float
) -> FloatArray | None:
    """Per step, the largest plausible power (as :func:`greendc.steps.bound_w`), or None."""
    if max_power_w is not None:
        return np.full(len(power_w) - 1, float(max_power_w))
    if power_factor is None:
        return None
    p = np.nan_to_num(np.abs(power_w), nan=0.0)
    return power_factor * np.maximum(np.maximum(p[:-1], p[1:]), floor_w)


def _steps(
    ts_s: FloatArray,
    counter: FloatArray,
    power_w: FloatArray,
    max_gap_seconds: float,
    rollover_wh: float | None,
    bound: FloatArray | None,
    power_cap_w: float | None,
) -> tuple[FloatArray, FloatArray, FloatArray, npt.NDArray[np.bool_]] | None:
    """Vectorised rules 1-4 per step: energy, covered seconds, bridged seconds (0 where
    missing) and whether the counter rolled over; None when a counter step is implausible
    (the caller then runs the sequential :class:`greendc.steps.CounterTrack`, which decides
    spikes and resets)."""
    dt = np.diff(ts_s)
    c0, c1 = counter[:-1], counter[1:]
    p0, p1 = power_w[:-1], power_w[1:]
    within = (dt > 0) & (dt <= max_gap_seconds)
    delta = c1 - c0
    has_counter = ~(np.isnan(c0) | np.isnan(c1))
    wrap_ok = np.zeros(len(dt), dtype=bool)
    if rollover_wh is not None:
        wrapped = delta + rollover_wh
        wrap_ok = has_counter & (delta < 0) & (wrapped <= rollover_wh / 2)
        delta = np.where(wrap_ok, wrapped, delta)
    counter_ok = has_counter & (delta >= 0)
    if bound is not None:
        counter_ok &= delta <= bound * dt / 3600.0
    if np.any(has_counter & ~counter_ok):
        return None
    has_power = ~(np.isnan(p0) | np.isnan(p1))
    if power_cap_w is not None:  # a derived bound always holds the step's own power
        has_power &= ~(np.fmax(np.abs(p0), np.abs(p1)) > power_cap_w)
    trap = (p0 + p1) / 2.0 * dt / 3600.0
    measured = within & (counter_ok | has_power)
    bridged = counter_ok & (dt > max_gap_seconds)
    energy = np.where(counter_ok & (within | bridged), delta, np.where(measured, trap, 0.0))
    covered = np.where(measured | bridged, dt, 0.0)
    return energy, covered, np.where(bridged, dt, 0.0), wrap_ok


def _tracked_steps(
    ts: FloatArray,
    cnt: FloatArray,
    pw: FloatArray,
    track: CounterTrack,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, tuple[tuple[float, CounterEvent], ...]]:
    """Rules 1-5 sample by sample (a meter whose counter misbehaves): the kept samples' times
    and, per step between them, energy, covered and bridged seconds; and the events."""
    knots: list[float] = []
    energy: list[float] = []
    covered: list[float] = []
    bridged: list[float] = []

    def emit(t0: float, t1: float, e: float, kind: Step) -> None:
        if not knots:
            knots.append(t0)
        knots.append(t1)
        energy.append(e if kind is not Step.MISSING else 0.0)
        covered.append(t1 - t0 if kind is not Step.MISSING else 0.0)
        bridged.append(t1 - t0 if kind is Step.BRIDGED else 0.0)

    track.event_times = []
    for t, c, p in zip(ts.tolist(), cnt.tolist(), pw.tolist(), strict=True):
        track.feed(t, None if c != c else c, None if p != p else p, emit)
    # A suspect still held at the end stays undecided, as in the live path: the next
    # reading (outside these samples) would decide it.
    return (
        np.asarray(knots, dtype=np.float64),
        np.asarray(energy, dtype=np.float64),
        np.asarray(covered, dtype=np.float64),
        np.asarray(bridged, dtype=np.float64),
        tuple(track.event_times),
    )


def interval_series(
    ts_s: ArrayLike,
    counter: ArrayLike | None = None,
    power_w: ArrayLike | None = None,
    *,
    interval_seconds: int,
    max_gap_seconds: float,
    rollover_wh: float | None = None,
    max_power_w: float | None = None,
    power_factor: float | None = None,
    floor_w: float = 0.0,
    start_s: int | None = None,
    end_s: int | None = None,
    unit: str = "Wh",
) -> IntervalSeries:
    """Amount per epoch-aligned interval from one meter's samples (the batch form).

    ``ts_s`` are Unix seconds; ``counter`` the cumulative counter (Wh or L) and ``power_w`` the
    power, each with None/NaN where a sample lacks it. ``start_s``/``end_s`` (on the interval
    grid) fix the output range; by default it spans the samples. ``max_power_w`` (the meter's
    own bound) or ``power_factor`` and ``floor_w`` (the default bound) make counter steps
    above that power implausible; with neither, any non-negative step is plausible. Runs in
    O(n log n) numpy; a meter whose counter misbehaves takes the sequential rules.
    """
    ts = np.asarray(ts_s, dtype=np.float64)
    if ts.ndim != 1:
        raise KPIError("ts_s must be one-dimensional")
    n = ts.shape[0]
    cnt = _as_float_array(counter, n, "counter")
    pw = _as_float_array(power_w, n, "power_w")
    if n and not np.all(np.isfinite(ts)):
        raise KPIError("ts_s contains a non-finite timestamp")
    order = np.argsort(ts, kind="stable")
    ts, cnt, pw = ts[order], cnt[order], pw[order]
    if n > 1:
        # The first of several samples with one timestamp wins, as in the live path.
        keep = np.concatenate(([True], np.diff(ts) > 0))
        ts, cnt, pw = ts[keep], cnt[keep], pw[keep]
    step = interval_seconds
    if start_s is None:
        start_s = math.floor(ts[0] / step) * step if len(ts) else 0
    if end_s is None:
        end_s = math.floor(ts[-1] / step) * step + step if len(ts) else start_s
    if start_s % step or end_s % step or end_s < start_s:
        raise KPIError(f"[{start_s}, {end_s}) is not a window on the {step} s grid")
    nint = (end_s - start_s) // step
    if len(ts) < 2:
        return IntervalSeries(start_s, step, np.zeros(nint), np.zeros(nint), unit)
    events: tuple[tuple[float, CounterEvent], ...] = ()
    bound = _bound_w(pw, max_power_w, power_factor, floor_w)
    fast = _steps(ts, cnt, pw, max_gap_seconds, rollover_wh, bound, max_power_w)
    if fast is not None:
        knots = ts
        energy, covered, bridged_s, wraps = fast
        if bridged_s.any() or wraps.any():
            found = [(float(t), CounterEvent.BRIDGED) for t in ts[1:][bridged_s > 0]]
            found += [(float(t), CounterEvent.ROLLOVER) for t in ts[1:][wraps]]
            events = tuple(sorted(found))
    else:
        track = CounterTrack(
            max_gap_seconds=max_gap_seconds,
            rollover=rollover_wh,
            max_power_w=max_power_w,
            power_factor=power_factor,
            floor_w=floor_w,
        )
        knots, energy, covered, bridged_s, events = _tracked_steps(ts, cnt, pw, track)
        if len(knots) < 2:
            return IntervalSeries(start_s, step, np.zeros(nint), np.zeros(nint), unit)
    bridged_e = np.where(bridged_s > 0, energy, 0.0)
    # Cumulative amount is piecewise linear in time between samples; reading it at the
    # interval boundaries spreads every step over its intervals in proportion to time.
    bounds = start_s + step * np.arange(nint + 1, dtype=np.float64)

    def spread(per_step: FloatArray) -> FloatArray:
        cum = np.concatenate(([0.0], np.cumsum(per_step)))
        return np.diff(np.interp(bounds, knots, cum))

    return IntervalSeries(
        start_s,
        step,
        spread(energy),
        spread(covered),
        unit,
        spread(bridged_e),
        spread(bridged_s),
        tuple(e for e in events if start_s <= e[0] < end_s),
    )


def energy_by_meter(
    frame: pd.DataFrame,
    *,
    interval_seconds: int,
    max_gap_seconds: float,
    start_s: int,
    end_s: int,
    rules: Mapping[str, CounterRules] | None = None,
) -> dict[str, IntervalSeries]:
    """Per-meter energy series over ``[start_s, end_s)`` from a long table of samples.

    ``frame`` has columns ``meter``, ``ts_s`` and any of ``energy_wh``, ``power_w``. Samples
    just outside the window should be included so the steps crossing its edges are counted.
    ``rules`` are each meter's plausibility bound and register width (default: none).
    """
    out: dict[str, IntervalSeries] = {}
    by_meter = rules or {}
    none = CounterRules()
    has_e = "energy_wh" in frame.columns
    has_p = "power_w" in frame.columns
    for meter, group in frame.groupby("meter", sort=False):
        name = str(meter)
        r = by_meter.get(name, none)
        out[name] = interval_series(
            group["ts_s"].to_numpy(dtype=np.float64),
            group["energy_wh"].to_numpy(dtype=np.float64) if has_e else None,
            group["power_w"].to_numpy(dtype=np.float64) if has_p else None,
            interval_seconds=interval_seconds,
            max_gap_seconds=max_gap_seconds,
            rollover_wh=r.rollover,
            max_power_w=r.max_power_w,
            power_factor=r.power_factor,
            floor_w=r.floor_w,
            start_s=start_s,
            end_s=end_s,
        )
    return out


def water_series(
    ts_s: ArrayLike,
    water_l: ArrayLike,
    *,
    interval_seconds: int,
    max_gap_seconds: float,
    rollover_l: float | None = None,
    max_rate_l_per_h: float | None = None,
    start_s: int | None = None,
    end_s: int | None = None,
) -> IntervalSeries:
    """Litres per interval from a cumulative water counter (same rules as energy, no power)."""
    return interval_series(
        ts_s,
        water_l,
        None,
        interval_seconds=interval_seconds,
        max_gap_seconds=max_gap_seconds,
        rollover_wh=rollover_l,
        max_power_w=max_rate_l_per_h,
        start_s=start_s,
        end_s=end_s,
        unit="L",
    )


__all__ = [
    "IntervalSeries",
    "energy_by_meter",
    "interval_series",
    "merge_intervals",
    "water_series",
]
