"""The one way tests build configuration: Settings, sites, meters, and snapshot pieces.

Every test that needs a :class:`~greendc.config.Settings` builds it here, through
:func:`settings_from` (a mapping as in greendc.yaml, validated, never reading the
environment) or one of the shapes built on it: :func:`make_settings` (two sites on a test
broker) and :func:`four_climates_settings` (config/examples/four-climates.yaml retargeted).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from greendc.config import Settings, parse_config
from greendc.snapshot import Health

REPO = Path(__file__).resolve().parents[2]
FOUR_CLIMATES = REPO / "config" / "examples" / "four-climates.yaml"


def settings_from(data: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Settings:
    """Validated settings from a greendc.yaml-shaped mapping; the real environment is not
    read, only ``env`` when given (secrets from ``*_env``)."""
    return parse_config(dict(data), env=dict(env or {}))


def site_config(
    name: str,
    *,
    grid_zone: str = "SG",
    installed_it_kw: float = 100,
    pue_category: int = 1,
    meters: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One site's configuration mapping, as under ``sites:`` in greendc.yaml.

    ``meters`` default to a facility incomer and one IT meter at a UPS output; ``extra``
    adds other site keys (``targets``, ``timezone``...).
    """
    if meters is None:
        meters = [
            {"name": "incomer", "role": "facility"},
            {"name": "ups-1", "role": "it", "point": "ups_output"},
        ]
    return {
        "name": name,
        "grid_zone": grid_zone,
        "installed_it_kw": installed_it_kw,
        "pue_category": pue_category,
        "meters": meters,
        **extra,
    }


SITES: list[dict[str, Any]] = [
    site_config(
        "sg1",
        timezone="Asia/Singapore",
        meters=[
            {"name": "incomer", "role": "facility"},
            {"name": "ups-1", "role": "it", "point": "ups_output"},
            {"name": "ups-2", "role": "it", "point": "ups_output"},
            {"name": "chiller", "role": "cooling"},
            {"name": "solar", "role": "renewable_onsite"},
        ],
    ),
    site_config(
        "jhr1",
        timezone="Asia/Kuala_Lumpur",
        grid_zone="MY-PEN",
        installed_it_kw=200,
        pue_category=2,
        meters=[
            {"name": "incomer", "role": "facility"},
            {"name": "pdu-a", "role": "it", "point": "pdu_output"},
        ],
    ),
]


# The targets and thresholds of a site with all four set (the config's ``targets`` mapping).
PUE_TARGETS: dict[str, float] = {
    "pue": 1.45,
    "pue_warning": 1.6,
    "pue_critical": 1.75,
    "renewable_share": 0.1,
}


def idle_health(agent: str = "a", *, start_time_s: float = 0.0) -> Health:
    """Agent health with MQTT connected and every counter at zero (no sinks)."""
    return Health(
        agent=agent,
        version="0",
        start_time_s=start_time_s,
        messages_received=0,
        readings_accepted=0,
        rejections={},
        mqtt_connected=True,
        mqtt_reconnects=0,
        series_refused=0,
        meters_tracked=0,
    )


def make_settings(
    mqtt_url: str,
    prefix: str,
    tmp_path: Path,
    *,
    sinks: dict[str, Any] | None = None,
    client_id: str | None = None,
    env: Mapping[str, str] | None = None,
    **extra: Any,
) -> Settings:
    """Settings for one test: native mappings under ``prefix``, metrics on a free port.

    ``env`` is the environment the config sees (secrets from ``*_env``); none by default.
    """
    data: dict[str, Any] = {
        "mqtt": {
            "url": mqtt_url,
            "client_id": client_id or f"agent-{prefix.replace('/', '-')}",
            "reconnect_max_seconds": 2,
        },
        "mappings": [
            {"topic": f"{prefix}/greendc/{{site}}/{{meter}}"},
            {"topic": f"{prefix}/greendc/{{site}}"},
        ],
        "sinks": {
            "spool": {"dir": str(tmp_path / "spool")},
            "flush_interval_seconds": 0.2,
            **(sinks if sinks is not None else {"embedded": {"path": str(tmp_path / "s.sqlite")}}),
        },
        "metrics": {"port": 0},
        "sites": SITES,
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return settings_from(data, env)


def four_climates_settings(
    mqtt_url: str, prefix: str, tmp_path: Path, *, sinks: dict[str, Any], **extra: Any
) -> Settings:
    """config/examples/four-climates.yaml retargeted at the test's broker, topics and sinks."""
    data = yaml.safe_load(FOUR_CLIMATES.read_text(encoding="utf-8"))
    data["mqtt"] = {
        **data.get("mqtt", {}),
        "url": mqtt_url,
        "client_id": f"agent-{prefix.replace('/', '-')}",
        "reconnect_max_seconds": 2,
    }
    data["mappings"] = [
        {"topic": f"{prefix}/greendc/{{site}}/{{meter}}"},
        {"topic": f"{prefix}/greendc/{{site}}"},
    ]
    data["sinks"] = {
        "spool": {"dir": str(tmp_path / "spool")},
        "flush_interval_seconds": 0.2,
        **sinks,
    }
    data["metrics"] = {"port": 0}
    data.update(extra)
    return settings_from(data)
