"""The monthly carbon report and the EU EED annual export (``greendc report``).

source.py     where samples come from: the embedded SQLite store or InfluxDB (InfluxQL)
periods.py    months, years and local days in each site's own time zone
compute.py    per-site and fleet figures from greendc.energy and greendc.kpi
render_*.py   CSV, XLSX, HTML and PDF; charts.py draws the charts; fmt.py formats figures;
              labels.py names them for people; summary.py: the headline HTML and PDF open with
eed.py        EU Delegated Regulation 2024/1364 Annex II fields (JSON and CSV)
request.py    ReportRequest -> write_report(): the typed entry point the command line and demo call
"""

from greendc.exporters.report.compute import DailyRow, Report, Row, SiteReport, build_report
from greendc.exporters.report.eed import eed_fields, write_eed
from greendc.exporters.report.periods import Period
from greendc.exporters.report.request import (
    FORMATS,
    ReportRequest,
    ReportRequestError,
    ReportResult,
    parse_formats,
    write_outputs,
    write_report,
)
from greendc.exporters.report.source import EmbeddedSource, InfluxQLSource, SourceError, open_source

__all__ = [
    "FORMATS",
    "DailyRow",
    "EmbeddedSource",
    "InfluxQLSource",
    "Period",
    "Report",
    "ReportRequest",
    "ReportRequestError",
    "ReportResult",
    "Row",
    "SiteReport",
    "SourceError",
    "build_report",
    "eed_fields",
    "open_source",
    "parse_formats",
    "write_eed",
    "write_outputs",
    "write_report",
]
