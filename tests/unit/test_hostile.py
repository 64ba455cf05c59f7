"""Hostile input: what an attacker on the broker network can put in a topic or a payload.

tests/unit/test_decode.py fuzzes the decoder's native mappings; this module adds what it
does not cover: arbitrary topic text in the {site}/{meter} segments with unknown meters
accepted (the most permissive configuration), values that reach the Prometheus exporter and
the line protocol as labels and tags, the series cap, and payloads built to make decoding
slow or large (huge arrays, deep nesting, long strings and numbers). Time is never measured:
each bound shows up as a rejection reason or a count.
"""

from __future__ import annotations

import json
import math
import re
import tracemalloc
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from greendc.catalogue import REJECTION_REASONS
from greendc.config import IDENT_RE
from greendc.decode import Decoder
from greendc.exporters.prometheus import SnapshotCollector
from greendc.lineproto import LineEncoder, escape_tag, parse_line
from greendc.model import Reading
from greendc.snapshot import MeterState, Snapshot
from tests.helpers import idle_health, site_config
from tests.support.builders import settings_from

NOW = 1_764_374_400.0
IDENT = re.compile(IDENT_RE)
MAX_METERS = 8
MAX_ITEMS = 50
MAX_BYTES = 64 * 1024


def _settings(**validation: Any) -> Any:
    return settings_from(
        {
            "sites": [
                site_config("sg1", meters=[{"name": "ups-1", "role": "it", "point": "ups_output"}]),
                site_config(
                    "x.y:z-1", installed_it_kw=1, meters=[{"name": "m", "role": "facility"}]
                ),
            ],
            "mappings": [{"topic": "greendc/{site}/{meter}"}, {"topic": "greendc/{site}"}],
            "validation": {
                "unknown_meters": "accept",
                "max_meters": MAX_METERS,
                "max_readings_per_message": MAX_ITEMS,
                "max_payload_bytes": MAX_BYTES,
                **validation,
            },
        }
    )


def _decoder() -> Decoder:
    return Decoder(_settings())


def _exposed_meters(meters: list[MeterState]) -> dict[tuple[str, str, str], float]:
    """Render meters through the exporter and parse the text back: labels -> power."""
    snap = Snapshot(taken_at_s=NOW, meters=tuple(meters), sites=(), health=idle_health())
    text = SnapshotCollector(lambda: snap).exposition().decode("utf-8")
    out: dict[tuple[str, str, str], float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "greendc_meter_power_watts":
                key = (s.labels["site"], s.labels["meter"], s.labels["role"])
                assert key not in out, f"two samples for {key}"
                assert set(s.labels) == {"site", "meter", "role"}
                out[key] = s.value
    return out


def _assert_line_round_trip(r: Reading) -> None:
    line = LineEncoder().line(r)
    assert "\n" not in line
    assert parse_line(line) == (
        "greendc_reading",
        {"site": r.site, "meter": r.meter, "role": r.role},
        r.fields,
        r.ts_ms,
    )


# -- numbers beyond the float range ----------------------------------------------------------


@pytest.mark.parametrize("number", ["1" + "0" * 400, "1e400", "-1e400", "9" * 5000])
def test_number_beyond_float_range_is_a_counted_non_finite_rejection(number: str) -> None:
    payload = f'[{{"meter": "ups-1", "power_w": 5}}, {{"meter": "ups-1", "power_w": {number}}}]'
    readings, rejections = _decoder().decode("greendc/sg1", payload.encode(), NOW)
    # Judged item by item (the good item kept) or, when the parser refuses the whole
    # document, the message as a whole: either way one rejection with the right reason.
    assert [r.fields for r in readings] in ([{"power_w": 5.0}], [])
    assert [reason for reason, _ in rejections] in (["non_finite"], ["malformed_json"])
    assert number.startswith("9") or [reason for reason, _ in rejections] == ["non_finite"]


# -- arbitrary topics and payloads ------------------------------------------------------------

_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=20)
_segment = st.one_of(
    st.sampled_from(
        [
            "greendc",
            "sg1",
            "ups-1",
            "x.y:z-1",
            "new-meter",
            "a=b",
            "a,b",
            "a b",
            'a"b',
            "a\\",
            "+",
            "#",
            "",
            "a\nb",
            "é",
        ]
    ),
    _text,
)
_topic = st.one_of(
    st.tuples(st.just("greendc"), _segment, _segment).map("/".join),
    st.tuples(st.just("greendc"), _segment).map("/".join),
    st.lists(_segment, max_size=5).map("/".join),
)
_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**400), 10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    _text,
)
_doc = st.recursive(
    _leaf,
    lambda kids: (
        st.lists(kids, max_size=4)
        | st.dictionaries(
            st.one_of(
                st.sampled_from(["meter", "ts", "power_w", "energy_wh", "water_l", "temp_c"]), _text
            ),
            kids,
            max_size=5,
        )
    ),
    max_leaves=16,
)


@settings(max_examples=500, deadline=None)
@given(topic=_topic, doc=_doc, raw=st.binary(max_size=80), use_raw=st.booleans())
def test_any_topic_and_payload_gives_valid_readings_or_counted_rejections(
    topic: str, doc: Any, raw: bytes, use_raw: bool
) -> None:
    d = _decoder()
    payload = raw if use_raw else json.dumps(doc).encode()
    readings, rejections = d.decode(topic, payload, NOW)
    empty_batch = payload.strip() == b"[]"  # no items: nothing to accept or reject
    assert readings or rejections or empty_batch, "a message must be accepted or rejected"
    for reason, detail in rejections:
        assert reason in REJECTION_REASONS
        assert isinstance(detail, str) and len(detail) < 1000
    for r in readings:
        assert IDENT.fullmatch(r.site) and IDENT.fullmatch(r.meter), r
        assert r.fields and all(type(v) is float and math.isfinite(v) for v in r.fields.values())
        _assert_line_round_trip(r)
    # What reached the live state is exported under exactly the same labels.
    states = {(r.site, r.meter, r.role): r.fields.get("power_w", 0.0) for r in readings}
    exposed = _exposed_meters(
        [MeterState(s, m, role, NOW, p) for (s, m, role), p in states.items()]
    )
    assert exposed == states


@settings(max_examples=300, deadline=None)
@given(meters=st.lists(st.one_of(_text, st.integers(), st.none()), max_size=MAX_ITEMS))
def test_json_meter_names_cannot_become_tags_unescaped(meters: list[Any]) -> None:
    d = _decoder()
    items = [{"meter": m, "power_w": 1.0, "ts": NOW} for m in meters]
    readings, rejections = d.decode("greendc/sg1", json.dumps(items).encode(), NOW)
    assert len(readings) + len(rejections) == len(items)
    for r in readings:
        assert IDENT.fullmatch(r.meter)
        _assert_line_round_trip(r)
    ok = [m for m in meters if isinstance(m, str) and IDENT.fullmatch(m)]
    bad = len(meters) - len(ok)
    assert sum(reason in ("bad_identifier", "missing_meter") for reason, _ in rejections) == bad


# -- the exporter and the line protocol escape anything that gets through ------------------


@settings(max_examples=300, deadline=None)
@given(
    labels=st.lists(st.tuples(_text, _text, _text), max_size=6, unique=True),
    power=st.floats(allow_nan=False, allow_infinity=False),
)
def test_prometheus_labels_round_trip_whatever_the_text(
    labels: list[tuple[str, str, str]], power: float
) -> None:
    meters = [MeterState(s, m, r, NOW, power) for s, m, r in labels]
    assert _exposed_meters(meters) == {key: power for key in labels}


@settings(max_examples=300, deadline=None)
@given(site=_text, meter=_text, role=_text)
def test_line_protocol_tags_round_trip_or_are_refused(site: str, meter: str, role: str) -> None:
    r = Reading(site, meter, role, 1, {"power_w": 1.5})
    if any(not t or "\n" in t or "\r" in t for t in (site, meter, role)):
        with pytest.raises(ValueError):
            LineEncoder().line(r)
        return
    _assert_line_round_trip(r)


def test_tag_escapes_cover_every_separator() -> None:
    assert escape_tag("a b,c=d\\") == "a\\ b\\,c\\=d\\\\"


# -- unbounded series ---------------------------------------------------------------------------


def test_series_cap_bounds_new_meters_from_topics_and_payloads() -> None:
    d = _decoder()
    accepted: set[tuple[str, str]] = set()
    refused = 0
    for i in range(200):
        topic, body = (
            (f"greendc/sg1/m-{i}", b'{"power_w": 1}')
            if i % 2
            else ("greendc/sg1", json.dumps([{"meter": f"b-{i}", "power_w": 1}]).encode())
        )
        readings, rejections = d.decode(topic, body, NOW)
        accepted |= {(r.site, r.meter) for r in readings}
        refused += sum(reason == "series_cap" for reason, _ in rejections)
    configured = 2  # sg1/ups-1 and x.y:z-1/m count against the cap
    assert len(accepted) == MAX_METERS - configured
    assert refused == 200 - len(accepted)


# -- decoding effort is bounded -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        # More items than max_readings_per_message: one rejection, no per-item work.
        (json.dumps([{"meter": "ups-1", "power_w": 1}] * (MAX_ITEMS + 1)), "too_many_readings"),
        # Nesting beyond the parser's recursion limit, well inside the size limit.
        ('{"a":' * 10_000 + "1" + "}" * 10_000, "too_deep"),
        ('{"power_w": ' + "[" * 20_000 + "]" * 20_000 + "}", "too_deep"),
        # Over the byte limit: refused before parsing.
        ('{"power_w": 1, "pad": "' + "x" * MAX_BYTES + '"}', "payload_too_large"),
        # A long string where a meter name belongs.
        (json.dumps([{"meter": "m" * 60_000, "power_w": 1}]), "bad_identifier"),
    ],
)
def test_expensive_payloads_end_in_one_bounded_rejection(payload: str, reason: str) -> None:
    topic = "greendc/sg1" if payload.startswith("[") else "greendc/sg1/ups-1"
    readings, rejections = _decoder().decode(topic, payload.encode(), NOW)
    assert readings == []
    assert [r for r, _ in rejections] == [reason]
    assert len(rejections[0][1]) <= 300  # details are truncated, never the whole payload


def test_a_full_batch_of_bad_items_gives_one_rejection_each_and_no_more() -> None:
    items = [{"meter": "ups-1", "power_w": "x" * 1000}] * MAX_ITEMS
    readings, rejections = _decoder().decode("greendc/sg1", json.dumps(items).encode(), NOW)
    assert readings == [] and len(rejections) == MAX_ITEMS
    assert {r for r, _ in rejections} == {"non_numeric"}
    assert max(len(d) for _, d in rejections) <= 300


def test_long_topics_are_rejected_with_short_details() -> None:
    d = _decoder()
    for topic in ("greendc/" + "s" * 70_000 + "/ups-1", "x/" * 30_000, "greendc/sg1/" + "m" * 70):
        readings, rejections = d.decode(topic, b'{"power_w": 1}', NOW)
        assert readings == []
        assert len(rejections) == 1
        assert rejections[0][0] in ("bad_identifier", "no_mapping", "topic_too_long")
        assert len(rejections[0][1]) <= 300


def test_rejected_topics_leave_nothing_behind() -> None:
    """A gateway cycling through distinct topics, 60 KB ones or short ones for sites that do
    not exist, must not grow the decoder: rejections are never cached. (Before, 30,000
    60 KB topics grew the collector from 43 MB to 3.65 GB.)"""
    d = _decoder()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(2_000):
            _, rej = d.decode(f"greendc/sg1/{i}" + "m" * 60_000, b'{"power_w": 1}', NOW)
            assert rej[0][0] == "topic_too_long"
        for i in range(10_000):
            _, rej = d.decode(f"greendc/nosite{i}/ups-1", b'{"power_w": 1}', NOW)
            assert rej[0][0] == "unknown_site"
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # Cached, the long topics alone would hold 120 MB and the short ones about 2.5 MB.
    assert grown < 1_000_000, f"the decoder grew by {grown:,} bytes"
