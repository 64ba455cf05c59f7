"""Energy per interval from samples: counters, resets, rollovers, power, gaps, spreading."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greendc._errors import KPIError
from greendc.energy import (
    IntervalSeries,
    energy_by_meter,
    interval_series,
    merge_intervals,
    water_series,
)
from greendc.steps import CounterEvent, CounterTrack, EnergyRing, Step, covered_seconds, step_energy

GAP = 300.0


def test_power_is_integrated_by_trapezoid_and_spread_in_proportion_to_time() -> None:
    # Steps: [0,30] at 1000->2000 W = 12.5 Wh; [30,90] at 2000 W = 33.33 Wh, half in each minute.
    s = interval_series(
        [0, 30, 90], None, [1000, 2000, 2000], interval_seconds=60, max_gap_seconds=GAP
    )
    assert s.start_s == 0 and len(s) == 2
    assert s.energy_wh == pytest.approx([12.5 + 2000 * 30 / 3600, 2000 * 30 / 3600])
    assert s.covered_seconds == pytest.approx([60, 30])


def test_counter_is_preferred_over_power() -> None:
    # The power readings would give 2 Wh per step; the counter says 5 and 7.
    s = interval_series(
        [0, 60, 120], [100, 105, 112], [120, 120, 120], interval_seconds=60, max_gap_seconds=GAP
    )
    assert s.energy_wh == pytest.approx([5, 7, 0])
    assert s.total() == pytest.approx(12)


def test_counter_reset_is_neither_negative_nor_doubled() -> None:
    # 100 -> 110 (+10), reset to 5 (unknown: missing), 5 -> 15 (+10).
    s = interval_series(
        [0, 60, 120, 180], [100, 110, 5, 15], None, interval_seconds=60, max_gap_seconds=GAP
    )
    assert s.energy_wh == pytest.approx([10, 0, 10, 0])
    assert s.covered_seconds == pytest.approx([60, 0, 60, 0])
    assert np.all(s.energy_wh >= 0)


def test_counter_reset_falls_back_to_power_when_both_samples_have_it() -> None:
    # The reset is decided by the reading after it (a spike would come back down).
    s = interval_series(
        [0, 60, 120, 180],
        [100, 110, 5, 15],
        [600, 600, 600, 600],
        interval_seconds=60,
        max_gap_seconds=GAP,
    )
    assert s.energy_wh == pytest.approx([10, 10, 10, 0])


def test_rollover_wraps_instead_of_resetting() -> None:
    s = interval_series(
        [0, 60, 120],
        [980, 995, 5],
        None,
        interval_seconds=60,
        max_gap_seconds=GAP,
        rollover_wh=1000,
    )
    assert s.energy_wh == pytest.approx([15, 10, 0])


def test_a_large_drop_on_a_rolling_counter_is_a_reset_not_a_wrap() -> None:
    # 400 -> 100 would be a 700 Wh wrap on a 1000 Wh counter: more than half the range.
    e, kind, implausible, wrapped = step_energy(
        0, 400, None, 60, 100, None, max_gap_seconds=GAP, rollover_wh=1000
    )
    assert (e, kind, implausible, wrapped) == (0.0, Step.MISSING, True, False)
    e, kind, implausible, wrapped = step_energy(
        0, 900, None, 60, 100, None, max_gap_seconds=GAP, rollover_wh=1000
    )
    assert (e, kind, implausible, wrapped) == (200, Step.MEASURED, False, True)


def test_gap_longer_than_max_is_missing_not_bridged() -> None:
    s = interval_series(
        [0, 60, 600, 660],
        None,
        [1000, 1000, 1000, 1000],
        interval_seconds=60,
        max_gap_seconds=GAP,
    )
    assert s.energy_wh[0] == pytest.approx(1000 / 60)
    assert s.energy_wh[1:10] == pytest.approx(np.zeros(9))
    assert s.covered_seconds[1:10] == pytest.approx(np.zeros(9))
    assert s.energy_wh[10] == pytest.approx(1000 / 60)
    assert s.coverage() == pytest.approx(120 / 720)


def test_unsorted_and_duplicate_samples() -> None:
    s = interval_series(
        [60, 0, 60, 120], [110, 100, 999, 130], None, interval_seconds=60, max_gap_seconds=GAP
    )
    assert s.total() == pytest.approx(30)


def test_explicit_window_pads_with_uncovered_intervals() -> None:
    s = interval_series(
        [120, 180], [0, 10], None, interval_seconds=60, max_gap_seconds=GAP, start_s=0, end_s=300
    )
    assert s.energy_wh == pytest.approx([0, 0, 10, 0, 0])
    assert s.covered_seconds == pytest.approx([0, 0, 60, 0, 0])


def test_misaligned_window_is_rejected() -> None:
    with pytest.raises(KPIError, match="grid"):
        interval_series([0, 60], [0, 1], None, interval_seconds=60, max_gap_seconds=GAP, start_s=7)


def test_water_goes_through_the_counter_logic_in_litres() -> None:
    s = water_series([0, 60, 120], [10, 12, 1], interval_seconds=60, max_gap_seconds=GAP)
    assert s.unit == "L"
    assert s.amount == pytest.approx([2, 0, 0])
    with pytest.raises(KPIError, match="not Wh"):
        _ = s.energy_wh


def test_energy_by_meter_from_a_long_table() -> None:
    frame = pd.DataFrame(
        {
            "meter": ["a", "a", "b", "b", "a"],
            "ts_s": [0.0, 60.0, 0.0, 60.0, 120.0],
            "energy_wh": [0.0, 5.0, np.nan, np.nan, 9.0],
            "power_w": [np.nan, np.nan, 60.0, 60.0, np.nan],
        }
    )
    out = energy_by_meter(frame, interval_seconds=60, max_gap_seconds=GAP, start_s=0, end_s=180)
    assert out["a"].energy_wh == pytest.approx([5, 4, 0])
    assert out["b"].energy_wh == pytest.approx([1, 0, 0])


def test_merge_pads_to_the_coarser_grid() -> None:
    s = IntervalSeries(60, 60, np.array([1.0, 2.0, 3.0]), np.array([60.0, 60.0, 30.0]))
    m = merge_intervals(s, 2)
    assert (m.start_s, m.interval_seconds) == (0, 120)
    assert m.amount == pytest.approx([1, 5])
    assert m.covered_seconds == pytest.approx([60, 90])


# ---------------------------------------------------------------------------------------
# Properties


@st.composite
def samples(draw: st.DrawFn) -> tuple[list[float], list[float | None], list[float | None]]:
    """Increasing timestamps with counters (sometimes reset) and/or power, some absent."""
    n = draw(st.integers(min_value=0, max_value=25))
    steps = draw(st.lists(st.floats(1.0, 400.0), min_size=n, max_size=n))
    t0 = draw(st.floats(0, 10_000))
    ts = list(np.cumsum([t0, *steps]).round(3))
    counters: list[float | None] = []
    c = draw(st.floats(0, 1e6))
    for _ in ts:
        kind = draw(st.sampled_from(["up", "up", "up", "reset", "none"]))
        if kind == "reset":
            c = draw(st.floats(0, 100))
        elif kind == "up":
            c += draw(st.floats(0, 500))
        counters.append(None if kind == "none" else c)
    powers = [draw(st.one_of(st.none(), st.floats(0, 50_000))) for _ in ts]
    return ts, counters, powers


@settings(max_examples=40, deadline=None)
@given(samples(), st.sampled_from([5, 60, 300]), st.integers(1, 6))
def test_splitting_or_merging_intervals_never_changes_totals(
    data: tuple[list[float], list[float | None], list[float | None]], step: int, factor: int
) -> None:
    ts, counters, powers = data
    fine = interval_series(ts, counters, powers, interval_seconds=step, max_gap_seconds=GAP)
    coarse = interval_series(
        ts, counters, powers, interval_seconds=step * factor, max_gap_seconds=GAP
    )
    merged = merge_intervals(fine, factor)
    assert merged.total() == pytest.approx(fine.total(), rel=1e-9, abs=1e-6)
    assert coarse.total() == pytest.approx(fine.total(), rel=1e-9, abs=1e-6)
    assert merged.amount == pytest.approx(
        coarse.slice(merged.start_s, merged.end_s).amount, rel=1e-9, abs=1e-6
    )
    assert float(coarse.covered_seconds.sum()) == pytest.approx(
        float(fine.covered_seconds.sum()), abs=1e-6
    )
    assert np.all(fine.covered_seconds <= step + 1e-6)


@settings(max_examples=40, deadline=None)
@given(samples(), st.sampled_from([10, 60]), st.sampled_from([None, 20_000.0]))
def test_steps_into_a_ring_equal_the_batch_series(
    data: tuple[list[float], list[float | None], list[float | None]],
    step: int,
    max_power_w: float | None,
) -> None:
    """The live path (a CounterTrack per meter, spread into an EnergyRing) gives the batch."""
    ts, counters, powers = data
    batch = interval_series(
        ts, counters, powers, interval_seconds=step, max_gap_seconds=GAP, max_power_w=max_power_w
    )
    ring = EnergyRing(step, capacity=len(batch) + 1)
    bridged = EnergyRing(step, capacity=len(batch) + 1)
    runs: list[list[float]] = []

    def emit(t0: float, t1: float, e: float, kind: Step) -> None:
        if kind is Step.MISSING:
            return
        ring.spread(t0, t1, e)
        if kind is Step.BRIDGED:
            bridged.spread(t0, t1, e)
        runs.append([t0, t1])

    track = CounterTrack(max_gap_seconds=GAP, max_power_w=max_power_w)
    for t, c, p in zip(ts, counters, powers, strict=True):
        track.feed(t, c, p, emit)
    assert ring.amounts(batch.start_s, batch.end_s) == pytest.approx(
        batch.amount, rel=1e-9, abs=1e-6
    )
    assert bridged.amounts(batch.start_s, batch.end_s) == pytest.approx(
        batch.bridged, rel=1e-9, abs=1e-6
    )
    covered = covered_seconds(runs, batch.start_s, batch.end_s)
    assert covered == pytest.approx(float(batch.covered_seconds.sum()), rel=1e-9, abs=1e-6)


# ---------------------------------------------------------------------------------------
# Real meters: spikes, swaps, gaps, rollovers (figures worked out by hand)

MAX_W = 10_000.0  # 10 kW: at most 166.7 Wh a minute


def _minutes(counters: list[float], **kw: float) -> IntervalSeries:
    ts = [60.0 * i for i in range(len(counters))]
    return interval_series(
        ts, counters, None, interval_seconds=60, max_gap_seconds=GAP, max_power_w=MAX_W, **kw
    )


def test_a_spike_of_1e9_wh_adds_nothing_and_is_one_bad_reading() -> None:
    # 100 Wh a minute; the reading at minute 3 says 1e9 Wh, the next is back in line.
    s = _minutes([0, 100, 200, 1e9, 400, 500])
    assert s.total() == pytest.approx(500)  # the counter difference, nothing more
    assert s.amount == pytest.approx([100, 100, 100, 100, 100, 0])  # the 200->400 step spread
    assert [k for _, k in s.events] == [CounterEvent.SPIKE]


def test_a_spike_down_is_one_bad_reading_too() -> None:
    s = _minutes([1000, 1100, 0, 1300])
    assert s.total() == pytest.approx(300)
    assert [k for _, k in s.events] == [CounterEvent.SPIKE]


def test_a_meter_swap_to_a_small_register_loses_at_most_one_interval() -> None:
    # The old meter read 4,000,000 Wh; its replacement starts at 12 Wh: 100 Wh a minute.
    s = _minutes([3_999_800, 3_999_900, 4_000_000, 12, 112, 212])
    assert s.amount == pytest.approx([100, 100, 0, 100, 100, 0])
    assert s.covered_seconds == pytest.approx([60, 60, 0, 60, 60, 0])
    assert [k for _, k in s.events] == [CounterEvent.RESET]


def test_a_swap_to_a_higher_register_is_a_jump_not_energy() -> None:
    s = _minutes([100, 200, 5_000_000, 5_000_100])
    assert s.total() == pytest.approx(200)
    assert [k for _, k in s.events] == [CounterEvent.JUMP]


def test_a_two_hour_outage_is_bridged_with_the_counter_difference() -> None:
    # 100 Wh a minute before, a 2-hour silence (12,000 Wh on the counter), then on again.
    ts = [0.0, 60.0, 60.0 + 7200, 120.0 + 7200]
    c = [0.0, 100.0, 12_100.0, 12_200.0]
    s = interval_series(
        ts,
        c,
        None,
        interval_seconds=3600,
        max_gap_seconds=GAP,
        max_power_w=MAX_W,
        start_s=0,
        end_s=3 * 3600,
    )
    assert s.total() == pytest.approx(12_200)  # the counter difference, all of it
    assert float(s.bridged.sum()) == pytest.approx(12_000)
    # Spread over the gap [60, 7260] in proportion to time.
    assert s.bridged == pytest.approx(
        [12_000 * 3540 / 7200, 12_000 * 3600 / 7200, 12_000 * 60 / 7200]
    )
    assert float(s.bridged_covered.sum()) == pytest.approx(7200)
    assert s.coverage() == pytest.approx(7320 / (3 * 3600))
    assert [k for _, k in s.events] == [CounterEvent.BRIDGED]


def test_a_spike_across_a_gap_is_still_not_energy() -> None:
    ts = [0.0, 60.0, 7260.0, 7320.0]
    s = interval_series(
        ts,
        [0.0, 100.0, 1e9, 1e9 + 100],
        None,
        interval_seconds=60,
        max_gap_seconds=GAP,
        max_power_w=MAX_W,
    )
    assert s.total() == pytest.approx(200)
    assert float(s.bridged.sum()) == 0.0


def test_a_32_bit_register_rollover_counts_the_true_energy() -> None:
    top = 2.0**32
    s = _minutes([top - 150, top - 50, 50, 150], rollover_wh=top)
    assert s.amount == pytest.approx([100, 100, 100, 0])
    assert [k for _, k in s.events] == [CounterEvent.ROLLOVER]


def test_the_default_bound_follows_the_larger_power_reading() -> None:
    # No max_power_w: 3 x max(power readings, 1 kW floor). 60 s at 2 kW read = 6 kW bound,
    # 100 Wh/minute allowed; the 1e6 Wh step is not.
    ts = [0.0, 60.0, 120.0, 180.0]
    s = interval_series(
        ts,
        [0, 30, 1e6, 60],
        [2000.0] * 4,
        interval_seconds=60,
        max_gap_seconds=GAP,
        power_factor=3.0,
        floor_w=1000.0,
    )
    assert s.total() == pytest.approx(60)
    assert [k for _, k in s.events] == [CounterEvent.SPIKE]


@st.composite
def plausible_counters(draw: st.DrawFn) -> tuple[list[float], list[float]]:
    """Counters that only ever step within MAX_W x elapsed time, with gaps of any length."""
    n = draw(st.integers(2, 30))
    ts, cs = [draw(st.floats(0, 10_000))], [draw(st.floats(0, 1e7))]
    for _ in range(n - 1):
        dt = draw(st.sampled_from([1.0, 30.0, 60.0, 299.0, 301.0, 3600.0, 7200.0]))
        share = draw(st.floats(0, 1))
        ts.append(ts[-1] + dt)
        cs.append(cs[-1] + share * MAX_W * dt / 3600.0 * 0.999)
    return ts, cs


@settings(max_examples=200, deadline=None)
@given(plausible_counters(), st.sampled_from([60, 300, 3600]))
def test_bridged_plus_measured_is_the_counter_difference_when_every_step_is_plausible(
    data: tuple[list[float], list[float]], step: int
) -> None:
    ts, cs = data
    start = int(ts[0] // step) * step
    end = (int(ts[-1] // step) + 1) * step
    s = interval_series(
        ts,
        cs,
        None,
        interval_seconds=step,
        max_gap_seconds=GAP,
        max_power_w=MAX_W,
        start_s=start,
        end_s=end,
    )
    assert s.total() == pytest.approx(cs[-1] - cs[0], rel=1e-9, abs=1e-6)
    steps = zip(ts[:-1], ts[1:], cs[:-1], cs[1:], strict=True)
    gaps = sum(c1 - c0 for t0, t1, c0, c1 in steps if t1 - t0 > GAP)
    assert float(s.bridged.sum()) == pytest.approx(gaps, rel=1e-9, abs=1e-6)
    assert not s.events or {k for _, k in s.events} == {CounterEvent.BRIDGED}


@st.composite
def any_counters(draw: st.DrawFn) -> tuple[list[float], list[float | None], list[float | None]]:
    """Readings as a broken meter sends them: spikes, drops, swaps, gaps, power in bound."""
    n = draw(st.integers(2, 30))
    t = draw(st.floats(0, 10_000))
    ts, cs, ps = [], [], []
    for _ in range(n):
        t += draw(st.sampled_from([0.5, 10.0, 60.0, 299.0, 400.0, 7200.0]))
        ts.append(t)
        cs.append(draw(st.one_of(st.none(), st.floats(-1e9, 1e12))))
        ps.append(draw(st.one_of(st.none(), st.floats(0, MAX_W))))
    return ts, cs, ps


@settings(max_examples=300, deadline=None)
@given(any_counters(), st.sampled_from([10, 60, 3600]), st.sampled_from([None, 2.0**32]))
def test_no_reading_makes_an_interval_negative_or_above_max_power(
    data: tuple[list[float], list[float | None], list[float | None]],
    step: int,
    rollover: float | None,
) -> None:
    ts, cs, ps = data
    s = interval_series(
        ts,
        cs,
        ps,
        interval_seconds=step,
        max_gap_seconds=GAP,
        max_power_w=MAX_W,
        rollover_wh=rollover,
    )
    assert np.all(s.amount >= -1e-9)
    assert np.all(s.amount <= MAX_W * step / 3600.0 * (1 + 1e-9) + 1e-9)
    assert np.all(s.bridged <= s.amount + 1e-9)


def test_a_ring_keeps_only_its_capacity() -> None:
    ring = EnergyRing(60, capacity=3)
    for i in range(10):
        ring.spread(i * 60.0, (i + 1) * 60.0, 10.0)
    assert ring.amounts(0, 600) == pytest.approx([0, 0, 0, 0, 0, 0, 0, 10, 10, 10])
    ring.spread(570.0, 630.0, 6.0)  # a step across a boundary is split by time
    assert ring.amounts(540, 660) == pytest.approx([13.0, 3.0])
    with pytest.raises(KPIError, match="grid"):
        ring.amounts(30, 600)


def test_covered_seconds_counts_only_the_window() -> None:
    runs = [[0.0, 100.0], [150.0, 400.0]]
    assert covered_seconds(runs, 60, 300) == pytest.approx(40 + 150)
    assert covered_seconds(runs, 100, 150) == 0.0
    assert covered_seconds([], 0, 60) == 0.0


def test_energy_older_than_the_ring_holds_is_not_kept() -> None:
    ring = EnergyRing(60, capacity=3)
    ring.spread(600.0, 660.0, 5.0)  # interval 10
    ring.spread(420.0, 480.0, 7.0)  # interval 7 would take interval 10's slot: dropped
    ring.spread(380.0, 500.0, 12.0)  # spans 6-8: only the part in interval 8 is kept
    assert ring.amounts(480, 660) == pytest.approx([2.0, 0.0, 5.0])


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.floats(0.0, 590.0),  # start
            st.floats(0.001, 130.0),  # duration: inside one interval or across up to three
            st.floats(-50.0, 50.0),  # energy (export is negative)
        ),
        max_size=40,
    ),
    reads=st.lists(st.integers(0, 39), max_size=3),
)
def test_a_ring_sums_steps_in_any_order_as_a_plain_sum_does(
    steps: list[tuple[float, float, float]], reads: list[int]
) -> None:
    # Meters sharing a ring step in any interleaving (one lagging, one ahead), and the ring
    # may be read between steps; with room for every interval, nothing is evicted, so each
    # interval must hold exactly the time-weighted sum of the steps over it.
    step = 60
    ring = EnergyRing(step, capacity=13)  # intervals 0..12 cover every step
    expected = np.zeros(13)
    for i, (t0, duration, e) in enumerate(steps):
        t1 = t0 + duration
        dt = t1 - t0  # as the ring sees it
        ring.spread(t0, t1, e)
        for k in range(13):
            overlap = min(t1, (k + 1) * step) - max(t0, k * step)
            if overlap > 0:
                expected[k] += e * overlap / dt
        if i in reads:
            assert ring.amounts(0, 780) == pytest.approx(expected, abs=1e-9)
    assert ring.amounts(0, 780) == pytest.approx(expected, abs=1e-9)


def test_a_zero_length_step_is_treated_as_the_general_path_treats_it() -> None:
    ring = EnergyRing(60, capacity=5)
    ring.spread(0.0, 30.0, 1.0)  # interval 0 is now the open one
    ring.spread(60.0, 60.0, 5.0)  # no time: spans no interval
    assert ring.amounts(0, 120) == pytest.approx([1.0, 0.0])


@settings(max_examples=300, deadline=None)
@given(
    capacity=st.integers(1, 8),
    steps=st.lists(
        st.tuples(st.integers(0, 30), st.integers(1, 3), st.floats(-5.0, 5.0)), max_size=25
    ),
    start=st.integers(0, 35),
    length=st.integers(0, 12),
)
def test_a_ring_reads_any_window_as_its_slots_say(
    capacity: int, steps: list[tuple[int, int, float]], start: int, length: int
) -> None:
    # amounts() copies runs of slots (wrapping round the ring) instead of reading slot by
    # slot; it must say exactly what the slots hold: the energy of interval k where slot
    # k % capacity holds k, else 0.
    step = 60
    ring = EnergyRing(step, capacity)
    for k0, span, e in steps:
        ring.spread(k0 * step + 0.5, (k0 + span) * step - 0.5, e)
    got = ring.amounts(start * step, (start + length) * step)
    index, amount = ring._index, ring._amount  # the ring's state, after amounts() flushed
    want = [
        amount[k % capacity] if index[k % capacity] == k else 0.0
        for k in range(start, start + length)
    ]
    assert got == want
