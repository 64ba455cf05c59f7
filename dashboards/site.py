"""Site detail: one data centre, for the operators running it.

Answers: where does the power go (by role), is PUE inside its target and thresholds, how
renewable is the supply, how dirty is the grid right now, and which meters are reporting.

pPUE per zone comes from the collector's live ``greendc_zone_ppue_ratio`` (computed on zone
energy from meters' ``zone`` setting), since neither power metrics nor ``greendc_reading``
carry a zone.
"""

from __future__ import annotations

from grafanalib import core as g

from greendc.dashboards.common import (
    GREEN,
    INFLUX_DS,
    ORANGE,
    PROM_DS,
    RED,
    UNIT_G_PER_KWH,
    UNIT_PERCENT,
    UNIT_RATIO,
    UNIT_SECONDS,
    UNIT_WATT,
    Layout,
    influx,
    influx_daily_energy,
    influx_sum_by_role,
    live_kpi,
    make_dashboard,
    meter_age_seconds,
    prom,
    prom_stat,
    prom_timeseries,
    pue_energy,
    rename_unit,
    sel,
    series_style,
    steps,
)

UID = "greendc-site"

# Roles whose power adds up to the facility total (the facility meter itself is drawn as a line).
LOAD_ROLES = ("it", "cooling", "lighting", "other_overhead")
SUPPLY_ROLES = ("facility", "grid_import", "renewable_onsite", "generator")


def _power_by_role_prom(roles: tuple[str, ...]) -> str:
    selector = sel("greendc_meter_power_watts", regex={"role": "|".join(roles)})
    return f"sum by (role) ({selector})"


def _pue_stat() -> g.Stat:
    # The colour threshold comes from the site's own warning level (a query), because one
    # dashboard serves sites with different targets.
    return g.Stat(
        title="PUE (time range, ΣE_DC / ΣE_IT)",
        description="Energy-based over the dashboard time range; red at the site's PUE warning.",
        dataSource=PROM_DS,
        targets=[
            prom("A", pue_energy(), "PUE", instant=True),
            prom("B", f"max({sel('greendc_site_pue_warning_ratio')})", "warning", instant=True),
        ],
        format=UNIT_RATIO,
        decimals=2,
        reduceCalc="lastNotNull",
        graphMode="none",
        thresholds=steps((GREEN, None)),
        transformations=[
            {
                "id": "configFromData",
                "options": {
                    "configRefId": "B",
                    "mappings": [{"fieldName": "warning", "handlerKey": "threshold1"}],
                },
            }
        ],
    )


def dashboard() -> g.Dashboard:
    """The site detail dashboard (one site at a time)."""
    lay = Layout()
    lay.row("Now")
    lay.add(_pue_stat(), w=4, h=5)
    lay.add(
        prom_stat(
            "PUE (last hour, agent)",
            live_kpi("greendc_site_pue_ratio"),
            UNIT_RATIO,
            2,
            description="Withheld (empty) when the inputs cover too little of the hour.",
        ),
        w=4,
        h=5,
    )
    lay.add(
        prom_stat(
            "PUE input coverage (last hour)",
            live_kpi("greendc_site_pue_coverage_ratio"),
            UNIT_PERCENT,
            0,
            thresholds=steps((RED, None), (ORANGE, 0.9), (GREEN, 0.99)),
        ),
        w=4,
        h=5,
    )
    lay.add(
        prom_stat("IT load", f"sum({sel('greendc_meter_power_watts', role='it')})", UNIT_WATT, 1),
        w=4,
        h=5,
    )
    lay.add(
        prom_stat(
            "IT load / installed IT power",
            f"sum({sel('greendc_meter_power_watts', role='it')})"
            f" / sum({sel('greendc_site_installed_it_watts')})",
            UNIT_PERCENT,
            0,
        ),
        w=4,
        h=5,
    )
    lay.add(
        prom_stat(
            "Renewable share (last hour)",
            live_kpi("greendc_site_renewable_share_ratio"),
            UNIT_PERCENT,
            1,
        ),
        w=4,
        h=5,
    )

    lay.row("Power")
    lay.add(
        prom_timeseries(
            "Power by role (Prometheus)",
            [
                prom("A", _power_by_role_prom(LOAD_ROLES), "{{role}}"),
                prom("B", f"sum({sel('greendc_meter_power_watts', role='facility')})", "facility"),
            ],
            UNIT_WATT,
            1,
            description="Loads stacked; the facility meter (E_DC) as a line above them.",
            fillOpacity=30,
            stacking={"mode": "normal", "group": "A"},
            overrides=[series_style("^facility$", RED, dashed=False)],
            legendDisplayMode="table",
            legendCalcs=["mean", "max", "lastNotNull"],
        ),
        w=12,
        h=9,
    )
    lay.add(
        g.TimeSeries(
            title="Power by role (InfluxDB, stored readings)",
            description="Mean power per meter per interval, summed by role.",
            dataSource=INFLUX_DS,
            targets=[
                influx("A", influx_sum_by_role("power_w", LOAD_ROLES), "$tag_role"),
                influx("B", influx_sum_by_role("power_w", ("facility",)), "$tag_role"),
            ],
            unit=UNIT_WATT,
            valueDecimals=1,
            fillOpacity=30,
            stacking={"mode": "normal", "group": "A"},
            overrides=[series_style("^facility$", RED, dashed=False)],
        ),
        w=12,
        h=9,
    )
    lay.add(
        prom_timeseries(
            "Supply: facility, grid import, on-site renewable, generator",
            [prom("A", _power_by_role_prom(SUPPLY_ROLES), "{{role}}")],
            UNIT_WATT,
            1,
        ),
        w=12,
        h=8,
    )
    lay.add(
        influx_daily_energy(
            "Energy by day and role (InfluxDB counters)",
            "Per-meter increase of the energy_wh counter, summed by role.",
            (*LOAD_ROLES, "facility"),
        ),
        w=12,
        h=8,
    )

    lay.row("Efficiency")
    lay.add(
        prom_timeseries(
            "PUE (rolling hour) with target and threshold bands",
            [
                prom("A", live_kpi("greendc_site_pue_ratio"), "PUE"),
                prom("B", pue_energy(window="1h"), "PUE (from counters)"),
                prom("C", f"max({sel('greendc_site_pue_target_ratio')})", "target"),
                prom("D", f"max({sel('greendc_site_pue_warning_ratio')})", "warning"),
                prom("E", f"max({sel('greendc_site_pue_critical_ratio')})", "critical"),
            ],
            UNIT_RATIO,
            2,
            description="Green dashed: target; orange band: warning to critical; red: critical.",
            overrides=[
                series_style("^target$", GREEN),
                _band("warning", ORANGE, below="target"),
                _band("critical", RED, below="warning"),
            ],
            legendDisplayMode="table",
            legendCalcs=["lastNotNull", "max"],
        ),
        w=12,
        h=9,
    )
    lay.add(
        prom_timeseries(
            "Renewable share (rolling hour) vs target",
            [
                prom("A", live_kpi("greendc_site_renewable_share_ratio"), "renewable share"),
                prom("B", f"max({sel('greendc_site_renewable_target_ratio')})", "target"),
            ],
            UNIT_PERCENT,
            1,
            overrides=[series_style("^target$", GREEN)],
        ),
        w=12,
        h=9,
    )

    lay.add(
        prom_timeseries(
            "pPUE per zone (rolling hour)",
            [prom("A", live_kpi("greendc_zone_ppue_ratio", by="zone"), "{{zone}}")],
            UNIT_RATIO,
            2,
            description="Partial PUE of each zone: (zone IT + zone overhead) / zone IT energy, "
            "from meters' zone setting. A zone whose meters cover too little of the hour is "
            "withheld, not drawn.",
        ),
        w=24,
        h=8,
    )

    lay.row("Grid and meters")
    lay.add(
        prom_timeseries(
            "Grid carbon intensity (location-based factor)",
            [
                prom(
                    "A",
                    f"max by (zone) ({sel('greendc_site_grid_carbon_intensity_grams_per_kwh')})",
                    "{{zone}}",
                )
            ],
            UNIT_G_PER_KWH,
            0,
        ),
        w=8,
        h=9,
    )
    lay.add(_meter_table(), w=16, h=9)
    lay.add(
        g.Table(
            title="Readings stored per meter in the time range (InfluxDB)",
            description="Meters that stopped reporting vanish from Prometheus; here they stay.",
            dataSource=INFLUX_DS,
            targets=[
                influx(
                    "A",
                    'SELECT count("power_w") AS "power readings", '
                    'count("energy_wh") AS "energy readings", '
                    'last("energy_wh") AS "last energy_wh" '
                    'FROM "greendc_reading" WHERE "site" =~ /^$site$/ AND $timeFilter '
                    'GROUP BY "meter", "role"',
                    table=True,
                )
            ],
        ),
        w=24,
        h=8,
    )
    return make_dashboard(
        title="greendc / Site detail",
        uid=UID,
        description="One site: power by role, PUE against its thresholds, renewable share, "
        "pPUE per zone, grid intensity, meter freshness.",
        layout=lay,
        multi_site=False,
    )


def _band(name: str, color: str, *, below: str) -> dict[str, object]:
    """A dashed threshold series that fills down to the next-lower threshold (a band)."""
    o = series_style(f"^{name}$", color)
    props = [p for p in o["properties"] if p["id"] != "custom.fillOpacity"]
    props += [
        {"id": "custom.fillOpacity", "value": 15},
        {"id": "custom.fillBelowTo", "value": below},
    ]
    return {"matcher": o["matcher"], "properties": props}


_METER_COLUMNS = {
    "A": ("Seconds since last reading", UNIT_SECONDS, 0),
    "B": ("Power", UNIT_WATT, 1),
}


def _meter_table() -> g.Table:
    age_name = _METER_COLUMNS["A"][0]
    overrides = [rename_unit(n, u, d) for n, u, d in _METER_COLUMNS.values()]
    overrides[0]["properties"] += [
        {
            "id": "thresholds",
            "value": {"mode": "absolute", "steps": steps((GREEN, None), (ORANGE, 120), (RED, 300))},
        },
        {"id": "custom.displayMode", "value": "color-background"},
    ]
    return g.Table(
        title="Meters: data freshness",
        description="A meter silent past its expiry disappears from the agent's metrics.",
        dataSource=PROM_DS,
        targets=[
            prom("A", meter_age_seconds(), table=True),
            prom(
                "B", f"max by (site, meter, role) ({sel('greendc_meter_power_watts')})", table=True
            ),
        ],
        transformations=[
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {
                    "excludeByName": {"Time": True},
                    "renameByName": {f"Value #{k}": v[0] for k, v in _METER_COLUMNS.items()},
                },
            },
        ],
        overrides=overrides,
        sortBy=[g.TableSortByField(displayName=age_name, desc=True)],
    )
