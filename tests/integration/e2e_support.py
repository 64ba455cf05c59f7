"""Re-exports tests.support.collector and its builders (the old import path, kept for
existing tests)."""

from tests.support.builders import FOUR_CLIMATES, REPO, four_climates_settings
from tests.support.collector import (
    CONNECT_DEADLINE_SECONDS,
    RunningCollector,
    Ticker,
    batch,
    publisher,
    running_collector,
    scrape,
)

__all__ = [
    "CONNECT_DEADLINE_SECONDS",
    "FOUR_CLIMATES",
    "REPO",
    "RunningCollector",
    "Ticker",
    "batch",
    "four_climates_settings",
    "publisher",
    "running_collector",
    "scrape",
]
