"""Scale-out on a real Mosquitto: three agents behind a shared subscription, or per-site partitions.

The claims of docs/scale-out.md, tested:

- MQTT 5 shared subscription (``mqtt.shared_group``): every reading is stored exactly once and
  KPIs computed from the stored data equal a single agent's; but one meter's messages are
  spread over the agents, so the per-agent live view (meters on /metrics, energy counters) is
  partial and the same meter is exported by several agents.
- Per-site partitions (``mqtt.subscribe: sites``, disjoint site lists): every meter has
  exactly one owner, so the union of the agents' /metrics exports every meter once and each
  site's live PUE equals a single agent's.

A single agent (its own client id, no group) consumes the same stream alongside, as the
reference. Agents are in-process, each with its own embedded store, spool and /metrics port.
"""

from __future__ import annotations

import math
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from greendc.collector.agent import Agent
from greendc.collector.site_figures import attach_live
from greendc.config import Settings
from greendc.energy import energy_by_meter
from greendc.exporters.prometheus import serve
from greendc.factors import load_factors
from greendc.kpi import SiteKPIs, Window, fleet_pue, site_kpis
from greendc.model import Reading
from greendc.store import EmbeddedStore
from tests.helpers import SITES, Publisher, make_settings, site_config, wait_until
from tests.servers import Mosquitto

pytestmark = pytest.mark.integration

STEPS = 61  # ten minutes of 10 s steps, both ends included
STEP_SECONDS = 10
WINDOW_SECONDS = 300

# Four sites so that three partition agents own 1, 1 and 2 sites.
PARTITION_SITES: list[dict[str, Any]] = [
    *SITES,
    site_config(
        "bkk1",
        timezone="Asia/Bangkok",
        grid_zone="TH",
        installed_it_kw=150,
        pue_category=3,
        meters=[
            {"name": "main", "role": "facility"},
            {"name": "rack-a", "role": "it", "point": "it_input"},
            {"name": "rack-b", "role": "it", "point": "it_input"},
            {"name": "crah", "role": "cooling"},
        ],
    ),
    site_config(
        "cgk1",
        timezone="Asia/Jakarta",
        grid_zone="ID",
        installed_it_kw=80,
        meters=[
            {"name": "incomer", "role": "facility"},
            {"name": "ups", "role": "it", "point": "ups_output"},
        ],
    ),
]
PARTITIONS = [["sg1"], ["jhr1"], ["bkk1", "cgk1"]]


def _rate_kw(role: str, step: int, site_index: int, it_meters: int) -> float:
    """Load per meter and step; loads swing so a mean of instantaneous PUEs would be wrong."""
    busy = step % 6 < 3
    if role == "facility":
        return 120.0 + 15.0 * site_index + (60.0 if busy else 0.0)
    if role == "it":
        return (100.0 if busy else 40.0) / it_meters
    return 20.0 + 5.0 * site_index


def make_stream(
    prefix: str, sites: Sequence[dict[str, Any]], end_s: int
) -> tuple[list[tuple[str, object]], set[tuple[str, str, int]]]:
    """Energy counters (and power) for every meter of ``sites`` over ten minutes to ``end_s``.

    Even-indexed sites publish one message per reading, odd-indexed ones a gateway batch per
    step. Returns the messages and the (site, meter, ts_ms) of every reading.
    """
    start_s = end_s - (STEPS - 1) * STEP_SECONDS
    msgs: list[tuple[str, object]] = []
    keys: set[tuple[str, str, int]] = set()
    counters = {
        (s["name"], m["name"]): 1000.0 * k for k, s in enumerate(sites) for m in s["meters"]
    }
    for step in range(STEPS):
        ts = start_s + step * STEP_SECONDS
        for k, site in enumerate(sites):
            n_it = sum(1 for m in site["meters"] if m["role"] == "it")
            batch = []
            for m in site["meters"]:
                key = (site["name"], m["name"])
                kw = _rate_kw(m["role"], step, k, n_it)
                item = {"ts": ts, "energy_wh": counters[key], "power_w": kw * 1000.0}
                counters[key] += kw * 1000.0 * STEP_SECONDS / 3600.0
                keys.add((site["name"], m["name"], ts * 1000))
                if k % 2:
                    batch.append({"meter": m["name"], **item})
                else:
                    msgs.append((f"{prefix}/greendc/{site['name']}/{m['name']}", item))
            if batch:
                msgs.append((f"{prefix}/greendc/{site['name']}", batch))
    return msgs, keys


def stored_kpis(
    readings: Sequence[Reading], settings: Settings, window: Window
) -> dict[str, SiteKPIs]:
    """Site KPIs computed from stored readings, the way a report computes them."""
    frame = pd.DataFrame(
        [
            (r.site, r.meter, r.ts_ms / 1000.0, r.fields.get("energy_wh"), r.fields.get("power_w"))
            for r in readings
        ],
        columns=["site", "meter", "ts_s", "energy_wh", "power_w"],
    )
    factors = load_factors(settings.emission_factors_file)
    kpi = settings.kpi
    out = {}
    for site in settings.sites:
        energies = energy_by_meter(
            frame[frame["site"] == site.name],
            interval_seconds=kpi.interval_seconds,
            max_gap_seconds=kpi.max_gap_seconds,
            start_s=window.start_s,
            end_s=window.end_s,
        )
        out[site.name] = site_kpis(
            site,
            energies,
            window,
            factors,
            kpi.min_coverage,
            interval_seconds=kpi.interval_seconds,
        )
    return out


def store_readings(path: Path) -> list[Reading]:
    """Every reading in an embedded store file."""
    store = EmbeddedStore(path)
    try:
        return list(store.readings())
    finally:
        store.close()


@contextmanager
def running(agents: Sequence[Agent]) -> Iterator[None]:
    """Start the agents, wait until each is connected; stop (and flush) them all on exit."""
    with ExitStack() as stack:
        for agent in agents:
            agent.start()
            stack.callback(agent.stop)
        for agent in agents:
            assert agent.wait_connected(10), f"{agent.name} did not connect"
        yield


def wait_subscribed(pub: Publisher, agents: Sequence[Agent], topics: Sequence[str]) -> None:
    """Publish probes (rejected as unknown meters) until every agent has received one.

    A connected agent may not yet have its SUBACK; a reading published before then would
    reach no member of a partition, so readiness is proven by delivery, not assumed.
    """
    deadline = time.monotonic() + 15.0
    while time.monotonic() < deadline:
        pub.publish([(t, {"power_w": 0.0}) for t in topics])
        if wait_until(lambda: all(a.stats.messages_received for a in agents), timeout_s=0.5):
            return
    pytest.fail(
        "not every agent received a probe: " + str([a.stats.messages_received for a in agents])
    )


def scrape_meters(url: str) -> set[tuple[str, str]]:
    """The (site, meter) pairs a /metrics endpoint exports (by last-seen timestamp)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as resp:
        text = resp.read().decode()
    out = set()
    for line in text.splitlines():
        if line.startswith("greendc_meter_last_seen_timestamp_seconds{"):
            labels = dict(
                part.split("=", 1)
                for part in line[line.index("{") + 1 : line.index("}")].split(",")
            )
            out.add((labels["site"].strip('"'), labels["meter"].strip('"')))
    return out


def _frozen_now() -> tuple[float, int]:
    now = time.time()
    return now, math.floor(now / 60) * 60


def test_shared_subscription_stores_each_reading_once_and_kpis_match_one_agent(
    mosquitto: Mosquitto, mqtt_topic_prefix: str, tmp_path: Path
) -> None:
    prefix = mqtt_topic_prefix
    now, end_s = _frozen_now()
    group = "g" + prefix.rsplit("_", 1)[-1]
    shared_settings = [
        make_settings(
            mosquitto.url,
            prefix,
            tmp_path / f"shared{i}",
            client_id=f"{group}-shared-{i}",
            mqtt={"shared_group": group},
        )
        for i in range(3)
    ]
    single_settings = make_settings(
        mosquitto.url, prefix, tmp_path / "single", client_id=f"{group}-single"
    )
    shared = [Agent(s, clock=lambda: now) for s in shared_settings]
    single = Agent(single_settings, clock=lambda: now)
    for agent, settings in [*zip(shared, shared_settings, strict=True), (single, single_settings)]:
        attach_live(agent, settings)
    msgs, keys = make_stream(prefix, SITES, end_s)
    n = len(keys)

    with running([*shared, single]):
        pub = Publisher(mosquitto.host, mosquitto.port)
        try:
            wait_subscribed(pub, [*shared, single], [f"{prefix}/greendc/sg1/probe"])
            pub.publish(msgs)
        finally:
            pub.close()
        assert wait_until(
            lambda: (
                sum(a.stats.readings_accepted for a in shared) == n
                and single.stats.readings_accepted == n
            )
        ), ([a.stats.readings_accepted for a in shared], single.stats.readings_accepted)
        shared_snaps = [a.snapshot() for a in shared]
        single_snap = single.snapshot()

    # Each message went to one group member, and each member did a real share of the work.
    shares = [a.stats.readings_accepted for a in shared]
    assert all(s >= n // 6 for s in shares), shares

    # Stored exactly once: the per-agent stores are disjoint and their union is the stream.
    per_agent = [
        store_readings(s.sinks.embedded.path)
        for s in shared_settings
        if s.sinks.embedded is not None
    ]
    union = [r for readings in per_agent for r in readings]
    union_keys = Counter((r.site, r.meter, r.ts_ms) for r in union)
    assert len(union) == n
    assert set(union_keys) == keys
    assert max(union_keys.values()) == 1
    assert single_settings.sinks.embedded is not None
    reference = store_readings(single_settings.sinks.embedded.path)
    assert {(r.site, r.meter, r.ts_ms) for r in reference} == keys

    # KPIs from the stored data (the report path) are those of a single agent.
    window = Window(end_s - WINDOW_SECONDS, end_s)
    got = stored_kpis(union, single_settings, window)
    want = stored_kpis(reference, single_settings, window)
    for site in ("sg1", "jhr1"):
        assert want[site].kpis["pue"].value is not None
        assert got[site].kpis["pue"].value == want[site].kpis["pue"].value
        assert got[site].inputs["E_DC"] == want[site].inputs["E_DC"]
    min_cov = single_settings.kpi.min_coverage
    fleet = fleet_pue(list(got.values()), min_coverage=min_cov)
    assert fleet.value is not None
    assert fleet.value == fleet_pue(list(want.values()), min_coverage=min_cov).value

    # Why the live view is not exact under a shared subscription: one meter's messages reach
    # several agents, so the same meter is exported by more than one of them, and each
    # agent's site energy counter covers the whole stream (counter deltas span the gaps):
    # summed over agents, as Prometheus would, it counts the energy about three times.
    owners = Counter((m.site, m.meter) for snap in shared_snaps for m in snap.meters)
    assert max(owners.values()) > 1, owners
    single_dc = {s.site: s.energy_wh["facility"] for s in single_snap.sites}["sg1"]
    summed_dc = sum(
        {s.site: s.energy_wh.get("facility", 0.0) for s in snap.sites}["sg1"]
        for snap in shared_snaps
    )
    assert summed_dc > 1.5 * single_dc, (summed_dc, single_dc)


def test_site_partitions_give_every_meter_one_owner_and_exact_live_kpis(
    mosquitto: Mosquitto, mqtt_topic_prefix: str, tmp_path: Path
) -> None:
    prefix = mqtt_topic_prefix
    now, end_s = _frozen_now()
    by_name = {s["name"]: s for s in PARTITION_SITES}
    part_settings = [
        make_settings(
            mosquitto.url,
            prefix,
            tmp_path / f"part{i}",
            client_id=f"{prefix.replace('/', '-')}-part-{i}",
            mqtt={"subscribe": "sites"},
            sites=[by_name[n] for n in names],
        )
        for i, names in enumerate(PARTITIONS)
    ]
    single_settings = make_settings(
        mosquitto.url,
        prefix,
        tmp_path / "single",
        client_id=f"{prefix.replace('/', '-')}-single",
        sites=PARTITION_SITES,
    )
    parts = [Agent(s, clock=lambda: now) for s in part_settings]
    single = Agent(single_settings, clock=lambda: now)
    for agent, settings in [*zip(parts, part_settings, strict=True), (single, single_settings)]:
        attach_live(agent, settings)
    msgs, keys = make_stream(prefix, PARTITION_SITES, end_s)
    n = len(keys)

    with ExitStack() as stack:
        servers = [
            stack.enter_context(serve(s.metrics, a.snapshot, s.sites))
            for a, s in zip(parts, part_settings, strict=True)
        ]
        stack.enter_context(running([*parts, single]))
        pub = Publisher(mosquitto.host, mosquitto.port)
        try:
            wait_subscribed(
                pub,
                [*parts, single],
                [f"{prefix}/greendc/{s['name']}/probe" for s in PARTITION_SITES],
            )
            pub.publish(msgs)
        finally:
            pub.close()
        assert wait_until(
            lambda: (
                sum(a.stats.readings_accepted for a in parts) == n
                and single.stats.readings_accepted == n
            )
        ), ([a.stats.readings_accepted for a in parts], single.stats.readings_accepted)
        scraped = [scrape_meters(srv.url) for srv in servers]
        part_snaps = [a.snapshot() for a in parts]
        single_snap = single.snapshot()

    # Every agent worked, and only on its own sites (nothing was rejected as unknown except
    # the readiness probes, one kind of message per site topic).
    for agent, names in zip(parts, PARTITIONS, strict=True):
        assert agent.stats.readings_accepted > 0
        assert set(agent.stats.rejections) <= {"unknown_meter"}
        assert {m.site for m in agent.snapshot().meters} == set(names)

    # The union of the three /metrics exports every meter, each on exactly one agent.
    all_meters = {(s["name"], m["name"]) for s in PARTITION_SITES for m in s["meters"]}
    owners = Counter(pair for meters in scraped for pair in meters)
    assert set(owners) == all_meters
    assert set(owners.values()) == {1}

    # Stored exactly once across the partition stores.
    union = [
        r
        for s in part_settings
        if s.sinks.embedded is not None
        for r in store_readings(s.sinks.embedded.path)
    ]
    union_keys = Counter((r.site, r.meter, r.ts_ms) for r in union)
    assert set(union_keys) == keys and len(union) == n

    # Live KPIs and energy counters of each site equal the single agent's.
    single_sites = {s.site: s for s in single_snap.sites}
    for snap in part_snaps:
        for site in snap.sites:
            want = single_sites[site.site]
            pue = site.kpis[WINDOW_SECONDS]["pue"]
            assert want.kpis[WINDOW_SECONDS]["pue"].value is not None
            assert pue.value == want.kpis[WINDOW_SECONDS]["pue"].value
            assert pue.coverage == want.kpis[WINDOW_SECONDS]["pue"].coverage
            assert site.energy_wh == want.energy_wh
    assert sorted(s.site for snap in part_snaps for s in snap.sites) == sorted(single_sites)

    # And the stored data give the same site and fleet PUE as the single agent's store.
    assert single_settings.sinks.embedded is not None
    window = Window(end_s - WINDOW_SECONDS, end_s)
    got = stored_kpis(union, single_settings, window)
    want_stored = stored_kpis(
        store_readings(single_settings.sinks.embedded.path), single_settings, window
    )
    min_cov = single_settings.kpi.min_coverage
    for name in by_name:
        assert got[name].kpis["pue"].value == want_stored[name].kpis["pue"].value
    fleet = fleet_pue(list(got.values()), min_coverage=min_cov)
    assert fleet.value is not None
    assert fleet.value == fleet_pue(list(want_stored.values()), min_coverage=min_cov).value
