"""Time that an NTP step of the system clock does not move.

The agent needs two kinds of time. Durations (is a meter stale? when did we last log?) come
from the monotonic clock, which never steps. "Now" as a date (the window a reading's own
timestamp must fall in, the timestamp given to a reading that carries none, the end of the
live KPI windows) comes from :class:`SteadyClock`: the system clock read once, carried
forward by the monotonic clock. When the system clock steps (an NTP correction, an operator
fixing the date), the steady clock does not jump with it; the step is logged and reported
by :meth:`SteadyClock.step_seconds`, and the decoder accepts timestamps that fit either
clock, so devices that kept the old time and devices that follow the new one both pass and
no batch is rejected for a step of the agent's clock. A step that persists for
``adopt_after_s`` of monotonic time is adopted (the steady clock re-anchors to the system
clock), since by then the system clock is the one to trust.

Device timestamps are never changed by any of this.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

# Below this a difference between the clocks is drift or NTP slewing, not a step.
STEP_TOLERANCE_S = 2.0
ADOPT_AFTER_S = 900.0


class SteadyClock:
    """The system clock as it read at the start, carried forward by the monotonic clock."""

    def __init__(
        self,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        *,
        tolerance_s: float = STEP_TOLERANCE_S,
        adopt_after_s: float = ADOPT_AFTER_S,
    ) -> None:
        self._wall = wall
        self._mono = monotonic
        self._tolerance_s = tolerance_s
        self._adopt_after_s = adopt_after_s
        self._lock = threading.Lock()
        self._anchor_wall = wall()
        self._anchor_mono = monotonic()
        self._step_s = 0.0
        self._step_seen_mono: float | None = None

    def monotonic(self) -> float:
        """Seconds on the monotonic clock (for durations only)."""
        return self._mono()

    def now(self) -> float:
        """Unix seconds, steady across steps of the system clock; updates ``step_seconds``."""
        mono = self._mono()
        wall = self._wall()
        with self._lock:
            steady = self._anchor_wall + (mono - self._anchor_mono)
            step = wall - steady
            if abs(step) <= self._tolerance_s:
                if self._step_s:
                    log.info("the system clock agrees with the agent's steady clock again")
                self._step_s = 0.0
                self._step_seen_mono = None
                return steady
            if self._step_seen_mono is None or abs(step - self._step_s) > self._tolerance_s:
                log.warning(
                    "the system clock stepped by %+.1f s; device timestamps are kept as sent "
                    "and accepted against either clock for %.0f s, then the new time is adopted",
                    step,
                    self._adopt_after_s,
                )
                self._step_seen_mono = mono
            self._step_s = step
            if mono - self._step_seen_mono >= self._adopt_after_s:
                log.info("adopting the system clock's time (a step of %+.1f s)", step)
                self._anchor_wall, self._anchor_mono = wall, mono
                self._step_s = 0.0
                self._step_seen_mono = None
                return wall
            return steady

    def step_seconds(self) -> float:
        """System clock minus steady clock at the last :meth:`now` (0 when no step)."""
        return self._step_s
