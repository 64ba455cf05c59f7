"""The command line's contract: one table of exit codes, what each error maps to, and the
process-level settings the collector command applies before it starts."""

from __future__ import annotations

import ast
import gc
import re
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from greendc._errors import ConfigError, ConfigUnreadable
from greendc.app.cli import main
from greendc.app.collect import GC_YOUNG_THRESHOLD, tune_gc_for_streaming
from greendc.app.exits import ExitCode
from greendc.config import load_config
from greendc.exporters.report import Period, ReportRequest, ReportRequestError, parse_formats

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "greendc" / "app"
EXAMPLE = ROOT / "config" / "greendc.example.yaml"


# -- exit codes --------------------------------------------------------------------------------
def _exit_codes_used_by_the_app() -> set[str]:
    """Every ``ExitCode.NAME`` the application layer's code refers to."""
    used = set()
    for path in APP.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "ExitCode"
            ):
                used.add(node.attr)
    return used


def test_every_exit_code_is_used_by_some_command() -> None:
    assert _exit_codes_used_by_the_app() == {code.name for code in ExitCode}


def test_every_exit_code_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("Exit codes", 1)[1].split("\n#", 1)[0]
    documented = {int(n) for n in re.findall(r"^\|\s*(\d+)\s*\|", section, re.MULTILINE)}
    assert documented == {int(code) for code in ExitCode}, section


def test_exit_codes_are_distinct_values() -> None:
    assert len({int(c) for c in ExitCode}) == len(ExitCode)  # no member is an alias


def test_a_missing_config_file_is_an_operational_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigUnreadable) as info:
        load_config(missing)
    assert not isinstance(info.value, ConfigError)  # not an invalid configuration
    for argv in (
        ["check-config", str(missing)],
        ["collect", "--config", str(missing)],
        ["report", "--config", str(missing), "--month", "2026-03", "--out", str(tmp_path)],
        ["rules", "build", "--config", str(missing), "--out", str(tmp_path / "rules")],
    ):
        assert main(argv) == ExitCode.FAILURE, argv
        err = capsys.readouterr().err
        assert f"{missing}: cannot read the config file: No such file or directory" in err
        assert "configuration error" not in err


def test_a_relative_missing_config_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["check-config", "greendc.yaml"]) == ExitCode.FAILURE
    assert f"(looked for {tmp_path / 'greendc.yaml'})" in capsys.readouterr().err


def test_an_invalid_config_exits_invalid_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text(encoding="utf-8").replace("qos: 1", "qos: 7", 1))
    assert "qos: 7" in bad.read_text(encoding="utf-8")
    assert main(["check-config", str(bad)]) == ExitCode.INVALID
    err = capsys.readouterr().err
    assert "configuration error" in err
    assert "mqtt.qos" in err


def test_a_command_line_argparse_rejects_is_returned_as_invalid(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["collect"]) == ExitCode.INVALID  # --config is required
    assert "--config" in capsys.readouterr().err
    assert main(["report", "--config", "x", "--month", "2026-3", "--out", "o"]) == 2
    assert "'2026-3' is not YYYY-MM" in capsys.readouterr().err
    assert main(["--help"]) == ExitCode.OK
    assert "check-config" in capsys.readouterr().out


# -- the report's typed entry point ------------------------------------------------------------
def test_report_request_names_every_bad_field(tmp_path: Path) -> None:
    settings = load_config(EXAMPLE, env={})
    with pytest.raises(ReportRequestError) as info:
        ReportRequest(
            settings,
            Period(2026, 3),
            tmp_path,
            formats=("csv", "docx"),  # type: ignore[arg-type]
            source="s3",  # type: ignore[arg-type]
            site="nowhere",
            eu_eed=True,
        )
    problems = info.value.problems
    assert [p.split(":", 1)[0] for p in problems] == ["formats", "source", "eu_eed", "site"]
    assert "'docx' is not one of csv, xlsx, html, pdf" in problems[0]
    assert "sites: " + ", ".join(s.name for s in settings.sites) in problems[3]
    assert isinstance(info.value, ConfigError)  # the command line maps it to INVALID
    assert not list(tmp_path.iterdir())  # nothing written


def test_report_request_file_names() -> None:
    settings = load_config(EXAMPLE, env={})
    site = settings.sites[0].name
    out = Path("out")
    assert ReportRequest(settings, Period(2026, 3), out).stem == "greendc-report-2026-03"
    annual = ReportRequest(settings, Period(2026), out, site=site, eu_eed=True)
    assert annual.stem == f"greendc-eu-eed-2026-{site}"
    assert [s.name for s in annual.sites] == [site]


def test_format_option_keeps_the_canonical_order_once_each() -> None:
    assert parse_formats("pdf, CSV,pdf") == ("csv", "pdf")
    with pytest.raises(ReportRequestError, match="--format 'csv,docx': docx is not one of"):
        parse_formats("csv,docx")
    with pytest.raises(ReportRequestError, match="empty"):
        parse_formats(" , ")


# -- the collector process ---------------------------------------------------------------------
@pytest.fixture
def gc_restored() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("gc_restored")
def test_collector_freezes_start_up_objects_and_collects_young_ones_less_often() -> None:
    before = gc.get_threshold()
    unfrozen = gc.get_freeze_count()
    tune_gc_for_streaming()
    assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, before[1], before[2])
    assert gc.get_freeze_count() > unfrozen
    # Cycles made after start-up are still found, only less often.
    cycle = _Node()
    cycle.other = cycle
    gone = weakref.ref(cycle)
    del cycle
    gc.collect()
    assert gone() is None


class _Node:
    other: object = None
