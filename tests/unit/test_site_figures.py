"""Live KPIs wired into the agent: hand-computed PUE and renewable share, monotonic counters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from greendc.collector.agent import Agent
from greendc.collector.site_figures import attach_live
from tests.helpers import make_settings

T0 = 1_764_374_400.0  # a whole hour


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def feed(agent: Agent, meter: str, kw: float, minutes: int, site: str = "sg1") -> None:
    for i in range(minutes * 6 + 1):
        ts = T0 + i * 10
        payload = {"ts": ts, "energy_wh": kw * 1000 * (i * 10) / 3600, "power_w": kw * 1000}
        agent.handle(f"p/greendc/{site}/{meter}", json.dumps(payload).encode())


def test_live_pue_and_renewable_share_from_energy(tmp_path: Path) -> None:
    clock = Clock(T0 + 600 + 5)
    settings = make_settings(
        "mqtt://127.0.0.1:1", "p", tmp_path, validation={"max_past_seconds": 10**9}
    )
    agent = Agent(settings, sinks=[], clock=clock)
    attach_live(agent, settings)
    for meter, kw in [
        ("incomer", 150.0),
        ("ups-1", 60.0),
        ("ups-2", 40.0),
        ("chiller", 40.0),
        ("solar", 30.0),
    ]:
        feed(agent, meter, kw, minutes=10)
    snap = agent.snapshot()
    sg1 = {s.site: s for s in snap.sites}["sg1"]
    pue = sg1.kpis[300]["pue"]
    assert pue.value == pytest.approx(150.0 / 100.0)
    assert pue.coverage == pytest.approx(1.0)
    assert pue.label.startswith("PUE1")
    assert sg1.kpis[300]["renewable_share"].value == pytest.approx(30.0 / 150.0)
    # 10 minutes of 150 kW = 25 kWh of facility energy counted since start
    assert sg1.energy_wh["facility"] == pytest.approx(25_000.0)
    assert sg1.energy_wh["it"] == pytest.approx(100.0 * 1000 / 6)
    # SG grid-only share: (E_DC - on-site) x factor, in grams
    grid_wh = 25_000.0 - 30.0 * 1000 / 6
    assert sg1.emissions_g == pytest.approx(grid_wh * sg1.grid_intensity_g_per_kwh / 1000)  # type: ignore[operator]
    # the 1 h window is only 10/60 covered: PUE over those 10 minutes, incomplete
    assert sg1.kpis[3600]["pue"].value == pytest.approx(1.5)
    assert sg1.kpis[3600]["pue"].quality == "incomplete"
    assert sg1.kpis[3600]["pue"].coverage == pytest.approx(10 / 60)
    meters = {(m.site, m.meter): m for m in snap.meters}
    assert meters[("sg1", "incomer")].power_w == 150_000.0


def test_stale_meter_disappears_from_the_snapshot(tmp_path: Path) -> None:
    clock = Clock(T0 + 60)
    settings = make_settings(
        "mqtt://127.0.0.1:1",
        "p",
        tmp_path,
        validation={"max_past_seconds": 10**9},
        metrics={"default_expiry_seconds": 120},
    )
    agent = Agent(settings, sinks=[], clock=clock)
    agent.handle("p/greendc/sg1/ups-1", b'{"power_w": 5}')
    assert [m.meter for m in agent.snapshot().meters] == ["ups-1"]
    clock.t += 121
    assert agent.snapshot().meters == ()


def test_live_ppue_per_zone_reaches_the_exporter(tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from greendc.exporters.prometheus import SnapshotCollector

    sites = [
        {
            "name": "sg1",
            "grid_zone": "SG",
            "installed_it_kw": 100,
            "pue_category": 1,
            "meters": [
                {"name": "incomer", "role": "facility"},
                {"name": "ups-1", "role": "it", "point": "ups_output", "zone": "hall-1"},
                {"name": "ups-2", "role": "it", "point": "ups_output", "zone": "hall-2"},
                {"name": "chiller", "role": "cooling", "zone": "hall-1"},
            ],
        }
    ]
    clock = Clock(T0 + 600 + 5)
    settings = make_settings(
        "mqtt://127.0.0.1:1", "p", tmp_path, sites=sites, validation={"max_past_seconds": 10**9}
    )
    agent = Agent(settings, sinks=[], clock=clock)
    attach_live(agent, settings)
    for meter, kw in [("incomer", 150.0), ("ups-1", 60.0), ("ups-2", 40.0), ("chiller", 30.0)]:
        feed(agent, meter, kw, minutes=10)
    snap = agent.snapshot()
    kpis = snap.sites[0].kpis[300]
    assert kpis["ppue:hall-1"].value == pytest.approx((60.0 + 30.0) / 60.0)
    # A zone with no overhead meter: its pPUE is unknown, not 1.0.
    assert kpis["ppue:hall-2"].value is None and kpis["ppue:hall-2"].quality == "withheld"
    text = SnapshotCollector(lambda: snap, settings.sites).exposition().decode()
    values = {
        (s.labels["zone"], s.labels["window"]): s.value
        for fam in text_string_to_metric_families(text)
        if fam.name == "greendc_zone_ppue_ratio"
        for s in fam.samples
    }
    assert values[("hall-1", "5m")] == pytest.approx(1.5)
    assert ("hall-2", "5m") not in values
    quality = {
        (s.labels["kpi"], s.labels["quality"]): s.value
        for fam in text_string_to_metric_families(text)
        if fam.name == "greendc_site_kpi_quality"
        for s in fam.samples
        if s.labels["window"] == "5m"
    }
    assert quality[("ppue:hall-2", "withheld")] == 1.0
    assert quality[("ppue:hall-2", "ok")] == 0.0
    assert quality[("pue", "ok")] == 1.0


class _FakeClient:
    """Records acknowledgements (stands in for paho's Client; no broker involved)."""

    def __init__(self) -> None:
        self.acked: list[int] = []
        self._thread = "paho's network thread"  # acknowledgements go out only while it runs

    def ack(self, mid: int, qos: int) -> None:
        self.acked.append(mid)


def test_unacknowledged_count_follows_hand_over_and_settlement(tmp_path: Path) -> None:
    settings = make_settings("mqtt://127.0.0.1:1", "p", tmp_path, mqtt={"max_inflight": 2})
    agent = Agent(settings, sinks=[])
    client = _FakeClient()
    body = json.dumps({"power_w": 1.0}).encode()
    agent._connected.set()  # as after SUBACK

    def broken(_readings: object) -> None:
        raise RuntimeError("observer bug")

    agent.add_observer(broken)
    for mid in (1, 2, 3, 4):
        # Distinct messages, each failing for the first time: raised to the reader, which
        # drops the connection so the broker redelivers it (a second failure dead-letters).
        distinct = json.dumps({"power_w": float(mid)}).encode()
        with pytest.raises(RuntimeError):
            agent._on_publish(client, "p/greendc/sg1/incomer", distinct, mid, 1)  # type: ignore[arg-type]
    # Never handed over, so never counted: a failing message cannot hold the reader forever.
    assert agent._taken == 0
    assert not agent._too_many_unacknowledged()
    agent._observers.clear()
    for mid in (5, 6, 7, 8):
        agent._on_publish(client, "p/greendc/sg1/incomer", body, mid, 1)  # type: ignore[arg-type]
    # No sinks: each message is settled, and acknowledged, as it is handed over.
    assert (agent._taken, agent._settled) == (4, 4)
    assert client.acked == [5, 6, 7, 8]
    assert not agent._too_many_unacknowledged()
    agent._taken += 4  # four more taken and not yet stored: 2 x max_inflight
    assert agent._too_many_unacknowledged()
    agent._connected.clear()
    assert not agent._too_many_unacknowledged()  # never while (re)connecting


def test_a_failing_message_is_retried_once_then_counted_and_acknowledged(tmp_path: Path) -> None:
    """QoS 1: the first failure goes to the reader (which reconnects for a redelivery), the
    second is final. QoS 0 cannot be redelivered: its first failure is final."""
    # max_inflight 2: each acknowledgement is sent as soon as its message is handed over.
    settings = make_settings("mqtt://127.0.0.1:1", "p", tmp_path, mqtt={"max_inflight": 2})
    agent = Agent(settings, sinks=[])
    client = _FakeClient()
    agent._connected.set()

    def broken(_readings: object) -> None:
        raise RuntimeError("observer bug")

    agent.add_observer(broken)
    body = json.dumps({"power_w": 1.0}).encode()
    with pytest.raises(RuntimeError):
        agent._on_publish(client, "p/greendc/sg1/incomer", body, 1, 1)  # type: ignore[arg-type]
    agent._on_publish(client, "p/greendc/sg1/incomer", body, 2, 1)  # type: ignore[arg-type]
    assert client.acked == [2]
    agent._on_publish(client, "p/greendc/sg1/ups-1", body, 0, 0)  # type: ignore[arg-type]
    h = agent.snapshot().health
    assert h.rejections["poison_message"] == 2
    assert h.readings_accepted == 0 and h.meters_tracked == 0, "a failing message left state"
