"""A real Prometheus scrapes the real exporter and evaluates the generated recording rules.

The exporter is fed hand-built snapshots whose energy counters grow by varying amounts on
each scrape for a while, then stop. Once they stop, every increase() over the rules'
windows spans the whole history, so the recorded PUE must equal ΔE_facility / ΔE_IT summed
by hand, and the fleet PUE ΣE_facility / ΣE_IT over both sites (not the mean of the two).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from greendc.config import MetricsSettings
from greendc.exporters import serve, write_rules
from greendc.exporters.rules import fleet_pue_record, pue_record
from greendc.snapshot import SiteLive, Snapshot
from tests.helpers import idle_health, site_config
from tests.servers import PrometheusFactory
from tests.support.builders import settings_from

pytestmark = pytest.mark.integration

# Wh added per scrape: (facility, it) per site; varied so a wrong formula shows.
INCREMENTS_WH: dict[str, list[tuple[float, float]]] = {
    "sg1": [(150.0, 100.0), (172.5, 110.0), (140.0, 97.5), (161.0, 100.0), (150.25, 99.0)],
    "jhr1": [(330.0, 200.0), (310.0, 205.0), (355.5, 190.0), (301.0, 210.0), (320.0, 200.0)],
}
ZERO_SCRAPES = 3  # counters start at 0 (an agent that just started) for a few scrapes


class GrowingCounters:
    """A snapshot provider whose energy grows by the next increments on each scrape."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.scrapes = 0
        self.energy = {site: {"facility": 0.0, "it": 0.0} for site in INCREMENTS_WH}

    @property
    def done(self) -> bool:
        """True once every increment has been served (the counters are frozen)."""
        with self._lock:
            return self.scrapes > ZERO_SCRAPES + len(INCREMENTS_WH["sg1"])

    def __call__(self) -> Snapshot:
        with self._lock:
            step = self.scrapes - ZERO_SCRAPES
            if 0 <= step < len(INCREMENTS_WH["sg1"]):
                for site, steps in INCREMENTS_WH.items():
                    fac, it = steps[step]
                    self.energy[site]["facility"] += fac
                    self.energy[site]["it"] += it
            self.scrapes += 1
            energy = {s: dict(e) for s, e in self.energy.items()}
        sites = tuple(
            SiteLive(
                site=s,
                energy_wh=e,
                water_l=0.0,
                emissions_g=0.0,
                grid_zone="SG",
                grid_intensity_g_per_kwh=None,
                pue_category=1,
            )
            for s, e in sorted(energy.items())
        )
        return Snapshot(taken_at_s=0.0, meters=(), sites=sites, health=idle_health("it-test"))


def _settings() -> Any:
    return settings_from({"sites": [site_config("sg1"), site_config("jhr1")]})


def _one_value(result: list[dict[str, Any]]) -> float | None:
    return float(result[0]["value"][1]) if len(result) == 1 else None


def test_recorded_pue_is_energy_ratio_of_what_was_scraped(
    tmp_path: Path, prometheus_factory: PrometheusFactory
) -> None:
    provider = GrowingCounters()
    settings = _settings()
    rule_files = write_rules(settings, tmp_path / "rules")
    with serve(MetricsSettings(port=0), provider, settings.sites) as exporter:
        prom = prometheus_factory(
            [f"127.0.0.1:{exporter.port}"], rule_files=rule_files, interval_seconds=1.0
        )
        prom.wait_for('up{job="greendc"}', lambda r: _one_value(r) == 1.0)
        expected = {}
        for site, steps in INCREMENTS_WH.items():
            expected[site] = sum(f for f, _ in steps) / sum(i for _, i in steps)
        fleet = sum(f for steps in INCREMENTS_WH.values() for f, _ in steps) / sum(
            i for steps in INCREMENTS_WH.values() for _, i in steps
        )
        # Sanity of the test itself: the fleet figure is not the mean of the sites' PUEs.
        assert not math.isclose(fleet, sum(expected.values()) / len(expected), rel_tol=1e-6)

        def settled(query: str, want: float) -> Callable[[list[dict[str, Any]]], bool]:
            def check(result: list[dict[str, Any]]) -> bool:
                got = _one_value(result)
                return provider.done and got is not None and math.isclose(got, want, rel_tol=1e-9)

            return check

        for window in ("15m", "1h"):
            for site, want in expected.items():
                query = f'{pue_record(window)}{{site="{site}"}}'
                result = prom.wait_for(query, settled(query, want), deadline_seconds=60)
                assert math.isclose(float(result[0]["value"][1]), want, rel_tol=1e-9)
            query = fleet_pue_record(window)
            result = prom.wait_for(query, settled(query, fleet), deadline_seconds=60)
            assert result[0]["metric"].get("scope") == "fleet"

        # The exported energy is in joules: 3600 x the Wh served.
        joules = prom.query('greendc_site_energy_joules_total{site="sg1", role="facility"}')
        assert float(joules[0]["value"][1]) == pytest.approx(
            provider.energy["sg1"]["facility"] * 3600.0
        )
