"""Shared test helpers: settings for a test, a QoS 1 publisher, polling with a deadline.

Also small builders for the configuration and snapshot pieces many unit tests repeat.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from greendc.config import Settings, parse_config
from greendc.snapshot import Health


def site_config(
    name: str,
    *,
    grid_zone: str = "SG",
    installed_it_kw: float = 100,
    pue_category: int = 1,
    meters: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One site's configuration mapping, as under ``sites:`` in greendc.yaml.

    ``meters`` default to a facility incomer and one IT meter at a UPS output; ``extra``
    adds other site keys (``targets``, ``timezone``...).
    """
    if meters is None:
        meters = [
            {"name": "incomer", "role": "facility"},
            {"name": "ups-1", "role": "it", "point": "ups_output"},
        ]
    return {
        "name": name,
        "grid_zone": grid_zone,
        "installed_it_kw": installed_it_kw,
        "pue_category": pue_category,
        "meters": meters,
        **extra,
    }


SITES: list[dict[str, Any]] = [
    site_config(
        "sg1",
        timezone="Asia/Singapore",
        meters=[
            {"name": "incomer", "role": "facility"},
            {"name": "ups-1", "role": "it", "point": "ups_output"},
            {"name": "ups-2", "role": "it", "point": "ups_output"},
            {"name": "chiller", "role": "cooling"},
            {"name": "solar", "role": "renewable_onsite"},
        ],
    ),
    site_config(
        "jhr1",
        timezone="Asia/Kuala_Lumpur",
        grid_zone="MY-PEN",
        installed_it_kw=200,
        pue_category=2,
        meters=[
            {"name": "incomer", "role": "facility"},
            {"name": "pdu-a", "role": "it", "point": "pdu_output"},
        ],
    ),
]


# The targets and thresholds of a site with all four set (the config's ``targets`` mapping).
PUE_TARGETS: dict[str, float] = {
    "pue": 1.45,
    "pue_warning": 1.6,
    "pue_critical": 1.75,
    "renewable_share": 0.1,
}


def idle_health(agent: str = "a", *, start_time_s: float = 0.0) -> Health:
    """Agent health with MQTT connected and every counter at zero (no sinks)."""
    return Health(
        agent=agent,
        version="0",
        start_time_s=start_time_s,
        messages_received=0,
        readings_accepted=0,
        rejections={},
        mqtt_connected=True,
        mqtt_reconnects=0,
        series_refused=0,
        meters_tracked=0,
    )


def make_settings(
    mqtt_url: str,
    prefix: str,
    tmp_path: Path,
    *,
    sinks: dict[str, Any] | None = None,
    client_id: str | None = None,
    **extra: Any,
) -> Settings:
    """Settings for one test: native mappings under ``prefix``, metrics on a free port."""
    data: dict[str, Any] = {
        "mqtt": {
            "url": mqtt_url,
            "client_id": client_id or f"agent-{prefix.replace('/', '-')}",
            "reconnect_max_seconds": 2,
        },
        "mappings": [
            {"topic": f"{prefix}/greendc/{{site}}/{{meter}}"},
            {"topic": f"{prefix}/greendc/{{site}}"},
        ],
        "sinks": {
            "spool": {"dir": str(tmp_path / "spool")},
            "flush_interval_seconds": 0.2,
            **(sinks if sinks is not None else {"embedded": {"path": str(tmp_path / "s.sqlite")}}),
        },
        "metrics": {"port": 0},
        "sites": SITES,
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return parse_config(data, env={})


def wait_until(pred: Callable[[], Any], timeout_s: float = 20.0, interval_s: float = 0.05) -> Any:
    """Poll ``pred`` until it returns something truthy or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    value = pred()
    while not value and time.monotonic() < deadline:
        time.sleep(interval_s)
        value = pred()
    return value


class Publisher:
    """A paho-mqtt 2.x QoS 1 publisher that waits for every PUBACK."""

    def __init__(self, host: str, port: int, client_id: str = "") -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.client.max_inflight_messages_set(1000)
        self.client.connect(host, port)
        self.client.loop_start()

    def publish(self, messages: Iterable[tuple[str, Any]], qos: int = 1) -> int:
        """Publish (topic, payload) pairs, JSON-encoding non-bytes; wait for all acks."""
        infos = []
        for topic, payload in messages:
            body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            infos.append(self.client.publish(topic, body, qos=qos))
            if len(infos) % 500 == 0:
                infos[-1].wait_for_publish(30)
        for info in infos:
            info.wait_for_publish(30)
        return len(infos)

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()
