"""Fleet overview: every site at a glance, for operators and their managers.

Answers: is each site's PUE at or under its target, how much IT load and total power does
the fleet carry, how renewable is it, and how fast is it emitting (location-based)?
Fleet PUE is ΣE_DC / ΣE_IT over the time range, not an average of site PUEs.
"""

from __future__ import annotations

from grafanalib import core as g

from greendc.dashboards.common import (
    GRAMS_PER_KG,
    GREEN,
    PROM_DS,
    UNIT_KG,
    UNIT_KG_PER_HOUR,
    UNIT_PERCENT,
    UNIT_RATIO,
    UNIT_WATT,
    Layout,
    energy_kwh,
    live_kpi,
    make_dashboard,
    prom,
    prom_stat,
    prom_timeseries,
    pue_energy,
    rename_unit,
    sel,
    series_style,
)

UID = "greendc-fleet"


def _fleet_renewable_share() -> str:
    # Weight each site's REF by its facility energy over the same window, so the fleet figure
    # is ΣE_renewable / ΣE_DC rather than a mean of site ratios.
    ref = live_kpi("greendc_site_renewable_share_ratio")
    e_dc = energy_kwh("facility", window="1h", by="site")
    return f"sum({ref} * on (site) ({e_dc})) / sum({e_dc})"


def _emissions_rate_kg_h(by: str = "") -> str:
    grouping = f" by ({by})" if by else ""
    rate = f"rate({sel('greendc_site_emissions_grams_total')}[$__rate_interval])"
    return f"sum{grouping} ({rate}) * 3600 / {GRAMS_PER_KG}"


def _power_w(role: str, by: str = "") -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} ({sel('greendc_meter_power_watts', role=role)})"


def dashboard() -> g.Dashboard:
    """The fleet overview dashboard."""
    lay = Layout()
    lay.row("Fleet")
    lay.add(
        prom_stat(
            "Fleet PUE (ΣE_DC / ΣE_IT, time range)",
            pue_energy(),
            UNIT_RATIO,
            2,
            instant=True,
            description="Energy-weighted over the selected sites and the dashboard time range.",
            graphMode="none",
            # Targets differ by site, so a fleet-wide colour threshold would mislead.
            colorMode="none",
        ),
        w=4,
        h=5,
    )
    lay.add(prom_stat("IT load", _power_w("it"), UNIT_WATT, 1), w=4, h=5)
    lay.add(prom_stat("Total facility power", _power_w("facility"), UNIT_WATT, 1), w=4, h=5)
    lay.add(
        prom_stat(
            "Renewable share (REF, last hour)",
            _fleet_renewable_share(),
            UNIT_PERCENT,
            1,
            description="ΣE_renewable / ΣE_DC over the last hour across the selected sites.",
        ),
        w=4,
        h=5,
    )
    lay.add(
        prom_stat("Emissions rate (location-based)", _emissions_rate_kg_h(), UNIT_KG_PER_HOUR, 1),
        w=4,
        h=5,
    )
    lay.add(
        prom_stat(
            "Emissions (location-based, time range)",
            f"sum(increase({sel('greendc_site_emissions_grams_total')}[$__range]))"
            f" / {GRAMS_PER_KG}",
            UNIT_KG,
            1,
            instant=True,
            graphMode="none",
        ),
        w=4,
        h=5,
    )

    lay.row("Per site")
    lay.add(
        prom_timeseries(
            "PUE by site (last hour, energy-based) vs target",
            [
                prom("A", live_kpi("greendc_site_pue_ratio"), "{{site}}"),
                prom(
                    "B",
                    f"max by (site) ({sel('greendc_site_pue_target_ratio')})",
                    "{{site}} target",
                ),
            ],
            UNIT_RATIO,
            2,
            description="Dashed: each site's configured PUE target.",
            overrides=[series_style(" target$", GREEN)],
            legendDisplayMode="table",
            legendCalcs=["lastNotNull"],
        ),
        w=12,
    )
    lay.add(_stacked_power_by_site("IT load by site", "it"), w=12)
    lay.add(_stacked_power_by_site("Facility power by site", "facility"), w=8)
    lay.add(
        prom_timeseries(
            "Renewable share by site (last hour) vs target",
            [
                prom("A", live_kpi("greendc_site_renewable_share_ratio"), "{{site}}"),
                prom(
                    "B",
                    f"max by (site) ({sel('greendc_site_renewable_target_ratio')})",
                    "{{site}} target",
                ),
            ],
            UNIT_PERCENT,
            1,
            overrides=[series_style(" target$", GREEN)],
        ),
        w=8,
    )
    lay.add(
        prom_timeseries(
            "Emissions rate by site (location-based)",
            [prom("A", _emissions_rate_kg_h(by="site"), "{{site}}")],
            UNIT_KG_PER_HOUR,
            1,
        ),
        w=8,
    )
    lay.add(_site_table(), w=24, h=9)
    return make_dashboard(
        title="greendc / Fleet overview",
        uid=UID,
        description="All sites: PUE against target, load, power, renewable share, emissions.",
        layout=lay,
    )


def _stacked_power_by_site(title: str, role: str) -> g.TimeSeries:
    return prom_timeseries(
        title,
        [prom("A", _power_w(role, by="site"), "{{site}}")],
        UNIT_WATT,
        1,
        fillOpacity=20,
        stacking={"mode": "normal", "group": "A"},
    )


_COLUMNS = {
    "A": ("PUE (time range)", UNIT_RATIO, 2),
    "B": ("PUE target", UNIT_RATIO, 2),
    "C": ("PUE warning", UNIT_RATIO, 2),
    "D": ("IT load", UNIT_WATT, 1),
    "E": ("Facility power", UNIT_WATT, 1),
    "F": ("Renewable share (1h)", UNIT_PERCENT, 1),
    "G": ("PUE coverage (1h)", UNIT_PERCENT, 0),
    "H": ("Emissions rate", UNIT_KG_PER_HOUR, 1),
}


def _site_table() -> g.Table:
    exprs = {
        "A": pue_energy(by="site"),
        "B": f"max by (site) ({sel('greendc_site_pue_target_ratio')})",
        "C": f"max by (site) ({sel('greendc_site_pue_warning_ratio')})",
        "D": _power_w("it", by="site"),
        "E": _power_w("facility", by="site"),
        "F": live_kpi("greendc_site_renewable_share_ratio"),
        "G": live_kpi("greendc_site_pue_coverage_ratio"),
        "H": _emissions_rate_kg_h(by="site"),
    }
    rename = {f"Value #{ref}": col[0] for ref, col in _COLUMNS.items()}
    return g.Table(
        title="Sites",
        description="One row per site; PUE over the dashboard time range from energy counters.",
        dataSource=PROM_DS,
        targets=[prom(ref, expr, table=True) for ref, expr in exprs.items()],
        transformations=[
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {
                    "excludeByName": {"Time": True},
                    "indexByName": {"site": 0},
                    "renameByName": rename,
                },
            },
        ],
        overrides=[rename_unit(name, unit, dec) for name, unit, dec in _COLUMNS.values()],
        sortBy=[g.TableSortByField(displayName="PUE (time range)", desc=True)],
    )
