"""A running collector for end-to-end tests: /metrics reads, gateway batches, paced feeding.

``running_collector(settings)`` starts the real agent (MQTT in, sinks out) with live KPIs and
its /metrics endpoint on a free port, wired as ``greendc collect`` wires them;
``scrape(url)`` reads that endpoint over HTTP and parses it with prometheus_client's own
parser; ``Ticker`` publishes on a cadence from a background thread while a test polls
Prometheus, so counters grow between scrapes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from greendc.app.collect import running_collector as collector_wiring
from greendc.collector.agent import Agent
from greendc.config import Settings
from greendc.exporters.prometheus import MetricsServer
from tests.support.mqtt import Publisher
from tests.support.servers import Mosquitto, http_request

CONNECT_DEADLINE_SECONDS = 10.0


@dataclass(frozen=True)
class RunningCollector:
    """A started agent (with live KPIs) and its /metrics endpoint."""

    agent: Agent
    exporter: MetricsServer

    @property
    def target(self) -> str:
        """The ``host:port`` Prometheus scrapes."""
        return f"{self.exporter.host}:{self.exporter.port}"


@contextmanager
def running_collector(settings: Settings) -> Iterator[RunningCollector]:
    """``greendc collect``'s own wiring (greendc.app.collect), waited on until subscribed.

    The tests run what production runs: agent, live KPIs and /metrics are put together by
    the same function, and stopped by it (MQTT first, then the sinks, then /metrics).
    """
    with collector_wiring(settings, tune_gc=False) as running:
        if running.metrics is None:
            raise AssertionError("metrics.enabled is off: the test needs /metrics")
        if not running.agent.wait_connected(CONNECT_DEADLINE_SECONDS):
            raise AssertionError(f"the agent did not connect to {settings.mqtt.url}")
        yield RunningCollector(running.agent, running.metrics)


@contextmanager
def publisher(broker: Mosquitto) -> Iterator[Publisher]:
    """A QoS 1 publisher on ``broker``, disconnected on exit."""
    pub = Publisher(broker.host, broker.port)
    try:
        yield pub
    finally:
        pub.close()


def scrape(url: str) -> dict[str, list[Sample]]:
    """GET /metrics and return its samples grouped by sample name (``_bucket`` etc. apart)."""
    status, body = http_request(url)
    if status != 200:
        raise AssertionError(f"GET {url} answered {status}: {body[:300]!r}")
    out: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def batch(
    prefix: str, site: str, ts: float, fields: dict[str, dict[str, float]]
) -> tuple[str, list[dict[str, Any]]]:
    """One native gateway batch (every meter of a site at one instant) as (topic, payload).

    A whole site in one message is decoded and accounted under one lock, so a scrape never
    sees the facility counter of a step without its IT counter.
    """
    items = [{"meter": meter, "ts": ts, **values} for meter, values in fields.items()]
    return f"{prefix}/greendc/{site}", items


class Ticker:
    """Calls ``fn()`` every ``interval_s`` from a named thread until stopped.

    ``stop()`` joins the thread and re-raises the first exception ``fn`` raised, so a
    publishing failure fails the test instead of silently starving it of data.
    """

    def __init__(self, fn: Callable[[], None], interval_s: float, name: str) -> None:
        """Prepare (not start) the ticker."""
        self._fn = fn
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self.ticks = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._fn()
                self.ticks += 1
                # The cadence of publishing, not a wait for a condition.
                self._stop.wait(self._interval_s)
        except BaseException as exc:
            self._error = exc

    def start(self) -> Ticker:
        """Start ticking; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop, join, and re-raise what ``fn`` raised, if anything."""
        self._stop.set()
        self._thread.join(timeout=30.0)
        if self._error is not None:
            raise AssertionError(f"the publishing thread failed: {self._error!r}") from self._error

    def __enter__(self) -> Ticker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, *_rest: object) -> None:
        try:
            self.stop()
        except AssertionError:
            # The test's own failure is the one to report; a publishing error is raised only
            # when the test body itself passed.
            if exc_type is None:
                raise
