"""The generated dashboards: up to date, deterministic, and naming only catalogued things."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from greendc import dashboards
from greendc.catalogue import MEASUREMENTS, METRICS, all_series_names
from greendc.dashboards import DASHBOARDS, build, iter_queries, substitute, variable_queries
from greendc.dashboards.common import INFLUXDB_UID, PROMETHEUS_UID, site_variable

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "dashboards" / "generated"
PROVISIONING = ROOT / "config" / "grafana" / "provisioning"

RECORDING_RULES = frozenset(
    {
        "site:greendc_pue:ratio_15m",
        "site:greendc_pue:ratio_1h",
        "fleet:greendc_pue:ratio_15m",
        "fleet:greendc_pue:ratio_1h",
    }
)
# Labels Prometheus adds to every scraped series, and the histogram bucket bound.
TARGET_LABELS = frozenset({"job", "instance"})
REBUILD = "dashboards/generated is stale: run `greendc dashboards build` and commit the result"


# --------------------------------------------------------------------------------------------
# Query parsers (just enough PromQL / InfluxQL to find the names a query depends on)

_PROMQL_KEYWORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "inf",
        "nan",
        "atan2",
    }
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER_LABEL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
_IDENT = re.compile(r"(?<![\w$.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")


def promql_names(expr: str) -> tuple[set[str], dict[str, set[str]], set[str]]:
    """(metric names, labels matched per selector name, labels in grouping clauses)."""
    no_strings = _STRING.sub('""', expr)
    selector_labels: dict[str, set[str]] = {}
    for name, body in _SELECTOR.findall(no_strings):
        selector_labels.setdefault(name, set()).update(_MATCHER_LABEL.findall(body))
    grouping = {
        label.strip()
        for _, labels in _GROUPING.findall(no_strings)
        for label in labels.split(",")
        if label.strip()
    }
    bare = re.sub(r"\{[^}]*\}", "", no_strings)
    bare = re.sub(r"\[[^\]]*\]", "", bare)
    bare = _GROUPING.sub("", bare)
    names = {
        m.group(1)
        for m in _IDENT.finditer(bare)
        if m.group(2) is None and m.group(1).lower() not in _PROMQL_KEYWORDS
    }
    return names, selector_labels, grouping


def check_promql(expr: str) -> list[str]:
    """Problems with the metric and label names of a PromQL expression (empty when fine)."""
    problems = []
    series = all_series_names()
    names, selector_labels, grouping = promql_names(expr)
    known_labels = set(TARGET_LABELS)
    for name in names:
        if ":" in name:
            if name not in RECORDING_RULES:
                problems.append(f"{name}: not one of the recording rules")
            known_labels.add("site")
            continue
        if name not in series:
            problems.append(f"{name}: not in the metric catalogue")
            continue
        family = next(m for m in METRICS.values() if name in m.series_names)
        own = set(family.labels) | TARGET_LABELS | ({"le"} if name.endswith("_bucket") else set())
        known_labels |= own
        unknown = selector_labels.get(name, set()) - own
        if unknown:
            problems.append(f"{name}: matches labels it does not have: {sorted(unknown)}")
    if not names:
        problems.append("names no metric")
    for label in sorted(grouping - known_labels):
        problems.append(f"groups by {label!r}, which none of its metrics has")
    return problems


_FROM = re.compile(r"\bFROM\s+(?!\()(\"[^\"]+\"|[A-Za-z_][\w.]*)", re.IGNORECASE)
_ALIAS = re.compile(r'\bAS\s+"([^"]+)"', re.IGNORECASE)
_QUOTED = re.compile(r'"([^"]+)"')
_UNQUOTED_ARG = re.compile(r"\(\s*([A-Za-z_]\w*)\s*\)")
_FILL = frozenset({"none", "null", "previous", "linear"})


def check_influxql(query: str) -> list[str]:
    """Problems with the measurement, field and tag names of an InfluxQL query."""
    problems = []
    measurements = [m.strip('"') for m in _FROM.findall(query)]
    if not measurements:
        problems.append("names no measurement")
    known: set[str] = set(_ALIAS.findall(query))
    for name in measurements:
        if name not in MEASUREMENTS:
            problems.append(f"measurement {name}: not in the catalogue")
            continue
        known |= {name, *MEASUREMENTS[name].fields, *MEASUREMENTS[name].tags}
    without_regex = re.sub(r"/[^/]*/", "//", query)
    for ident in _QUOTED.findall(without_regex):
        if ident not in known:
            problems.append(f"{ident}: neither a field nor a tag of {measurements}")
    for arg in _UNQUOTED_ARG.findall(without_regex):
        if arg not in _FILL:
            problems.append(f"{arg}: identifiers must be double-quoted so they can be checked")
    return problems


# --------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every dashboard freshly built into a temporary directory, parsed."""
    out = tmp_path_factory.mktemp("dashboards")
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in build(out)}


def _panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    stack = list(dash["panels"])
    while stack:
        panel = stack.pop(0)
        out.append(panel)
        stack.extend(panel.get("panels") or [])
    return out


# --------------------------------------------------------------------------------------------
# Tests


def test_public_names_are_pinned() -> None:
    assert sorted(dashboards.__all__) == [
        "DASHBOARDS",
        "build",
        "iter_queries",
        "substitute",
        "variable_queries",
    ]


def test_generated_files_match_a_fresh_build(tmp_path: Path) -> None:
    paths = build(tmp_path)
    assert sorted(p.name for p in paths) == sorted(f"{uid}.json" for uid in DASHBOARDS)
    committed = sorted(p.name for p in GENERATED.glob("*.json"))
    assert committed == sorted(p.name for p in paths), REBUILD
    for path in paths:
        assert (GENERATED / path.name).read_bytes() == path.read_bytes(), f"{path.name}: {REBUILD}"


def test_build_is_deterministic(tmp_path: Path) -> None:
    first = {p.name: p.read_bytes() for p in build(tmp_path / "a")}
    second = {p.name: p.read_bytes() for p in build(tmp_path / "b")}
    assert first == second
    for name, data in first.items():
        assert data.endswith(b"}\n"), name
        text = data.decode()
        assert (
            text
            == json.dumps(json.loads(text), sort_keys=True, indent=2, ensure_ascii=False) + "\n"
        )


def test_uids_and_titles_are_unique(built: dict[str, dict[str, Any]]) -> None:
    uids = [d["uid"] for d in built.values()]
    assert len(set(uids)) == len(uids) == len(DASHBOARDS)
    assert sorted(uids) == sorted(built)
    titles = [d["title"] for d in built.values()]
    assert len(set(titles)) == len(titles)


def test_panels_have_stable_unique_ids_and_ref_ids(built: dict[str, dict[str, Any]]) -> None:
    for uid, dash in built.items():
        panels = _panels(dash)
        ids = [p["id"] for p in panels]
        assert all(isinstance(i, int) and i > 0 for i in ids), uid
        assert len(set(ids)) == len(ids), f"{uid}: duplicate panel ids"
        for panel in panels:
            refs = [t["refId"] for t in panel.get("targets") or []]
            assert all(refs), f"{uid} / {panel['title']}: empty refId"
            assert len(set(refs)) == len(refs), f"{uid} / {panel['title']}: duplicate refId"
            assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24


def test_every_dashboard_has_datasource_and_site_variables(
    built: dict[str, dict[str, Any]],
) -> None:
    for uid, dash in built.items():
        variables = {v["name"]: v for v in dash["templating"]["list"]}
        kinds = {v["query"]: v for v in variables.values() if v["type"] == "datasource"}
        assert set(kinds) == {"prometheus", "influxdb"}, uid
        assert kinds["prometheus"]["current"]["value"] == PROMETHEUS_UID
        assert kinds["influxdb"]["current"]["value"] == INFLUXDB_UID
        site = variables["site"]
        assert site["type"] == "query"
        assert site["query"] == "label_values(greendc_site_pue_target_ratio, site)"
        assert site["datasource"]["uid"] == "${datasource}"


def test_targets_use_the_datasource_variables(built: dict[str, dict[str, Any]]) -> None:
    expected = {"prometheus": "${datasource}", "influxdb": "${influxdb}"}
    for uid, dash in built.items():
        for panel in _panels(dash):
            for target in panel.get("targets") or []:
                ds = target["datasource"]
                assert ds["uid"] == expected[ds["type"]], f"{uid} / {panel['title']}"


def test_every_promql_query_names_only_catalogued_metrics(
    built: dict[str, dict[str, Any]],
) -> None:
    checked = 0
    for uid, dash in built.items():
        for kind, expr in iter_queries(dash):
            if kind == "prometheus":
                assert check_promql(expr) == [], f"{uid}: {expr}"
                checked += 1
        for name, kind, query in variable_queries(dash):
            if kind == "prometheus":
                metric = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query)
                assert metric is not None, f"{uid} ${name}: {query}"
                assert metric.group(2) in METRICS[metric.group(1)].labels
    assert checked >= 40


def test_every_influxql_query_names_only_catalogued_measurements(
    built: dict[str, dict[str, Any]],
) -> None:
    checked = 0
    for uid, dash in built.items():
        for kind, query in iter_queries(dash):
            if kind == "influxdb":
                assert check_influxql(query) == [], f"{uid}: {query}"
                assert "$timeFilter" in query, f"{uid}: {query}"
                checked += 1
    assert checked >= 4


def test_query_checkers_catch_unknown_names() -> None:
    assert check_promql('sum(rate(greendc_nope_total{site=~"$site"}[5m]))') != []
    assert check_promql('greendc_meter_power_watts{rack="a"}') != []
    assert check_promql("sum by (rack) (greendc_meter_power_watts)") != []
    assert check_promql("site:greendc_pue:ratio_2h") != []
    assert check_promql("site:greendc_pue:ratio_1h") == []
    assert (
        check_promql(
            "histogram_quantile(0.9, sum by (le, sink) "
            "(rate(greendc_sink_write_duration_seconds_bucket[5m])))"
        )
        == []
    )
    assert check_influxql('SELECT mean("power_kw") FROM "greendc_reading" WHERE $timeFilter') != []
    assert check_influxql('SELECT mean("power_w") FROM "reading" WHERE $timeFilter') != []
    assert check_influxql("SELECT mean(power_w) FROM greendc_reading WHERE $timeFilter") != []
    assert (
        check_influxql(
            'SELECT mean("power_w") FROM "greendc_reading" WHERE "zone" = \'a\' AND $timeFilter'
        )
        != []
    )


def test_kpis_are_never_means_of_ratios(built: dict[str, dict[str, Any]]) -> None:
    averaging = re.compile(r"\b(avg|avg_over_time|quantile_over_time)\s*(by\s*\([^)]*\)\s*)?\(")
    for uid, dash in built.items():
        for kind, expr in iter_queries(dash):
            if kind == "prometheus" and "_ratio" in expr:
                assert not averaging.search(expr), f"{uid}: {expr}"
    site_pue = [e for _, e in iter_queries(built["greendc-site"]) if "increase(" in e]
    assert any('role="facility"' in e and 'role="it"' in e for e in site_pue)


def test_time_series_and_stat_panels_have_units(built: dict[str, dict[str, Any]]) -> None:
    for uid, dash in built.items():
        for panel in _panels(dash):
            if panel["type"] in ("timeseries", "stat"):
                unit = panel["fieldConfig"]["defaults"]["unit"]
                assert unit, f"{uid} / {panel['title']}: no unit"


def test_influxdb_panels_group_by_the_interval(built: dict[str, dict[str, Any]]) -> None:
    for dash in built.values():
        for panel in _panels(dash):
            if panel["type"] != "timeseries":
                continue
            for target in panel["targets"]:
                if target["datasource"]["type"] == "influxdb":
                    assert "GROUP BY time($__interval)" in target["query"]


def test_substitute_replaces_every_variable() -> None:
    expr = (
        'sum(increase(x{site=~"$site"}[$__range])) / rate(y[${__rate_interval}]) '
        'SELECT 1 FROM "m" WHERE "site" =~ /^$site$/ AND $timeFilter GROUP BY time($__interval)'
    )
    out = substitute(expr, site="sg-1", interval="30s", range="6h", rate_interval="2m")
    assert "$" not in out.replace("$/", "")
    assert 'site=~"sg-1"' in out
    assert "[6h]" in out and "[2m]" in out and "time(30s)" in out
    assert "time >= now() - 6h" in out
    assert "/^sg-1$/" in out
    assert substitute("rate(y[$__rate_interval])", site="a", interval="15s") == "rate(y[15s])"


def test_substitute_rejects_unknown_variables() -> None:
    with pytest.raises(ValueError, match="__interval_ms"):
        substitute("x[$__interval_ms]", site="a")


def test_all_dashboard_queries_substitute_cleanly(built: dict[str, dict[str, Any]]) -> None:
    for dash in built.values():
        for _, expr in iter_queries(dash):
            out = substitute(expr, site="sg1", interval="1m", range="1h")
            assert re.search(r"\$[A-Za-z_{]", out) is None, out


def test_influx_site_variable_names_the_catalogued_tag() -> None:
    var = site_variable("influxdb").to_json_data()
    assert var["datasource"]["type"] == "influxdb"
    assert check_influxql(var["query"]) == []
    with pytest.raises(ValueError, match="kind"):
        site_variable("graphite")


def test_provisioning_matches_the_dashboards() -> None:
    ds_file = yaml.safe_load((PROVISIONING / "datasources" / "greendc.yaml").read_text())
    sources = {d["uid"]: d for d in ds_file["datasources"]}
    assert sources[PROMETHEUS_UID]["type"] == "prometheus"
    assert sources[PROMETHEUS_UID]["url"] == "http://prometheus:9090"
    influx = sources[INFLUXDB_UID]
    assert influx["type"] == "influxdb"
    assert influx["jsonData"]["dbName"] == "greendc"
    # Read-only: the reader authorization, and GET (InfluxDB runs only SELECT and SHOW).
    assert influx["jsonData"]["httpMode"] == "GET"
    assert influx["user"] == "greendc-reader"
    assert influx["secureJsonData"] == {"password": "${INFLUX_READER_PASSWORD}"}
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "greendc.yaml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/greendc"


def test_the_dashboards_window_is_one_the_collector_exports_by_default() -> None:
    from greendc.catalogue import DASHBOARD_WINDOW_SECONDS, window_label
    from greendc.config import KPISettings

    assert DASHBOARD_WINDOW_SECONDS in KPISettings().windows_seconds
    generated = (Path(__file__).resolve().parents[2] / "dashboards" / "generated").glob("*.json")
    text = "".join(p.read_text() for p in generated)
    assert f'window=\\"{window_label(DASHBOARD_WINDOW_SECONDS)}\\"' in text
