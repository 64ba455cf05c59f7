"""The mapping language for real devices (issue 24, point 1): every feature, one test each."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greendc._errors import ConfigError
from greendc.catalogue import IGNORE_REASONS, REJECTION_REASONS
from greendc.config import parse_config, parse_path
from greendc.decode import Decoded, Decoder

NOW = 1_764_374_400.0  # 2025-11-29T00:00:00Z
NOW_MS = int(NOW * 1000)


def _settings(*mappings: dict[str, Any], meters: list[str] | None = None, tz: str = "UTC") -> Any:
    return parse_config(
        {
            "sites": [
                {
                    "name": "sg1",
                    "timezone": tz,
                    "grid_zone": "SG",
                    "installed_it_kw": 100,
                    "pue_category": 1,
                    "meters": [{"name": n, "role": "cooling"} for n in (meters or ["m1"])],
                }
            ],
            "mappings": list(mappings),
        },
        env={},
    )


def _decode(settings: Any, topic: str, payload: Any, now: float = NOW) -> Decoded:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return Decoder(settings).decode_full(topic, raw, now)


def _rows(d: Decoded) -> list[tuple[str, int, dict[str, float]]]:
    return [(r.meter, r.ts_ms, r.fields) for r in d.readings]


W = [{"path": "power", "quantity": "power_w", "unit": "W"}]


# -- timestamps --------------------------------------------------------------------------------


def test_naive_timestamps_are_read_in_the_site_zone_or_a_named_one() -> None:
    base = {"topic": "tele/{meter}/SENSOR", "site": "sg1", "timestamp_path": "Time", "values": W}
    payload = {"Time": "2025-11-29T08:00:00", "power": 5}
    in_site = _settings({**base, "naive_timezone": "site"}, tz="Asia/Singapore")
    assert _rows(_decode(in_site, "tele/m1/SENSOR", payload)) == [("m1", NOW_MS, {"power_w": 5.0})]
    named = _settings({**base, "naive_timezone": "Europe/Berlin"})
    berlin = {"Time": "2025-11-29T01:00:00", "power": 5}
    assert _rows(_decode(named, "tele/m1/SENSOR", berlin))[0][1] == NOW_MS
    # An offset in the text always wins over the zone (Tasmota with SetOption52).
    with_offset = {"Time": "2025-11-29T09:00:00+09:00", "power": 5}
    assert _rows(_decode(in_site, "tele/m1/SENSOR", with_offset))[0][1] == NOW_MS


def test_a_naive_timestamp_without_a_zone_is_refused_with_the_parsers_reason() -> None:
    s = _settings({"topic": "t/{meter}", "site": "sg1", "timestamp_path": "Time", "values": W})
    d = _decode(s, "t/m1", {"Time": "2025-11-29T08:00:00", "power": 5})
    assert d.readings == []
    [(reason, detail)] = d.rejections
    assert reason == "bad_timestamp"
    assert "need an offset" in detail and "naive_timezone" in detail


# -- meters ------------------------------------------------------------------------------------


def test_constant_and_templated_meter_names_from_several_topic_segments() -> None:
    s = _settings(
        {
            "topic": "emon/{node}/P{channel}",
            "site": "sg1",
            "payload": "number",
            "meter": "{node}-ct{channel}",
            "values": [{"quantity": "power_w", "unit": "W"}],
        },
        {"topic": "fixed/power", "site": "sg1", "meter": "m1", "values": W},
        meters=["emontx4-ct3", "m1"],
    )
    assert _rows(_decode(s, "emon/emontx4/P3", b"123.5")) == [
        ("emontx4-ct3", NOW_MS, {"power_w": 123.5})
    ]
    assert _rows(_decode(s, "fixed/power", {"power": 7})) == [("m1", NOW_MS, {"power_w": 7.0})]
    # E3 is not P{channel}: no mapping, counted.
    assert _decode(s, "emon/emontx4/E3", b"1").rejections[0][0] == "no_mapping"


def test_a_multi_segment_capture_names_a_meter_and_a_bad_name_is_counted() -> None:
    s = _settings(
        {"topic": "zigbee2mqtt/{device#}", "site": "sg1", "meter": "{device}", "values": W},
        meters=["floor1-plug"],
    )
    assert _rows(_decode(s, "zigbee2mqtt/floor1/plug", {"power": 3})) == [
        ("floor1-plug", NOW_MS, {"power_w": 3.0})
    ]
    d = _decode(s, "zigbee2mqtt/living room", {"power": 3})
    assert d.readings == [] and d.rejections[0][0] == "bad_identifier"
    assert "living room" in d.rejections[0][1]


# -- several readings from one message ----------------------------------------------------------


def test_several_meters_from_one_message() -> None:
    phases = [
        {
            "meter": f"{{device}}-{p}",
            "values": [{"path": f"{p}_act_power", "quantity": "power_w", "unit": "W"}],
        }
        for p in "abc"
    ]
    s = _settings(
        {"topic": "{device}/status/em:0", "site": "sg1", "readings": phases},
        meters=["pro3em-a", "pro3em-b", "pro3em-c"],
    )
    payload = {"id": 0, "a_act_power": 951.2, "b_act_power": -2.1, "c_act_power": 0.0}
    assert _rows(_decode(s, "pro3em/status/em:0", payload)) == [
        ("pro3em-a", NOW_MS, {"power_w": 951.2}),
        ("pro3em-b", NOW_MS, {"power_w": -2.1}),
        ("pro3em-c", NOW_MS, {"power_w": 0.0}),
    ]


def test_array_items_all_of_them_or_one_by_index() -> None:
    s = _settings(
        {
            "topic": "tele/{device}/SENSOR",
            "site": "sg1",
            "readings": [
                {
                    "meter": "{device}-{number}",
                    "values": [{"path": "ENERGY.Power.*", "quantity": "power_w", "unit": "W"}],
                },
                {
                    "meter": "{device}",
                    "values": [
                        {"path": "ENERGY.Total", "quantity": "energy_wh", "unit": "kWh"},
                        {"path": "ENERGY.Power.0", "quantity": "power_w", "unit": "W"},
                    ],
                },
            ],
        },
        meters=["plug", "plug-1", "plug-2"],
    )
    payload = {"ENERGY": {"Total": 1.5, "Power": [12, 34]}}
    assert _rows(_decode(s, "tele/plug/SENSOR", payload)) == [
        ("plug-1", NOW_MS, {"power_w": 12.0}),
        ("plug-2", NOW_MS, {"power_w": 34.0}),
        ("plug", NOW_MS, {"energy_wh": 1500.0, "power_w": 12.0}),
    ]


# -- paths ---------------------------------------------------------------------------------------


def test_escaped_keys_address_obis_codes_with_dots() -> None:
    assert parse_path("data.1-0:1\\.8\\.0") == ("data", "1-0:1.8.0")
    assert parse_path(["data", "1-0:1.8.0", 0]) == ("data", "1-0:1.8.0", 0)
    s = _settings(
        {
            "topic": "p1/{meter}",
            "site": "sg1",
            "values": [
                {"path": "1-0:1\\.8\\.0", "quantity": "energy_wh", "unit": "kWh"},
                {"path": ["1-0:1.7.0"], "quantity": "power_w", "unit": "kW"},
            ],
        }
    )
    payload = {"1-0:1.8.0": 1545.38, "1-0:1.7.0": 0.42, "1-0:2.8.0": 5437.974}
    assert _rows(_decode(s, "p1/m1", payload)) == [
        ("m1", NOW_MS, {"energy_wh": 1545380.0, "power_w": 420.0})
    ]


def test_two_paths_for_one_quantity_are_a_config_error_unless_fallbacks() -> None:
    twice = {
        "topic": "x/{meter}",
        "site": "sg1",
        "values": [
            {"path": "import_kwh", "quantity": "energy_wh", "unit": "kWh"},
            {"path": "export_kwh", "quantity": "energy_wh", "unit": "kWh"},
        ],
    }
    with pytest.raises(ConfigError) as err:
        _settings(twice)
    assert "mappings[0]: values[0] and values[1] both map energy_wh" in str(err.value)
    assert "fallbacks" in str(err.value)
    s = _settings(
        {
            "topic": "x/{meter}",
            "site": "sg1",
            "values": [
                {"path": "apower", "fallbacks": ["act_power"], "quantity": "power_w", "unit": "W"}
            ],
        }
    )
    assert _rows(_decode(s, "x/m1", {"act_power": 4})) == [("m1", NOW_MS, {"power_w": 4.0})]
    assert _rows(_decode(s, "x/m1", {"apower": 5, "act_power": 4}))[0][2] == {"power_w": 5.0}


# -- filters and ignores --------------------------------------------------------------------------


def test_when_filters_set_messages_aside_as_ignored_not_rejected() -> None:
    s = _settings(
        {
            "topic": "{device}/events/rpc",
            "site": "sg1",
            "when": {"method": "NotifyStatus"},
            "meter": "m1",
            "values": [{"path": "params.switch:0.apower", "quantity": "power_w", "unit": "W"}],
        }
    )
    event = {"method": "NotifyEvent", "params": {"ts": NOW, "events": [{"event": "btn_down"}]}}
    d = _decode(s, "shelly1/events/rpc", event)
    assert (d.readings, d.rejections) == ([], [])
    assert [r for r, _ in d.ignored] == ["filtered"]
    status = {"method": "NotifyStatus", "params": {"switch:0": {"apower": 8.9}}}
    assert _rows(_decode(s, "shelly1/events/rpc", status)) == [("m1", NOW_MS, {"power_w": 8.9})]


def test_without_values_ignore_sets_other_devices_aside_and_reject_counts_them() -> None:
    base = {"topic": "zigbee2mqtt/{meter}", "site": "sg1", "values": W}
    door = {"contact": True, "battery": 97}
    ignoring = _decode(_settings({**base, "without_values": "ignore"}), "zigbee2mqtt/m1", door)
    assert (ignoring.rejections, [r for r, _ in ignoring.ignored]) == ([], ["not_a_reading"])
    rejecting = _decode(_settings(base), "zigbee2mqtt/m1", door)
    assert [r for r, _ in rejecting.rejections] == ["no_values"] and rejecting.ignored == []


def test_an_ignore_mapping_counts_its_topics_as_ignored() -> None:
    s = _settings(
        {
            "topic": "emon/{node}/P{ch}",
            "site": "sg1",
            "payload": "number",
            "meter": "m1",
            "values": [{"quantity": "power_w", "unit": "W"}],
        },
        {"topic": "emon/{node}/{input}", "site": "sg1", "ignore": True},
    )
    d = _decode(s, "emon/emontx4/Vrms", b"240.1")
    assert (d.readings, d.rejections, [r for r, _ in d.ignored]) == ([], [], ["ignored_topic"])
    assert len(_decode(s, "emon/emontx4/P1", b"1").readings) == 1


def test_every_reason_is_catalogued_and_ignores_are_not_rejections() -> None:
    assert not set(IGNORE_REASONS) & set(REJECTION_REASONS)


def test_mapping_config_errors_name_the_field() -> None:
    cases = [
        (
            {"topic": "x/{node}", "site": "sg1", "meter": "{nod}-1", "values": W},
            "mappings[0]: meter: {nod} is not one of the topic's named segments ({node})",
        ),
        (
            {"topic": "x/{meter}", "site": "sg1", "naive_timezone": "Mars/Base", "values": W},
            "mappings[0].naive_timezone: is neither 'site' nor an IANA time zone",
        ),
        ({"topic": "x/a{b}c{d}", "site": "sg1", "values": W}, "must hold exactly one {name}"),
        (
            {
                "topic": "x/{meter}",
                "site": "sg1",
                "values": W,
                "readings": [{"meter": "a", "values": W}],
            },
            "give either values (with meter) or readings, not both",
        ),
    ]
    for mapping, expected in cases:
        with pytest.raises(ConfigError) as err:
            _settings(mapping)
        assert expected in str(err.value), str(err.value)


def test_a_timestamp_in_the_future_from_a_naive_time_is_refused_with_its_numbers() -> None:
    s = _settings(
        {
            "topic": "t/{meter}",
            "site": "sg1",
            "timestamp_path": "Time",
            "naive_timezone": "UTC",
            "values": W,
        }
    )
    future = datetime.fromtimestamp(NOW + 3600, UTC).replace(tzinfo=None).isoformat()
    d = _decode(s, "t/m1", {"Time": future, "power": 1})
    assert [r for r, _ in d.rejections] == ["timestamp_future"]
    assert "3600 s ahead" in d.rejections[0][1]


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["ENERGY", "Power", "Total", "Time", "a", "0"]), children, max_size=4
        )
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(doc=_json)
def test_any_json_through_a_rich_mapping_is_decided_without_a_decoder_bug(doc: Any) -> None:
    s = _settings(
        {
            "topic": "tele/{device}/SENSOR",
            "site": "sg1",
            "timestamp_path": "Time",
            "naive_timezone": "site",
            "readings": [
                {
                    "meter": "{device}-{number}",
                    "values": [{"path": "ENERGY.Power.*", "quantity": "power_w", "unit": "W"}],
                },
                {
                    "meter": "{device}",
                    "values": [{"path": "ENERGY.Total", "quantity": "energy_wh", "unit": "kWh"}],
                },
            ],
        },
        meters=["plug", "plug-1"],
    )
    d = _decode(s, "tele/plug/SENSOR", doc)
    for reason, detail in d.rejections:
        assert reason in REJECTION_REASONS
        assert not detail.startswith("unexpected "), detail
    assert all(reason in IGNORE_REASONS for reason, _ in d.ignored)


def test_subscriptions_leave_out_filters_another_one_covers() -> None:
    # A broker delivers a message once per matching subscription: overlapping filters would
    # store every reading twice (found with the Tasmota profile through a real Mosquitto).
    s = _settings(
        {"topic": "tele/{device}/SENSOR", "site": "sg1", "meter": "{device}", "values": W},
        {"topic": "tele/{device}/+", "site": "sg1", "ignore": True},
        {"topic": "a/#", "site": "sg1", "ignore": True},
        {"topic": "a/b/{meter}", "site": "sg1", "values": W},
        {"topic": "b/{meter}", "site": "sg1", "values": W},
    )
    assert Decoder(s).subscriptions == ["tele/+/+", "a/#", "b/+"]


def test_the_native_path_says_why_a_timestamp_is_refused() -> None:
    s = _settings({"topic": "greendc/{site}/{meter}"})
    d = _decode(s, "greendc/sg1/m1", {"ts": "2025-11-29T00:00:00", "power_w": 1})
    [(reason, detail)] = d.rejections
    assert reason == "bad_timestamp" and "need an offset" in detail


def test_an_array_where_a_number_belongs_says_how_to_map_it() -> None:
    # A two-channel Tasmota on the one-channel profile: told what to do, not just refused.
    s = _settings({"profile": "tasmota-energy", "site": "sg1"}, meters=["dual"])
    d = _decode(
        s,
        "tele/dual/SENSOR",
        {"Time": "2025-11-29T00:00:00", "ENERGY": {"Total": 1, "Power": [1, 2]}},
    )
    [(reason, detail)] = d.rejections
    assert reason == "non_numeric" and "map every item with '*'" in detail


def test_two_mappings_writing_one_quantity_of_one_meter_are_a_config_error() -> None:
    # The emonTx4 case: P1 and P2 both into the node's meter, alternating.
    number = {"payload": "number", "site": "sg1"}
    with pytest.raises(ConfigError) as err:
        _settings(
            {
                **number,
                "topic": "emon/{meter}/P1",
                "values": [{"quantity": "power_w", "unit": "W"}],
            },
            {
                **number,
                "topic": "emon/{meter}/E1",
                "values": [{"quantity": "energy_wh", "unit": "Wh"}],
            },
            {
                **number,
                "topic": "emon/{node}/P2",
                "meter": "{node}",
                "values": [{"quantity": "power_w", "unit": "W"}],
            },
        )
    assert (
        "mappings[0] (emon/{meter}/P1) and mappings[2] (emon/{node}/P2) both write power_w"
        in str(err.value)
    )
    # One meter per channel is fine, and so are different quantities of one meter.
    _settings(
        {
            **number,
            "topic": "emon/{node}/P{ch}",
            "meter": "{node}-ct{ch}",
            "values": [{"quantity": "power_w", "unit": "W"}],
        },
        {
            **number,
            "topic": "emon/{node}/E{ch}",
            "meter": "{node}-ct{ch}",
            "values": [{"quantity": "energy_wh", "unit": "Wh"}],
        },
    )


def test_two_systems_with_their_own_prefixes_are_not_taken_for_one_device() -> None:
    _settings({"topic": "bms/{site}/{meter}"}, {"topic": "greendc/{site}/{meter}"})
