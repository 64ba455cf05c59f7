"""Issue 24, point 4: a timestamp-less backlog replayed from a persistent session loses nothing.

The broker queues QoS 1 messages while the collector is down and delivers the whole backlog
within milliseconds when it is back. Stamped on arrival, every message of one meter would get
nearly the same millisecond, and the store keys a point by (site, meter, millisecond): before
this fix 10 accepted readings landed as 2 rows, silently.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import SITES, Publisher
from tests.servers import Mosquitto
from tests.support.collect_process import Collector

pytestmark = pytest.mark.integration


def test_a_replayed_backlog_without_timestamps_is_stored_whole_and_in_order(
    mosquitto: Mosquitto, mqtt_topic_prefix: str, tmp_path: Path
) -> None:
    p = mqtt_topic_prefix
    config = {
        "mqtt": {
            "url": mosquitto.url,
            "client_id": f"replay-{p.replace('/', '-')}",
            "reconnect_max_seconds": 2,
            # The defaults, spelled out: this is the persistent session being tested.
            "clean_start": False,
            "qos": 1,
        },
        "mappings": [{"topic": f"{p}/greendc/{{site}}/{{meter}}"}],
        "sites": SITES,
    }
    collector = Collector(config, tmp_path)
    collector.start()  # creates the session and its subscription on the broker
    collector.stop()
    pub = Publisher(mosquitto.host, mosquitto.port)
    try:
        pub.publish((f"{p}/greendc/sg1/ups-1", {"power_w": float(i)}) for i in range(1000))
    finally:
        pub.close()
    with collector:
        collector.wait_accepted(1000)
    rows = collector.rows()
    assert len(rows) == 1000, f"{len(rows)} rows stored of 1000 accepted"
    stamps = [r[3] for r in rows]
    assert len(set(stamps)) == 1000
    # In time order the values are the publish order: the broker kept it, and so did we.
    assert [r[4] for r in rows] == [float(i) for i in range(1000)]
    # The backlog really arrived faster than one message per millisecond (so plain arrival
    # stamps would have collided): it spans well under 1000 ms of clock time plus the nudge.
    assert stamps[-1] - stamps[0] < 5000
