"""Build the dashboards into JSON, list their queries, and substitute Grafana variables.

``build(out_dir)`` writes one ``<uid>.json`` per dashboard, deterministic byte for byte
(sorted keys, indent 2, trailing newline, no timestamps, fixed uids and ids), so the
committed files in ``dashboards/generated/`` can be checked against a fresh build.

``iter_queries`` and ``substitute`` let a test run every panel query against a real
Prometheus and a real InfluxDB with concrete values in place of Grafana's variables.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from grafanalib import core as g
from grafanalib._gen import DashboardEncoder

from greendc.dashboards import carbon, fleet, health, site

DEFAULT_OUT_DIR = Path(__file__).resolve().parent / "generated"

# uid -> builder; the uid is also the file name.
DASHBOARDS: dict[str, Callable[[], g.Dashboard]] = {
    fleet.UID: fleet.dashboard,
    site.UID: site.dashboard,
    carbon.UID: carbon.dashboard,
    health.UID: health.dashboard,
}


def render(dash: g.Dashboard) -> str:
    """The dashboard as deterministic JSON text (sorted keys, indent 2, trailing newline)."""
    data = json.loads(json.dumps(dash.to_json_data(), cls=DashboardEncoder))
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def build(out_dir: str | Path | None = None) -> list[Path]:
    """Write every dashboard as ``<uid>.json`` into ``out_dir`` (default dashboards/generated).

    Files of dashboards that no longer exist are left alone; returns the paths written.
    """
    out = Path(out_dir) if out_dir is not None else DEFAULT_OUT_DIR
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for uid, make in DASHBOARDS.items():
        dash = make()
        if dash.uid != uid:
            raise ValueError(f"dashboard {dash.title!r} has uid {dash.uid!r}, expected {uid!r}")
        path = out / f"{uid}.json"
        text = render(dash)
        # Write only on change so file times stay put for Grafana's provisioning watcher.
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def _iter_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _iter_panels(panel.get("panels") or [])


def _kind(target: dict[str, Any], panel: dict[str, Any]) -> str:
    for ds in (target.get("datasource"), panel.get("datasource")):
        if isinstance(ds, dict) and ds.get("type"):
            return str(ds["type"])
    raise ValueError(f"panel {panel.get('title')!r} target {target.get('refId')!r}: no data source")


def iter_queries(dashboard_json: dict[str, Any]) -> list[tuple[str, str]]:
    """Every panel query of a dashboard as ``(datasource_kind, expr)``.

    The kind is ``prometheus`` (the expr is PromQL) or ``influxdb`` (the expr is InfluxQL);
    variable queries are not included (see :func:`variable_queries`).
    """
    out: list[tuple[str, str]] = []
    for panel in _iter_panels(dashboard_json.get("panels", [])):
        for target in panel.get("targets") or []:
            kind = _kind(target, panel)
            expr = target.get("expr") if kind == "prometheus" else target.get("query")
            if not expr:
                raise ValueError(f"panel {panel.get('title')!r}: empty {kind} query")
            out.append((kind, str(expr)))
    return out


def variable_queries(dashboard_json: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The query variables of a dashboard as ``(name, datasource_kind, query)``."""
    out = []
    for var in dashboard_json.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            ds = var.get("datasource") or {}
            out.append((str(var["name"]), str(ds.get("type", "")), str(var["query"])))
    return out


_VARIABLE = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def substitute(
    expr: str,
    *,
    site: str,
    interval: str = "1m",
    range: str = "1h",
    rate_interval: str | None = None,
) -> str:
    """``expr`` with Grafana's variables replaced by concrete values.

    ``$site``, ``$__interval``, ``$__range`` and ``$__rate_interval`` (default: ``interval``)
    become the values given (durations like ``1m``, valid in PromQL and InfluxQL), and
    ``$timeFilter`` becomes ``time >= now() - <range>``. Any other variable raises
    ValueError, so a dashboard cannot grow a query the integration test cannot run.
    """
    values = {
        "site": site,
        "__interval": interval,
        "__range": range,
        "__rate_interval": rate_interval or interval,
        "timeFilter": f"time >= now() - {range}",
    }

    def repl(m: re.Match[str]) -> str:
        name = m.group("braced") or m.group("bare")
        if name not in values:
            raise ValueError(f"unknown Grafana variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(repl, expr)
