"""How an InfluxDB sink splits a large batch into requests in flight at once."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greendc._errors import SinkError, SinkUnavailable
from greendc.collector.sinks import MIN_READINGS_PER_REQUEST, ParallelWrites
from greendc.lineproto import LineEncoder, Lines, parse_line
from greendc.model import Reading


def readings(n: int) -> list[Reading]:
    return [
        Reading("sg1", f"m{i % 7}", "it", 1_764_374_400_000 + i, {"power_w": i + 0.5})
        for i in range(n)
    ]


class Recorder:
    """A post() that keeps every body, can fail chosen parts, and sees overlap."""

    def __init__(self, fail: dict[int, Exception] | None = None) -> None:
        self.bodies: list[str] = []
        self.fail = fail or {}
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, body: str) -> None:
        with self._lock:
            self.bodies.append(body)
            self.threads.add(threading.current_thread().name)
        first_ts = parse_line(body.split("\n", 1)[0])[3]
        part = (first_ts - 1_764_374_400_000) // 1000  # parts of 1000 in these tests
        if part in self.fail:
            raise self.fail[part]


def stored(rec: Recorder) -> list[int]:
    return sorted(parse_line(line)[3] for body in rec.bodies for line in body.split("\n"))


def test_a_small_batch_is_one_request_from_the_worker_thread() -> None:
    rec = Recorder()
    writes = ParallelWrites("t", 4, LineEncoder(), rec)
    batch = readings(MIN_READINGS_PER_REQUEST + 1)
    writes.write(batch)
    writes.close()
    assert len(rec.bodies) == 1
    assert rec.threads == {threading.current_thread().name}
    assert stored(rec) == [r.ts_ms for r in batch]


@pytest.mark.parametrize("encoded", [False, True])  # readings, or the pipeline's Lines
@pytest.mark.parametrize(
    ("n", "size", "parts"), [(2, 4000, 2), (3, 4000, 3), (4, 2500, 2), (1, 9000, 1)]
)
def test_a_large_batch_is_split_and_every_reading_is_posted_once(
    n: int, size: int, parts: int, encoded: bool
) -> None:
    rec = Recorder()
    writes = ParallelWrites("t", n, LineEncoder(), rec)
    batch = readings(size)
    writes.write(Lines(LineEncoder().encode(batch), size) if encoded else batch)
    writes.close()
    assert len(rec.bodies) == parts
    assert stored(rec) == [r.ts_ms for r in batch]
    if parts > 1:  # the first parts went to helper threads
        assert len(rec.threads) >= 2


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(st.text("abc=, ", min_size=1, max_size=30), min_size=1, max_size=60),
    parts=st.integers(1, 8),
)
def test_lines_split_into_whole_lines_in_order(lines: list[str], parts: int) -> None:
    bodies = Lines("\n".join(lines), len(lines)).split(parts)
    assert 1 <= len(bodies) <= parts
    assert [line for body in bodies for line in body.split("\n")] == lines


def test_any_failed_part_fails_the_batch_after_every_part_has_ended() -> None:
    rec = Recorder(fail={0: SinkError("t", "HTTP 400 refused")})
    writes = ParallelWrites("t", 2, LineEncoder(), rec)
    with pytest.raises(SinkError, match="400"):
        writes.write(readings(2000))
    writes.close()
    assert len(rec.bodies) == 2  # the other part was still written (rewriting it is harmless)


@pytest.mark.parametrize("outage_part", [0, 2])  # in a helper thread, or the worker's own
def test_an_outage_wins_over_a_refusal_so_the_batch_is_retried(outage_part: int) -> None:
    fail: dict[int, Exception] = {
        0: SinkError("t", "HTTP 400 refused"),
        2: SinkError("t", "HTTP 400 refused"),
    }
    fail[outage_part] = SinkUnavailable("t", "connection refused")
    rec = Recorder(fail=fail)
    writes = ParallelWrites("t", 3, LineEncoder(), rec)
    with pytest.raises(SinkUnavailable, match="connection refused"):
        writes.write(readings(3000))
    writes.close()


def test_an_unexpected_error_in_a_helper_thread_reaches_the_worker() -> None:
    rec = Recorder(fail={0: RuntimeError("client bug")})
    writes = ParallelWrites("t", 2, LineEncoder(), rec)
    with pytest.raises(RuntimeError, match="client bug"):
        writes.write(readings(2000))
    writes.close()


def test_a_part_that_cannot_be_encoded_fails_only_after_the_parts_in_flight_end() -> None:
    posted: list[int] = []

    def slow_post(body: str) -> None:
        time.sleep(0.3)
        posted.append(body.count("\n") + 1)

    batch = readings(3000)
    batch[1500] = batch[1500]._replace(meter="bad\nmeter")  # a newline cannot be a tag
    writes = ParallelWrites("t", 3, LineEncoder(), slow_post)
    # Refused, not an outage: retrying the batch could never succeed.
    with pytest.raises(SinkError, match=r"cannot be written as line protocol.*newline"):
        writes.write(batch)
    assert posted == [1000]  # the first part, sent before the second failed, has ended
    writes.close()
