"""The spool and the pipeline: order, bounds, outages, slow sinks, nothing lost silently."""

from __future__ import annotations

import gc
import threading
import time
from pathlib import Path

import pytest

from greendc._errors import SinkError, SinkUnavailable
from greendc.collector.pipeline import Batch, Pipeline, SinkWorker
from greendc.collector.spool import Spool
from greendc.lineproto import LineEncoder, Lines, Payload, parse_line
from greendc.model import Reading


def readings(start: int, n: int) -> list[Reading]:
    return [Reading("sg1", "m", "it", start + i, {"power_w": float(i)}) for i in range(n)]


def _reading(parsed: tuple[str, dict[str, str], dict[str, float], int]) -> Reading:
    _measurement, tags, fields, ts_ms = parsed
    return Reading(tags["site"], tags["meter"], tags["role"], ts_ms, fields)


def wait_until(pred, timeout_s: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return bool(pred())


class MemorySink:
    """A sink test double that can be switched off, slowed down or made to refuse.

    With ``lines=True`` it takes line protocol, as the InfluxDB sinks do, and parses what
    it is given back into readings; ``kinds`` records the form of each batch.
    """

    def __init__(self, name: str = "mem", *, lines: bool = False) -> None:
        self.name = name
        self.accepts_lines = lines
        self.kinds: list[str] = []
        self.rows: list[Reading] = []
        self.up = True
        self.refuse = False
        self.delay_s = 0.0
        self.gate = threading.Event()
        self.gate.set()
        self.closed = False

    def write(self, batch: Payload) -> None:
        self.gate.wait()
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.refuse:
            raise SinkError(self.name, "HTTP 400 bad batch")
        if not self.up:
            raise SinkUnavailable(self.name, "connection refused")
        self.kinds.append(type(batch).__name__)
        if isinstance(batch, Lines):
            assert self.accepts_lines
            assert batch.count == len(batch.text.split("\n"))
            batch = [_reading(parse_line(line)) for line in batch.text.split("\n")]
        self.rows.extend(batch)

    def close(self) -> None:
        self.closed = True


def test_spool_is_ordered_bounded_and_survives_reopen(tmp_path: Path) -> None:
    sp = Spool(tmp_path / "s", max_bytes=4000)
    assert sp.put(readings(0, 3)) is not None
    assert sp.put(readings(100, 3)) is not None
    while sp.put(readings(200, 3)) is not None:
        pass
    assert sp.bytes <= 4000
    again = Spool(tmp_path / "s", max_bytes=4000)
    assert again.batches == sp.batches and again.bytes == sp.bytes
    peeked = again.peek()
    assert peeked is not None
    path, batch = peeked
    assert [r.ts_ms for r in batch] == [0, 1, 2]
    again.remove(path)
    peeked = again.peek()
    assert peeked is not None and [r.ts_ms for r in peeked[1]] == [100, 101, 102]


@pytest.mark.parametrize("lines", [False, True])
def test_outage_spools_then_replays_everything_in_order(tmp_path: Path, lines: bool) -> None:
    # With ``lines`` the sink takes line protocol, as the InfluxDB sinks do: batches are
    # queued, spooled (.lp) and replayed as that text, and come back with tags and fields.
    sink = MemorySink(lines=lines)
    w = SinkWorker(sink, Spool(tmp_path, 10**7), max_queue_batches=4)
    p = Pipeline([w], batch_size=10, flush_interval_s=0.05)
    p.start()
    p.add(readings(0, 10))
    assert wait_until(lambda: len(sink.rows) == 10)
    sink.up = False
    for k in range(1, 6):
        p.add(readings(k * 10, 10))
    assert wait_until(lambda: w.spool.batches >= 5 and w.stats.failures >= 1)
    assert w.stats.dropped == 0
    assert {f.suffix for f in tmp_path.iterdir() if f.is_file()} == {".lp" if lines else ".jsonl"}
    sink.up = True
    assert wait_until(lambda: len(sink.rows) == 60 and w.spool.batches == 0, 20)
    assert sink.rows == [r for k in range(6) for r in readings(k * 10, 10)]
    assert set(sink.kinds) == {"Lines" if lines else "list"}
    assert w.stats.written == 60
    p.stop(5)
    assert sink.closed


def test_slow_sink_does_not_block_other_sinks_or_the_producer(tmp_path: Path) -> None:
    slow, fast = MemorySink("slow"), MemorySink("fast")
    slow.gate.clear()  # the slow sink hangs until released
    ws = SinkWorker(slow, Spool(tmp_path / "slow", 10**7), max_queue_batches=2)
    wf = SinkWorker(fast, Spool(tmp_path / "fast", 10**7), max_queue_batches=2)
    p = Pipeline([ws, wf], batch_size=5, flush_interval_s=10)
    p.start()
    t0 = time.monotonic()
    for k in range(20):
        p.add(readings(k * 5, 5))
    assert time.monotonic() - t0 < 5  # generous: only proves add() never waited on the hung sink
    assert wait_until(lambda: len(fast.rows) == 100)
    assert ws.spool.batches >= 1  # overflow went to disk, not to memory
    slow.gate.set()
    assert wait_until(lambda: len(slow.rows) == 100, 20)
    assert sorted(r.ts_ms for r in slow.rows) == list(range(100))
    p.stop(5)


def test_full_spool_drops_are_counted_never_silent(tmp_path: Path) -> None:
    sink = MemorySink()
    sink.up = False
    w = SinkWorker(sink, Spool(tmp_path, max_bytes=2000), max_queue_batches=1)
    p = Pipeline([w], batch_size=10, flush_interval_s=10)
    p.start()
    for k in range(30):
        p.add(readings(k * 10, 10))
    p.stop(1)
    held = 0
    sp = Spool(tmp_path, max_bytes=2000)
    while (peeked := sp.peek()) is not None:
        held += len(peeked[1])
        sp.remove(peeked[0])
    assert w.stats.dropped > 0
    assert held + w.stats.dropped == 300


def test_refused_batch_is_set_aside_and_counted(tmp_path: Path) -> None:
    sink = MemorySink()
    sink.refuse = True
    w = SinkWorker(sink, Spool(tmp_path, 10**7), max_queue_batches=4)
    p = Pipeline([w], batch_size=10, flush_interval_s=10)
    p.start()
    p.add(readings(0, 10))
    assert wait_until(lambda: w.stats.dropped == 10)
    assert len(list((tmp_path / "rejected").glob("*.jsonl"))) == 1
    p.stop(1)


def test_stop_flushes_pending_readings(tmp_path: Path) -> None:
    sink = MemorySink()
    w = SinkWorker(sink, Spool(tmp_path, 10**7), max_queue_batches=4)
    p = Pipeline([w], batch_size=1000, flush_interval_s=60)
    p.start()
    p.add(readings(0, 7))
    p.stop(5)
    assert len(sink.rows) == 7


def test_stop_during_outage_spools_instead_of_losing(tmp_path: Path) -> None:
    sink = MemorySink()
    sink.up = False
    w = SinkWorker(sink, Spool(tmp_path, 10**7), max_queue_batches=4)
    p = Pipeline([w], batch_size=1000, flush_interval_s=60)
    p.start()
    p.add(readings(0, 7))
    p.stop(2)
    sp = Spool(tmp_path, 10**7)
    peeked = sp.peek()
    assert peeked is not None and len(peeked[1]) == 7


def test_acknowledgements_wait_until_every_sink_holds_the_batch(tmp_path: Path) -> None:
    ok, down = MemorySink("ok"), MemorySink("down")
    ok.gate.clear()  # hold the first sink mid-write
    down.up = False
    w1 = SinkWorker(ok, Spool(tmp_path / "ok", 10**7), max_queue_batches=4)
    w2 = SinkWorker(down, Spool(tmp_path / "down", 10**7), max_queue_batches=4)
    p = Pipeline([w1, w2], batch_size=1000, flush_interval_s=60, max_tokens=3)
    acked: list[object] = []
    p.on_settled = acked.extend
    p.start()
    p.add(readings(0, 2), "m1")
    p.add([], "m2")  # a fully rejected message still needs its ack
    assert acked == []
    p.add(readings(2, 2), "m3")  # third token: flush now, not at the timer
    assert wait_until(lambda: w2.spool.batches == 1)  # the dead sink spooled it durably
    assert acked == []  # ...but the first sink has not stored it yet
    ok.gate.set()
    assert wait_until(lambda: acked == ["m1", "m2", "m3"])
    p.stop(2)


class CyclicFailureSink:
    """Fails as an HTTP client does: the exception keeps its frame, and the batch, in a cycle."""

    name = "cyclic"
    accepts_lines = False

    def __init__(self) -> None:
        self.attempts = 0

    def write(self, batch: list[Reading]) -> None:
        self.attempts += 1
        try:
            raise OSError("connection refused")
        except OSError as exc:
            kept = exc  # frame -> kept -> traceback -> frame: reachable only by a cycle
            raise SinkUnavailable(self.name, "connection refused") from kept

    def close(self) -> None:
        pass


def test_failed_batches_are_not_kept_alive_by_their_errors_during_an_outage(
    tmp_path: Path,
) -> None:
    # `greendc collect` makes automatic cycle collection rare; with it off altogether, the
    # batches of failed attempts must still be freed (memory flat through an outage).
    enabled = gc.isenabled()
    gc.disable()
    sink = CyclicFailureSink()
    worker = SinkWorker(sink, Spool(tmp_path / "s", max_bytes=10_000_000), max_queue_batches=4)
    try:
        worker.start()
        worker.submit(
            Batch(
                [Reading("probe", "m", "it", i, {"power_w": 1.0}) for i in range(500)], [], 1, None
            )
        )
        assert wait_until(lambda: sink.attempts >= 3, timeout_s=15)
        time.sleep(0.1)  # the worker is waiting to retry: no attempt is in progress
        alive = sum(1 for o in gc.get_objects() if type(o) is Reading and o.site == "probe")
        assert alive == 0, f"{alive} readings of failed attempts still in memory"
    finally:
        worker.stop(time.monotonic() + 5)
        if enabled:
            gc.enable()


# -- batches as line protocol (every sink takes it: the InfluxDB sinks) -----------------------


def test_one_sink_that_needs_readings_keeps_the_batch_as_readings(tmp_path: Path) -> None:
    lines, plain = MemorySink("lines", lines=True), MemorySink("plain")
    ws = [SinkWorker(s, Spool(tmp_path / s.name, 10**7), 4) for s in (lines, plain)]
    p = Pipeline(ws, batch_size=5, flush_interval_s=10)
    p.start()
    p.add(readings(0, 5))
    assert wait_until(lambda: len(lines.rows) == len(plain.rows) == 5)
    p.stop(5)
    assert lines.kinds == plain.kinds == ["list"]
    assert lines.rows == plain.rows == readings(0, 5)


def test_queued_line_batches_hold_no_reading_objects(tmp_path: Path) -> None:
    # The point of encoding as readings arrive: a burst waiting for a slow sink is held as
    # text (about 100 bytes a reading), not as reading objects (about 400).
    sink = MemorySink(lines=True)
    sink.gate.clear()  # the sink hangs: batches wait in its queue
    w = SinkWorker(sink, Spool(tmp_path, 10**7), max_queue_batches=8)
    p = Pipeline([w], batch_size=500, flush_interval_s=10)
    p.start()
    for k in range(6):
        p.add([Reading("probe", "m", "it", k * 500 + i, {"power_w": 1.0}) for i in range(500)])
    assert wait_until(lambda: w.health(0).queue_batches >= 5)
    alive = sum(1 for o in gc.get_objects() if type(o) is Reading and o.site == "probe")
    assert alive == 0, f"{alive} readings held while queued"
    sink.gate.set()
    assert wait_until(lambda: len(sink.rows) == 3000)
    p.stop(5)


@pytest.mark.parametrize(
    "bad",
    [{"meter": "bad\nmeter"}, {"fields": {"power_w": None}}],  # no tag / no number in LP
    ids=["newline-in-tag", "not-a-number"],
)
def test_a_reading_that_cannot_be_encoded_is_dropped_and_counted_the_rest_kept(
    tmp_path: Path, bad: dict[str, object]
) -> None:
    sink = MemorySink(lines=True)
    w = SinkWorker(sink, Spool(tmp_path, 10**7), max_queue_batches=4)
    p = Pipeline([w], batch_size=4, flush_interval_s=10)
    p.start()
    batch = readings(0, 4)
    batch[2] = batch[2]._replace(**bad)
    p.add(batch)
    p.stop(5)
    assert [r.ts_ms for r in sink.rows] == [0, 1, 3]
    assert w.stats.dropped == 1


def test_a_spool_replays_lines_and_older_reading_files_in_arrival_order(tmp_path: Path) -> None:
    sp = Spool(tmp_path, 10**7)
    first = sp.put(readings(0, 3))  # as an older greendc spooled: JSON readings
    text = LineEncoder().encode(readings(3, 2))
    second = sp.put(Lines(text, 2))
    assert first is not None and second is not None
    assert (first.suffix, second.suffix) == (".jsonl", ".lp")
    again = Spool(tmp_path, 10**7)  # as after a restart
    assert again.batches == 2 and again.bytes == sp.bytes
    peeked = again.peek()
    assert peeked is not None and peeked[1] == readings(0, 3)
    again.remove(peeked[0])
    peeked = again.peek()
    assert peeked is not None and peeked[1] == Lines(text, 2)
    again.remove(peeked[0])
    assert again.peek() is None and again.bytes == 0


def test_batches_set_aside_under_the_same_number_are_all_kept(tmp_path: Path) -> None:
    # Sequence numbers start again when an agent restarts with an empty spool, so a later
    # refused batch can carry the number of an earlier one; both must stay for inspection.
    kept = []
    for start in (0, 100):
        sp = Spool(tmp_path, 10**7)  # a restart
        path = sp.put(readings(start, 2))
        assert path is not None
        kept.append(sp.quarantine(path))
        assert sp.batches == 0 and sp.bytes == 0
    assert kept[0] != kept[1] and all(p.exists() for p in kept)
    assert sorted(r.ts_ms for p in kept for r in _spooled(p)) == [0, 1, 100, 101]


def _spooled(path: Path) -> list[Reading]:
    import json

    return [Reading(*json.loads(line)) for line in path.read_text().splitlines()]


def test_durable_mode_holds_what_a_full_spool_refuses_and_drops_nothing(tmp_path: Path) -> None:
    sink = MemorySink()
    sink.up = False
    w = SinkWorker(sink, Spool(tmp_path, max_bytes=2000), max_queue_batches=1, hold=True)
    p = Pipeline([w], batch_size=10, flush_interval_s=10)
    acked: list[object] = []
    p.on_settled = acked.extend
    p.start()
    for k in range(30):
        p.add(readings(k * 10, 10), f"m{k}")
    assert wait_until(lambda: w.held_batches > 0)
    assert p.saturated()  # the agent stops reading while this is true
    assert w.stats.dropped == 0
    spooled_tokens = len(acked)
    assert spooled_tokens < 30  # only what reached the spool is acknowledged
    health = w.health(0)
    assert health.spool_full and health.held_readings == 10 * w.held_batches
    assert w.spool.refusal is not None and "sinks.spool.max_bytes" in w.spool.refusal
    sink.up = True  # the sink returns: spool and held batches drain, in order
    assert wait_until(lambda: len(sink.rows) == 300 and not p.saturated(), 20)
    assert sorted(r.ts_ms for r in sink.rows) == list(range(300))
    assert sorted(acked, key=lambda t: int(str(t)[1:])) == [f"m{k}" for k in range(30)]
    p.stop(2)
    assert w.stats.dropped == 0 and not w.health(0).spool_full


def test_durable_mode_delivers_held_batches_straight_to_the_sink_when_the_spool_is_empty(
    tmp_path: Path,
) -> None:
    # A batch larger than the whole spool can never be spooled: it waits for the sink.
    sink = MemorySink()
    sink.up = False
    w = SinkWorker(sink, Spool(tmp_path, max_bytes=1024), max_queue_batches=1, hold=True)
    p = Pipeline([w], batch_size=100, flush_interval_s=10)
    acked: list[object] = []
    p.on_settled = acked.extend
    p.start()
    p.add(readings(0, 100), "big")
    assert wait_until(lambda: w.held_batches == 1)
    assert acked == [] and w.spool.batches == 0
    sink.up = True
    assert wait_until(lambda: acked == ["big"] and len(sink.rows) == 100)
    p.stop(2)
