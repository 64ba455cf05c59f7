"""Self-contained HTML: the answers first, then charts and tables per site, definitions last.

The first screen answers what an officer is asked: total energy, PUE against target,
renewable share, and emissions by both Scope 2 methods with why they differ. The page is
responsive (viewport tag; tables scroll sideways on a phone, chart panels stack) and prints
on A4 or Letter (page numbers, headings kept with what follows, one site per page). Every
plain-language figure name links to its formula in the definitions at the end.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

from greendc.exporters.report.charts import (
    PANEL_TITLES,
    Scope,
    chart_scopes,
    figure_png,
    panel_figures,
)
from greendc.exporters.report.compute import FLEET, Report, Row
from greendc.exporters.report.fmt import (
    NOT_AVAILABLE,
    energy_scale,
    fmt_change,
    fmt_coverage,
    fmt_in,
    fmt_value,
    row_text,
)
from greendc.exporters.report.labels import kpi_label, period_name, site_name, site_names
from greendc.exporters.report.periods import Period
from greendc.exporters.report.summary import Card, by_kpi, emissions_story, headline_cards

_CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;
color:#1a202c;background:#f7fafc;line-height:1.4}
header{background:#1c4532;color:#fff;padding:18px 32px}
header h1{margin:0 0 4px;font-size:26px}header p{margin:0;opacity:.9;font-size:14px}
main{padding:12px 32px 32px;max-width:1200px}
h2{border-bottom:2px solid #2f855a;padding-bottom:4px;margin:28px 0 8px;font-size:21px}
h3{margin:16px 0 6px;font-size:16px}
.sub{margin:0 0 8px;color:#4a5568;font-size:13px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(190px,1fr));gap:12px;margin:8px 0}
.card{background:#fff;border:1px solid #e2e8f0;border-left:5px solid #2f855a;border-radius:6px;
padding:10px 14px}
.card.warn{border-left-color:#c62828}
.card .k{font-size:13px;color:#4a5568}.card .v{font-size:26px;font-weight:700;margin:2px 0}
.card .d{font-size:12px;color:#4a5568}
.why{background:#fff;border:1px solid #e2e8f0;border-radius:6px;padding:10px 14px;font-size:14px;
margin:8px 0}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch;margin:8px 0}
table{border-collapse:collapse;width:100%;background:#fff;font-size:13px}
th,td{border:1px solid #e2e8f0;padding:5px 8px;text-align:left;vertical-align:top}
thead th{background:#edf2f7;font-weight:600}
td.num,th.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
tr.fleet td,tr.fleet th{font-weight:700;background:#f0fff4}
tr.nofig td{color:#718096}
.scroll th:first-child,.scroll td:first-child{position:sticky;left:0;background:#fff}
.scroll thead th:first-child{background:#edf2f7}
.scroll tr.fleet td:first-child{background:#f0fff4}
.note{font-size:12px;color:#4a5568}
a.def{color:inherit;text-decoration:underline dotted #718096}
.charts{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:10px;margin:8px 0}
.charts img{width:100%;height:auto;border:1px solid #e2e8f0;background:#fff;display:block}
ul.notes li{margin:2px 0;font-size:13px}
table.kpi{table-layout:fixed;min-width:640px}
table.kpi td.cmp{white-space:normal}
dl.defs dt{font-weight:600;margin-top:6px}dl.defs dd{margin:0 0 0 16px;font-size:13px}
@media (max-width:720px){
header{padding:14px 16px}header h1{font-size:21px}
main{padding:8px 12px 24px}
.charts{grid-template-columns:1fr}
.cards{grid-template-columns:repeat(auto-fit,minmax(150px,1fr))}
.card .v{font-size:22px}
table{font-size:12px}
}
@media (max-width:480px){.cards{grid-template-columns:1fr}}
@media print{
@page{margin:14mm 12mm 16mm;
@bottom-right{content:"page " counter(page) " of " counter(pages);font-size:9pt;color:#4a5568}
@bottom-left{content:"greendc energy and carbon report";font-size:9pt;color:#4a5568}}
body{background:#fff;font-size:10pt}
header{background:none;color:#1a202c;border-bottom:3px solid #1c4532;padding:0 0 6px}
main{padding:0;max-width:none}
h2{break-after:avoid;page-break-after:avoid}
h3{break-after:avoid;page-break-after:avoid}
.keep,.card,figure,tr,img,.why{break-inside:avoid;page-break-inside:avoid}
section.scope{break-before:page;page-break-before:always}
.cards{grid-template-columns:repeat(3,1fr)}
.charts{grid-template-columns:1fr 1fr}
.scroll{overflow:visible}
table{font-size:8pt}th,td{padding:2px 4px}
table.kpi{min-width:0}
.charts{width:88%;margin:4px auto}
thead{display:table-header-group}
.scroll th:first-child,.scroll td:first-child{position:static}
a.def{text-decoration:none}
}
"""

# The overview columns: (KPI key, header, unit kind).
_OVERVIEW = (
    ("E_DC", "Total energy", "energy"),
    ("E_IT", "IT energy", "energy"),
    ("pue", "PUE", "pue"),
    ("ref", "Renewable share", "ratio"),
    ("scope2_location", "Emissions, location-based", "t"),
    ("scope2_market", "Emissions, market-based", "t"),
    ("cue", "CUE", "cue"),
)


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _name_cell(r: Row) -> str:
    lab = kpi_label(r)
    anchor = r.kpi.split(":", 1)[0]
    return f"<a class='def' href='#def-{_e(anchor)}' title='{_e(lab.formula)}'>{_e(lab.name)}</a>"


def _card(c: Card) -> str:
    cls = "card warn" if c.warn else "card"
    return (
        f"<div class='{cls}'><div class='k'>{_e(c.label)}</div><div class='v'>{_e(c.value)}</div>"
        f"<div class='d'>{_e(c.detail)}</div></div>"
    )


def headline(report: Report) -> str:
    """The first screen: the headline cards and the sentence on the two emission methods."""
    return (
        "<section class='headline keep'><div class='cards'>"
        + "".join(_card(c) for c in headline_cards(report))
        + "</div><p class='why'><b>Why the two emission figures differ:</b> "
        f"{_e(emissions_story(report))}</p></section>"
    )


def overview(report: Report) -> str:
    """One row per site and one for the fleet, with one unit per column."""
    rows: list[tuple[str, str, dict[str, Row], float | None]] = [
        (site_name(s.site), s.site.name, by_kpi(s.rows), s.site.targets.pue) for s in report.sites
    ]
    rows.append((f"Fleet ({len(report.sites)} sites)", FLEET, by_kpi(report.fleet_rows), None))
    e_vals = [by[k].value for _, _, by, _ in rows for k in ("E_DC", "E_IT") if k in by]
    div, e_unit = energy_scale(e_vals)
    units = {"energy": e_unit, "pue": "", "ratio": "%", "t": "t CO₂e", "cue": "kg CO₂e/kWh"}
    head = "<th>Site</th>" + "".join(
        f"<th class='num'>{_e(h)}"
        + (f"<br><span class='note'>{_e(units[u])}</span>" if units[u] else "")
        + "</th>"
        for _, h, u in _OVERVIEW
    )
    body = []
    for name, code, by, target in rows:
        cells = []
        for key, _, kind in _OVERVIEW:
            r = by.get(key)
            if r is None or r.value is None:
                cells.append(f"<td class='num'>{NOT_AVAILABLE}</td>")
                continue
            if kind == "energy":
                text = fmt_in(r.value, div, 1 if div > 1 else 0)
            elif kind == "t":
                text = fmt_in(r.value, 1.0, 1)
            else:
                text = fmt_value(r.value, r.unit, with_unit=False)
            if kind == "pue" and target is not None:
                mark = " ▲" if r.value > target else ""
                text = f"{text}{mark}"
            cells.append(f"<td class='num'>{_e(text)}</td>")
        cls = " class='fleet'" if code == FLEET else ""
        label = _e(name) if code == FLEET else f"{_e(name)} <span class='note'>{_e(code)}</span>"
        body.append(f"<tr{cls}><td>{label}</td>{''.join(cells)}</tr>")
    foot = (
        "<p class='note'>▲ PUE above the site's target. Fleet PUE is ΣE_DC/ΣE_IT over the sites,"
        " not an average of site PUEs; CUE is location-based.</p>"
    )
    return (
        f"<div class='scroll'><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table></div>{foot}"
    )


def kpi_table(rows: Sequence[Row], period: Period) -> str:
    """Every figure of a site (or the fleet) with its comparisons, coverage and notes."""
    prev, last = period_name(period.previous()), period_name(period.last_year())
    cols = "".join(f"<col style='width:{w}%'>" for w in (19, 13, 15, 13, 8, 32))
    head = (
        f"<colgroup>{cols}</colgroup>"
        "<thead><tr><th>Figure</th><th class='num'>Value</th>"
        f"<th class='num'>vs {_e(prev)}</th><th class='num'>vs {_e(last)}</th>"
        "<th class='num'>Coverage</th><th>Status and source</th></tr></thead>"
    )
    body = []
    for r in rows:
        cls = " class='nofig'" if r.value is None else ""
        body.append(
            f"<tr{cls}><td>{_name_cell(r)}</td><td class='num'>{_e(row_text(r))}</td>"
            f"<td class='num cmp'>{_e(fmt_change(r, last_year=False, period_name=prev))}</td>"
            f"<td class='num cmp'>{_e(fmt_change(r, last_year=True, period_name=last))}</td>"
            f"<td class='num'>{_e(fmt_coverage(r.coverage))}</td>"
            f"<td>{_e(str(r.status))}<div class='note'>{_e(r.note)}</div></td></tr>"
        )
    return (
        f"<div class='scroll'><table class='kpi'>{head}<tbody>{''.join(body)}</tbody></table></div>"
    )


def _charts(scope: Scope) -> str:
    imgs = []
    for title, fig in zip(PANEL_TITLES, panel_figures(scope), strict=True):
        b64 = base64.b64encode(figure_png(fig)).decode()
        alt = f"{title}, {scope.name}, {scope.subtitle}"
        imgs.append(f"<img alt='{_e(alt)}' src='data:image/png;base64,{b64}'>")
    return f"<div class='charts'>{''.join(imgs)}</div>"


def _definitions(report: Report) -> str:
    seen: dict[str, tuple[str, str]] = {}
    for r in report.rows:
        anchor = r.kpi.split(":", 1)[0]
        if anchor not in seen:
            lab = kpi_label(r)
            seen[anchor] = (lab.name, lab.formula)
    items = "".join(
        f"<dt id='def-{_e(a)}'>{_e(n)}</dt><dd>{_e(f)}</dd>" for a, (n, f) in seen.items()
    )
    return f"<h2>How the figures are defined</h2><dl class='defs'>{items}</dl>"


def render_html(report: Report) -> str:
    """The report as one self-contained HTML document."""
    month = period_name(report.period)
    names = site_names(report)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>Energy and carbon report, {_e(month)}</title><style>{_CSS}</style></head><body>",
        f"<header><h1>Energy and carbon report, {_e(month)}</h1>",
        f"<p>{len(report.sites)} site{'s' if len(report.sites) != 1 else ''} · data from the "
        f"{_e(report.source)} store · generated {report.generated_utc:%d %B %Y %H:%M} UTC · "
        "each site's month in its own time zone</p></header><main>",
    ]
    if report.sites:
        parts.append(headline(report))
        parts.append("<section class='keep'><h2>Sites at a glance</h2>")
        parts.append(overview(report) + "</section>")
    scopes = {s.key: s for s in chart_scopes(report)}
    sections: list[tuple[str, str, Sequence[Row], list[str], str]] = []
    if len(report.sites) > 1:
        sections.append((FLEET, names[FLEET], report.fleet_rows, report.notes, month))
    for s in report.sites:
        sub = (
            f"{s.site.name} · time zone {s.site.timezone} · grid zone {s.site.grid_zone} · "
            f"installed IT {s.site.installed_it_kw:,.0f} kW · PUE category {s.site.pue_category}"
        )
        sections.append((s.site.name, names[s.site.name], s.rows, s.notes, sub))
    for key, name, rows, notes, sub in sections:
        parts.append(f"<section class='scope'><div class='keep'><h2>{_e(name)}</h2>")
        parts.append(f"<p class='sub'>{_e(sub)}</p>")
        if key in scopes:
            parts.append(_charts(scopes[key]))
        parts.append("</div><h3>Figures</h3>")
        parts.append(kpi_table(rows, report.period))
        if notes:
            parts.append("<ul class='notes'>" + "".join(f"<li>{_e(n)}</li>" for n in notes))
            parts.append("</ul>")
        parts.append("</section>")
    if len(report.sites) <= 1 and report.notes:
        parts.append("<h2>Notes</h2><ul class='notes'>")
        parts.extend(f"<li>{_e(n)}</li>" for n in report.notes)
        parts.append("</ul>")
    parts.append(_definitions(report))
    parts.append("</main></body></html>")
    return "\n".join(parts)


def write_html(report: Report, out_dir: Path, stem: str) -> Path:
    """Write ``<stem>.html``."""
    path = out_dir / f"{stem}.html"
    path.write_text(render_html(report), encoding="utf-8")
    return path


__all__ = ["emissions_story", "headline", "kpi_table", "overview", "render_html", "write_html"]
