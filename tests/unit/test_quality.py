"""The quality words: one type for the live path, the report and the EU EED export."""

from __future__ import annotations

import pytest

from greendc.quality import Quality, Shares


def test_the_three_words_and_how_a_figure_gets_one() -> None:
    assert [q.value for q in Quality] == ["ok", "incomplete", "withheld"]
    assert Quality.of(False, 1.0, 0.9) is Quality.WITHHELD  # nothing to compute
    assert Quality.of(True, 0.83, 0.9) is Quality.INCOMPLETE
    assert Quality.of(True, 0.9, 0.9) is Quality.OK  # at the threshold is enough
    assert Quality("incomplete") == "incomplete"  # the word itself, in CSV and JSON


def test_a_sum_is_no_better_than_its_worst_part() -> None:
    assert Quality.worst([]) is Quality.OK
    assert Quality.worst([Quality.OK, Quality.INCOMPLETE]) is Quality.INCOMPLETE
    assert Quality.worst([Quality.INCOMPLETE, Quality.WITHHELD, Quality.OK]) is Quality.WITHHELD


def test_shares_add_up_to_one() -> None:
    s = Shares(measured=0.8, bridged=0.05)
    assert s.covered == pytest.approx(0.85)
    assert s.missing == pytest.approx(0.15)
    assert s.describe() == "measured 80.0%, bridged 5.0%, missing 15.0%"
    assert Shares(0.7, 0.4).missing == 0.0  # never negative
