"""Energy step by step: the streaming half of :mod:`greendc.energy`, for the live path.

:func:`step_energy` applies rules 1-4 of :mod:`greendc.energy` to one step between two
samples of a meter; :class:`EnergyRing` sums those steps per interval for the most recent
intervals; :func:`covered_seconds` measures how much of a window a meter's steps covered.
:mod:`greendc.rolling` feeds every accepted reading through them. The live path is tested
equal to the batch series of :mod:`greendc.energy` (``tests/unit/test_energy.py``).

This module is plain Python on purpose: the collector imports it, and numpy (which the batch
form needs) would add about 20 MiB to every agent's resident memory.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from operator import eq, mul

from greendc._errors import KPIError


def step_energy(
    t0_s: float,
    c0: float | None,
    p0: float | None,
    t1_s: float,
    c1: float | None,
    p1: float | None,
    *,
    max_gap_seconds: float,
    rollover_wh: float | None = None,
) -> float | None:
    """Energy (Wh, or L for a water counter) of one step between two samples, or None if missing.

    Rules 1-4 of :mod:`greendc.energy`. ``c*`` are counter values, ``p*`` power in W; None or
    NaN means absent.
    """
    dt = t1_s - t0_s
    if dt <= 0 or dt > max_gap_seconds:
        return None
    if c0 is not None and c1 is not None and not (math.isnan(c0) or math.isnan(c1)):
        delta = c1 - c0
        if delta >= 0:
            return delta
        if rollover_wh is not None and delta + rollover_wh <= rollover_wh / 2:
            return delta + rollover_wh
    if p0 is not None and p1 is not None and not (math.isnan(p0) or math.isnan(p1)):
        return (p0 + p1) / 2.0 * dt / 3600.0
    return None


class EnergyRing:
    """Energy per interval for the most recent ``capacity`` intervals, summed over its meters.

    The live path's store: energy is additive, so every meter of one site, role, zone and
    sign feeds one ring, and memory grows with the number of such groups, not meters
    (100,000 meters with per-meter rings of a day of minutes took 3.5 GB). Each step's energy
    is spread over the intervals it spans in proportion to time, as in
    :func:`greendc.energy.interval_series`. The ring holds the ``capacity`` intervals up to
    the newest one any of its meters reached: a newer interval takes the slot of one
    ``capacity`` older, and energy of an interval older than the ring holds is not kept (a
    lagging meter's backlog cannot wipe what the others counted).
    """

    __slots__ = (
        "_amount",
        "_index",
        "_open_end_s",
        "_open_energy",
        "_open_k",
        "_open_start_s",
        "capacity",
        "interval_seconds",
    )

    def __init__(self, interval_seconds: int, capacity: int) -> None:
        if capacity < 1:
            raise KPIError(f"capacity must be >= 1, got {capacity}")
        self.interval_seconds = interval_seconds
        self.capacity = capacity
        self._amount = array("d", bytes(8 * capacity))
        self._index = array("q", [-1]) * capacity
        # The open interval: the newest one held, where nearly every step lands. Its energy
        # is summed in a plain float and added to the array when another interval is
        # touched or the ring is read (array items are boxed on every access: 0.5 us a step).
        self._open_k = -1
        self._open_start_s = math.inf  # nothing open yet: no step is inside
        self._open_end_s = -math.inf
        self._open_energy = 0.0

    def spread(self, t0: float, t1: float, e: float) -> None:
        """Add the energy ``e`` of the step ``t0 -> t1`` to the intervals it spans."""
        if self._open_start_s <= t0 < t1 <= self._open_end_s:
            self._open_energy += e
            return
        self._flush()
        self._spread(t0, t1, e)
        step = self.interval_seconds
        k1 = math.ceil(t1 / step) - 1
        if k1 >= self._open_k and self._index[k1 % self.capacity] == k1:
            self._open_k = k1
            self._open_start_s = float(k1 * step)
            self._open_end_s = float((k1 + 1) * step)

    def _flush(self) -> None:
        if self._open_energy:
            slot = self._open_k % self.capacity
            if self._index[slot] == self._open_k:  # always: only _spread evicts, after a flush
                self._amount[slot] += self._open_energy
            self._open_energy = 0.0

    def _spread(self, t0: float, t1: float, e: float) -> None:
        step = self.interval_seconds
        cap = self.capacity
        amount, index = self._amount, self._index
        k = int(t0 // step)
        k_last = math.ceil(t1 / step) - 1
        if k == k_last:  # nearly every step: inside one interval
            slot = k % cap
            held = index[slot]
            if held != k:
                if held > k:
                    return  # older than the ring holds (another meter is ahead): no window
                index[slot] = k
                amount[slot] = 0.0
            amount[slot] += e
            return
        dt = t1 - t0
        if k_last - k >= cap:
            k = k_last - cap + 1  # older intervals would be evicted at once anyway
        while k <= k_last:
            lo = max(t0, k * step)
            hi = min(t1, (k + 1) * step)
            if hi > lo:
                slot = k % cap
                held = index[slot]
                if held < k:
                    index[slot] = k
                    amount[slot] = 0.0
                    held = k
                if held == k:
                    amount[slot] += e * (hi - lo) / dt
            k += 1

    def amounts(self, start_s: int, end_s: int) -> list[float]:
        """Energy per interval of ``[start_s, end_s)`` (intervals no longer held read 0)."""
        step = self.interval_seconds
        if start_s % step or end_s % step or end_s < start_s:
            raise KPIError(f"[{start_s}, {end_s}) is not a window on the {step} s grid")
        self._flush()
        cap, index, amount = self.capacity, self._index, self._amount
        ks = range(start_s // step, end_s // step)
        first, n = ks.start % cap, len(ks)
        if n > cap:  # longer than the ring: most of the window is not held
            return [amount[k % cap] if index[k % cap] == k else 0.0 for k in ks]
        # The window's slots are one or two runs of the arrays: copied as such (a snapshot
        # reads every ring for every window; per-item indexing was most of its time).
        held, amt = index[first : first + n], amount[first : first + n]
        if len(held) < n:
            held += index[: n - len(held)]
            amt += amount[: n - len(amt)]
        wanted = array("q", ks)
        if held == wanted:  # every interval of the window is held
            return amt.tolist()
        return list(map(mul, amt, map(eq, held, wanted)))  # x * False == 0.0


def covered_seconds(runs: Sequence[Sequence[float]], start_s: float, end_s: float) -> float:
    """Seconds of ``[start_s, end_s)`` inside the covered runs ``[(run_start, run_end), ...]``."""
    total = 0.0
    for lo, hi in runs:
        overlap = min(hi, end_s) - max(lo, start_s)
        if overlap > 0:
            total += overlap
    return total


__all__ = ["EnergyRing", "covered_seconds", "step_energy"]
