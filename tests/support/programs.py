"""The programs the report is opened in, run headless: Chromium, LibreOffice, poppler.

Shared by tests/integration/test_report_programs.py and scripts/report_pictures.py (which
refreshes the PNGs under docs/). Each call runs the real program to completion and checks
its output file; nothing waits on a timer.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

# Debian package of each program (scripts/setup.sh installs them).
PROGRAMS = {"chromium": "chromium", "soffice": "libreoffice-calc", "pdftoppm": "poppler-utils"}


class ProgramError(RuntimeError):
    """A program is missing or did not write what it was asked to."""


def program(name: str) -> str:
    """The path of ``name``, or an error naming the Debian package to install."""
    path = shutil.which(name)
    if path is None:
        raise ProgramError(
            f"{name} is not installed: run scripts/setup.sh as root"
            f" (Debian package {PROGRAMS.get(name, name)})"
        )
    return path


def _run(cmd: list[str], out: Path, timeout_s: float = 180.0) -> Path:
    out.unlink(missing_ok=True)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode != 0 or not out.exists() or out.stat().st_size == 0:
        raise ProgramError(
            f"{' '.join(cmd[:2])} did not write {out} (exit {done.returncode}): "
            f"{done.stderr.strip()[-800:]}"
        )
    return out


def _chromium(profile: Path) -> list[str]:
    return [
        program("chromium"),
        "--headless=new",
        "--no-sandbox",  # root in a container: the sandbox needs user namespaces
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--no-first-run",
        f"--user-data-dir={profile}",
    ]


def screenshot(html: Path, png: Path, width: int, height: int, profile: Path) -> Path:
    """Chromium's rendering of ``html`` in a ``width`` x ``height`` CSS-pixel window."""
    cmd = [*_chromium(profile), f"--window-size={width},{height}", f"--screenshot={png}"]
    return _run([*cmd, html.resolve().as_uri()], png)


def print_to_pdf(html: Path, pdf: Path, profile: Path) -> Path:
    """Chromium's print of ``html`` (its print CSS, no browser header or footer)."""
    cmd = [*_chromium(profile), "--no-pdf-header-footer", f"--print-to-pdf={pdf}"]
    return _run([*cmd, html.resolve().as_uri()], pdf)


def spreadsheet_to_pdf(xlsx: Path, out_dir: Path, profile: Path) -> Path:
    """LibreOffice Calc's print of every sheet of ``xlsx`` (its print setup) as a PDF."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        program("soffice"),
        f"-env:UserInstallation={profile.resolve().as_uri()}",
        "--headless",
        "--convert-to",
        "pdf",
        "--outdir",
        str(out_dir),
        str(xlsx),
    ]
    return _run(cmd, out_dir / f"{xlsx.stem}.pdf")


def pdf_page_png(pdf: Path, page: int, png: Path, dpi: int = 80) -> Path:
    """One page of a PDF rendered by poppler."""
    stem = png.with_suffix("")
    cmd = [program("pdftoppm"), "-png", "-r", str(dpi), "-f", str(page), "-l", str(page)]
    cmd += ["-singlefile", str(pdf), str(stem)]
    return _run(cmd, png)


def pdf_text(pdf: Path, page: int | None = None) -> str:
    """The text poppler extracts (one page, or all)."""
    cmd = [program("pdftotext"), "-layout"]
    if page is not None:
        cmd += ["-f", str(page), "-l", str(page)]
    done = subprocess.run([*cmd, str(pdf), "-"], capture_output=True, text=True, check=True)
    return done.stdout


def pdf_pages(pdf: Path) -> int:
    """How many pages poppler counts."""
    done = subprocess.run(
        [program("pdfinfo"), str(pdf)], capture_output=True, text=True, check=True
    )
    for line in done.stdout.splitlines():
        if line.startswith("Pages:"):
            return int(line.split()[1])
    raise ProgramError(f"pdfinfo printed no page count for {pdf}")


__all__ = [
    "PROGRAMS",
    "ProgramError",
    "pdf_page_png",
    "pdf_pages",
    "pdf_text",
    "print_to_pdf",
    "program",
    "screenshot",
    "spreadsheet_to_pdf",
]
