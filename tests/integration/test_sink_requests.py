"""A large batch written as parallel requests, against the real servers.

The InfluxDB sinks split a batch of thousands of readings into up to
``parallel_requests`` requests in flight at once. Every reading must land once, the server
must really have seen that many requests, and a refusal or an outage of any part must
reach the pipeline as the whole batch's result.
"""

from __future__ import annotations

import time
import uuid

import pytest

from greendc._errors import SinkError, SinkUnavailable
from greendc.collector.sinks import InfluxV1Sink, InfluxV2Sink
from greendc.config import InfluxV1Settings, InfluxV2Settings
from greendc.model import Reading
from tests.servers import InfluxDB1, VictoriaMetrics, free_port

pytestmark = pytest.mark.integration


def batch(site: str, n: int, t0_ms: int) -> list[Reading]:
    return [
        Reading(
            site, f"m{i % 50:02d}", "it", t0_ms + i, {"power_w": i + 0.25, "energy_wh": 1e6 + i}
        )
        for i in range(n)
    ]


def shard_write_requests(server: InfluxDB1, db: str) -> int:
    """Write requests influxd counted for ``db`` (its own statistics)."""
    answer = server.query(db, "SHOW STATS FOR 'shard'")
    total = 0
    for s in answer["results"][0].get("series", []):
        if s.get("tags", {}).get("database") == db:
            total += int(dict(zip(s["columns"], s["values"][0], strict=True))["writeReqOk"])
    return total


def test_v1_a_large_batch_lands_once_through_parallel_requests(
    influxdb1: InfluxDB1, fresh_influx_db: str
) -> None:
    sink = InfluxV1Sink(
        InfluxV1Settings(url=influxdb1.url, db=fresh_influx_db, parallel_requests=3)
    )
    t0_ms = (int(time.time()) - 3600) * 1000
    readings = batch("sg1", 6000, t0_ms)
    try:
        sink.write(readings)
    finally:
        sink.close()
    res = influxdb1.query(fresh_influx_db, "SELECT power_w, meter FROM greendc_reading")
    rows = res["results"][0]["series"][0]["values"]
    got = sorted(row[0] // 1_000_000 for row in rows)  # epoch=ns
    assert got == [r.ts_ms for r in readings]  # each once, none missing
    assert shard_write_requests(influxdb1, fresh_influx_db) == 3


def test_v1_a_refused_part_fails_the_whole_batch_as_refused(
    influxdb1: InfluxDB1, fresh_influx_db: str
) -> None:
    # power_w first written as an integer: influxd refuses float power_w in this shard.
    t0_ms = (int(time.time()) - 3600) * 1000
    influxdb1.write(
        fresh_influx_db,
        f"greendc_reading,meter=m00,role=it,site=sg1 power_w=5i {t0_ms - 1}",
        precision="ms",
    )
    sink = InfluxV1Sink(
        InfluxV1Settings(url=influxdb1.url, db=fresh_influx_db, parallel_requests=2)
    )
    try:
        with pytest.raises(SinkError, match="HTTP 400") as err:
            sink.write(batch("sg1", 4000, t0_ms))
    finally:
        sink.close()
    assert not isinstance(err.value, SinkUnavailable)  # set aside, not retried forever


def test_v1_an_unreachable_server_is_an_outage_for_every_part() -> None:
    sink = InfluxV1Sink(
        InfluxV1Settings(
            url=f"http://127.0.0.1:{free_port()}", db="x", parallel_requests=2, timeout_seconds=2
        )
    )
    try:
        with pytest.raises(SinkUnavailable, match="cannot reach"):
            sink.write(batch("sg1", 4000, 1_764_374_400_000))
    finally:
        sink.close()


def test_v2_a_large_batch_lands_once_through_parallel_requests(victoria: VictoriaMetrics) -> None:
    site = f"par{uuid.uuid4().hex[:8]}"  # this run's series only
    sink = InfluxV2Sink(
        InfluxV2Settings(
            url=victoria.url, org="greendc", bucket="greendc", token="unused", parallel_requests=2
        )
    )
    t0_ms = (int(time.time()) - 3600) * 1000
    readings = batch(site, 4000, t0_ms)
    try:
        sink.write(readings)
    finally:
        sink.close()
    series = victoria.export(f'{{__name__="greendc_reading_power_w",site="{site}"}}')
    got = sorted(ts for s in series for ts in s["timestamps"])
    assert got == [r.ts_ms for r in readings]
