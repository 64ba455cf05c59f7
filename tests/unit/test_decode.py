"""The decoder: native and mapped payloads, validation, and hostile input."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from greendc.catalogue import REJECTION_REASONS
from greendc.decode import Decoder, parse_timestamp
from greendc.lineproto import LineEncoder, parse_line
from tests.support.builders import settings_from

NOW = 1_764_374_400.0  # 2025-11-29T00:00:00Z


def make_settings(**overrides: Any) -> Any:
    data: dict[str, Any] = {
        "sites": [
            {
                "name": "sg1",
                "grid_zone": "SG",
                "installed_it_kw": 100,
                "pue_category": 1,
                "meters": [
                    {"name": "ups-1", "role": "it", "point": "ups_output"},
                    {"name": "incomer", "role": "facility"},
                    {"name": "water", "role": "water"},
                ],
            }
        ],
        "mappings": [
            {"topic": "greendc/{site}/{meter}"},
            {"topic": "greendc/{site}"},
            {
                "topic": "plain/{site}/{meter}/power_kw",
                "payload": "number",
                "values": [{"quantity": "power_w", "unit": "kW"}],
            },
            {
                "topic": "vendor/{site}/gw/+",
                "items_path": "points",
                "meter_path": "id",
                "timestamp_path": "gw_ts",
                "timestamp_required": True,
                "values": [
                    {"path": "kW", "quantity": "power_w", "unit": "kW"},
                    {"path": "kWh", "quantity": "energy_wh", "unit": "kWh"},
                ],
            },
        ],
    }
    data.update(overrides)
    return settings_from(data)


@pytest.fixture(scope="module")
def decoder() -> Decoder:
    return Decoder(make_settings())


def dec(d: Decoder, topic: str, payload: Any) -> tuple[list[Any], list[str]]:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    readings, rejections = d.decode(topic, raw, NOW)
    return readings, [r for r, _ in rejections]


def test_native_single_reading(decoder: Decoder) -> None:
    (r,), rej = dec(
        decoder, "greendc/sg1/ups-1", {"ts": NOW - 5, "power_w": 5321, "energy_wh": 1234567.5}
    )
    assert rej == []
    assert (r.site, r.meter, r.role, r.ts_ms) == ("sg1", "ups-1", "it", int((NOW - 5) * 1000))
    assert r.fields == {"power_w": 5321.0, "energy_wh": 1234567.5}
    assert all(type(v) is float for v in r.fields.values())


def test_native_batch_keeps_good_items_and_counts_bad_ones(decoder: Decoder) -> None:
    batch = [
        {"meter": "ups-1", "ts": NOW, "power_w": 10},
        {"meter": "incomer", "ts": "2025-11-29T08:00:00+08:00", "power_w": 20},
        {"meter": "nope", "ts": NOW, "power_w": 1},
        {"meter": "ups-1", "ts": NOW, "power_w": "12"},
        {"ts": NOW, "power_w": 1},
        {"meter": "water", "ts": NOW, "water_l": -3},
        7,
    ]
    readings, rej = dec(decoder, "greendc/sg1", batch)
    assert [(r.meter, r.fields["power_w"]) for r in readings] == [
        ("ups-1", 10.0),
        ("incomer", 20.0),
    ]
    assert readings[1].ts_ms == int(NOW * 1000)  # 08:00+08:00 is 00:00Z
    assert rej == [
        "unknown_meter",
        "non_numeric",
        "missing_meter",
        "negative_counter",
        "bad_structure",
    ]


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("greendc/sg1/ups-1", b"{not json", "malformed_json"),
        ("greendc/sg1/ups-1", b"\xff\xfe", "malformed_json"),
        ("greendc/sg1/ups-1", b"[" * 100_000, "too_deep"),
        # NaN and Infinity are not JSON: strict parsing rejects the whole message
        ("greendc/sg1/ups-1", b'{"power_w": NaN}', "malformed_json"),
        ("greendc/sg1/ups-1", b'{"power_w": Infinity}', "malformed_json"),
        ("greendc/sg1/ups-1", b'{"power_w": 1e999}', "non_finite"),
        ("greendc/sg1/ups-1", b'{"power_w": -1e999}', "non_finite"),
        ("greendc/sg1/ups-1", b'{"power_w": true}', "non_numeric"),
        ("greendc/sg1/ups-1", b'{"power_w": null}', "no_values"),
        ("greendc/sg1/ups-1", b'{"temp": 3}', "no_values"),
        ("greendc/sg1/ups-1", b'"just a string"', "bad_structure"),
        ("greendc/sg1/ups-1", b'{"power_w": 1, "ts": "yesterday"}', "bad_timestamp"),
        ("greendc/sg1/ups-1", b'{"power_w": 1, "ts": "2025-11-29T00:00:00"}', "bad_timestamp"),
        ("greendc/sg1/ups-1", b'{"power_w": 1, "ts": 1e300}', "timestamp_future"),
        (
            "greendc/sg1/ups-1",
            ('{"power_w": 1, "ts": %f}' % (NOW + 3600)).encode(),
            "timestamp_future",
        ),
        (
            "greendc/sg1/ups-1",
            ('{"power_w": 1, "ts": %f}' % (NOW - 30 * 86400)).encode(),
            "timestamp_past",
        ),
        ("greendc/sg1/ghost", b'{"power_w": 1}', "unknown_meter"),
        ("greendc/xx9/ups-1", b'{"power_w": 1}', "unknown_site"),
        ("greendc/sg,1 x=y/ups-1", b'{"power_w": 1}', "bad_identifier"),
        ('greendc/sg1/ups"1', b'{"power_w": 1}', "bad_identifier"),
        ("greendc/sg1/ups\n1", b'{"power_w": 1}', "bad_identifier"),
        ("greendc/sg1/ups-1\n", b'{"power_w": 1}', "bad_identifier"),  # `$` allows one
        ("elsewhere/x", b'{"power_w": 1}', "no_mapping"),
        ("greendc/sg1/ups-1", b" " * 300_000, "payload_too_large"),
        ("plain/sg1/ups-1/power_kw", b"abc", "non_numeric"),
        ("plain/sg1/ups-1/power_kw", b"nan", "non_finite"),
        ("vendor/sg1/gw/7", b'{"points": [{"id": "ups-1", "kW": 1}]}', "bad_timestamp"),
        ("vendor/sg1/gw/7", b'{"points": {"id": "ups-1"}}', "bad_structure"),
    ],
)
def test_rejections_are_counted_by_reason(
    decoder: Decoder, topic: str, payload: bytes, reason: str
) -> None:
    readings, rej = dec(decoder, topic, payload)
    assert readings == []
    assert rej == [reason]
    assert reason in REJECTION_REASONS


def test_tag_characters_in_batch_meter_names_are_rejected(decoder: Decoder) -> None:
    for bad in ["a,b", "a b", "a=b", 'a"b', "a\nb", "ab\n", "", "x" * 65, 12]:
        readings, rej = dec(decoder, "greendc/sg1", [{"meter": bad, "power_w": 1}])
        assert (readings, rej) == ([], ["bad_identifier"]), bad


def test_plain_number_payload_with_unit_conversion(decoder: Decoder) -> None:
    (r,), rej = dec(decoder, "plain/sg1/ups-1/power_kw", b" 412.5\n")
    assert rej == [] and r.fields == {"power_w": 412500.0}
    assert r.ts_ms == int(NOW * 1000)  # stamped on receipt


def test_vendor_gateway_with_outer_timestamp_and_units(decoder: Decoder) -> None:
    payload = {
        "gw_ts": "2025-11-28T23:59:00Z",
        "points": [{"id": "ups-1", "kW": 1.5, "kWh": 2000.25}, {"id": "incomer", "kW": 2}],
    }
    readings, rej = dec(decoder, "vendor/sg1/gw/7", payload)
    assert rej == []
    assert [(r.meter, r.fields) for r in readings] == [
        ("ups-1", {"power_w": 1500.0, "energy_wh": 2000250.0}),
        ("incomer", {"power_w": 2000.0}),
    ]
    assert {r.ts_ms for r in readings} == {int((NOW - 60) * 1000)}


def test_unknown_meters_accepted_when_configured_and_capped() -> None:
    s = make_settings(validation={"unknown_meters": "accept", "max_meters": 5})
    d = Decoder(s)
    accepted = 0
    rejected = []
    for i in range(10):
        readings, rej = d.decode(f"greendc/sg1/new-{i}", b'{"power_w": 1}', NOW)
        accepted += len(readings)
        rejected += [r for r, _ in rej]
    assert accepted == 2  # 3 configured + 2 new = cap of 5
    assert rejected == ["series_cap"] * 8
    readings, _ = d.decode("greendc/sg1/new-0", b'{"power_w": 1}', NOW)
    assert readings[0].role == "unknown"  # already admitted: still accepted


@pytest.mark.parametrize("fast_path", [True, False])
@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("greendc/sg1/ups-1", {"ts": -5.0, "power_w": 1.0}),
        ("greendc/sg1/ups-1", {"ts": -5, "power_w": 1.0}),
        ("greendc/sg1/ups-1", {"ts": -1_000_000_000_000, "power_w": 1.0}),  # ms before 1970
        ("greendc/sg1/ups-1", {"ts": "1969-12-31T23:59:00Z", "power_w": 1.0}),
        ("greendc/sg1", [{"meter": "ups-1", "ts": -60.0, "power_w": 1.0}]),
        ("vendor/sg1/gw/1", {"gw_ts": -60, "points": [{"id": "ups-1", "kW": 1.0}]}),
    ],
)
def test_timestamps_before_1970_are_refused_on_every_path(
    fast_path: bool, topic: str, payload: Any
) -> None:
    # A window reaching back past 1970 must not let a negative timestamp through.
    d = Decoder(make_settings(validation={"max_past_seconds": 1e12}), fast_path=fast_path)
    readings, reasons = dec(d, topic, payload)
    assert readings == []
    assert reasons and set(reasons) <= {"timestamp_past", "bad_timestamp"}
    # The same reading now is accepted: the refusal is about the timestamp alone.
    ok, _ = dec(d, "greendc/sg1/ups-1", {"ts": NOW, "power_w": 1.0})
    assert len(ok) == 1


def test_millisecond_timestamps_and_rfc3339() -> None:
    assert parse_timestamp(1_764_374_400_123) == pytest.approx(1_764_374_400.123)
    assert parse_timestamp("2025-11-29T00:00:00Z") == NOW
    with pytest.raises(ValueError):
        parse_timestamp(True)


# --- property-based: no input escapes, every output is valid and round-trips ---------------

_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
_json = st.recursive(
    _json_leaf,
    lambda kids: (
        st.lists(kids, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "meter",
                    "ts",
                    "power_w",
                    "energy_wh",
                    "water_l",
                    "temp_c",
                    "x",
                    "points",
                    "id",
                    "kW",
                    "kWh",
                    "gw_ts",
                ]
            ),
            kids,
            max_size=6,
        )
    ),
    max_leaves=20,
)
_segment = st.one_of(
    st.sampled_from(
        ["sg1", "ups-1", "incomer", "water", "greendc", "plain", "vendor", "gw", "power_kw"]
    ),
    st.text(max_size=8),
)
_topic = st.lists(_segment, min_size=1, max_size=5).map("/".join)


@settings(max_examples=400, deadline=None)
@given(topic=_topic, doc=_json, raw=st.binary(max_size=64), use_raw=st.booleans())
def test_fuzz_decoder_never_raises_and_outputs_are_valid(
    decoder: Decoder, topic: str, doc: Any, raw: bytes, use_raw: bool
) -> None:
    payload = raw if use_raw else json.dumps(doc).encode()  # may hold NaN: must be refused
    readings, rejections = decoder.decode(topic, payload, NOW)
    for reason, detail in rejections:
        assert reason in REJECTION_REASONS and isinstance(detail, str)
    enc = LineEncoder()
    for r in readings:
        assert r.fields and all(math.isfinite(v) and type(v) is float for v in r.fields.values())
        assert NOW * 1000 - 7 * 86400 * 1000 <= r.ts_ms <= NOW * 1000 + 300_000
        measurement, tags, fields, ts = parse_line(enc.encode([r]))
        assert (measurement, tags, fields, ts) == (
            "greendc_reading",
            {"site": r.site, "meter": r.meter, "role": r.role},
            r.fields,
            r.ts_ms,
        )


@settings(max_examples=200, deadline=None)
@given(
    items=st.lists(
        st.fixed_dictionaries(
            {
                "meter": st.sampled_from(["ups-1", "incomer", "ghost"]),
                "power_w": st.one_of(
                    st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=3),
                    st.booleans(),
                    st.integers(-(2**60), 2**60),
                ),
            }
        ),
        max_size=20,
    )
)
def test_batch_accounting_every_item_is_a_reading_or_a_rejection(
    decoder: Decoder, items: list[dict[str, Any]]
) -> None:
    readings, rejections = decoder.decode("greendc/sg1", json.dumps(items).encode(), NOW)
    assert len(readings) + len(rejections) == len(items)


def test_site_partitioned_subscriptions() -> None:
    s = make_settings()
    d = Decoder(s)
    assert d.site_subscriptions() == [
        "greendc/sg1/+",
        "greendc/sg1",
        "plain/sg1/+/power_kw",
        "vendor/sg1/gw/+",
    ]


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("vendor/sg1/gw/7", b'{"gw_ts": 1764374400, "points": [{"id": "ups-1", "kWh": 1e306}]}'),
        ("plain/sg1/ups-1/power_kw", b"1e306"),
    ],
)
def test_values_beyond_float_range_after_unit_conversion_are_non_finite(
    decoder: Decoder, topic: str, payload: bytes
) -> None:
    readings, rej = dec(decoder, topic, payload)
    assert readings == []
    assert rej == ["non_finite"]


_ts_value = st.one_of(
    st.none(),
    st.integers(int(NOW) - 8 * 86400, int(NOW) + 400),
    st.floats(NOW - 8 * 86400, NOW + 400),
    st.sampled_from([int(NOW * 1000), NOW * 1000, "2025-11-29T00:00:00Z", "2025-11-29", True]),
    st.floats(),
    st.integers(),
)
_number = st.one_of(
    st.floats(),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([0, -1, -0.0, 1e306, -1e306, True, "5", None]),
)
_valid_number = st.one_of(
    st.floats(0, 1e6), st.integers(0, 10**6), st.floats(allow_nan=False, allow_infinity=False)
)
_valid_ts = st.one_of(
    st.integers(int(NOW) - 86400, int(NOW)), st.floats(NOW - 86400, NOW + 60), st.none()
)
_likely_valid_item = st.fixed_dictionaries(
    {"meter": st.sampled_from(["ups-1", "incomer", "water"]), "id": st.just("ups-1")},
    optional={
        "ts": _valid_ts,
        "gw_ts": _valid_ts,
        "power_w": _valid_number,
        "energy_wh": _valid_number,
        "temp_c": _valid_number,
        "kW": _valid_number,
        "kWh": _valid_number,
    },
)
_item = st.one_of(
    _likely_valid_item,
    st.fixed_dictionaries(
        {},
        optional={
            "meter": st.one_of(
                st.sampled_from(["ups-1", "incomer", "water", "ghost", "bad id", ""]),
                st.integers(),
                st.lists(st.integers(), max_size=1),
            ),
            "id": st.sampled_from(["ups-1", "incomer", "ghost"]),
            "ts": _ts_value,
            "gw_ts": _ts_value,
            "power_w": _number,
            "energy_wh": _number,
            "water_l": _number,
            "temp_c": _number,
            "kW": _number,
            "kWh": _number,
        },
    ),
    st.integers(),
    st.none(),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=500, deadline=None)
@given(
    topic=st.sampled_from(
        ["greendc/sg1", "greendc/sg1/ups-1", "greendc/sg1/ghost", "vendor/sg1/gw/1"]
    ),
    items=st.lists(_item, max_size=8),
    outer_ts=_ts_value,
    single=st.booleans(),
    accept_unknown=st.booleans(),
)
def test_fast_path_decides_every_item_as_the_general_path_does(
    topic: str, items: list[Any], outer_ts: Any, single: bool, accept_unknown: bool
) -> None:
    # The written-out loop of plain mappings must be an optimisation only: same readings,
    # same rejections (reason and detail), same order, same unknown meters admitted.
    validation = {"unknown_meters": "accept" if accept_unknown else "reject"}
    s = make_settings(validation=validation)
    fast, general = Decoder(s), Decoder(s, fast_path=False)
    if topic.startswith("vendor"):
        doc: Any = {"points": items}
        if outer_ts is not None:
            doc["gw_ts"] = outer_ts
    else:
        doc = items[0] if single and items else items
    payload = json.dumps(doc).encode()
    # A third decoder: each keeps per-meter arrival stamps, so the two compared see the same calls.
    event("readings" if Decoder(s).decode(topic, payload, NOW)[0] else "no readings")
    for _ in range(2):  # twice: the second pass sees the meters the first one admitted
        assert fast.decode(topic, payload, NOW) == general.decode(topic, payload, NOW)


def test_fast_path_is_taken_for_plain_mappings_and_gives_exact_values(decoder: Decoder) -> None:
    payload = (
        b'{"gw_ts": 1764374000, "points": [{"id": "ups-1", "kW": 2, "kWh": 1.5},'
        b' {"id": "incomer", "kW": 3.25, "gw_ts": 1764374001.0004}]}'
    )
    readings, rejections = decoder.decode("vendor/sg1/gw/1", payload, NOW)
    assert rejections == []
    assert [(r.meter, r.role, r.ts_ms, r.fields) for r in readings] == [
        ("ups-1", "it", 1764374000000, {"power_w": 2000.0, "energy_wh": 1500.0}),
        ("incomer", "facility", 1764374001000, {"power_w": 3250.0}),
    ]
    assert all(type(v) is float for r in readings for v in r.fields.values())


def test_a_numbered_meter_path_keeps_non_objects_on_the_general_path() -> None:
    # meter_path "0" reads item[0]: a list item would index, not fail, so such mappings
    # are not written out and non-objects get their own rejection, not the whole message's.
    s = make_settings(mappings=[{"topic": "idx/{site}", "meter_path": "0"}])
    payload = json.dumps([["incomer"], [], {"power_w": 1.0}]).encode()
    fast, general = Decoder(s), Decoder(s, fast_path=False)
    assert fast.decode("idx/sg1", payload, NOW) == general.decode("idx/sg1", payload, NOW)
    assert [reason for reason, _ in fast.decode("idx/sg1", payload, NOW)[1]] == [
        "bad_structure",
        "bad_structure",
        "missing_meter",
    ]


# -- arrival stamps (issue 24, point 4) ---------------------------------------------------------


def test_arrival_stamps_of_one_meter_never_collide_and_keep_arrival_order() -> None:
    # A persistent session's backlog arrives hundreds of messages per millisecond: stamped
    # on arrival with the same clock reading, they must still be distinct points, in order.
    d = Decoder(make_settings())
    stamps = []
    for i in range(1000):
        readings, rejections = d.decode("greendc/sg1/ups-1", b'{"power_w": %d}' % i, NOW)
        assert rejections == []
        stamps.append((readings[0].ts_ms, readings[0].fields["power_w"]))
    assert [ts for ts, _ in stamps] == [int(NOW * 1000) + i for i in range(1000)]
    assert [p for _, p in stamps] == [float(i) for i in range(1000)]
    # Another meter is not pushed along by the first one's backlog.
    other, _ = d.decode("greendc/sg1/incomer", b'{"power_w": 1}', NOW)
    assert other[0].ts_ms == int(NOW * 1000)
    # Once the clock passes the nudged stamps, it is the clock again.
    later, _ = d.decode("greendc/sg1/ups-1", b'{"power_w": 1}', NOW + 5)
    assert later[0].ts_ms == int((NOW + 5) * 1000)


def test_arrival_stamps_apply_to_batches_and_plain_numbers_but_never_move_a_device_time() -> None:
    d = Decoder(make_settings())
    batch = [{"meter": "ups-1", "power_w": 1}, {"meter": "ups-1", "power_w": 2}]
    readings, _ = d.decode("greendc/sg1", json.dumps(batch).encode(), NOW)
    assert [r.ts_ms for r in readings] == [int(NOW * 1000), int(NOW * 1000) + 1]
    plain = [d.decode("plain/sg1/ups-1/power_kw", b"1.5", NOW)[0][0] for _ in range(2)]
    assert [r.ts_ms for r in plain] == [int(NOW * 1000) + 2, int(NOW * 1000) + 3]
    # A device's own timestamp is stored as sent, even when it repeats.
    stamped = [
        d.decode("greendc/sg1/ups-1", json.dumps({"ts": NOW, "power_w": 3}).encode(), NOW)[0][0]
        for _ in range(2)
    ]
    assert [r.ts_ms for r in stamped] == [int(NOW * 1000)] * 2
