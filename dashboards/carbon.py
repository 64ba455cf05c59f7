"""Carbon: energy and location-based Scope 2 emissions by month, for sustainability officers.

Answers: how much energy did the selected sites use this month and last month, how much
grid energy, what location-based emissions did it cause, and what carbon intensity and CUE
does that imply. Market-based emissions (certificates, PPAs, residual mix) and hourly CFE%
need the contract data and are computed only by the monthly report, linked from a text
panel here.
"""

from __future__ import annotations

from typing import Any

from grafanalib import core as g

from greendc.dashboards.common import (
    GRAMS_PER_KG,
    JOULES_PER_KWH,
    UNIT_G_PER_KWH,
    UNIT_KG,
    UNIT_KG_PER_KWH,
    UNIT_KWH,
    Layout,
    energy_kwh,
    grid_energy_kwh,
    influx_daily_energy,
    make_dashboard,
    prom,
    prom_stat,
    prom_timeseries,
    sel,
)

UID = "greendc-carbon"

# Grafana panel time overrides: "now/M" is the month so far (to now, so instant queries run at
# now), and shifting it by "1M/M" gives the whole previous calendar month.
THIS_MONTH = {"timeFrom": "now/M"}
LAST_MONTH = {"timeFrom": "now/M", "timeShift": "1M/M"}

REPORT_TEXT = """\
### Market-based emissions and 24/7 CFE%

Location-based emissions (grid-average factors) are live on this dashboard. **Market-based**
Scope 2 (GHG Protocol: guarantees of origin, RECs and PPAs first, the residual mix for the
rest) and **hourly carbon-free energy (CFE%)** depend on the renewable contracts in the site
configuration, so they are computed by the monthly carbon report, not by Prometheus:

    greendc report --config greendc.yaml --month YYYY-MM --out reports/ --format html,csv

Open the files in `reports/` (HTML, CSV, XLSX or PDF); the README section on the monthly
carbon report explains each figure and its emission-factor sources.

Energy here is what the agent counted (Prometheus counters, which survive agent restarts
through `increase()`); the report reads the stored readings and labels interim figures.
"""


def _emissions_kg(window: str = "$__range") -> str:
    return f"sum(increase({sel('greendc_site_emissions_grams_total')}[{window}])) / {GRAMS_PER_KG}"


def _range_stat(title: str, expr: str, unit: str, decimals: int, **kw: Any) -> g.Stat:
    # Instant queries over the whole range: a sparkline or colour would suggest a trend.
    return prom_stat(
        title, expr, unit, decimals, instant=True, graphMode="none", colorMode="none", **kw
    )


def _period_stat(title: str, expr: str, unit: str, decimals: int, when: dict[str, str]) -> g.Stat:
    return _range_stat(
        title, expr, unit, decimals, timeFrom=when["timeFrom"], timeShift=when.get("timeShift")
    )


def _intensity_g_per_kwh() -> str:
    # Emissions over grid energy in the same range: the effective location-based factor.
    grams = f"sum(increase({sel('greendc_site_emissions_grams_total')}[$__range]))"
    return f"{grams} / ({grid_energy_kwh()})"


def _cue_kg_per_kwh() -> str:
    # CUE = total CO2e of E_DC / E_IT (kgCO2e/kWh), location-based.
    return f"({_emissions_kg()}) / ({energy_kwh('it')})"


def dashboard() -> g.Dashboard:
    """The carbon dashboard."""
    lay = Layout()
    for label, when in (("This month", THIS_MONTH), ("Last month", LAST_MONTH)):
        lay.row(label)
        lay.add(
            _period_stat("Facility energy E_DC", energy_kwh("facility"), UNIT_KWH, 0, when),
            w=6,
            h=5,
        )
        lay.add(_period_stat("IT energy E_IT", energy_kwh("it"), UNIT_KWH, 0, when), w=6, h=5)
        lay.add(_period_stat("Grid energy", grid_energy_kwh(), UNIT_KWH, 0, when), w=6, h=5)
        lay.add(
            _period_stat("Location-based emissions", _emissions_kg(), UNIT_KG, 1, when), w=6, h=5
        )

    lay.row("Time range")
    lay.add(
        _range_stat(
            "Effective grid intensity (emissions / grid energy)",
            _intensity_g_per_kwh(),
            UNIT_G_PER_KWH,
            0,
        ),
        w=8,
        h=5,
    )
    lay.add(
        _range_stat(
            "CUE, location-based (kgCO2e per IT kWh)", _cue_kg_per_kwh(), UNIT_KG_PER_KWH, 3
        ),
        w=8,
        h=5,
    )
    lay.add(
        _range_stat("Location-based emissions (time range)", _emissions_kg(), UNIT_KG, 1),
        w=8,
        h=5,
    )
    lay.add(
        prom_timeseries(
            "Location-based emissions per day",
            [
                prom(
                    "A",
                    f"sum by (site) (increase({sel('greendc_site_emissions_grams_total')}"
                    f"[$__interval])) / {GRAMS_PER_KG}",
                    "{{site}}",
                )
            ],
            UNIT_KG,
            1,
            interval="1d",
            drawStyle="bars",
            fillOpacity=60,
            stacking={"mode": "normal", "group": "A"},
        ),
        w=12,
        h=9,
    )
    lay.add(
        influx_daily_energy(
            "Energy per day by role (InfluxDB counters)",
            "Per-meter increase of the stored energy_wh counters, summed by role.",
            ("facility", "it", "grid_import", "renewable_onsite"),
        ),
        w=12,
        h=9,
    )
    lay.add(
        prom_timeseries(
            "Energy per day by role (Prometheus counters)",
            [
                prom(
                    "A",
                    f"sum by (role) (increase({sel('greendc_site_energy_joules_total')}"
                    f"[$__interval])) / {JOULES_PER_KWH:.0f}",
                    "{{role}}",
                )
            ],
            UNIT_KWH,
            1,
            interval="1d",
            drawStyle="bars",
            fillOpacity=60,
        ),
        w=12,
        h=9,
    )
    lay.add(g.Text(title="Market-based emissions and CFE%", content=REPORT_TEXT), w=12, h=9)
    return make_dashboard(
        title="greendc / Carbon",
        uid=UID,
        description="Energy and location-based Scope 2 emissions by month; market-based and "
        "CFE% are in the monthly report.",
        layout=lay,
        time=("now-90d", "now"),
        refresh="5m",
    )
