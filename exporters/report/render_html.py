"""Self-contained HTML: figures first, charts embedded as base64 PNG, notes and sources last."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from greendc.exporters.report.charts import chart_scopes, daily_figure, figure_png
from greendc.exporters.report.compute import FLEET, Report, Row
from greendc.exporters.report.fmt import fmt_change, fmt_coverage, row_text

# The figures a reader looks for first, in the order of the headline cards.
HEADLINE = ("E_DC", "E_IT", "pue", "fleet_pue", "ref", "scope2_location", "scope2_market", "cue")

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1a202c;
background:#f7fafc}
header{background:#22543d;color:#fff;padding:20px 32px}
header h1{margin:0 0 4px;font-size:24px}header p{margin:0;opacity:.85}
main{padding:16px 32px;max-width:1150px}
h2{border-bottom:2px solid #2f855a;padding-bottom:4px;margin-top:28px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #e2e8f0;border-radius:8px;padding:10px 14px;min-width:150px}
.card .k{font-size:12px;color:#4a5568}.card .v{font-size:20px;font-weight:600}
.card .d{font-size:11px;color:#718096}
table{border-collapse:collapse;width:100%;background:#fff;font-size:13px;margin:8px 0}
th,td{border:1px solid #e2e8f0;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#edf2f7}td.num{text-align:right;white-space:nowrap}
tr.withheld td,tr.notmetered td{color:#a0aec0}
.note{font-size:11px;color:#4a5568}
img{max-width:100%;border:1px solid #e2e8f0;background:#fff}
ul.notes li{margin:2px 0;font-size:13px}
"""


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _card(r: Row) -> str:
    delta = fmt_change(r.change_prev_month)
    d = f"<div class='d'>{_e(delta)} vs previous month</div>" if delta else ""
    return (
        f"<div class='card'><div class='k'>{_e(r.label)}</div>"
        f"<div class='v'>{_e(row_text(r))}</div>{d}</div>"
    )


def _table(rows: list[Row]) -> str:
    head = (
        "<tr><th>KPI</th><th>value</th><th>coverage</th><th>vs previous month</th>"
        "<th>vs same month last year</th><th>status / source</th></tr>"
    )
    body = []
    for r in rows:
        cls = str(r.status).replace(" ", "")
        body.append(
            f"<tr class='{cls}'><td>{_e(r.label)}</td><td class='num'>{_e(row_text(r))}</td>"
            f"<td class='num'>{_e(fmt_coverage(r.coverage))}</td>"
            f"<td class='num'>{_e(fmt_change(r.change_prev_month))}</td>"
            f"<td class='num'>{_e(fmt_change(r.change_last_year))}</td>"
            f"<td>{_e(str(r.status))}<div class='note'>{_e(r.note)}</div></td></tr>"
        )
    return f"<table>{head}{''.join(body)}</table>"


def _overview(report: Report) -> str:
    keys = ("E_DC", "E_IT", "pue", "ref", "scope2_location", "scope2_market", "cue")
    names = ("E_DC", "E_IT", "PUE", "REF", "Scope 2 loc.", "Scope 2 mkt.", "CUE")
    head = "<tr><th>site</th>" + "".join(f"<th>{n}</th>" for n in names) + "</tr>"
    lines = []
    for s in report.sites:
        by = {r.kpi: r for r in s.rows}
        cells = "".join(f"<td class='num'>{_e(row_text(by[k]))}</td>" for k in keys)
        lines.append(f"<tr><td>{_e(s.site.name)}</td>{cells}</tr>")
    fb = {r.kpi: r for r in report.fleet_rows}
    if "fleet_pue" in fb:
        fb["pue"] = fb["fleet_pue"]
    cells = "".join(f"<td class='num'>{_e(row_text(fb[k])) if k in fb else ''}</td>" for k in keys)
    lines.append(f"<tr><th>fleet</th>{cells}</tr>")
    return f"<table>{head}{''.join(lines)}</table>"


def render_html(report: Report) -> str:
    """The report as one self-contained HTML document."""
    p = report.period.label
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>greendc carbon report {p}</title><style>{_CSS}</style></head><body>",
        f"<header><h1>Energy and carbon report, {p}</h1>",
        f"<p>{len(report.sites)} site(s) · data from {_e(report.source)} · generated "
        f"{report.generated_utc:%Y-%m-%d %H:%M} UTC · months in each site's own time zone</p>"
        "</header><main>",
    ]
    fleet = [r for r in report.fleet_rows if r.kpi in HEADLINE]
    if fleet:
        parts.append("<h2>Fleet</h2><div class='cards'>")
        parts.extend(_card(r) for r in fleet)
        parts.append("</div>")
    parts.append("<h2>Sites at a glance</h2>")
    parts.append(_overview(report))
    for title, rows, pue_t, ren_t in chart_scopes(report):
        png = figure_png(daily_figure(rows, title, pue_target=pue_t, renewable_target=ren_t))
        b64 = base64.b64encode(png).decode()
        parts.append(
            f"<h2>{_e(title)}</h2><img alt='{_e('charts: ' + title)}' "
            f"src='data:image/png;base64,{b64}'>"
        )
    for s in report.sites:
        name = s.site.display_name or s.site.name
        parts.append(
            f"<h2>{_e(name)} ({_e(s.site.name)})</h2><p class='note'>time zone "
            f"{_e(s.site.timezone)}, grid zone {_e(s.site.grid_zone)}, installed IT "
            f"{s.site.installed_it_kw:,.0f} kW, PUE category {s.site.pue_category}</p>"
        )
        parts.append(_table(s.rows))
        if s.notes:
            parts.append("<ul class='notes'>" + "".join(f"<li>{_e(n)}</li>" for n in s.notes))
            parts.append("</ul>")
    parts.append("<h2>Fleet figures</h2>")
    parts.append(_table([r for r in report.fleet_rows if r.site == FLEET]))
    if report.notes:
        parts.append("<h2>Notes</h2><ul class='notes'>")
        parts.extend(f"<li>{_e(n)}</li>" for n in report.notes)
        parts.append("</ul>")
    parts.append("</main></body></html>")
    return "\n".join(parts)


def write_html(report: Report, out_dir: Path, stem: str) -> Path:
    """Write ``<stem>.html``."""
    path = out_dir / f"{stem}.html"
    path.write_text(render_html(report), encoding="utf-8")
    return path


__all__ = ["render_html", "write_html"]
