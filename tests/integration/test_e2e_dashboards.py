"""Every panel query of every generated dashboard returns data from the real servers.

The collector, configured as config/examples/four-climates.yaml (retargeted at the test's
broker, topics and a fresh InfluxDB 1.x database), is fed the simulator's realistic readings
through Mosquitto: 65 minutes of history at once (so the 1 h KPIs are not withheld for low
coverage) and then live steps as their time comes, plus one malformed message so the
rejections panels have a reason to show. A real Prometheus scrapes the collector's /metrics.
Each PromQL query (variables substituted) must return a non-empty result from Prometheus,
each InfluxQL query a non-empty series from InfluxDB.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable
from itertools import groupby
from pathlib import Path
from typing import Any

import pytest

from greendc.dashboards.build import DEFAULT_OUT_DIR, iter_queries, substitute, variable_queries
from greendc.simulator import samples
from tests.helpers import Publisher, wait_until
from tests.integration.e2e_support import (
    Ticker,
    batch,
    four_climates_settings,
    publisher,
    running_collector,
)
from tests.servers import InfluxDB1, Mosquitto, PrometheusFactory

pytestmark = pytest.mark.integration

SITE = "sg1"  # the example site with every role the panels use except heat reuse
INTERVAL = "15s"
RANGE = "5m"
HISTORY_SECONDS = 65 * 60
STEP_SECONDS = 5.0
LIVE_SECONDS = 300.0  # generated ahead; the test ends long before they run out
QUERY_DEADLINE_SECONDS = 30.0

# Queries that legitimately cannot return data in a test, with the reason. Keep it tiny: a
# test below fails if it grows past MAX_ALLOWED or names a query no dashboard has any more.
ALLOWED_EMPTY: dict[str, str] = {}
MAX_ALLOWED = 3

Message = tuple[str, Any]
_LABEL_VALUES = re.compile(r"label_values\((.+),\s*([A-Za-z_][A-Za-z0-9_]*)\)")


def _dashboards() -> dict[str, dict[str, Any]]:
    paths = sorted(DEFAULT_OUT_DIR.glob("*.json"))
    assert paths, f"no generated dashboards in {DEFAULT_OUT_DIR}"
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in paths}


def _queries(kind: str) -> list[str]:
    """The distinct queries of that kind across all dashboards, variables substituted."""
    out: dict[str, None] = {}
    for dash in _dashboards().values():
        for k, expr in iter_queries(dash):
            if k == kind:
                out[substitute(expr, site=SITE, interval=INTERVAL, range=RANGE)] = None
    return list(out)


def test_allow_list_is_small_and_names_existing_queries() -> None:
    raw = {expr for dash in _dashboards().values() for _, expr in iter_queries(dash)}
    assert len(ALLOWED_EMPTY) <= MAX_ALLOWED
    for expr, reason in ALLOWED_EMPTY.items():
        assert expr in raw, f"allow-listed query is in no dashboard any more: {expr!r}"
        assert reason.strip(), f"allow-listed query without a reason: {expr!r}"


def _simulated_messages(
    prefix: str, settings: Any, start_s: float, duration_s: float
) -> list[tuple[float, Message]]:
    """(ts, message) per site and step: all meters of a site at one instant in one batch."""
    out = []
    rows = samples(settings, start_s, duration_s, STEP_SECONDS, seed=7)
    for (ts, site), group in groupby(rows, key=lambda r: (r[0], r[1])):
        fields = {meter: dict(values) for _, _, meter, values in group}
        out.append((ts, batch(prefix, site, ts, fields)))
    return out


class _LiveFeed:
    """Publishes each pending simulated message once its timestamp has come."""

    def __init__(self, publisher: Publisher, pending: list[tuple[float, Message]]) -> None:
        self._pub = publisher
        self._pending = pending
        self._next = 0
        self._extra: list[Message] = []
        self._lock = threading.Lock()
        self.published = 0

    def inject(self, message: Message) -> None:
        """Publish ``message`` with the next tick (from the test thread)."""
        with self._lock:
            self._extra.append(message)

    def __call__(self) -> None:
        now = time.time()
        due = []
        while self._next < len(self._pending) and self._pending[self._next][0] <= now:
            due.append(self._pending[self._next][1])
            self._next += 1
        with self._lock:
            due.extend(self._extra)
            self._extra.clear()
        if due:
            self.published += self._pub.publish(due)


def _finite(values: list[Any]) -> bool:
    return any(
        isinstance(v, int | float | str) and math.isfinite(float(v))
        for v in values
        if v is not None
    )


def _prom_data(result: list[dict[str, Any]]) -> bool:
    """Data, as a panel would show it: some series with a finite value (NaN is not data)."""
    return any(_finite([r["value"][1]]) for r in result)


def _influx_data(result: list[dict[str, Any]]) -> bool:
    """Data: some row of some series with a finite value besides its time."""
    return any(_finite(row[1:]) for series in result for row in series["values"])


def _poll_all(
    fetch: Callable[[str], list[Any]],
    has_data: Callable[[list[Any]], bool],
    queries: list[str],
    deadline_s: float,
) -> dict[str, list[Any]]:
    """Poll the queries still without data until all have some or the shared deadline passes."""
    deadline = time.monotonic() + deadline_s
    results: dict[str, list[Any]] = {q: [] for q in queries}
    while True:
        for q in queries:
            if not has_data(results[q]):
                results[q] = fetch(q)
        if all(has_data(r) for r in results.values()) or time.monotonic() >= deadline:
            return results
        time.sleep(0.2)


def _influx_series(influx: InfluxDB1, db: str) -> Callable[[str], list[Any]]:
    def fetch(query: str) -> list[Any]:
        answer = influx.query(db, query)
        return [s for r in answer["results"] for s in r.get("series", []) if s.get("values")]

    return fetch


def test_every_panel_query_returns_data(
    mosquitto: Mosquitto,
    influxdb1: InfluxDB1,
    fresh_influx_db: str,
    mqtt_topic_prefix: str,
    tmp_path: Path,
    prometheus_factory: PrometheusFactory,
) -> None:
    settings = four_climates_settings(
        mosquitto.url,
        mqtt_topic_prefix,
        tmp_path,
        sinks={"influxdb_v1": {"url": influxdb1.url, "db": fresh_influx_db}},
        kpi={"interval_seconds": 60, "windows_seconds": [300, 3600]},
    )
    site = settings.site(SITE)
    assert site is not None
    roles = {m.role.value for m in site.meters}
    assert roles >= {
        "facility",
        "it",
        "cooling",
        "lighting",
        "other_overhead",
        "generator",
        "renewable_onsite",
        "grid_import",
        "water",
    }
    now = time.time()
    start_s = math.floor(now / STEP_SECONDS) * STEP_SECONDS - HISTORY_SECONDS
    messages = _simulated_messages(
        mqtt_topic_prefix, settings, start_s, HISTORY_SECONDS + LIVE_SECONDS
    )
    history = [m for ts, m in messages if ts <= now]
    pending = [(ts, m) for ts, m in messages if ts > now]
    promql = _queries("prometheus")
    influxql = _queries("influxdb")
    assert promql and influxql

    with (
        running_collector(settings) as rc,
        publisher(mosquitto) as pub,
        publisher(mosquitto) as live_pub,
    ):
        prom = prometheus_factory([rc.target], interval_seconds=1.0)
        pub.publish(history)
        feed = _LiveFeed(live_pub, pending)
        with Ticker(feed, 0.5, "e2e-dashboard-feed"):
            prom.wait_for("up", lambda r: [float(x["value"][1]) for x in r] == [1.0])
            # After the first scrape, so rate() over the rejection counter sees it rise.
            feed.inject((f"{mqtt_topic_prefix}/greendc/{SITE}/incomer-a", b"{not json"))
            assert wait_until(lambda: rc.agent.stats.rejections.get("malformed_json"), 10)
            prom_results = _poll_all(prom.query, _prom_data, promql, QUERY_DEADLINE_SECONDS)
            influx_results = _poll_all(
                _influx_series(influxdb1, fresh_influx_db),
                _influx_data,
                influxql,
                QUERY_DEADLINE_SECONDS,
            )
            # The rejections-by-reason panel shows the malformed message, not only zeros.
            rejected = prom.wait_for(
                f'increase(greendc_agent_rejections_total{{reason="malformed_json"}}[{RANGE}]) > 0',
                bool,
                deadline_seconds=QUERY_DEADLINE_SECONDS,
            )
            variables = {
                (name, match.group(2)): prom.query(match.group(1))
                for dash in _dashboards().values()
                for name, kind, query in variable_queries(dash)
                if kind == "prometheus" and (match := _LABEL_VALUES.fullmatch(query))
            }
        assert feed.published > 0, "no live step was published"

    allowed = {substitute(e, site=SITE, interval=INTERVAL, range=RANGE) for e in ALLOWED_EMPTY}
    empty_prom = [q for q, r in prom_results.items() if not _prom_data(r) and q not in allowed]
    empty_influx = [
        q for q, r in influx_results.items() if not _influx_data(r) and q not in allowed
    ]
    assert empty_prom == [], f"{len(empty_prom)}/{len(promql)} PromQL panel queries had no data"
    assert empty_influx == [], (
        f"{len(empty_influx)}/{len(influxql)} InfluxQL panel queries had no data"
    )
    assert rejected
    # Each $site variable's label_values() query offers every configured site.
    assert variables, "no label_values() variable found in the dashboards"
    for (name, label), result in variables.items():
        if name == "site":
            assert {r["metric"].get(label) for r in result} == {s.name for s in settings.sites}
