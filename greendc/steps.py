"""Energy step by step: the streaming half of :mod:`greendc.energy`, for the live path.

:func:`step_energy` applies rules 1-5 of :mod:`greendc.energy` to one step between two
samples of a meter; :class:`CounterTrack` holds a meter's baseline and decides spikes, resets
and meter swaps; :class:`EnergyRing` sums those steps per interval for the most recent
intervals; :func:`covered_seconds` measures how much of a window a meter's steps covered.
:mod:`greendc.rolling` feeds every accepted reading through them. The live path is tested
equal to the batch series of :mod:`greendc.energy` (``tests/unit/test_energy.py``).

This module is plain Python on purpose: the collector imports it, and numpy (which the batch
form needs) would add about 20 MiB to every agent's resident memory.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from operator import eq, mul
from typing import TYPE_CHECKING

from greendc._errors import KPIError

if TYPE_CHECKING:
    from greendc.config import KPISettings, Meter, Site


class Step(IntEnum):
    """What a step between two kept samples of a meter is."""

    MISSING = 0  # no energy, no coverage
    MEASURED = 1  # counter difference (or power trapezoid) within kpi.max_gap_seconds
    BRIDGED = 2  # counter difference across a longer gap: real energy, timing unknown


class CounterEvent(StrEnum):
    """Something a counter did that is not plain energy (counted, and shown in the report)."""

    SPIKE = "spike"  # one reading far off, the next back in line: that reading is dropped
    RESET = "reset"  # the counter went down (reboot, meter swap): the new value is the baseline
    JUMP = "jump"  # the counter went up faster than max power allows, and stayed: new baseline
    ROLLOVER = "rollover"  # the register wrapped at its configured width: counted as energy
    BRIDGED = "bridged"  # a counter difference across a gap was kept as bridged energy


def _absent(x: float | None) -> bool:
    return x is None or x != x  # NaN


def bound_w(
    max_power_w: float | None,
    power_factor: float | None,
    floor_w: float,
    p0: float | None,
    p1: float | None,
) -> float | None:
    """The largest power a step may show: the meter's own ``max_power_w``, or ``power_factor``
    times the larger of the step's power readings and ``floor_w`` (the site's installed IT
    power); None means no bound (water meters without a configured maximum)."""
    if max_power_w is not None:
        return max_power_w
    if power_factor is None:
        return None
    m = floor_w
    if p0 is not None and abs(p0) > m:  # NaN compares false
        m = abs(p0)
    if p1 is not None and abs(p1) > m:
        m = abs(p1)
    return power_factor * m


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
    max_power_w: float | None = None,
) -> tuple[float, Step, bool, bool]:
    """One step between two samples: ``(energy, kind, implausible, wrapped)``.

    Rules 1-5 of :mod:`greendc.energy`. ``c*`` are counter values, ``p*`` power in W; None or
    NaN means absent. ``implausible`` is True when both samples carry the counter and its
    difference is negative (and not a rollover) or above ``max_power_w`` times the elapsed
    time: that difference is never energy (the caller decides between a spike and a reset).
    ``wrapped`` is True when the difference is a register rollover.
    """
    dt = t1_s - t0_s
    if dt <= 0:
        return 0.0, Step.MISSING, False, False
    implausible = False
    if not (_absent(c0) or _absent(c1)):
        delta = c1 - c0  # type: ignore[operator]
        wrapped = False
        if delta < 0 and rollover_wh is not None and delta + rollover_wh <= rollover_wh / 2:
            delta += rollover_wh
            wrapped = True
        if delta >= 0 and (max_power_w is None or delta <= max_power_w * dt / 3600.0):
            return delta, Step.MEASURED if dt <= max_gap_seconds else Step.BRIDGED, False, wrapped
        implausible = True
    if dt > max_gap_seconds or _absent(p0) or _absent(p1):
        return 0.0, Step.MISSING, implausible, False
    if max_power_w is not None and max(abs(p0), abs(p1)) > max_power_w:  # type: ignore[arg-type]
        return 0.0, Step.MISSING, implausible, False  # a power reading beyond the bound
    return (p0 + p1) / 2.0 * dt / 3600.0, Step.MEASURED, implausible, False  # type: ignore[operator]


Emit = Callable[[float, float, float, Step], None]


@dataclass(frozen=True)
class CounterRules:
    """One meter's counter rules: register width and the plausibility bound.

    ``rollover`` is the value at which the register wraps to 0 (canonical unit: Wh, or L);
    ``max_power_w`` the meter's own maximum power (for water, litres per hour); else
    ``power_factor`` times the larger of a step's power readings and ``floor_w``. All None:
    any non-negative step is plausible.
    """

    rollover: float | None = None
    max_power_w: float | None = None
    power_factor: float | None = None
    floor_w: float = 0.0

    def track(self, max_gap_seconds: float) -> CounterTrack:
        """A fresh :class:`CounterTrack` with these rules."""
        return CounterTrack(
            max_gap_seconds=max_gap_seconds,
            rollover=self.rollover,
            max_power_w=self.max_power_w,
            power_factor=self.power_factor,
            floor_w=self.floor_w,
        )


def counter_rules(site: Site, meter: Meter, kpi: KPISettings) -> CounterRules:
    """The rules of ``meter`` from the configuration (one home for the live path and report).

    Energy meters without their own ``max_power_w`` are bounded by ``kpi.max_power_factor``
    times the larger of the step's power readings and the site's installed IT power; water
    meters only by their own ``max_power_w`` (litres per hour).
    """
    water = meter.role.value == "water"
    factor = None if water else kpi.max_power_factor
    return CounterRules(
        rollover=meter.rollover,
        max_power_w=meter.max_power_w,
        power_factor=factor,
        floor_w=0.0 if water else site.installed_it_kw * 1000.0,
    )


class CounterTrack:
    """The step-by-step state of one meter: its baseline sample and a suspect reading.

    A counter step that is not physically possible (see :func:`step_energy`) makes the new
    reading a *suspect*, held back. The next reading decides: if the step from the baseline
    to it is plausible, the suspect was a **spike** (one bad reading) and is dropped; else
    the suspect is a **reset** (counter went down) or a **jump** (up, and stayed: a meter
    swap) and becomes the new baseline, its own step counting only through power. Every
    step between kept samples is emitted once, in time order, with its kind (missing steps
    too, so the batch form can lay them end to end). The live path and the batch form both
    run this class (the batch only for meters whose counters misbehave), so they agree.
    """

    __slots__ = (
        "c",
        "event_times",
        "events",
        "floor_w",
        "max_gap_seconds",
        "max_power_w",
        "p",
        "pending",
        "power_factor",
        "rollover",
        "t",
    )

    def __init__(
        self,
        *,
        max_gap_seconds: float,
        rollover: float | None = None,
        max_power_w: float | None = None,
        power_factor: float | None = None,
        floor_w: float = 0.0,
    ) -> None:
        self.max_gap_seconds = max_gap_seconds
        self.rollover = rollover
        self.max_power_w = max_power_w
        self.power_factor = power_factor
        self.floor_w = floor_w
        self.t: float | None = None
        self.c: float | None = None
        self.p: float | None = None
        self.pending: tuple[float, float | None, float | None] | None = None
        self.events: dict[CounterEvent, int] = {}
        self.event_times: list[tuple[float, CounterEvent]] | None = None

    def _event(self, kind: CounterEvent, t: float) -> None:
        self.events[kind] = self.events.get(kind, 0) + 1
        if self.event_times is not None:
            self.event_times.append((t, kind))

    def _step(
        self,
        t0: float,
        c0: float | None,
        p0: float | None,
        t1: float,
        c1: float | None,
        p1: float | None,
    ) -> tuple[float, Step, bool, bool]:
        bound = bound_w(self.max_power_w, self.power_factor, self.floor_w, p0, p1)
        return step_energy(
            t0,
            c0,
            p0,
            t1,
            c1,
            p1,
            max_gap_seconds=self.max_gap_seconds,
            rollover_wh=self.rollover,
            max_power_w=bound,
        )

    def feed(self, t: float, c: float | None, p: float | None, emit: Emit) -> bool:
        """Account one sample; False (and nothing emitted) when it is not newer than the last."""
        if self.t is None:
            self.t, self.c, self.p = t, c, p
            return True
        newest = self.pending[0] if self.pending is not None else self.t
        if t <= newest:
            return False
        if self.pending is not None:
            st, sc, sp = self.pending
            self.pending = None
            e, kind, implausible, wrapped = self._step(self.t, self.c, self.p, t, c, p)
            if not implausible and not (_absent(self.c) or _absent(c)):
                self._event(CounterEvent.SPIKE, st)  # the suspect alone was off: drop it
                self._emit(t, c, p, e, kind, wrapped, emit)
                return True
            # The suspect is the new baseline: its own step counts only through power.
            down = not (_absent(sc) or _absent(self.c)) and sc < self.c  # type: ignore[operator]
            self._event(CounterEvent.RESET if down else CounterEvent.JUMP, st)
            e, kind, _, _ = step_energy(
                self.t,
                None,
                self.p,
                st,
                None,
                sp,
                max_gap_seconds=self.max_gap_seconds,
                max_power_w=bound_w(self.max_power_w, self.power_factor, self.floor_w, self.p, sp),
            )
            emit(self.t, st, e, kind)
            self.t, self.c, self.p = st, sc, sp
        e, kind, implausible, wrapped = self._step(self.t, self.c, self.p, t, c, p)
        if implausible:
            self.pending = (t, c, p)
            return True
        self._emit(t, c, p, e, kind, wrapped, emit)
        return True

    def _emit(
        self,
        t: float,
        c: float | None,
        p: float | None,
        e: float,
        kind: Step,
        wrapped: bool,
        emit: Emit,
    ) -> None:
        if wrapped:
            self._event(CounterEvent.ROLLOVER, t)
        if kind is Step.BRIDGED:
            self._event(CounterEvent.BRIDGED, t)
        emit(self.t, t, e, kind)  # type: ignore[arg-type]
        self.t, self.c, self.p = t, c, p


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


__all__ = [
    "CounterEvent",
    "CounterRules",
    "CounterTrack",
    "EnergyRing",
    "Step",
    "bound_w",
    "counter_rules",
    "covered_seconds",
    "step_energy",
]
