"""Sparkplug B (issue 24, point 3): births, data by alias, sequence gaps, deaths."""

from __future__ import annotations

from typing import Any

import pytest

from greendc._errors import ConfigError
from greendc.config import parse_config
from greendc.decode import Decoder
from greendc.sparkplug import MessageType, decode_payload, parse_topic
from tests.support.sparkplug import BOOLEAN, DOUBLE, INT64, STRING, EdgeNode, parse

NOW = 1_764_374_400.0
T0 = int(NOW * 1000) - 60_000


def _settings(**sparkplug: Any) -> Any:
    return parse_config(
        {
            "sites": [
                {
                    "name": "plant-1",
                    "grid_zone": "SG",
                    "installed_it_kw": 100,
                    "pue_category": 1,
                    "meters": [
                        {"name": "gw-1-pm-1", "role": "facility"},
                        {"name": "gw-1-pm-2", "role": "cooling"},
                        {"name": "gw-1", "role": "other_overhead"},
                    ],
                }
            ],
            "mappings": [
                {
                    "topic": "spBv1.0/{site}/#",
                    "payload": "sparkplug",
                    "sparkplug": {
                        "metrics": [
                            {"name": "Power/Active", "quantity": "power_w", "unit": "kW"},
                            {"name": "Energy/Import", "quantity": "energy_wh", "unit": "kWh"},
                            {"name": "Cabinet/Temp", "quantity": "temp_c", "unit": "C"},
                        ],
                        **sparkplug,
                    },
                }
            ],
        },
        env={},
    )


METRICS = [
    ("Power/Active", DOUBLE, 12.5),
    ("Energy/Import", DOUBLE, 1000.25),
    ("Label", STRING, "x"),
]


def test_topics_and_payloads_parse_or_say_why_not() -> None:
    assert parse_topic("spBv1.0/plant-1/DDATA/gw-1/pm-1").device == "pm-1"
    assert parse_topic("spBv1.0/STATE/scada-1").kind is MessageType.STATE
    for bad, why in [
        ("spBv1.0/plant-1/NDATA/gw-1/pm-1", "has a device"),
        ("spBv1.0/plant-1/XDATA/gw-1", "not a Sparkplug B message type"),
        ("spAv1.0/plant-1/NDATA/gw-1", "must start with spBv1.0/"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_topic(bad)
    with pytest.raises(ValueError, match="not a Sparkplug B protobuf payload"):
        decode_payload(b"\xff\xff\xff")


def test_births_define_aliases_and_data_by_alias_is_stored_exactly() -> None:
    d = Decoder(_settings())
    node = EdgeNode("plant-1", "gw-1")
    out = d.decode_full(*node.birth(T0, [("Cabinet/Temp", DOUBLE, 24.5)]), NOW)
    assert [(r.meter, r.ts_ms, r.fields) for r in out.readings] == [("gw-1", T0, {"temp_c": 24.5})]
    out = d.decode_full(*node.birth(T0, METRICS, device="pm-1"), NOW)
    assert [(r.meter, r.fields) for r in out.readings] == [
        ("gw-1-pm-1", {"power_w": 12500.0, "energy_wh": 1000250.0})
    ]
    out = d.decode_full(*node.data(T0 + 1000, [("Power/Active", DOUBLE, 13.0)], "pm-1"), NOW)
    assert (out.rejections, [(r.meter, r.ts_ms, r.fields) for r in out.readings]) == (
        [],
        [("gw-1-pm-1", T0 + 1000, {"power_w": 13000.0})],
    )


def test_a_sequence_gap_is_counted_and_asks_for_a_rebirth() -> None:
    d = Decoder(_settings())
    node = EdgeNode("plant-1", "gw-1")
    for msg in (node.birth(T0, []), node.birth(T0, METRICS, device="pm-1")):
        d.decode_full(*msg, NOW)
    out = d.decode_full(*node.data(T0 + 1, [("Power/Active", DOUBLE, 1.0)], "pm-1", seq=5), NOW)
    assert [r for r, _ in out.rejections] == ["sparkplug_seq_gap"]
    assert "seq 5 after 1: 3 message(s) lost" in out.rejections[0][1]
    assert len(out.readings) == 1  # the data that did arrive are kept
    [(topic, body)] = out.publish
    assert topic == "spBv1.0/plant-1/NCMD/gw-1"
    request = parse(body)
    assert [(m.name, m.boolean_value) for m in request.metrics] == [("Node Control/Rebirth", True)]
    # With rebirth off the gap is still counted, and nothing is published.
    quiet = Decoder(_settings(rebirth=False))
    for msg in (node.birth(T0, []), node.birth(T0, METRICS, device="pm-1")):
        quiet.decode_full(*msg, NOW)
    out = quiet.decode_full(*node.data(T0, [("Power/Active", DOUBLE, 1.0)], "pm-1", seq=9), NOW)
    assert [r for r, _ in out.rejections] == ["sparkplug_seq_gap"] and out.publish == []


def test_data_before_a_birth_or_by_an_unknown_alias_is_refused() -> None:
    d = Decoder(_settings())
    node = EdgeNode("plant-1", "gw-1")
    node.aliases[("pm-1", "Power/Active")] = 7
    out = d.decode_full(*node.data(T0, [("Power/Active", DOUBLE, 1.0)], "pm-1"), NOW)
    assert [r for r, _ in out.rejections] == ["sparkplug_no_birth"]
    assert out.publish and out.publish[0][0] == "spBv1.0/plant-1/NCMD/gw-1"
    node = EdgeNode("plant-1", "gw-1")
    d.decode_full(*node.birth(T0, []), NOW)
    d.decode_full(*node.birth(T0, METRICS, device="pm-1"), NOW)
    node.aliases[("pm-1", "Cabinet/Temp")] = 99
    out = d.decode_full(*node.data(T0, [("Cabinet/Temp", DOUBLE, 1.0)], "pm-1"), NOW)
    assert [r for r, _ in out.rejections] == ["sparkplug_unknown_alias"]


def test_deaths_make_the_meters_stale_and_an_old_sessions_death_does_not() -> None:
    d = Decoder(_settings())
    node = EdgeNode("plant-1", "gw-1", bdseq=3)
    d.decode_full(*node.birth(T0, [("Cabinet/Temp", DOUBLE, 20.0)]), NOW)
    d.decode_full(*node.birth(T0, METRICS, device="pm-1"), NOW)
    d.decode_full(*node.birth(T0, METRICS, device="pm-2"), NOW)
    out = d.decode_full(*node.device_death(T0, "pm-2"), NOW)
    assert out.stale == [("plant-1", "gw-1-pm-2")]
    old = EdgeNode("plant-1", "gw-1", bdseq=2)
    out = d.decode_full(*old.death(), NOW)
    assert out.stale == [] and [r for r, _ in out.ignored] == ["sparkplug_state"]
    out = d.decode_full(*node.death(), NOW)
    assert sorted(out.stale) == [("plant-1", "gw-1"), ("plant-1", "gw-1-pm-1")]
    # After the death, data need a new birth.
    out = d.decode_full(*node.data(T0, [("Power/Active", DOUBLE, 1.0)], "pm-1"), NOW)
    assert [r for r, _ in out.rejections] == ["sparkplug_no_birth"]


def test_state_and_commands_are_ignored_and_other_types_skipped_or_refused() -> None:
    d = Decoder(_settings())
    out = d.decode_full("spBv1.0/STATE/scada-1", b'{"online": true, "timestamp": 1}', NOW)
    assert (out.rejections, [r for r, _ in out.ignored]) == ([], ["sparkplug_state"])
    node = EdgeNode("plant-1", "gw-1")
    d.decode_full(*node.birth(T0, []), NOW)
    out = d.decode_full(
        *node.birth(T0, [("Power/Active", BOOLEAN, True), ("Energy/Import", INT64, 5)], "pm-1"),
        NOW,
    )
    assert [r for r, _ in out.rejections] == ["non_numeric"]
    assert [r.fields for r in out.readings] == [{"energy_wh": 5000.0}]
    bad = d.decode_full("spBv1.0/plant-1/DDATA/gw-1/pm-1", b"\x0a\xff", NOW)
    assert [r for r, _ in bad.rejections] == ["bad_structure"]
    assert "not a Sparkplug B protobuf payload" in bad.rejections[0][1]


def test_sparkplug_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError) as err:
        _settings(device_meter="{node}-{dev}")
    assert "device_meter: {dev} is not one of {group}, {node}, {device}" in str(err.value)
