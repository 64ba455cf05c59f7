"""Report periods in a site's own time zone: months, years and local days.

A month starts at local midnight on the 1st in the site's IANA zone, so March in
Europe/Berlin is 743 hours long (spring forward) and October 745 (fall back). Every
boundary is a whole minute in UTC for every zone in use today, so it falls on the 60 s
energy grid (see ``REPORT_INTERVAL_SECONDS``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from greendc.kpi import Window

# Divides every current UTC offset (multiples of 15 min) and an hour, so local days and
# hours are whole numbers of intervals.
REPORT_INTERVAL_SECONDS = 60

_MONTH_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_YEAR_RE = re.compile(r"^\d{4}$")


@dataclass(frozen=True)
class Period:
    """A calendar month or year, independent of time zone."""

    year: int
    month: int | None = None  # None: the whole year

    @classmethod
    def parse_month(cls, text: str) -> Period:
        """``YYYY-MM`` -> Period; ValueError with a usable message otherwise."""
        m = _MONTH_RE.match(text or "")
        if not m:
            raise ValueError(f"--month {text!r} is not YYYY-MM (e.g. 2026-03)")
        return cls(int(m.group(1)), int(m.group(2)))

    @classmethod
    def parse_year(cls, text: str) -> Period:
        """``YYYY`` -> Period; ValueError otherwise."""
        if not _YEAR_RE.match(text or ""):
            raise ValueError(f"--year {text!r} is not YYYY (e.g. 2026)")
        return cls(int(text))

    @property
    def label(self) -> str:
        """``2026-03`` or ``2026``."""
        return f"{self.year:04d}-{self.month:02d}" if self.month else f"{self.year:04d}"

    def previous(self) -> Period:
        """The month (or year) before."""
        if self.month is None:
            return Period(self.year - 1)
        if self.month == 1:
            return Period(self.year - 1, 12)
        return Period(self.year, self.month - 1)

    def last_year(self) -> Period:
        """The same month (or the year) one year earlier."""
        return Period(self.year - 1, self.month)

    def first_day(self) -> date:
        """The first calendar day."""
        return date(self.year, self.month or 1, 1)

    def end_day(self) -> date:
        """The first calendar day after the period."""
        if self.month is None:
            return date(self.year + 1, 1, 1)
        if self.month == 12:
            return date(self.year + 1, 1, 1)
        return date(self.year, self.month + 1, 1)

    def window(self, timezone: str) -> Window:
        """``[start, end)`` in Unix seconds, from local midnight to local midnight."""
        return Window(
            local_midnight(self.first_day(), timezone), local_midnight(self.end_day(), timezone)
        )

    def days(self, timezone: str) -> list[tuple[date, Window]]:
        """Each local calendar day of the period with its window (23 or 25 h across DST)."""
        out = []
        d = self.first_day()
        end = self.end_day()
        while d < end:
            nxt = d + timedelta(days=1)
            out.append((d, Window(local_midnight(d, timezone), local_midnight(nxt, timezone))))
            d = nxt
        return out


def local_midnight(day: date, timezone: str) -> int:
    """Unix seconds of 00:00 local time on ``day`` in ``timezone``."""
    dt = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(timezone))
    return int(dt.timestamp())


__all__ = ["REPORT_INTERVAL_SECONDS", "Period", "local_midnight"]
