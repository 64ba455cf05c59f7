"""``greendc report``: argument handling, messages and exit codes.

Exit codes: 0 the report was written with at least one computed figure; 1 the report was
written but nothing could be computed (no data, no meters, ...; the files say why); 2 bad
arguments, configuration, or an unreachable data source (nothing written).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from functools import partial
from pathlib import Path

from greendc._errors import GreendcError
from greendc.config import load_config
from greendc.exporters.report.compute import Report, build_report
from greendc.exporters.report.eed import write_eed
from greendc.exporters.report.periods import Period
from greendc.exporters.report.render_csv import write_csv
from greendc.exporters.report.render_html import write_html
from greendc.exporters.report.render_pdf import write_pdf
from greendc.exporters.report.render_xlsx import write_xlsx
from greendc.exporters.report.source import SourceError, open_source
from greendc.factors import load_factors

FORMATS = ("csv", "xlsx", "html", "pdf")
EXIT_OK, EXIT_NOTHING, EXIT_USAGE = 0, 1, 2
PARALLEL_MIN_SITES = 16


def _err(msg: str) -> None:
    print(f"greendc report: {msg}", file=sys.stderr)


def parse_formats(text: str) -> list[str]:
    """``csv,pdf`` -> ["csv", "pdf"]; ValueError naming the unknown format."""
    out = [f.strip().lower() for f in (text or "").split(",") if f.strip()]
    bad = [f for f in out if f not in FORMATS]
    if bad or not out:
        raise ValueError(
            f"--format {text!r}: {', '.join(bad) or 'empty'} is not one of {', '.join(FORMATS)}"
        )
    return list(dict.fromkeys(out))


def write_outputs(report: Report, out_dir: Path, stem: str, formats: list[str]) -> list[Path]:
    """Write the report in each format; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    if "csv" in formats:
        paths += write_csv(report, out_dir, stem)
    if "xlsx" in formats:
        paths.append(write_xlsx(report, out_dir, stem))
    if "html" in formats:
        paths.append(write_html(report, out_dir, stem))
    if "pdf" in formats:
        paths.append(write_pdf(report, out_dir, stem))
    return paths


def run_report(args: argparse.Namespace) -> int:
    """Run ``greendc report`` with parsed arguments; returns the exit code."""
    month = getattr(args, "month", None)
    year = getattr(args, "year", None)
    eu_eed = bool(getattr(args, "eu_eed", False))
    try:
        if month and year:
            raise ValueError("give --month or --year, not both")
        if month:
            if eu_eed:
                raise ValueError("--eu-eed is an annual export: use it with --year YYYY")
            period = Period.parse_month(month)
        elif year:
            period = Period.parse_year(year)
        else:
            raise ValueError("give --month YYYY-MM or --year YYYY")
        formats = parse_formats(getattr(args, "format", None) or ",".join(FORMATS))
    except ValueError as exc:
        _err(str(exc))
        return EXIT_USAGE
    try:
        settings = load_config(args.config)
        factors = load_factors(settings.emission_factors_file)
    except GreendcError as exc:
        _err(str(exc))
        return EXIT_USAGE
    sites = list(settings.sites)
    if getattr(args, "site", None):
        chosen = settings.site(args.site)
        if chosen is None:
            known = ", ".join(s.name for s in settings.sites)
            _err(f"--site {args.site!r} is not in the config; sites: {known}")
            return EXIT_USAGE
        sites = [chosen]
    try:
        source = open_source(settings, getattr(args, "source", None) or "auto")
    except SourceError as exc:
        _err(str(exc))
        return EXIT_USAGE
    t0 = time.monotonic()
    # Processes pay off only when there are enough sites to amortise their start-up.
    workers = min(os.cpu_count() or 1, 4) if len(sites) >= PARALLEL_MIN_SITES else 1
    try:
        report = build_report(
            settings,
            source,
            period,
            factors,
            sites=sites,
            with_deltas_from_history=not eu_eed,
            workers=workers,
            source_factory=partial(open_source, settings, source.name),
        )
    except SourceError as exc:
        _err(str(exc))
        return EXIT_USAGE
    finally:
        source.close()
    out_dir = Path(args.out)
    suffix = f"-{sites[0].name}" if getattr(args, "site", None) else ""
    if eu_eed:
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = write_eed(report, out_dir, f"greendc-eu-eed-{period.label}{suffix}")
    else:
        paths = write_outputs(report, out_dir, f"greendc-report-{period.label}{suffix}", formats)
    for p in paths:
        print(p)
    for s in report.sites:
        for n in s.notes:
            print(f"{s.site.name}: {n}", file=sys.stderr)
    took = time.monotonic() - t0
    if not report.computed:
        _err(
            f"nothing could be computed for {period.label} from {report.source} "
            f"({len(sites)} site(s)); the files written say why for each site"
        )
        return EXIT_NOTHING
    print(f"report for {period.label}: {len(sites)} site(s) in {took:.1f} s", file=sys.stderr)
    return EXIT_OK


__all__ = ["FORMATS", "parse_formats", "run_report", "write_outputs"]
