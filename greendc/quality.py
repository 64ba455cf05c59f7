"""Data quality: the three words every figure carries, and the shares behind them.

A figure (an energy total, a ratio, an emission figure) is

* ``ok``: its inputs cover at least the minimum coverage of its window;
* ``incomplete``: it could be computed, but over less than the minimum coverage; it is shown
  with its coverage (a ratio over the intervals all its inputs cover is unbiased by the gaps,
  a total is the energy actually accounted for, never filled in);
* ``withheld``: there is nothing to compute (no meter, no interval where every input is
  covered, a zero denominator); the reason says which.

The same words appear in /metrics (``greendc_site_kpi_quality``), the report and the EU EED
export. :class:`Shares` says how much of a window was measured step by step, bridged (a
counter difference across a gap: energy the meter measured whose timing is unknown) and
missing; the three add up to 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Quality(StrEnum):
    """How far a figure can be trusted: ok, incomplete or withheld."""

    OK = "ok"
    INCOMPLETE = "incomplete"
    WITHHELD = "withheld"

    @classmethod
    def of(cls, has_value: bool, coverage: float, min_coverage: float) -> Quality:
        """``withheld`` without a value, else ``incomplete`` under the threshold, else ``ok``."""
        if not has_value:
            return cls.WITHHELD
        return cls.OK if coverage >= min_coverage else cls.INCOMPLETE

    @classmethod
    def worst(cls, qualities: list[Quality]) -> Quality:
        """The least trustworthy of several (``ok`` for none): a sum is no better than its parts."""
        order = (cls.OK, cls.INCOMPLETE, cls.WITHHELD)
        return max(qualities, key=order.index, default=cls.OK)


@dataclass(frozen=True)
class Shares:
    """Shares of a window (0..1): measured step by step, bridged across gaps, missing."""

    measured: float
    bridged: float

    @property
    def covered(self) -> float:
        """Measured plus bridged: the coverage."""
        return self.measured + self.bridged

    @property
    def missing(self) -> float:
        """What no reading accounts for."""
        return max(0.0, 1.0 - self.measured - self.bridged)

    def describe(self) -> str:
        """'measured 83.0%, bridged 8.3%, missing 8.7%'."""
        return (
            f"measured {self.measured:.1%}, bridged {self.bridged:.1%}, missing {self.missing:.1%}"
        )


__all__ = ["Quality", "Shares"]
