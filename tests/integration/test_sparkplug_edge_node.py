"""A Sparkplug B edge node through the real Mosquitto into `greendc collect` (issue 24).

The node is built with the specification's protobuf schema (tests/sparkplug_support.py):
births, data by alias, a sequence gap (counted, and answered with a rebirth request the node
receives), and a death after which the node's meters are gone from /metrics (stale, not 0).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import Publisher, wait_until
from tests.servers import Mosquitto
from tests.support.collect_process import Collector
from tests.support.sparkplug import DOUBLE, EdgeNode, parse

pytestmark = pytest.mark.integration


class CommandListener:
    """Subscribes to the node's NCMD topic, as the edge node itself would."""

    def __init__(self, broker: Mosquitto, topic: str) -> None:
        self.received: list[bytes] = []
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = lambda _c, _u, msg: self.received.append(bytes(msg.payload))
        self.client.on_subscribe = lambda *_a: self._subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe(topic, qos=1)
        assert self._subscribed.wait(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_an_edge_node_births_data_gap_and_death(
    mosquitto: Mosquitto, mqtt_topic_prefix: str, tmp_path: Path
) -> None:
    group = mqtt_topic_prefix.split("/")[-1].replace("_", "-")[:40]
    meters = ["gw-1", "gw-1-pm-1", "gw-1-pm-2"]
    config: dict[str, Any] = {
        "mqtt": {"url": mosquitto.url, "client_id": f"sp-{group}", "reconnect_max_seconds": 2},
        "mappings": [
            {
                "topic": f"spBv1.0/{group}/#",
                "site": "plant-1",
                "payload": "sparkplug",
                "sparkplug": {
                    "metrics": [
                        {"name": "Power/Active", "quantity": "power_w", "unit": "kW"},
                        {"name": "Energy/Import", "quantity": "energy_wh", "unit": "kWh"},
                        {"name": "Cabinet/Temp", "quantity": "temp_c", "unit": "C"},
                    ]
                },
            }
        ],
        "sites": [
            {
                "name": "plant-1",
                "grid_zone": "SG",
                "installed_it_kw": 100,
                "pue_category": 1,
                "meters": [{"name": m, "role": "other_overhead"} for m in meters],
            }
        ],
    }
    node = EdgeNode(group, "gw-1", bdseq=1)
    t0 = int(time.time() * 1000) - 30_000
    p1 = [("Power/Active", DOUBLE, 12.5), ("Energy/Import", DOUBLE, 1000.25)]
    p2 = [("Power/Active", DOUBLE, 3.75), ("Energy/Import", DOUBLE, 50.5)]
    first = [
        node.birth(t0, [("Cabinet/Temp", DOUBLE, 24.5)]),
        node.birth(t0, p1, device="pm-1"),
        node.birth(t0, p2, device="pm-2"),
        node.data(t0 + 1000, [("Power/Active", DOUBLE, 13.0)], "pm-1"),
        node.data(
            t0 + 1000, [("Power/Active", DOUBLE, 4.0), ("Energy/Import", DOUBLE, 50.75)], "pm-2"
        ),
        node.data(t0 + 2000, [("Cabinet/Temp", DOUBLE, 25.0)]),
    ]
    # Two messages lost on the way: the next carries seq 8 where 6 was due.
    gap = node.data(t0 + 5000, [("Energy/Import", DOUBLE, 1001.5)], "pm-1", seq=8)
    listener = CommandListener(mosquitto, f"spBv1.0/{group}/NCMD/gw-1")
    collector = Collector(config, tmp_path)

    def live_meters() -> set[str] | None:
        """Meters on /metrics now (last seen), as a stale one is left out."""
        text = collector.scrape()
        if text is None:
            return None
        return {
            s.labels["meter"]
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
            if s.name == "greendc_meter_last_seen_timestamp_seconds"
        }

    with collector:
        pub = Publisher(mosquitto.host, mosquitto.port)
        try:
            pub.publish(first)
            collector.wait_accepted(6)
            assert live_meters() == set(meters)
            assert collector.value("greendc_meter_power_watts", meter="gw-1-pm-1") == 13000.0
            pub.publish([gap])
            collector.wait_accepted(7)
            gaps = collector.value("greendc_agent_rejections_total", reason="sparkplug_seq_gap")
            assert gaps == 1
            assert wait_until(lambda: listener.received, 10), "no rebirth request reached the node"
            request = parse(listener.received[0])
            assert [(m.name, m.boolean_value) for m in request.metrics] == [
                ("Node Control/Rebirth", True)
            ]
            assert live_meters() == set(meters)
            pub.publish([node.death()])
            assert wait_until(lambda: live_meters() == set(), 10), (
                f"the dead node's meters are still on /metrics: {live_meters()}"
            )
            # The death, and the collector's own rebirth request (it hears its NCMD).
            ignored = collector.value(
                "greendc_agent_messages_ignored_total", reason="sparkplug_state"
            )
            assert ignored == 2
        finally:
            pub.close()
            listener.close()
    rows = collector.rows()
    assert rows == [
        ("plant-1", "gw-1", "other_overhead", t0, None, None, None, 24.5),
        ("plant-1", "gw-1", "other_overhead", t0 + 2000, None, None, None, 25.0),
        ("plant-1", "gw-1-pm-1", "other_overhead", t0, 12500.0, 1000250.0, None, None),
        ("plant-1", "gw-1-pm-1", "other_overhead", t0 + 1000, 13000.0, None, None, None),
        ("plant-1", "gw-1-pm-1", "other_overhead", t0 + 5000, None, 1001500.0, None, None),
        ("plant-1", "gw-1-pm-2", "other_overhead", t0, 3750.0, 50500.0, None, None),
        ("plant-1", "gw-1-pm-2", "other_overhead", t0 + 1000, 4000.0, 50750.0, None, None),
    ]
