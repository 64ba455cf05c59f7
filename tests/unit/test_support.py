"""Test and bench support lives in tests/support: production code never imports it (nor
bench/), and the older module names still give the same objects."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import tests.helpers
import tests.integration.e2e_support
import tests.servers
from tests.support import builders, collector, mqtt, polling, servers

REPO = Path(__file__).resolve().parents[2]
PRODUCTION = [REPO / d for d in ("greendc", "collector", "exporters", "dashboards", "simulator")]


def _top_level_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_production_code_never_imports_tests_or_bench() -> None:
    offenders = []
    files = 0
    for folder in PRODUCTION:
        for path in folder.rglob("*.py"):
            if any(part in ("generated", "__pycache__") for part in path.parts):
                continue
            files += 1
            bad = _top_level_imports(path) & {"tests", "bench"}
            if bad:
                offenders.append(f"{path.relative_to(REPO)} imports {', '.join(sorted(bad))}")
    assert files > 50  # the walk found the code
    assert offenders == []


def test_the_walk_would_see_such_an_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from tests.support.servers import free_port\n")
    assert "tests" in _top_level_imports(module)


def test_old_import_paths_give_the_same_objects() -> None:
    assert tests.servers.Mosquitto is servers.Mosquitto
    assert tests.servers.free_port is servers.free_port
    assert tests.helpers.make_settings is builders.make_settings
    assert tests.helpers.site_config is builders.site_config
    assert tests.helpers.Publisher is mqtt.Publisher
    assert tests.helpers.wait_until is polling.wait_until
    assert tests.integration.e2e_support.running_collector is collector.running_collector
    assert tests.integration.e2e_support.four_climates_settings is builders.four_climates_settings
    for shim in (tests.servers, tests.helpers, tests.integration.e2e_support):
        assert all(hasattr(shim, name) for name in shim.__all__), shim.__name__


def test_settings_from_validates_and_ignores_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GREENDC_MQTT_URL", "mqtt://elsewhere:1883")
    settings = builders.settings_from({"sites": [builders.site_config("s1")]})
    assert settings.mqtt.url != "mqtt://elsewhere:1883"
    assert [s.name for s in settings.sites] == ["s1"]
