"""Readings through a real Mosquitto into the collector: live PUE and renewable share."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from greendc.collector.agent import Agent
from greendc.collector.site_figures import attach_live
from tests.helpers import Publisher, make_settings, wait_until
from tests.servers import Mosquitto

pytestmark = pytest.mark.integration


def test_live_pue_and_renewable_share_match_hand_computation(
    mosquitto: Mosquitto, mqtt_topic_prefix: str, tmp_path: Path
) -> None:
    settings = make_settings(mosquitto.url, mqtt_topic_prefix, tmp_path)
    # Ten minutes of history at 10 s steps ending now; loads vary per step so that the mean
    # of instantaneous PUE differs from the energy ratio.
    now = time.time()
    end = math.floor(now / 60) * 60
    start = end - 600
    facility_kw = lambda i: 120.0 + (60.0 if i % 6 < 3 else 0.0)  # noqa: E731
    it_kw = lambda i: 100.0 if i % 6 < 3 else 40.0  # noqa: E731
    solar_kw = 25.0
    counters = {"incomer": 0.0, "ups-1": 0.0, "ups-2": 0.0, "chiller": 0.0, "solar": 0.0}
    msgs = []
    for i in range(61):
        ts = start + i * 10
        batch = []
        for meter, value in counters.items():
            batch.append({"meter": meter, "ts": ts, "energy_wh": value})
        msgs.append((f"{mqtt_topic_prefix}/greendc/sg1", batch))
        # energy over the next 10 s step, in Wh
        counters["incomer"] += facility_kw(i) * 1000 * 10 / 3600
        counters["ups-1"] += it_kw(i) / 2 * 1000 * 10 / 3600
        counters["ups-2"] += it_kw(i) / 2 * 1000 * 10 / 3600
        counters["chiller"] += 30.0 * 1000 * 10 / 3600
        counters["solar"] += solar_kw * 1000 * 10 / 3600
    # Hand computation over the last 5 minutes [end-300, end): steps 30..59.
    e_dc = sum(facility_kw(i) for i in range(30, 60))
    e_it = sum(it_kw(i) for i in range(30, 60))
    expected_pue = e_dc / e_it
    mean_of_ratios = sum(facility_kw(i) / it_kw(i) for i in range(30, 60)) / 30
    assert abs(mean_of_ratios - expected_pue) > 0.1  # the trap this test guards against
    expected_share = (solar_kw * 30) / e_dc

    agent = Agent(settings, clock=lambda: now)  # frozen: the 5-minute window cannot move
    attach_live(agent, settings)
    agent.start()
    try:
        assert agent.wait_connected(10)
        pub = Publisher(mosquitto.host, mosquitto.port)
        pub.publish(msgs)
        pub.close()
        assert wait_until(lambda: agent.stats.readings_accepted == 61 * 5), agent.stats
        snap = agent.snapshot()
    finally:
        agent.stop()
    sg1 = {s.site: s for s in snap.sites}["sg1"]
    assert sg1.kpis[300]["pue"].value == pytest.approx(expected_pue, rel=1e-9)
    assert sg1.kpis[300]["renewable_share"].value == pytest.approx(expected_share, rel=1e-9)
    assert sg1.kpis[300]["pue"].coverage == pytest.approx(1.0)
