"""The polling schedule: one asyncio task per device, a semaphore for concurrency.

Each device is polled every ``interval_seconds`` (each gap drawn within ± ``jitter_fraction``
so thousands of devices do not fire together); its first poll falls at a random point of
its first interval. A failed poll doubles the gap (interval, 2x, 4x ... up to
``backoff_max_seconds``) until the device answers again. At most ``max_concurrency`` polls
are in flight at once. A poll that falls behind is not made up: the schedule moves on.

A successful poll publishes what validated; a failed one publishes nothing, so the meter
goes stale in the collector (never zero) while the bridge's /metrics says why.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from greendc.collector.bridge._base import DeviceError, Poller
from greendc.collector.bridge.health import Health
from greendc.collector.bridge.values import RawValue, Refused, to_canonical
from greendc.config import _DEFAULT_LIMITS

log = logging.getLogger("greendc.bridge")

# (site, meter, unix seconds, {quantity: canonical value})
Publish = Callable[[str, str, float, dict[str, float]], None]


@dataclass(frozen=True)
class Job:
    """One device to poll: its identity, its poller and its timing."""

    device: str
    site: str
    meter: str
    poller: Poller
    interval_s: float
    # A backstop above the pollers' own per-request timeouts: a poll still running after
    # this long (a bug, a hung thread) fails as a timeout instead of stalling the device.
    deadline_s: float = 60.0


def backoff_seconds(interval_s: float, failures: int, cap_s: float) -> float:
    """The gap after ``failures`` failed polls in a row: interval x 2^(failures-1), capped."""
    if failures <= 0:
        return interval_s
    return min(cap_s, interval_s * 2.0 ** min(failures - 1, 30))


def validate(values: list[RawValue]) -> tuple[dict[str, float], list[tuple[str, str]]]:
    """The publishable fields of one poll, and (reason, detail) of each value refused."""
    fields: dict[str, float] = {}
    refused: list[tuple[str, str]] = []
    for v in values:
        try:
            fields[v.quantity.value] = to_canonical(v, _DEFAULT_LIMITS[v.quantity])
        except Refused as exc:
            refused.append((exc.reason, exc.detail))
    return fields, refused


class Scheduler:
    """Runs every job until :meth:`run`'s stop event is set."""

    def __init__(
        self,
        jobs: list[Job],
        health: Health,
        publish: Publish,
        *,
        jitter_fraction: float,
        max_concurrency: int,
        backoff_max_s: float,
        rng: random.Random | None = None,
    ) -> None:
        self.jobs = jobs
        self.health = health
        self.publish = publish
        self.jitter = jitter_fraction
        self.backoff_max_s = backoff_max_s
        self.max_concurrency = max_concurrency
        self.rng = rng or random.Random()

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set, then wait for polls in flight and return."""
        sem = asyncio.Semaphore(self.max_concurrency)
        tasks = [
            asyncio.create_task(self._device(job, sem, stop), name=f"poll {job.device}")
            for job in self.jobs
        ]
        await stop.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _device(self, job: Job, sem: asyncio.Semaphore, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + self.rng.uniform(0, job.interval_s)
        while not stop.is_set():
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            async with sem:
                failures = await self.poll_once(job)
            gap = backoff_seconds(job.interval_s, failures, self.backoff_max_s)
            gap *= 1.0 + self.rng.uniform(-self.jitter, self.jitter)
            due = max(due + gap, loop.time()) if failures == 0 else loop.time() + gap

    async def poll_once(self, job: Job) -> int:
        """Poll ``job`` once, publish what validates; return the failures in a row."""
        try:
            values = await asyncio.wait_for(job.poller.poll(), job.deadline_s)
        except TimeoutError:
            return self.health.failure(
                job.device, "timeout", f"the whole poll took over {job.deadline_s:g} s"
            )
        except DeviceError as exc:
            failures = self.health.failure(job.device, exc.reason, exc.detail)
            if failures == 1:
                log.warning("device %s failed: %s", job.device, exc)
            return failures
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("device %s: unexpected error while polling", job.device)
            return self.health.failure(job.device, "internal", f"{type(exc).__name__}: {exc}")
        now = time.time()
        fields, refused = validate(values)
        for reason, detail in refused:
            log.debug("device %s: value refused: %s: %s", job.device, reason, detail)
        if fields:
            self.publish(job.site, job.meter, now, fields)
        status = getattr(job.poller, "status", None)  # SNMP profiles' device states
        self.health.success(job.device, now, [r for r, _ in refused], status)
        return 0
