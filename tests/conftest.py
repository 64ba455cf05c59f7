"""Fixtures that start the real servers of tests/servers.py on free loopback ports.

The broker, InfluxDB and VictoriaMetrics are started once per session (lazily, only when a
test asks for them) and stopped at the end; Prometheus is per test because each test scrapes
its own targets. Tests share the session servers, so isolate through ``fresh_influx_db`` and
``mqtt_topic_prefix`` rather than by restarting servers.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.servers import InfluxDB1, Mosquitto, Prometheus, PrometheusFactory, VictoriaMetrics


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[Mosquitto]:
    """A Mosquitto broker (persistence on, unlimited queue) for the whole session."""
    with Mosquitto() as broker:
        yield broker


@pytest.fixture(scope="session")
def influxdb1() -> Iterator[InfluxDB1]:
    """An InfluxDB 1.x server (v1 API) for the whole session."""
    with InfluxDB1() as server:
        yield server


@pytest.fixture(scope="session")
def victoria() -> Iterator[VictoriaMetrics]:
    """A VictoriaMetrics server (InfluxDB v2 write API compatible) for the whole session."""
    with VictoriaMetrics() as server:
        yield server


@pytest.fixture
def prometheus_factory() -> Iterator[PrometheusFactory]:
    """Start Prometheus servers for this test: ``factory(targets, rule_files=...,
    interval_seconds=...)``; all are stopped when the test ends."""
    started: list[Prometheus] = []

    def factory(
        targets: Sequence[str],
        rule_files: Sequence[str | Path] = (),
        interval_seconds: float = 1.0,
    ) -> Prometheus:
        server = Prometheus(targets, rule_files=rule_files, interval_seconds=interval_seconds)
        started.append(server)
        return server.start()

    yield factory
    for server in started:
        server.close()


def _unique_name(request: pytest.FixtureRequest) -> str:
    base = re.sub(r"[^A-Za-z0-9_]", "_", request.node.name)[:40]
    return f"{base}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def fresh_influx_db(influxdb1: InfluxDB1, request: pytest.FixtureRequest) -> Iterator[str]:
    """A new, uniquely named database on the session InfluxDB 1.x; dropped after the test."""
    name = f"greendc_{_unique_name(request)}"
    influxdb1.create_database(name)
    yield name
    # A test that stopped the server must not make teardown fail on top of its own result.
    if influxdb1.running:
        influxdb1.drop_database(name)


@pytest.fixture
def mqtt_topic_prefix(request: pytest.FixtureRequest) -> str:
    """A topic prefix unique to this test (no trailing slash), e.g. ``t/test_x_1a2b3c4d``."""
    return f"t/{_unique_name(request)}"
