"""The report's typed entry point: what to report and what was written.

A :class:`ReportRequest` says which settings, period, output folder, formats and source; it
is checked when it is built, naming the field. :func:`write_report` computes the report
and writes its files. The command line (``greendc report``) and the demo both build a
request and call it; their messages and exit codes live in the application layer
(greendc.app), not here.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal, get_args

from greendc._errors import ConfigError
from greendc.config import Settings, Site
from greendc.exporters.report.compute import Report, build_report
from greendc.exporters.report.eed import write_eed
from greendc.exporters.report.periods import Period
from greendc.exporters.report.render_csv import SEMICOLON, write_csv
from greendc.exporters.report.render_html import write_html
from greendc.exporters.report.render_pdf import write_pdf
from greendc.exporters.report.render_xlsx import write_xlsx
from greendc.exporters.report.source import open_source
from greendc.factors import load_factors

Format = Literal["csv", "xlsx", "html", "pdf", "csv-semicolon"]
SourceName = Literal["auto", "influxdb", "embedded"]
FORMATS: tuple[Format, ...] = get_args(Format)
# What a request writes when it names no format: every format but the semicolon variant of
# the CSV (for spreadsheets in a decimal-comma locale; ask for it with ``csv-semicolon``).
DEFAULT_FORMATS: tuple[Format, ...] = ("csv", "xlsx", "html", "pdf")
SOURCES: tuple[SourceName, ...] = get_args(SourceName)
# Processes pay off only when there are enough sites to amortise their start-up.
PARALLEL_MIN_SITES = 16


class ReportRequestError(ConfigError):
    """A report request is inconsistent: an unknown format, source or site, or an EU EED
    export asked for a month. Nothing has been written when it is raised."""


def parse_formats(text: str) -> tuple[Format, ...]:
    """``"csv,pdf"`` -> ("csv", "pdf"): the ``--format`` option's text, in order, once each."""
    names = [f.strip().lower() for f in (text or "").split(",") if f.strip()]
    bad = [f for f in names if f not in FORMATS]
    if bad or not names:
        problem = (
            f"--format {text!r}: {', '.join(bad) or 'empty'} is not one of {', '.join(FORMATS)}"
        )
        raise ReportRequestError(problem)
    return tuple(f for f in FORMATS if f in names)


def parse_min_coverage(text: str) -> float:
    """``"0.8"`` or ``"80%"`` -> 0.8: the ``--min-coverage`` option's text, within 0..1."""
    raw = (text or "").strip()
    try:
        value = float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)
    except ValueError:
        raise ReportRequestError(
            f"--min-coverage {text!r}: not a number such as 0.8 or 80%"
        ) from None
    if not 0.0 <= value <= 1.0:
        raise ReportRequestError(
            f"--min-coverage {text!r}: must be between 0 and 1 (or 0% and 100%)"
        )
    return value


@dataclass(frozen=True)
class ReportRequest:
    """What to report.

    ``period`` is a month (the carbon report) or a year (with ``eu_eed``: the EU Delegated
    Regulation 2024/1364 Annex II export; without: the annual carbon report). ``site`` None
    means every site of ``settings``. ``source`` ``auto`` reads InfluxDB when one is
    configured, else the embedded store. ``min_coverage`` replaces ``kpi.min_coverage`` for
    this report: the coverage a figure needs to be ``ok`` (under it, ``incomplete``).
    """

    settings: Settings
    period: Period
    out_dir: Path
    formats: tuple[Format, ...] = DEFAULT_FORMATS
    source: SourceName = "auto"
    site: str | None = None
    eu_eed: bool = False
    min_coverage: float | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.min_coverage is not None and not 0.0 <= self.min_coverage <= 1.0:
            problems.append(f"min_coverage: {self.min_coverage!r} is not between 0 and 1")
        bad = [f for f in self.formats if f not in FORMATS]
        if bad or not self.formats:
            problems.append(
                f"formats: {', '.join(map(repr, bad)) or 'none given'} is not one of "
                f"{', '.join(FORMATS)}"
            )
        if self.source not in SOURCES:
            problems.append(f"source: {self.source!r} is not one of {', '.join(SOURCES)}")
        if self.eu_eed and self.period.month is not None:
            problems.append(
                f"eu_eed: the EU EED export is annual; ask for a year (--year YYYY), "
                f"not the month {self.period.label}"
            )
        if self.site is not None and self.settings.site(self.site) is None:
            known = ", ".join(s.name for s in self.settings.sites)
            problems.append(f"site: {self.site!r} is not in the config; sites: {known}")
        if problems:
            raise ReportRequestError("; ".join(problems), problems)

    @property
    def effective_settings(self) -> Settings:
        """The settings with this request's ``min_coverage``, when it sets one."""
        if self.min_coverage is None:
            return self.settings
        kpi = self.settings.kpi.model_copy(update={"min_coverage": self.min_coverage})
        return self.settings.model_copy(update={"kpi": kpi})

    @property
    def sites(self) -> list[Site]:
        """The sites reported on."""
        if self.site is None:
            return list(self.settings.sites)
        chosen = self.settings.site(self.site)
        assert chosen is not None  # checked in __post_init__
        return [chosen]

    @property
    def stem(self) -> str:
        """File name stem: ``greendc-report-2026-03`` or ``greendc-eu-eed-2026-ber1``."""
        kind = "eu-eed" if self.eu_eed else "report"
        suffix = f"-{self.site}" if self.site is not None else ""
        return f"greendc-{kind}-{self.period.label}{suffix}"


@dataclass(frozen=True)
class ReportResult:
    """What :func:`write_report` computed and wrote."""

    request: ReportRequest
    report: Report
    paths: tuple[Path, ...]
    seconds: float

    @property
    def computed(self) -> bool:
        """Whether at least one measured figure is ``ok`` (else the files say why)."""
        return self.report.computed

    @property
    def notes(self) -> list[tuple[str, str]]:
        """(site, note) for every data-quality note of every site."""
        return [(s.site.name, n) for s in self.report.sites for n in s.notes]


def write_outputs(
    report: Report, out_dir: Path, stem: str, formats: tuple[Format, ...] | list[str]
) -> list[Path]:
    """Write the report in each format; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    if "csv" in formats:
        paths += write_csv(report, out_dir, stem)
    if "csv-semicolon" in formats:
        paths += write_csv(report, out_dir, stem, SEMICOLON)
    if "xlsx" in formats:
        paths.append(write_xlsx(report, out_dir, stem))
    if "html" in formats:
        paths.append(write_html(report, out_dir, stem))
    if "pdf" in formats:
        paths.append(write_pdf(report, out_dir, stem))
    return paths


def write_report(request: ReportRequest) -> ReportResult:
    """Compute the report ``request`` asks for and write its files.

    Raises :class:`~greendc.ConfigError` when the emission factor file is invalid and
    :class:`~greendc.exporters.report.source.SourceError` when the data source cannot be
    opened or queried; nothing is written then. A report with no computable figure is still
    written (each site's notes say why): check :attr:`ReportResult.computed`.
    """
    settings = request.effective_settings
    factors = load_factors(settings.emission_factors_file)
    sites = request.sites
    t0 = time.monotonic()
    source = open_source(settings, request.source)
    workers = min(os.cpu_count() or 1, 4) if len(sites) >= PARALLEL_MIN_SITES else 1
    try:
        report = build_report(
            settings,
            source,
            request.period,
            factors,
            sites=sites,
            with_deltas_from_history=not request.eu_eed,
            workers=workers,
            source_factory=partial(open_source, settings, source.name),
        )
    finally:
        source.close()
    if request.eu_eed:
        request.out_dir.mkdir(parents=True, exist_ok=True)
        paths = write_eed(report, request.out_dir, request.stem)
    else:
        paths = write_outputs(report, request.out_dir, request.stem, request.formats)
    return ReportResult(request, report, tuple(paths), time.monotonic() - t0)


__all__ = [
    "DEFAULT_FORMATS",
    "FORMATS",
    "SOURCES",
    "Format",
    "ReportRequest",
    "ReportRequestError",
    "ReportResult",
    "SourceName",
    "parse_formats",
    "parse_min_coverage",
    "write_outputs",
    "write_report",
]
