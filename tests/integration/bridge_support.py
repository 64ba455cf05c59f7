"""What the bridge integration tests share: settings, the running pair, the stored rows."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server

from greendc.collector.agent import Agent
from greendc.collector.bridge import Bridge, BridgeCollector
from greendc.config import Settings
from greendc.store import EmbeddedStore
from tests.support.builders import make_settings
from tests.support.collector import scrape
from tests.support.polling import wait_until
from tests.support.servers import Mosquitto


def bridge_settings(
    broker: Mosquitto,
    prefix: str,
    tmp_path: Path,
    devices: list[dict[str, Any]],
    env: dict[str, str] | None = None,
    **kw: Any,
) -> Settings:
    """Collector and bridge settings on one config: fast polls, short timeouts."""
    bridges = {
        "client_id": f"bridge-{prefix.replace('/', '-')}",
        "topic_prefix": f"{prefix}/greendc",
        "interval_seconds": 0.2,
        "jitter_fraction": 0.1,
        "timeout_seconds": 0.5,
        "backoff_max_seconds": 0.4,
        "metrics": {"port": 0},
        "devices": devices,
        **kw,
    }
    return make_settings(broker.url, prefix, tmp_path, bridges=bridges, env=env)


def stored(path: Path) -> dict[str, list[dict[str, float]]]:
    """Every stored reading's fields, by meter, in store order."""
    store = EmbeddedStore(path)
    try:
        out: dict[str, list[dict[str, float]]] = defaultdict(list)
        for r in store.readings():
            out[r.meter].append(dict(r.fields))
        return out
    finally:
        store.close()


@contextmanager
def running(settings: Settings) -> Iterator[tuple[Agent, Bridge, str]]:
    """The collector and the bridge (with its /metrics URL) on one config."""
    agent = Agent(settings)
    agent.start()
    registry = CollectorRegistry()
    bridge = Bridge(settings)
    registry.register(BridgeCollector(bridge.snapshot))
    server, _thread = start_http_server(0, "127.0.0.1", registry)
    try:
        assert agent.wait_connected(10)
        bridge.start()
        assert bridge.wait_connected(10)
        yield agent, bridge, f"http://127.0.0.1:{server.server_address[1]}/metrics"
    finally:
        bridge.stop()
        server.shutdown()
        server.server_close()
        agent.stop()


def failing(url: str, device: str) -> dict[str, str] | None:
    """The labels of the device's greendc_bridge_device_failing sample, if it is failing."""
    for s in scrape(url).get("greendc_bridge_device_failing", []):
        if s.labels.get("device") == device:
            return dict(s.labels)
    return None


def settled_count(agent: Agent, path: Path, meter: str) -> int:
    """Stored readings of ``meter`` once every accepted reading has reached the store."""
    assert wait_until(
        lambda: (
            sum(w.stats.written for w in agent.pipeline.workers) >= agent.stats.readings_accepted
        ),
        20,
    )
    return len(stored(path).get(meter, []))
