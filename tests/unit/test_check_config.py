"""check-config refuses what collect refuses at start-up, with the setting named (exit 2).

Each broken config is checked three ways: ``greendc check-config`` exits 2 naming the
field; ``greendc collect`` refuses it with exit 2 before connecting to anything; and, where
the schema lets it through, the collector's own start-up code (the live KPIs) refuses it
too, so the preflight is not a second opinion that could drift from what collect does.
Relative paths resolve against the config file's folder, whatever the working directory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from greendc._errors import ConfigError
from greendc.app.cli import main
from greendc.collector.site_figures import LiveSites
from greendc.config import load_config
from tests.support.builders import site_config

SHIPPED_FACTORS = Path(__file__).resolve().parents[2] / "greendc" / "data" / "emission_factors.yaml"


def _config(folder: Path, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "mqtt": {"url": "mqtt://127.0.0.1:1"},  # nothing listens: collect must not get there
        "sinks": {"embedded": {"path": "var/greendc.sqlite"}, "spool": {"dir": "var/spool"}},
        "metrics": {"enabled": False},
        "sites": [site_config("s1", grid_zone="SG")],
    }
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


def _write(folder: Path, data: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "greendc.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _bad_windows(folder: Path) -> dict[str, Any]:
    return _config(folder, kpi={"interval_seconds": 60, "windows_seconds": [300, 90]})


def _no_windows(folder: Path) -> dict[str, Any]:
    return _config(folder, kpi={"windows_seconds": []})


def _odd_interval(folder: Path) -> dict[str, Any]:
    return _config(folder, kpi={"interval_seconds": 7, "windows_seconds": [700]})


def _unknown_zone(folder: Path) -> dict[str, Any]:
    return _config(folder, sites=[site_config("s1"), site_config("s2", grid_zone="XX")])


def _factor_file_not_yaml(folder: Path) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "factors.yaml").write_text("zones: [unclosed\n", encoding="utf-8")
    return _config(folder, emission_factors_file="factors.yaml")


def _factor_file_invalid(folder: Path) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    data = yaml.safe_load(SHIPPED_FACTORS.read_text(encoding="utf-8"))
    del data["zones"]["SG"]["grid_average"]["basis"]
    (folder / "factors.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    return _config(folder, emission_factors_file="factors.yaml")


def _hourly_file_bad(folder: Path) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hourly.csv").write_text(
        "ts,kg_per_kwh\n1764374400,0.4\n2025-11-29T01:00:00Z,lots\n", encoding="utf-8"
    )
    return _config(folder, sites=[site_config("s1", hourly_factors_file="hourly.csv")])


def _hourly_file_missing(folder: Path) -> dict[str, Any]:
    return _config(folder, sites=[site_config("s1", hourly_factors_file="absent.csv")])


def _web_config_bad(folder: Path) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "web.yml").write_text(
        "tls_server_config: {cert_file: absent.crt, key_file: absent.key}\n", encoding="utf-8"
    )
    return _config(folder, metrics={"enabled": True, "port": 0, "web_config_file": "web.yml"})


def _tls_ca_missing(folder: Path) -> dict[str, Any]:
    return _config(folder, mqtt={"url": "mqtts://127.0.0.1:1", "tls": {"ca_file": "ca.pem"}})


CASES: list[tuple[Callable[[Path], dict[str, Any]], str, bool]] = [
    # (config, what stderr must name, whether the schema already refuses it)
    (_bad_windows, "kpi.windows_seconds: 90 is not a multiple of kpi.interval_seconds", True),
    (_no_windows, "kpi.windows_seconds:", True),
    (_odd_interval, "kpi.interval_seconds: must divide an hour", True),
    (_unknown_zone, "sites[1].grid_zone: 'XX' has no emission factors", False),
    (_factor_file_not_yaml, "emission_factors_file:", False),
    (_factor_file_invalid, "zones.SG.grid_average.basis", False),
    (_hourly_file_bad, "sites[0].hourly_factors_file:", False),
    (_hourly_file_missing, "sites[0].hourly_factors_file:", False),
    (_web_config_bad, "metrics.web_config_file:", False),
    (_tls_ca_missing, "mqtt.tls.ca_file: cannot read", False),
]


@pytest.mark.parametrize(("make", "named", "schema"), CASES, ids=[c[0].__name__ for c in CASES])
def test_check_config_refuses_what_collect_refuses(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make: Callable[[Path], dict[str, Any]],
    named: str,
    schema: bool,
) -> None:
    path = _write(tmp_path / "conf", make(tmp_path / "conf"))
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert named in err
    assert main(["collect", "--config", str(path)]) == 2
    assert named in capsys.readouterr().err
    if schema:
        with pytest.raises(ConfigError, match="kpi"):
            load_config(path, env={})
    elif "grid_zone" in named or "factors_file" in named or "zones." in named:
        # The collector's own start-up (live KPIs) refuses it with the same words.
        settings = load_config(path, env={})
        with pytest.raises(ConfigError) as info:
            LiveSites(settings)
        assert named in str(info.value)


def test_a_good_config_passes_both(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "hourly.csv").write_text("ts,kg_per_kwh\n1764374400,0.4\n", encoding="utf-8")
    data = _config(folder, sites=[site_config("s1", hourly_factors_file="hourly.csv")])
    path = _write(folder, data)
    assert main(["check-config", str(path)]) == 0
    assert "OK" in capsys.readouterr().out
    LiveSites(load_config(path, env={}))  # and the collector's start-up takes it


def test_relative_paths_resolve_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "etc" / "greendc"
    folder.mkdir(parents=True)
    (folder / "hourly.csv").write_text("ts,kg_per_kwh\n1764374400,0.4\n", encoding="utf-8")
    (folder / "factors.yaml").write_text(SHIPPED_FACTORS.read_text(encoding="utf-8"), "utf-8")
    (folder / "mqtt-password").write_text("s3cret\n", encoding="utf-8")
    (folder / "ca.pem").write_text("not a certificate\n", encoding="utf-8")
    data = _config(
        folder,
        emission_factors_file="factors.yaml",
        mqtt={"password_file": "mqtt-password", "username": "u", "tls": {"ca_file": "ca.pem"}},
        sites=[site_config("s1", hourly_factors_file="hourly.csv")],
    )
    path = _write(folder, data)
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    settings = load_config(path, env={})
    assert settings.sinks.embedded is not None
    assert settings.sinks.embedded.path == folder / "var" / "greendc.sqlite"
    assert settings.sinks.spool.dir == folder / "var" / "spool"
    assert settings.emission_factors_file == folder / "factors.yaml"
    assert settings.sites[0].hourly_factors_file == folder / "hourly.csv"
    assert settings.mqtt.tls is not None and settings.mqtt.tls.ca_file == folder / "ca.pem"
    assert settings.mqtt.password is not None
    assert settings.mqtt.password.get_secret_value() == "s3cret"
    # The files are found from here; the CA file is read and refused for what it holds.
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "mqtt.tls.ca_file: not a usable CA certificate" in err
    assert "hourly_factors_file" not in err and "emission_factors_file" not in err
