"""Shared pieces of the greendc dashboards: data sources, variables, targets, panels, layout.

Every panel and target is given an explicit id / refId and every position is computed by
:class:`Layout`, so the generated JSON is the same byte for byte on every build.

Conventions the dashboards share:

- ``${datasource}`` is a Prometheus data-source variable, ``${influxdb}`` an InfluxDB
  (InfluxQL) one; both default to the provisioned data sources (uids ``greendc-prometheus``
  and ``greendc-influxdb``).
- ``$site`` is the site variable; PromQL matches it with ``site=~"$site"`` and InfluxQL with
  ``"site" =~ /^$site$/`` so that single, multi and All selections all work.
- Energy comes from counters and KPIs over a period are ratios of energy sums
  (``increase()`` of ``greendc_site_energy_joules_total``), never means of ratios.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attr
from grafanalib import core as g
from grafanalib.influxdb import InfluxDBTarget

from greendc.catalogue import DASHBOARD_WINDOW_SECONDS, METRICS, READING, metric, window_label
from greendc.promql import DEFAULT_FRESH, energy_increase, pue_query

PROMETHEUS_UID = "greendc-prometheus"
INFLUXDB_UID = "greendc-influxdb"
PROM_VAR = "datasource"
INFLUX_VAR = "influxdb"
SITE_VAR = "site"

# Grafana 9/10 understand this schema without migrating the panels on load.
SCHEMA_VERSION = 37

# The rolling KPI window the dashboards read from the live gauges (label window="1h").
LIVE_WINDOW = window_label(DASHBOARD_WINDOW_SECONDS)

PROM_DS: dict[str, str] = {"type": "prometheus", "uid": "${" + PROM_VAR + "}"}
INFLUX_DS: dict[str, str] = {"type": "influxdb", "uid": "${" + INFLUX_VAR + "}"}

JOULES_PER_KWH = 3.6e6
GRAMS_PER_KG = 1000

# Grafana unit ids.
UNIT_WATT = "watt"
UNIT_KWH = "kwatth"
UNIT_PERCENT = "percentunit"
UNIT_SECONDS = "s"
UNIT_BYTES = "bytes"
UNIT_KG = "masskg"
UNIT_RATIO = "none"
UNIT_PER_SECOND = "cps"
UNIT_KG_PER_HOUR = "suffix: kgCO2e/h"
UNIT_G_PER_KWH = "suffix: gCO2e/kWh"
UNIT_KG_PER_KWH = "suffix: kgCO2e/kWh"

GREEN = "green"
ORANGE = "orange"
RED = "red"


def sel(name: str, regex: Mapping[str, str] | None = None, **matchers: str) -> str:
    """A PromQL selector for a catalogued metric (or one of its series), filtered by site.

    ``matchers`` are exact label matches, ``regex`` regular-expression ones. ``name`` may be
    a family name or a histogram series (``..._bucket``); the family must be in the
    catalogue, so a typo fails at build time rather than as an empty panel.
    """
    family = name
    for suffix in ("_bucket", "_sum", "_count", "_info"):
        if name.endswith(suffix) and name.removesuffix(suffix) in METRICS:
            family = name.removesuffix(suffix)
    labels = metric(family).labels
    parts = [f'{k}="{v}"' for k, v in sorted(matchers.items())]
    parts += [f'{k}=~"{v}"' for k, v in sorted((regex or {}).items())]
    if "site" in labels:
        parts.append('site=~"$site"')
    return f"{name}{{{','.join(parts)}}}" if parts else name


def meter_age_seconds() -> str:
    """PromQL: seconds since each meter's newest accepted reading, one row per meter."""
    last_seen = sel("greendc_meter_last_seen_timestamp_seconds")
    return f"max by (site, meter, role) (time() - {last_seen})"


SITE_FILTER = ('site=~"$site"',)


def energy_kwh(role: str, window: str = "$__range", by: str = "") -> str:
    """PromQL: energy of a role over ``window`` in kWh, summed (optionally ``by`` labels)."""
    metric("greendc_site_energy_joules_total")  # catalogued: fails at build time if not
    return f"{energy_increase(role, window, by=by, matchers=SITE_FILTER)} / {JOULES_PER_KWH:.0f}"


def grid_energy_kwh(window: str = "$__range", by: str = "") -> str:
    """PromQL: E_grid over ``window`` in kWh, by the report's rule (grid_import meters, or
    per interval max(0, E_DC - on-site renewable - generator)), summed (optionally ``by``)."""
    grouping = f" by ({by})" if by else ""
    inner = f"increase({sel('greendc_site_grid_energy_joules_total')}[{window}])"
    return f"sum{grouping} ({inner}) / {JOULES_PER_KWH:.0f}"


def pue_energy(window: str = "$__range", by: str = "") -> str:
    """PromQL: PUE as facility over IT energy in ``window`` (never a mean of ratios), per
    site (``by="site"``) or over the selected sites; the rules' query (greendc.promql), so a
    dead meter (a flat counter) shows a gap, not a PUE near 0 or +Inf."""
    if by not in ("", "site"):
        raise ValueError(f"pue_energy: by must be '' or 'site', got {by!r}")
    return pue_query(
        window, per_site=by == "site", matchers=SITE_FILTER, fresh=DEFAULT_FRESH
    ).strip()


def live_kpi(name: str, by: str = "site") -> str:
    """PromQL: a live rolling-window KPI gauge for the dashboards' window, one series per site."""
    return f"max by ({by}) ({sel(name, window=LIVE_WINDOW)})"


def reading_filter(extra: str = "") -> str:
    """InfluxQL WHERE clause on ``greendc_reading`` for the selected sites and time range."""
    parts = ['"site" =~ /^$site$/']
    if extra:
        parts.append(extra)
    parts.append("$timeFilter")
    return " AND ".join(parts)


def influx_sum_by_role(
    field: str, roles: Sequence[str], per_meter: str = 'mean("{field}")', scale: float = 1.0
) -> str:
    """InfluxQL: ``per_meter`` of ``field`` per meter and interval, then summed per role.

    A subquery keeps meters apart before summing, so a role with two meters is their sum
    and not the mean of their readings. ``scale`` divides the result (1000: Wh to kWh).
    """
    if field not in READING.fields:
        raise KeyError(f"{field!r} is not a field of {READING.name}")
    role_match = '"role" =~ /^(' + "|".join(roles) + ")$/"
    agg = per_meter.format(field=field)
    inner = (
        f'SELECT {agg} AS "v" FROM "{READING.name}" '
        f"WHERE {reading_filter(role_match)} "
        f'GROUP BY time($__interval), "meter", "role" fill(none)'
    )
    total = 'sum("v")' if scale == 1.0 else f'sum("v") / {scale:g}'
    return (
        f"SELECT {total} FROM ({inner}) WHERE $timeFilter "
        f'GROUP BY time($__interval), "role" fill(none)'
    )


def prom(
    ref: str, expr: str, legend: str = "", *, instant: bool = False, table: bool = False
) -> dict[str, Any]:
    """A Prometheus target with an explicit refId, stating both ``instant`` and ``range``."""
    target = g.Target(
        expr=expr,
        refId=ref,
        legendFormat=legend,
        instant=instant or table,
        format="table" if table else "time_series",
        intervalFactor=1,
        datasource=PROM_DS,
    )
    data: dict[str, Any] = target.to_json_data()
    data.pop("query", None)  # grafanalib duplicates expr there; Grafana reads only expr
    data["range"] = not data["instant"]
    data["editorMode"] = "code"
    return data


def prom_stat(
    title: str,
    expr: str,
    unit: str = "none",
    decimals: int | None = None,
    *,
    legend: str = "",
    instant: bool = False,
    **kw: Any,
) -> g.Stat:
    """A stat panel of one Prometheus query (refId A) showing its last non-null value.

    ``unit`` is a Grafana unit id; ``kw`` goes to :class:`grafanalib.core.Stat` unchanged.
    """
    return g.Stat(
        title=title,
        dataSource=PROM_DS,
        targets=[prom("A", expr, legend, instant=instant)],
        format=unit,
        decimals=decimals,
        reduceCalc="lastNotNull",
        **kw,
    )


def prom_timeseries(
    title: str, targets: Sequence[dict[str, Any]], unit: str, decimals: int, **kw: Any
) -> g.TimeSeries:
    """A time-series panel of Prometheus ``targets`` in ``unit`` with ``decimals`` decimals.

    ``kw`` goes to :class:`grafanalib.core.TimeSeries` unchanged.
    """
    return g.TimeSeries(
        title=title,
        dataSource=PROM_DS,
        targets=list(targets),
        unit=unit,
        valueDecimals=decimals,
        **kw,
    )


def influx(ref: str, query: str, alias: str = "", *, table: bool = False) -> InfluxDBTarget:
    """A raw InfluxQL target with an explicit refId."""
    return InfluxDBTarget(
        query=query,
        refId=ref,
        alias=alias,
        datasource=INFLUX_DS,
        measurement=READING.name,
        format="table" if table else "time_series",
    )


def influx_daily_energy(title: str, description: str, roles: Sequence[str]) -> g.TimeSeries:
    """Bars of each role's energy per day in kWh, from the stored ``energy_wh`` counters.

    Each meter's counter increase is taken before summing by role, so a counter reset or a
    second meter on a role does not distort the day's total.
    """
    return g.TimeSeries(
        title=title,
        description=description,
        dataSource=INFLUX_DS,
        interval="1d",
        targets=[
            influx(
                "A",
                influx_sum_by_role(
                    "energy_wh",
                    roles,
                    per_meter='non_negative_difference(last("{field}"))',
                    scale=1000,
                ),
                "$tag_role",
            )
        ],
        unit=UNIT_KWH,
        valueDecimals=1,
        drawStyle="bars",
        fillOpacity=60,
    )


def steps(*pairs: tuple[str, float | None]) -> list[dict[str, Any]]:
    """Threshold steps for Grafana 8+ field config: (color, lower bound), first bound None."""
    return [{"color": c, "value": v} for c, v in pairs]


def series_style(pattern: str, color: str, *, dashed: bool = True) -> dict[str, Any]:
    """An override giving series whose display name matches ``pattern`` a fixed colour and style."""
    props: list[dict[str, Any]] = [
        {"id": "color", "value": {"fixedColor": color, "mode": "fixed"}},
        {"id": "custom.fillOpacity", "value": 0},
        {"id": "custom.stacking", "value": {"group": "A", "mode": "none"}},
    ]
    if dashed:
        props.append({"id": "custom.lineStyle", "value": {"dash": [10, 10], "fill": "dash"}})
    return {"matcher": {"id": "byRegexp", "options": pattern}, "properties": props}


def rename_unit(name: str, unit: str, decimals: int | None = None) -> dict[str, Any]:
    """An override setting the unit (and decimals) of one table column by its display name."""
    props: list[dict[str, Any]] = [{"id": "unit", "value": unit}]
    if decimals is not None:
        props.append({"id": "decimals", "value": decimals})
    return {"matcher": {"id": "byName", "options": name}, "properties": props}


def datasource_variables() -> list[g.Template]:
    """The ``datasource`` (Prometheus) and ``influxdb`` (InfluxDB) data-source variables."""
    return [
        g.Template(
            name=PROM_VAR,
            label="Prometheus",
            query="prometheus",
            type="datasource",
            default=PROMETHEUS_UID,
            refresh=1,
        ),
        g.Template(
            name=INFLUX_VAR,
            label="InfluxDB",
            query="influxdb",
            type="datasource",
            default=INFLUXDB_UID,
            refresh=1,
        ),
    ]


def site_variable(kind: str = "prometheus", *, multi: bool = True) -> g.Template:
    """The ``site`` variable, listing sites from Prometheus or from InfluxDB (InfluxQL)."""
    if kind == "prometheus":
        query = "label_values(greendc_site_pue_target_ratio, site)"
        ds = PROM_DS
    elif kind == "influxdb":
        query = f'SHOW TAG VALUES FROM "{READING.name}" WITH KEY = "site"'
        ds = INFLUX_DS
    else:
        raise ValueError(f"kind: {kind!r} is not one of prometheus, influxdb")
    return g.Template(
        name=SITE_VAR,
        label="Site",
        query=query,
        dataSource=ds,
        includeAll=multi,
        multi=multi,
        allValue=".*" if multi else None,
        refresh=2,  # on time-range change: a new site appears without a reload
        sort=1,
    )


def templating(*, site_kind: str = "prometheus", multi: bool = True) -> g.Templating:
    """Every dashboard's variables: the two data sources and the site."""
    return g.Templating(list=[*datasource_variables(), site_variable(site_kind, multi=multi)])


class Layout:
    """Places panels on Grafana's 24-column grid left to right, top to bottom, with ids.

    Ids and positions depend only on the order panels are added, so output is stable.
    """

    WIDTH = 24

    def __init__(self) -> None:
        self.panels: list[Any] = []
        self._x = 0
        self._y = 0
        self._row_h = 0
        self._next_id = 1

    def add(self, panel: Any, w: int = 12, h: int = 8) -> Layout:
        """Append ``panel`` with width ``w`` and height ``h``; returns self for chaining."""
        if self._x + w > self.WIDTH:
            self._newline()
        pos = g.GridPos(h=h, w=w, x=self._x, y=self._y)
        self.panels.append(attr.evolve(panel, id=self._next_id, gridPos=pos))
        self._next_id += 1
        self._x += w
        self._row_h = max(self._row_h, h)
        return self

    def row(self, title: str) -> Layout:
        """Start a new (always expanded) row titled ``title``."""
        if self._x:
            self._newline()
        panel = g.RowPanel(
            title=title, id=self._next_id, gridPos=g.GridPos(h=1, w=24, x=0, y=self._y)
        )
        self.panels.append(panel)
        self._next_id += 1
        self._y += 1
        return self

    def _newline(self) -> None:
        self._y += self._row_h
        self._x = 0
        self._row_h = 0


def make_dashboard(
    *,
    title: str,
    uid: str,
    description: str,
    layout: Layout,
    time: tuple[str, str] = ("now-6h", "now"),
    site_kind: str = "prometheus",
    multi_site: bool = True,
    refresh: str = "30s",
) -> g.Dashboard:
    """A greendc dashboard with the shared variables, links, tags and settings."""
    return g.Dashboard(
        title=title,
        uid=uid,
        description=description,
        tags=["greendc"],
        panels=layout.panels,
        templating=templating(site_kind=site_kind, multi=multi_site),
        time=g.Time(*time),
        timezone="browser",
        refresh=refresh,
        schemaVersion=SCHEMA_VERSION,
        graphTooltip=g.GRAPH_TOOLTIP_MODE_SHARED_CROSSHAIR,
        editable=False,
        links=[
            g.DashboardLink(
                title="greendc",
                type="dashboards",
                tags=["greendc"],
                asDropdown=True,
                keepTime=True,
                includeVars=True,
            )
        ],
    )
