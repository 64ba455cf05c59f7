"""The report opened in the programs it is made for: Chromium, LibreOffice Calc, poppler.

The golden month (tests/unit/test_report.py) rendered to HTML, XLSX and PDF; Chromium takes
screenshots at desktop and phone widths and prints the HTML; LibreOffice prints the workbook
with its own print setup; poppler renders and reads the PDFs. What a reader would see is
checked: the first screen and first page carry the answers, print is paged and numbered,
the phone layout does not overflow sideways, and no sheet runs to dozens of pages.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from greendc.exporters.report import write_outputs
from tests.support.programs import (
    pdf_page_png,
    pdf_pages,
    pdf_text,
    print_to_pdf,
    screenshot,
    spreadsheet_to_pdf,
)
from tests.unit.test_report import BER1, SGX
from tests.unit.test_report_render import _build

STEM = "greendc-report-2026-03"


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The golden month's HTML, XLSX and PDF in a folder."""
    tmp = tmp_path_factory.mktemp("programs")
    report = _build(tmp, [BER1, SGX])
    write_outputs(report, tmp / "out", STEM, ["html", "xlsx", "pdf"])
    return tmp


def _pixels(png: Path, mode: str = "RGB") -> np.ndarray:
    with Image.open(png) as im:
        return np.asarray(im.convert(mode)).astype(int)


def _ink(png: Path) -> float:
    """Share of pixels that are not (near) white: an empty page scores about 0."""
    return float((_pixels(png, "L") < 235).mean())


def test_html_in_chromium_desktop_phone_and_print(outputs: Path) -> None:
    html = outputs / "out" / f"{STEM}.html"
    profile = outputs / "chromium-profile"
    desk = screenshot(html, outputs / "desk.png", 1280, 900, profile)
    assert _pixels(desk).shape[:2] == (900, 1280)
    assert _ink(desk) > 0.05
    # A phone: 390 CSS px. With the viewport tag and the narrow-screen rules, nothing is
    # wider than the screen: the right-most column of pixels is page background, not a
    # table or chart cut off at the edge.
    phone = screenshot(html, outputs / "phone.png", 390, 1600, profile)
    pixels = _pixels(phone)
    assert pixels.shape[1] == 390
    edge = pixels[:, -3:, :]
    background = np.array([0xF7, 0xFA, 0xFC])  # the page; the header band is #1c4532
    header = np.array([0x1C, 0x45, 0x32])
    plain = (np.abs(edge - background).max(axis=2) < 8) | (np.abs(edge - header).max(axis=2) < 8)
    assert plain.mean() > 0.97
    printed = print_to_pdf(html, outputs / "print.pdf", profile)
    pages = pdf_pages(printed)
    assert 3 <= pages <= 8  # headline and table, one page per scope, definitions
    first = pdf_text(printed, 1)
    assert "Energy and carbon report, March 2026" in first
    assert "Total energy" in first and "Why the two emission figures differ" in first
    assert "page 1 of" in first
    last = pdf_text(printed, pages)
    assert f"page {pages} of {pages}" in last


def test_xlsx_in_libreoffice(outputs: Path) -> None:
    pdf = spreadsheet_to_pdf(
        outputs / "out" / f"{STEM}.xlsx", outputs / "calc", outputs / "lo-profile"
    )
    # Five sheets of a two-site month, each one page wide: a handful of pages, not 35.
    assert pdf_pages(pdf) <= 8
    first = pdf_text(pdf, 1)
    for want in ("Berlin test", "Total energy", "KPI code", "page 1 of"):
        assert want in first, want
    png = pdf_page_png(pdf, 1, outputs / "calc-1.png")
    assert _ink(png) > 0.01


def test_pdf_first_page_rendered_by_poppler(outputs: Path) -> None:
    pdf = outputs / "out" / f"{STEM}.pdf"
    first = pdf_text(pdf, 1)
    for want in (
        "Energy and carbon report, March 2026",
        "Total energy",
        "Power usage effectiveness",
        "Renewable share",
        "Emissions, location-based",
        "Emissions, market-based",
        "Berlin test",
        "Fleet (2 sites)",
    ):
        assert want in first, want
    second = pdf_text(pdf, 2)
    assert "Daily energy by role" in second and "Total energy" in second  # charts + table
    png = pdf_page_png(pdf, 1, outputs / "pdf-1.png")
    height, width = _pixels(png).shape[:2]
    assert width > height  # landscape
    assert _ink(png) > 0.03
