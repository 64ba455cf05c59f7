"""Energy per meter per fixed interval: the one place greendc turns samples into energy.

Everything downstream (live KPIs, the monthly report, the stores' roll-ups) takes the
:class:`IntervalSeries` made here, so a counter reset or a gap is handled once, the same way.

Rules, applied to each *step* between two consecutive samples of one meter (t0 -> t1):

1. ``t1 - t0 > max_gap_seconds``: the step is **missing** (no energy, no coverage). A long
   silence is never bridged with a straight line; it lowers the coverage instead.
2. Both samples carry the cumulative counter (``energy_wh``, or ``water_l`` for water): the
   step's energy is ``c1 - c0`` (the counter is preferred over power: it is what the meter
   integrated, at its own sampling rate).

   * The counter went down and ``rollover_wh`` is set and the wrapped delta
     ``c1 + rollover_wh - c0`` is at most half the range: a **rollover**, energy is the
     wrapped delta.
   * Otherwise the counter went down: a **reset** (device reboot or replacement). What it
     counted between t0 and the reset is unknown, and ``c1`` is energy since an unknown
     instant, so counting either could double or invent energy. The step falls back to power
     (rule 3) if both samples carry it, else it is missing. The next step continues from the
     new counter value, so no interval is ever negative or doubled.
3. Otherwise, both samples carry ``power_w``: trapezoid, ``(p0 + p1) / 2 * dt / 3600`` Wh.
4. Otherwise the step is missing.

A step's energy (and its covered seconds) is spread over the intervals it spans in
proportion to time. Intervals are aligned to the Unix epoch (``start % interval == 0``), so
series of different meters line up. Coverage of an interval is
``covered_seconds / interval_seconds``.

Samples are sorted by time first; a sample repeating the previous timestamp is ignored
(the first one wins), so an out-of-order duplicate cannot create a zero-length step.

:func:`greendc.steps.step_energy` is the scalar form of rules 1-4, used step by step by the
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

    def __post_init__(self) -> None:
        if self.interval_seconds <= 0:
            raise KPIError(f"interval_seconds must be positive, got {self.interval_seconds}")
        if self.start_s % self.interval_seconds:
            raise KPIError(
                f"start_s {self.start_s} is not aligned to the {self.interval_seconds} s grid"
            )
        if self.amount.shape != self.covered_seconds.shape:
            raise KPIError("amount and covered_seconds must have the same length")

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
        lo = max(start_s, self.start_s)
        hi = min(end_s, self.end_s)
        if hi > lo:
            src = slice((lo - self.start_s) // step, (hi - self.start_s) // step)
            dst = slice((lo - start_s) // step, (hi - start_s) // step)
            amount[dst] = self.amount[src]
            covered[dst] = self.covered_seconds[src]
        return IntervalSeries(start_s, step, amount, covered, self.unit)

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
    )


def _as_float_array(values: ArrayLike | None, n: int, what: str) -> FloatArray:
    if values is None:
        return np.full(n, np.nan)
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (n,):
        raise KPIError(f"{what} has {arr.shape[0] if arr.ndim else 0} values, expected {n}")
    return arr


def _steps(
    ts_s: FloatArray,
    counter: FloatArray,
    power_w: FloatArray,
    max_gap_seconds: float,
    rollover_wh: float | None,
) -> tuple[FloatArray, FloatArray]:
    """Vectorised rules 1-4: per step, energy and covered seconds (0 where missing)."""
    dt = np.diff(ts_s)
    c0, c1 = counter[:-1], counter[1:]
    p0, p1 = power_w[:-1], power_w[1:]
    ok_gap = (dt > 0) & (dt <= max_gap_seconds)
    delta = c1 - c0
    has_counter = ~(np.isnan(c0) | np.isnan(c1))
    counter_ok = has_counter & (delta >= 0)
    if rollover_wh is not None:
        wrapped = delta + rollover_wh
        wrap_ok = has_counter & (delta < 0) & (wrapped <= rollover_wh / 2)
        delta = np.where(wrap_ok, wrapped, delta)
        counter_ok |= wrap_ok
    has_power = ~(np.isnan(p0) | np.isnan(p1))
    trap = (p0 + p1) / 2.0 * dt / 3600.0
    energy = np.where(counter_ok, delta, np.where(has_power, trap, 0.0))
    valid = ok_gap & (counter_ok | has_power)
    energy = np.where(valid, energy, 0.0)
    covered = np.where(valid, dt, 0.0)
    return energy, covered


def interval_series(
    ts_s: ArrayLike,
    counter: ArrayLike | None = None,
    power_w: ArrayLike | None = None,
    *,
    interval_seconds: int,
    max_gap_seconds: float,
    rollover_wh: float | None = None,
    start_s: int | None = None,
    end_s: int | None = None,
    unit: str = "Wh",
) -> IntervalSeries:
    """Amount per epoch-aligned interval from one meter's samples (the batch form).

    ``ts_s`` are Unix seconds; ``counter`` the cumulative counter (Wh or L) and ``power_w`` the
    power, each with None/NaN where a sample lacks it. ``start_s``/``end_s`` (on the interval
    grid) fix the output range; by default it spans the samples. Runs in O(n log n) numpy.
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
        # The first of several samples with one timestamp wins, as in IntervalAccumulator.
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
    energy, covered = _steps(ts, cnt, pw, max_gap_seconds, rollover_wh)
    # Cumulative amount is piecewise linear in time between samples; reading it at the
    # interval boundaries spreads every step over its intervals in proportion to time.
    cum_e = np.concatenate(([0.0], np.cumsum(energy)))
    cum_c = np.concatenate(([0.0], np.cumsum(covered)))
    bounds = start_s + step * np.arange(nint + 1, dtype=np.float64)
    return IntervalSeries(
        start_s,
        step,
        np.diff(np.interp(bounds, ts, cum_e)),
        np.diff(np.interp(bounds, ts, cum_c)),
        unit,
    )


def energy_by_meter(
    frame: pd.DataFrame,
    *,
    interval_seconds: int,
    max_gap_seconds: float,
    start_s: int,
    end_s: int,
    rollovers_wh: Mapping[str, float] | None = None,
) -> dict[str, IntervalSeries]:
    """Per-meter energy series over ``[start_s, end_s)`` from a long table of samples.

    ``frame`` has columns ``meter``, ``ts_s`` and any of ``energy_wh``, ``power_w``. Samples
    just outside the window should be included so the steps crossing its edges are counted.
    """
    out: dict[str, IntervalSeries] = {}
    rollovers = rollovers_wh or {}
    has_e = "energy_wh" in frame.columns
    has_p = "power_w" in frame.columns
    for meter, group in frame.groupby("meter", sort=False):
        name = str(meter)
        out[name] = interval_series(
            group["ts_s"].to_numpy(dtype=np.float64),
            group["energy_wh"].to_numpy(dtype=np.float64) if has_e else None,
            group["power_w"].to_numpy(dtype=np.float64) if has_p else None,
            interval_seconds=interval_seconds,
            max_gap_seconds=max_gap_seconds,
            rollover_wh=rollovers.get(name),
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
