"""A site moved to another agent stops arriving at the old one, persistent session or not."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from greendc.collector.agent import Agent
from tests.helpers import SITES, Publisher, make_settings, wait_until
from tests.servers import Mosquitto

pytestmark = pytest.mark.integration


def test_restart_with_fewer_sites_unsubscribes_the_moved_site(
    mosquitto: Mosquitto, mqtt_topic_prefix: str, tmp_path: Path
) -> None:
    p = mqtt_topic_prefix
    client_id = f"agent-{p.replace('/', '-')}"
    both = make_settings(
        mosquitto.url, p, tmp_path, client_id=client_id, mqtt={"subscribe": "sites"}
    )
    only_sg1 = make_settings(
        mosquitto.url,
        p,
        tmp_path,
        client_id=client_id,
        mqtt={"subscribe": "sites"},
        sites=[SITES[0]],
    )
    with Agent(both) as agent:
        assert agent.wait_connected(10)
    # Same client id, same spool dir, persistent session: the broker still holds the
    # subscription to jhr1's topics unless the agent drops it.
    agent = Agent(only_sg1)
    agent.start()
    try:
        assert agent.wait_connected(10)
        pub = Publisher(mosquitto.host, mosquitto.port)
        now = time.time()
        pub.publish(
            [
                (f"{p}/greendc/jhr1/incomer", {"power_w": 1.0, "ts": now}),
                (f"{p}/greendc/sg1/incomer", {"power_w": 2.0, "ts": now}),
            ]
        )
        pub.close()
        assert wait_until(lambda: agent.stats.readings_accepted == 1)
        # Give a wrongly kept subscription every chance to deliver jhr1 as well.
        assert not wait_until(lambda: agent.stats.messages_received > 1, timeout_s=1.0)
        assert dict(agent.stats.rejections) == {}
    finally:
        agent.stop()
