"""Polling with a deadline: wait on readiness, never on sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(pred: Callable[[], Any], timeout_s: float = 20.0, interval_s: float = 0.05) -> Any:
    """Poll ``pred`` until it returns something truthy or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    value = pred()
    while not value and time.monotonic() < deadline:
        time.sleep(interval_s)
        value = pred()
    return value


__all__ = ["wait_until"]
