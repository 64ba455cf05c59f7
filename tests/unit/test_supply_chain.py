"""The lock file and the offline dependency audit (scripts/audit_deps.py)."""

from __future__ import annotations

import importlib.util
import json
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def _audit_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("audit_deps", ROOT / "scripts" / "audit_deps.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["audit_deps"] = module
    spec.loader.exec_module(module)
    return module


audit = _audit_module()


def _advisory(events: list[dict[str, str]], versions: list[str] | None = None) -> dict:
    return {
        "id": "PYSEC-TEST-1",
        "affected": [
            {
                "package": {"name": "Some_Pkg", "ecosystem": "PyPI"},
                "ranges": [{"type": "ECOSYSTEM", "events": events}],
                "versions": versions or [],
            }
        ],
    }


def test_range_bounds_follow_osv() -> None:
    adv = _advisory([{"introduced": "1.2"}, {"fixed": "1.4.1"}])
    assert [audit.affects(adv, "some-pkg", v) for v in ("1.1", "1.2", "1.4", "1.4.1")] == [
        False,
        True,
        True,
        False,
    ]
    last = _advisory([{"introduced": "0"}, {"last_affected": "2.0"}])
    assert audit.affects(last, "some-pkg", "0.1") and audit.affects(last, "some-pkg", "2.0")
    assert not audit.affects(last, "some-pkg", "2.0.1")
    # Two vulnerable spans in one range; the name is compared normalized.
    two = _advisory([{"introduced": "1"}, {"fixed": "2"}, {"introduced": "3"}, {"fixed": "4"}])
    assert [audit.affects(two, "some-pkg", v) for v in ("1.5", "2.5", "3.5", "4")] == [
        True,
        False,
        True,
        False,
    ]
    assert not audit.affects(two, "other", "1.5")
    listed = _advisory([], versions=["9.9"])
    assert audit.affects(listed, "some-pkg", "9.9") and not audit.affects(listed, "some-pkg", "9.8")


def test_the_committed_advisories_flag_a_known_vulnerable_pin(tmp_path: Path) -> None:
    data = json.loads((ROOT / "security" / "advisories.json").read_text())
    # urllib3 1.17/1.18 skip certificate checks with PyOpenSSL (PYSEC-2017-98, CVE-2016-9015).
    found = audit.audit({"urllib3": "1.18"}, data)
    assert "PYSEC-2017-98" in {f.advisory for f in found}
    assert "CVE-2016-9015" in str(next(f for f in found if f.advisory == "PYSEC-2017-98"))
    # The check command (a test.sh step) fails on such a lock, and names the pin.
    lock = tmp_path / "requirements.lock"
    pins = (ROOT / "requirements.lock").read_text()
    lock.write_text(
        "\n".join(
            "urllib3==1.18" if line.lower().startswith("urllib3==") else line
            for line in pins.splitlines()
        )
    )
    assert audit.check(lock, ROOT / "security" / "advisories.json") == 1


def test_the_lock_passes_the_audit_and_the_data_covers_it() -> None:
    assert audit.check(audit.LOCK, audit.DATA) == 0
    data = json.loads(audit.DATA.read_text())
    assert data["snapshot_date"] and len(data["commit"]) == 40
    assert set(audit.read_lock(audit.LOCK)) <= set(data["packages"])


def test_the_lock_pins_every_declared_dependency_within_its_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = audit.read_lock(audit.LOCK)
    declared = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    for text in declared:
        req = Requirement(text)
        name = audit.normalize(req.name)
        assert name in pins, f"requirements.lock does not pin {req.name} (declared {text!r})"
        assert req.specifier.contains(pins[name], prereleases=True), (text, pins[name])


def test_a_lock_line_that_is_not_a_pin_is_refused(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text("# comment\nrequests>=2\n")
    with pytest.raises(SystemExit, match="not a 'name==version' pin"):
        audit.read_lock(lock)
