"""Line protocol: escaping for any input, floats always, and a round trip."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from greendc.lineproto import LineEncoder, escape_tag, format_float, parse_line
from greendc.model import Reading


def test_escapes_commas_spaces_equals_and_backslashes() -> None:
    assert escape_tag('a,b c=d"e\\f') == 'a\\,b\\ c\\=d"e\\\\f'


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", ""])
def test_newlines_and_empty_tags_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        escape_tag(bad)


def test_fields_are_always_floats() -> None:
    enc = LineEncoder()
    r = Reading("sg1", "ups-1", "it", 1_000, {"power_w": 5321, "energy_wh": 1.5e20})
    expected = "greendc_reading,meter=ups-1,role=it,site=sg1 power_w=5321.0,energy_wh=1.5e+20 1000"
    assert enc.line(r) == expected
    assert enc.encode([r, r]) == expected + "\n" + expected  # the fast path agrees
    with pytest.raises(ValueError):
        format_float(float("nan"))


_tag = st.text(
    st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=20,
)


@given(
    site=_tag,
    meter=_tag,
    role=_tag,
    value=st.floats(allow_nan=False, allow_infinity=False),
    ts=st.integers(0, 2**53),
)
def test_round_trip_for_any_tag_text(
    site: str, meter: str, role: str, value: float, ts: int
) -> None:
    r = Reading(site, meter, role, ts, {"power_w": value})
    assert parse_line(LineEncoder().line(r)) == (
        "greendc_reading",
        {"site": site, "meter": meter, "role": role},
        {"power_w": value},
        ts,
    )


@given(
    values=st.lists(
        st.one_of(
            st.floats(allow_nan=False, allow_infinity=False),
            st.integers(-(2**53), 2**53),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_fast_encode_paths_equal_the_reference_and_always_write_floats(
    values: list[float],
) -> None:
    names = ["power_w", "energy_wh", "water_l", "temp_c"]
    r = Reading("sg1", "m", "it", 7, dict(zip(names, values, strict=False)))
    enc = LineEncoder()
    text = enc.encode([r])
    assert text == enc.line(r)  # the 1- and 2-field fast paths agree with the general one
    _m, _t, fields, _ts = parse_line(text)
    assert fields == {k: float(v) for k, v in r.fields.items()}
    assert all("." in part or "e" in part for part in text.split(" ")[1].split(","))
