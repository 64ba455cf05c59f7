"""Each site's live figures, as the exporters read them (:class:`~greendc.snapshot.SiteLive`).

Feeds :class:`greendc.rolling.LiveKPIs` (the rolling-window KPIs) from the agent and turns
its snapshot into plain per-site records: energy counters, emissions, KPIs per window.

The agent calls the observer with every accepted batch (under its lock) and asks for
:class:`~greendc.snapshot.SiteLive` at scrape time. KPI computation over the rolling
windows is cached per completed interval, so frequent scrapes do not hold the agent's lock
for long.

Prometheus counters must never go down, so the net energy of a role whose sub-meters are
subtracted (sign -1) is exported as a high-water mark: a momentary dip, when a sub-meter's
reading arrives before its parent's, holds the counter flat until the net passes it again,
which keeps every ``increase()`` over a window exact once both readings are in.
"""

from __future__ import annotations

from greendc.collector.agent import Agent
from greendc.config import Settings
from greendc.factors import FactorTable
from greendc.model import Role
from greendc.rolling import LiveKPIs, LiveSnapshot
from greendc.snapshot import LiveKPI, SiteLive

_CACHE_SECONDS = 5.0
_EXPORTED_KPIS = ("pue", "renewable_share", "ref", "cue", "erf", "wue", "cfe")


class LiveSites:
    """Turns LiveKPIs into the plain SiteLive records exporters read."""

    def __init__(self, settings: Settings, factors: FactorTable | None = None) -> None:
        self.kpis = LiveKPIs(settings, factors)
        self._settings = settings
        self._high_water: dict[tuple[str, str], float] = {}
        self._cached: tuple[float, int, tuple[SiteLive, ...]] | None = None

    def _monotonic(self, key: tuple[str, str], value: float) -> float:
        prev = self._high_water.get(key, 0.0)
        if value > prev:
            self._high_water[key] = value
            return value
        return prev

    def sites(self, now_s: float) -> tuple[SiteLive, ...]:
        """Live figures of every site (cached for a few seconds within one interval)."""
        c = self._cached
        step = self._settings.kpi.interval_seconds
        if c is not None and now_s - c[0] < _CACHE_SECONDS and int(now_s // step) == c[1]:
            return c[2]
        snap = self.kpis.snapshot(now_s)
        out = tuple(self._site(snap, s.name) for s in self._settings.sites)
        self._cached = (now_s, int(now_s // step), out)
        return out

    def _site(self, snap: LiveSnapshot, name: str) -> SiteLive:
        site = self._settings.site(name)
        assert site is not None
        energy: dict[str, float] = {}
        for role in Role:
            if role is Role.WATER:
                continue
            gross = snap.energy_totals_wh.get((name, role.value))
            sub = snap.subtracted_energy_wh.get((name, role.value), 0.0)
            if gross is None:
                continue
            energy[role.value] = self._monotonic((name, role.value), gross - sub)
        # Location-based CO2e from the core's per-interval rule (greendc.kpi), the same as
        # the report's Scope 2; late readings may lower it, a counter must not go down.
        emissions_g = self._monotonic((name, "__emissions"), snap.emissions_kg[name] * 1000.0)
        grid_wh = self._monotonic((name, "__grid"), snap.grid_energy_wh[name])
        kpis: dict[int, dict[str, LiveKPI]] = {}
        for window, sk in snap.kpis.get(name, {}).items():
            row = {}
            keys = [*_EXPORTED_KPIS, *(n for n, k in sk.kpis.items() if k.zone is not None)]
            for key in keys:
                k = sk.kpis.get(key)
                if k is None:
                    continue
                bridged = k.shares.bridged if k.shares is not None else 0.0
                row[key] = LiveKPI(k.value, k.covered, k.label, k.quality.value, bridged, k.zone)
            kpis[window] = row
        return SiteLive(
            site=name,
            energy_wh=energy,
            water_l=snap.water_totals_l.get(name, 0.0),
            emissions_g=emissions_g,
            grid_zone=site.grid_zone,
            grid_intensity_g_per_kwh=snap.grid_factor_kg_per_kwh[name] * 1000.0,
            pue_category=site.pue_category,
            kpis=kpis,
            counter_events={
                (meter, kind): n for (s, meter, kind), n in snap.counter_events.items() if s == name
            },
            grid_energy_wh=grid_wh,
        )


def attach_live(agent: Agent, settings: Settings) -> LiveSites:
    """Wire live KPIs into an agent: every accepted batch feeds them, scrapes read them."""
    live = LiveSites(settings)
    # Unconfigured meters are in no KPI (LiveKPIs skips them); the agent has their power.
    agent.add_observer(live.kpis.add_many)
    agent.set_site_live(live.sites)
    return live
