"""The steady clock: a step of the system clock neither moves "now" nor goes unnoticed."""

from __future__ import annotations

import pytest

from greendc.collector.clock import SteadyClock


class Clocks:
    """A system clock and a monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.wall = 1_800_000_000.0
        self.mono = 100.0

    def tick(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


def _steady(c: Clocks, **kw: float) -> SteadyClock:
    return SteadyClock(lambda: c.wall, lambda: c.mono, **kw)


@pytest.mark.parametrize("step_s", [3600.0, -3600.0])
def test_a_step_is_reported_not_followed_then_adopted(step_s: float) -> None:
    c = Clocks()
    clock = _steady(c, adopt_after_s=900.0)
    t0 = clock.now()
    c.tick(10)
    assert clock.now() == t0 + 10 and clock.step_seconds() == 0.0
    c.wall += step_s  # NTP steps the system clock
    assert clock.now() == t0 + 10  # "now" keeps counting from where it was
    assert clock.step_seconds() == step_s
    c.tick(899)
    assert clock.now() == t0 + 909 and clock.step_seconds() == step_s
    c.tick(1)
    assert clock.now() == c.wall  # persisted 900 s: the system clock's time is adopted
    assert clock.step_seconds() == 0.0
    c.tick(5)
    assert clock.now() == c.wall


def test_slewing_within_the_tolerance_is_not_a_step() -> None:
    c = Clocks()
    clock = _steady(c, tolerance_s=2.0)
    c.wall += 1.5
    clock.now()
    assert clock.step_seconds() == 0.0


def test_a_step_undone_before_adoption_leaves_no_trace() -> None:
    c = Clocks()
    clock = _steady(c)
    t0 = clock.now()
    c.wall += 3600
    clock.now()
    c.wall -= 3600
    assert clock.now() == t0 and clock.step_seconds() == 0.0
