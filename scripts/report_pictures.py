"""Refresh the report pictures under docs/ from a realistic month, in the real programs.

    .venv/bin/python scripts/report_pictures.py [--month 2026-11] [--work DIR]

Backfills the demo's four sites (config/examples/four-climates.yaml, the simulator's model)
for the month and the one before it into an embedded store, writes the report, and takes:

    docs/report-html.png         the HTML's first screen in Chromium, 1280 px wide
    docs/report-html-phone.png   the same at 390 px (a phone)
    docs/report-pdf.png          the PDF's first page, rendered by poppler
    docs/report-xlsx.png         the XLSX Summary sheet as LibreOffice Calc prints it

Needs chromium, libreoffice-calc and poppler-utils (scripts/setup.sh installs them).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from greendc.app.demo import backfill, demo_settings  # noqa: E402
from greendc.exporters.report import Period, build_report, write_outputs  # noqa: E402
from greendc.exporters.report.source import open_source  # noqa: E402
from greendc.factors import load_factors  # noqa: E402
from tests.support.programs import (  # noqa: E402
    pdf_page_png,
    screenshot,
    spreadsheet_to_pdf,
)

DOCS = ROOT / "docs"


def _crop(png: Path, box: tuple[int, int, int, int]) -> None:
    with Image.open(png) as im:
        im.crop(box).save(png, optimize=True)


def main(argv: list[str] | None = None) -> int:
    """Build the month, render it, and write the four PNGs under docs/."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--month", default="2026-11")
    ap.add_argument("--work", type=Path, default=None, help="keep the store and files here")
    args = ap.parse_args(argv)
    period = Period.parse_month(args.month)
    work = args.work or Path(tempfile.mkdtemp(prefix="greendc-pictures-"))
    work.mkdir(parents=True, exist_ok=True)
    _, settings = demo_settings(work, "mqtt://127.0.0.1:1883", "3.1.1", 0)
    store = work / "greendc.sqlite"
    if not store.exists():
        prev = period.previous()
        start = datetime(prev.year, prev.month or 1, 1, tzinfo=UTC).timestamp() - 86400
        end = datetime.combine(period.end_day(), datetime.min.time(), UTC).timestamp() + 86400
        print(f"backfilling {prev.label} and {period.label} into {store}")
        backfill(settings, start, end)
    source = open_source(settings, "embedded")
    try:
        generated = datetime.combine(period.end_day(), datetime.min.time(), UTC)
        report = build_report(
            settings, source, period, load_factors(settings.emission_factors_file), now=generated
        )
    finally:
        source.close()
    out = work / "report"
    stem = f"greendc-report-{period.label}"
    write_outputs(report, out, stem, ["html", "xlsx", "pdf"])
    profile = work / "profile"
    html = out / f"{stem}.html"
    screenshot(html, DOCS / "report-html.png", 1280, 860, profile)
    screenshot(html, DOCS / "report-html-phone.png", 390, 844, profile)
    pdf_page_png(out / f"{stem}.pdf", 1, DOCS / "report-pdf.png", dpi=110)
    calc = spreadsheet_to_pdf(out / f"{stem}.xlsx", work / "calc", profile / "lo")
    xlsx_png = pdf_page_png(calc, 1, DOCS / "report-xlsx.png", dpi=170)
    with Image.open(xlsx_png) as im:
        width, height = im.size
    # The top left of the printed sheet: headers and the first site, at a readable size.
    _crop(xlsx_png, (0, height // 20, width * 62 // 100, height * 2 // 5))
    for name in ("report-html.png", "report-html-phone.png", "report-pdf.png", "report-xlsx.png"):
        print(DOCS / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
