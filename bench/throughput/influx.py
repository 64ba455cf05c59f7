"""What a contender stored in influxd, read without loading influxd, and /metrics sums."""

from __future__ import annotations

import time

from bench.throughput.common import MEASUREMENT, BenchError
from tests.support.servers import InfluxDB1, http_request


def influx_count(influx: InfluxDB1, db: str) -> int:
    """Points stored in ``db`` (count of power_w)."""
    answer = influx.query(db, f"SELECT count(power_w) FROM {MEASUREMENT}")
    series = answer["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


def influx_points_written(influx: InfluxDB1, db: str) -> int:
    """Points influxd has acknowledged into ``db``, from its own write statistics."""
    answer = influx.query(db, "SHOW STATS FOR 'shard'")
    total = 0
    for series in answer["results"][0].get("series", []):
        if series.get("tags", {}).get("database") == db:
            row = dict(zip(series["columns"], series["values"][0], strict=True))
            total += int(row.get("writePointsOk", 0))
    return total


class StoredProgress:
    """Progress of a consumer that writes into influxd, without loading influxd to see it.

    Counting the points with a query scans them: at 200,000 points one count cost influxd
    82 ms of CPU, so counting every 0.1 s took about a third of a core from the run being
    measured (more as the data grew). Progress comes from influxd's write statistics (a
    few ms); the points are counted once, when the statistics say every one was written,
    and that count is what the run reports as verified. ``done_at`` is when the statistics
    first showed them all.
    """

    def __init__(self) -> None:
        self.done_at: float | None = None

    def check(self, influx: InfluxDB1, db: str, want: int, final: bool) -> tuple[bool, int]:
        """(every reading stored, readings stored so far)."""
        if self.done_at is None:
            written = influx_points_written(influx, db)
            if written < want and not final:
                return False, written
            self.done_at = time.monotonic()
        stored = influx_count(influx, db)
        if stored < want:
            self.done_at = None  # written is not stored (a duplicate, say): keep watching
        return stored >= want, stored


def scrape_sum(url: str, metric: str) -> float:
    """Sum of every sample of ``metric`` on a Prometheus text endpoint."""
    status, body = http_request(url, timeout_seconds=30.0)
    if status != 200:
        raise BenchError(f"{url} answered {status}")
    total = 0.0
    prefix = metric.encode()
    for line in body.splitlines():
        if line.startswith(prefix) and line[len(prefix) : len(prefix) + 1] in (b"{", b" "):
            total += float(line.rsplit(b" ", 1)[1])
    return total
