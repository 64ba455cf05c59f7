"""Process-level settings the collector command applies before it starts."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from greendc.app.cli import GC_YOUNG_THRESHOLD, tune_gc_for_streaming


@pytest.fixture
def gc_restored() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("gc_restored")
def test_collector_freezes_start_up_objects_and_collects_young_ones_less_often() -> None:
    before = gc.get_threshold()
    unfrozen = gc.get_freeze_count()
    tune_gc_for_streaming()
    assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, before[1], before[2])
    assert gc.get_freeze_count() > unfrozen
    # Cycles made after start-up are still found, only less often.
    cycle = _Node()
    cycle.other = cycle
    gone = weakref.ref(cycle)
    del cycle
    gc.collect()
    assert gone() is None


class _Node:
    other: object = None
