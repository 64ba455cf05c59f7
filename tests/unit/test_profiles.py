"""Device profiles (issue 24, point 2): each shipped profile decodes the payloads it was
written from into exactly the readings it documents."""

from __future__ import annotations

from pathlib import Path

import pytest

from greendc._errors import ConfigError
from greendc.config import parse_config, profile_names
from greendc.decode import Decoder
from tests.support.profiles import FIELDS, SITE, Example, all_examples, profile_mapping, site

ROOT = Path(__file__).resolve().parents[2]
EXPECTED_PROFILES = {
    "native",
    "tasmota-energy",
    "tasmota-energy-channels",
    "shelly-switch",
    "shelly-em",
    "zigbee2mqtt-plug",
    "emonhub-inputs",
    "emonhub-json",
}


def test_the_shipped_profiles_are_the_documented_ones_each_with_examples() -> None:
    assert set(profile_names()) == EXPECTED_PROFILES
    readme = (ROOT / "README.md").read_text()
    for name in profile_names():
        assert f"`{name}`" in readme, f"README does not list the profile {name}"
        assert any(ex.profile == name for ex in all_examples())


@pytest.mark.parametrize("ex", all_examples(), ids=lambda ex: ex.id)
def test_a_profile_decodes_its_example_exactly(ex: Example) -> None:
    settings = parse_config(
        {
            "sites": [site(ex.meters() or ["unused"], ex.site_timezone)],
            "mappings": [profile_mapping(ex.profile)],
        },
        env={},
    )
    decoded = Decoder(settings).decode_full(ex.topic, ex.payload, ex.now_s)
    assert decoded.rejections == []
    assert [reason for reason, _ in decoded.ignored] == ex.ignored
    got = [
        (r.site, r.meter, r.ts_ms, {f: r.fields[f] for f in FIELDS if f in r.fields})
        for r in decoded.readings
    ]
    want = [
        (
            SITE,
            r["meter"],
            round(ex.now_s * 1000) if r["ts"] == "arrival" else r["ts"],
            {f: float(r[f]) for f in FIELDS if f in r},
        )
        for r in ex.readings
    ]
    assert got == want


def test_a_profile_takes_a_site_a_base_topic_and_a_zone_and_refuses_other_settings() -> None:
    settings = parse_config(
        {
            "sites": [site(["plug"])],
            "mappings": [
                profile_mapping("tasmota-energy", base_topic="home/tele", naive_timezone="UTC")
            ],
        },
        env={},
    )
    assert [m.topic for m in settings.mappings] == [
        "home/tele/{device}/SENSOR",
        "home/tele/{device}/+",
    ]
    assert settings.mappings[0].naive_timezone == "UTC"
    with pytest.raises(ConfigError) as err:
        parse_config(
            {"sites": [site(["plug"])], "mappings": [profile_mapping("tasmota-energy", meter="x")]},
            env={},
        )
    assert "mappings[0]: meter cannot be set on a profile" in str(err.value)
    assert "greendc/data/profiles/tasmota-energy.yaml" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_config(
            {"sites": [site(["plug"])], "mappings": [{"profile": "tasmot", "site": SITE}]}, env={}
        )
    assert "mappings[0].profile: 'tasmot' is not one of emonhub-inputs" in str(err.value)
