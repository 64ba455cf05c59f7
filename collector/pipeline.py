"""The pipeline from decoded readings to the sinks: batching, one worker per sink, spools.

    MQTT thread ──add()──> pending batch ──flush──> SinkWorker(queue) ──> sink
                                                       │  down/slow/full queue
                                                       └──> durable Spool ──replay in order──┘

A slow or dead sink never blocks the MQTT thread or another sink: each sink has its own
bounded queue and thread, and a batch that does not fit the queue goes to that sink's
durable spool. While a spool holds anything, new batches join it so replay stays in order.

When the spool itself is full or the disk refuses it (ENOSPC, EIO), what happens depends on
whether the batch's messages can wait at the broker:

- ``hold=True`` (``ack: durable`` with QoS 1): the batch is held in memory, unacknowledged,
  and :meth:`Pipeline.saturated` turns true, so the agent stops reading from the broker
  (which keeps the messages under the persistent session). As the spool drains, or the
  sink returns, held batches move on in order and are acknowledged. Nothing is dropped;
  memory is bounded by the broker's in-flight window.
- otherwise (``ack: receipt`` or QoS 0: the broker has forgotten the messages): the batch is
  dropped, counted (``greendc_spool_dropped_readings_total``) and logged as an error.

When every sink takes line protocol (the InfluxDB sinks), readings are encoded as they
arrive and batches are queued, spooled and posted as that text
(:class:`~greendc.lineproto.Lines`): about 100 bytes a reading where the reading objects
take about 400, so a burst that outruns the sink for a moment costs a quarter of the memory,
and several InfluxDB sinks share one encoding.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

from greendc._errors import SinkError, SinkUnavailable, SpoolError
from greendc.collector.health import SinkStats
from greendc.collector.sinks import Sink
from greendc.collector.spool import Spool
from greendc.lineproto import LineEncoder, Lines, Payload, readings_in
from greendc.model import Reading
from greendc.snapshot import SinkHealth

log = logging.getLogger(__name__)

_RETRY_MIN_S = 0.5
# A retry is one small request; recovering within seconds of a sink's return matters more.
_RETRY_MAX_S = 5.0

# What the caller gets back once a batch is settled (the agent: the MQTT deliveries to
# acknowledge, collector.agent.Delivery); the pipeline only carries them.
T = TypeVar("T")
Settled = Callable[[list[T]], None]


class Batch(Generic[T]):
    """Readings (or their lines) on their way to every sink, and the acknowledgements waiting.

    Each sink worker calls :meth:`settle` once, when the batch is stored, spooled to disk,
    set aside or (spool full, counted) dropped. After the last sink, ``on_settled`` gets
    the tokens (the MQTT message ids to acknowledge).
    """

    __slots__ = ("_left", "_lock", "on_settled", "payload", "tokens")

    def __init__(
        self, payload: Payload, tokens: list[T], sinks: int, on_settled: Settled[T] | None
    ) -> None:
        self.payload = payload
        self.tokens = tokens
        self.on_settled = on_settled
        self._left = sinks
        self._lock = threading.Lock()

    def settle(self) -> None:
        """One sink is done with this batch."""
        with self._lock:
            self._left -= 1
            done = self._left == 0
        if done and self.on_settled is not None and self.tokens:
            self.on_settled(self.tokens)


class SinkWorker:
    """Delivers batches to one sink on its own thread, spooling what it cannot deliver."""

    def __init__(
        self,
        sink: Sink,
        spool: Spool,
        max_queue_batches: int,
        clock: Callable[[], float] = time.time,
        *,
        hold: bool = False,
    ) -> None:
        self.sink = sink
        self.spool = spool
        self.stats = SinkStats()
        # hold: a batch the spool refuses waits in memory, unacknowledged, instead of being
        # dropped (the broker still has its messages); see the module docstring.
        self._hold = hold
        self._held: deque[Batch[Any]] = deque()
        self._held_readings = 0
        self._queue: queue.Queue[Batch[Any]] = queue.Queue(maxsize=max_queue_batches)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._healthy = True
        self._retry_s = _RETRY_MIN_S
        self._clock = clock
        self._submit_lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._run, name=f"greendc-sink-{sink.name}", daemon=True
        )

    @property
    def name(self) -> str:
        """The sink's name."""
        return self.sink.name

    def start(self) -> None:
        """Start the worker thread."""
        self._thread.start()

    # -- producer side (called by the flusher) ---------------------------------------------
    def submit(self, batch: Batch[Any]) -> None:
        """Queue a batch without blocking; spool it when the sink is behind or down.

        Order is kept by one invariant: the in-memory queue only takes batches while the
        spool is empty, so everything queued is older than everything spooled.
        """
        with self._submit_lock:
            if self._healthy and self.spool.batches == 0 and not self._held:
                try:
                    self._queue.put_nowait(batch)
                    return
                except queue.Full:
                    log.warning(
                        "sink %s is slow: queue of %d batches full, spooling to disk",
                        self.name,
                        self._queue.maxsize,
                    )
                    self._spill_queue()
            self._to_spool(batch)
        self._wake.set()

    def _spill_queue(self) -> None:
        """Move every queued batch to the end of the spool, oldest first (lock held)."""
        while True:
            try:
                self._to_spool(self._queue.get_nowait())
            except queue.Empty:
                return

    def _requeue_failed(self, batch: Batch[Any]) -> None:
        """A batch taken from the queue failed: spool it and the queue before the rest."""
        with self._submit_lock:
            pending = [batch]
            while True:
                try:
                    pending.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            settled = []
            for b in reversed(pending):
                if self.spool.put(b.payload, front=True) is not None:
                    settled.append(b)
                elif self._hold:
                    # Older than everything spooled, but the spool cannot take it: it waits
                    # first in line in memory (replayed after the spool: order is kept for
                    # every batch but these).
                    self._held.appendleft(b)
                    self._held_readings += readings_in(b.payload)
                    self._report_full()
                else:
                    self._count_dropped(b.payload)
                    settled.append(b)
            for b in reversed(settled):
                b.settle()

    def _to_spool(self, batch: Batch[Any]) -> None:
        """Spool a batch (lock held); when refused, hold it or drop it (counted)."""
        if not self._held and self.spool.put(batch.payload) is not None:
            batch.settle()
            return
        if self._hold:
            self._held.append(batch)
            self._held_readings += readings_in(batch.payload)
            self._report_full()
            return
        self._count_dropped(batch.payload)
        batch.settle()

    def _report_full(self) -> None:
        """Log once per episode that the spool refused a batch and the agent holds back."""
        if len(self._held) != 1:
            return
        report = log.error if self.spool.disk_error else log.warning
        report(
            "sink %s: %s. Holding batches unacknowledged and pausing MQTT reads (ack: "
            "durable): the broker keeps the messages until the spool drains. Free disk "
            "space, raise sinks.spool.max_bytes, or bring the sink back.",
            self.name,
            self.spool.refusal or f"spool {self.spool.dir} refused a batch",
        )

    def _count_dropped(self, batch: Payload) -> None:
        self.stats.add_dropped(readings_in(batch))
        log.error(
            "sink %s: %s: DROPPED %d readings (ack: receipt or QoS 0, so the broker no "
            "longer has them). Free disk space, raise sinks.spool.max_bytes, or bring the "
            "sink back.",
            self.name,
            self.spool.refusal or f"spool {self.spool.dir} refused a batch",
            readings_in(batch),
        )

    @property
    def held_batches(self) -> int:
        """Batches waiting in memory, unacknowledged, because the spool refused them."""
        return len(self._held)

    def _release_held(self) -> bool:
        """Move held batches on, oldest first: to the queue, the spool or the sink itself.

        Called on the worker thread; True when something moved.
        """
        moved = False
        with self._submit_lock:
            while self._held:
                batch = self._held[0]
                if self._healthy and self.spool.batches == 0:
                    try:
                        self._queue.put_nowait(batch)
                    except queue.Full:
                        break
                elif self.spool.put(batch.payload) is not None:
                    batch.settle()
                else:
                    break
                self._held.popleft()
                self._held_readings -= readings_in(batch.payload)
                moved = True
            if moved and not self._held:
                log.info("sink %s: spool accepts batches again; reading resumes", self.name)
            if self._held and self.spool.batches > 0:
                return moved
        if not moved and self._held and self.spool.batches == 0 and self._queue.empty():
            # Nothing spooled or queued ahead of it, yet the spool refuses (a full disk, or a
            # batch larger than the whole spool): the sink itself is the way out, and the
            # health probe.
            batch = self._held[0]
            try:
                ok = self._deliver(batch.payload)
            except SinkError as exc:
                self._refused(batch.payload, exc, None)
                ok = True
            if ok:
                with self._submit_lock:
                    self._held.popleft()
                    self._held_readings -= readings_in(batch.payload)
                batch.settle()
                moved = True
        return moved

    # -- worker side -----------------------------------------------------------------------
    def _deliver(self, batch: Payload) -> bool:
        t0 = time.perf_counter()
        try:
            self.sink.write(batch)
        except SinkUnavailable as exc:
            self.stats.failures += 1
            if self._healthy:
                log.error("%s; spooling to %s and retrying", str(exc), self.spool.dir)
            self._healthy = False
            return False
        except SinkError:
            raise
        except Exception as exc:  # an unexpected client error is treated as an outage
            self.stats.failures += 1
            if self._healthy:
                log.exception("sink %s failed unexpectedly: %s; spooling", self.name, exc)
            self._healthy = False
            return False
        elapsed = time.perf_counter() - t0
        self.stats.write_seconds.observe(elapsed)
        count = readings_in(batch)
        self.stats.batch_readings.observe(count)
        self.stats.written += count
        self.stats.last_success_s = self._clock()
        if not self._healthy:
            log.info("sink %s is back; replaying %d spooled batches", self.name, self.spool.batches)
        self._healthy = True
        self._retry_s = _RETRY_MIN_S
        return True

    def _refused(self, batch: Payload, exc: SinkError, path: Path | None) -> None:
        if path is None:
            path = self.spool.put(batch)
        kept = self.spool.quarantine(path) if path is not None else None
        self.stats.failures += 1
        count = readings_in(batch)
        self.stats.add_dropped(count)
        log.error("%s; %d readings set aside in %s for inspection", exc, count, kept)

    def _step(self) -> bool:
        """Do one unit of work; False when there was nothing to do."""
        if not self._healthy:
            with self._submit_lock:
                self._spill_queue()
        if self._held:
            if self._release_held():
                return True
            if not self._healthy and self.spool.batches == 0:
                return True  # the direct attempt failed: back off before the next
        try:
            batch = self._queue.get_nowait()
        except queue.Empty:
            batch = None
        if batch is not None:
            try:
                if self._deliver(batch.payload):
                    batch.settle()
                else:
                    self._requeue_failed(batch)
            except SinkError as exc:
                self._refused(batch.payload, exc, None)
                batch.settle()
            return True
        if self.spool.batches == 0:
            return False
        try:
            peeked = self.spool.peek()
        except SpoolError as exc:
            log.error("%s", exc)
            return False
        if peeked is None:
            return False
        path, spooled = peeked
        try:
            if self._deliver(spooled):
                self.spool.remove(path)
        except SinkError as exc:
            self._refused(spooled, exc, path)
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._step():
                if not self._healthy:
                    # A failed request leaves reference cycles behind (tracebacks through
                    # the HTTP client's frames) that keep the whole batch alive until the
                    # cycle collector runs, which `greendc collect` makes rare: collected now,
                    # memory stays flat through an outage (+9 MiB in 90 s without this).
                    gc.collect()
                    self._stop.wait(self._retry_s)
                    self._retry_s = min(self._retry_s * 2, _RETRY_MAX_S)
                continue
            self._wake.wait(0.2)
            self._wake.clear()

    def stop(self, deadline_s: float) -> None:
        """Stop the thread, then deliver or spool everything still queued."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=max(0.0, deadline_s - time.monotonic()))
        while True:
            try:
                batch = self._queue.get_nowait()
            except queue.Empty:
                break
            try:
                ok = (
                    time.monotonic() < deadline_s and self._healthy and self._deliver(batch.payload)
                )
            except SinkError as exc:
                self._refused(batch.payload, exc, None)
                ok = True
            if ok:
                batch.settle()
            else:
                with self._submit_lock:
                    self._to_spool(batch)
        if self._held:
            self._release_held()
        if self._held:
            # Unacknowledged: the broker redelivers them to the next session.
            log.warning(
                "sink %s: %d readings in %d batches were held unacknowledged at shutdown "
                "(the spool refused them); the broker redelivers them on the next start",
                self.name,
                self._held_readings,
                len(self._held),
            )
        self.sink.close()

    def health(self, now_s: float) -> SinkHealth:
        """A snapshot of this sink's health."""
        s = self.stats
        return SinkHealth(
            name=self.name,
            written=s.written,
            failures=s.failures,
            last_success_s=s.last_success_s,
            queue_batches=self._queue.qsize(),
            spool_bytes=self.spool.bytes,
            spool_batches=self.spool.batches,
            spool_oldest_age_s=self.spool.oldest_age_seconds(now_s),
            dropped=s.dropped,
            spool_full=bool(self._held),
            held_readings=self._held_readings,
            spool_free_bytes=self.spool.free_bytes(),
            write_seconds=s.write_seconds.snapshot(),
            batch_readings=s.batch_readings.snapshot(),
        )


class Pipeline(Generic[T]):
    """Batches readings and fans each batch out to every sink worker.

    ``add(readings, token)`` takes an optional token (an MQTT message to acknowledge): it
    is handed to ``on_settled`` once every sink has the batch in a durable place. A batch
    is flushed at ``batch_size`` readings, at ``max_tokens`` waiting tokens (so the broker's
    in-flight window never fills while we wait for a timer) or every ``flush_interval_s``.
    """

    def __init__(
        self,
        workers: Sequence[SinkWorker],
        batch_size: int,
        flush_interval_s: float,
        max_tokens: int = 1 << 30,
    ) -> None:
        self.workers = list(workers)
        self._batch_size = batch_size
        self._max_tokens = max_tokens
        self._interval_s = flush_interval_s
        self._encoder = (
            LineEncoder()
            if self.workers and all(w.sink.accepts_lines for w in self.workers)
            else None
        )
        self._pending: list[Reading] = []  # when some sink needs the readings themselves
        self._lines: list[str] = []  # when every sink takes line protocol
        self._count = 0  # readings pending in either
        self._tokens: list[T] = []
        self.on_settled: Settled[T] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="greendc-flusher", daemon=True)

    def start(self) -> None:
        """Start the sink workers and the periodic flusher."""
        for w in self.workers:
            w.start()
        self._thread.start()

    def add(self, readings: list[Reading], token: T | None = None) -> None:
        """Hand readings over (never blocks on a sink)."""
        text, encoded = self._encode(readings) if self._encoder is not None else ("", 0)
        with self._lock:
            if self._encoder is None:
                self._pending.extend(readings)
                self._count += len(readings)
            elif encoded:
                self._lines.append(text)
                self._count += encoded
            if token is not None:
                self._tokens.append(token)
            if self._count < self._batch_size and len(self._tokens) < self._max_tokens:
                return
            batch = self._take()
        self._fan_out(batch)

    def _encode(self, readings: list[Reading]) -> tuple[str, int]:
        """Line protocol of the readings (caller's thread, no lock held), and how many."""
        assert self._encoder is not None
        text, bad = self._encoder.encode_valid(readings)
        # The decoder admits nothing that cannot be written, so a bad reading here is a bug
        # or a new reading source: the others are kept, it is counted and reported.
        if bad:
            r, error = bad[0]
            log.error(
                "%d reading(s) cannot be written as line protocol, DROPPED (counted in "
                "greendc_spool_dropped_readings_total); the first: %r/%r at %r ms: %s. "
                "Please report this: the decoder should have rejected them.",
                len(bad),
                r.site,
                r.meter,
                r.ts_ms,
                error,
            )
            for w in self.workers:
                w.stats.add_dropped(len(bad))
        return text, len(readings) - len(bad)

    def _take(self) -> Batch[T]:
        payload: Payload = (
            self._pending if self._encoder is None else Lines("\n".join(self._lines), self._count)
        )
        batch = Batch(payload, self._tokens, len(self.workers), self.on_settled)
        self._pending, self._lines, self._count, self._tokens = [], [], 0, []
        return batch

    def flush(self) -> None:
        """Send whatever is pending now."""
        with self._lock:
            if not self._count and not self._tokens:
                return
            batch = self._take()
        self._fan_out(batch)

    def _fan_out(self, batch: Batch[Any]) -> None:
        if not self.workers:  # nothing to store in: settled as it is
            if batch.on_settled is not None and batch.tokens:
                batch.on_settled(batch.tokens)
            return
        if not readings_in(batch.payload):  # only tokens: nothing to store, acknowledge at once
            for _ in self.workers:
                batch.settle()
            return
        for w in self.workers:
            w.submit(batch)

    def saturated(self) -> bool:
        """Whether some sink holds batches its spool refused (the agent then stops reading)."""
        return any(w.held_batches for w in self.workers)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.flush()

    def stop(self, timeout_s: float = 15.0) -> None:
        """Flush, then stop every worker; what cannot be written in time is spooled."""
        self._stop.set()
        self._thread.join(timeout=timeout_s)
        self.flush()
        deadline = time.monotonic() + timeout_s
        for w in self.workers:
            w.stop(deadline)


def build_pipeline(
    sinks: Sequence[Sink],
    spool_dir: Path,
    spool_max_bytes: int,
    max_queue_batches: int,
    batch_size: int,
    flush_interval_s: float,
    max_tokens: int = 1 << 30,
    *,
    hold: bool = False,
) -> Pipeline[Any]:
    """A pipeline with one worker and one spool directory per sink.

    ``hold``: hold batches a full spool refuses instead of dropping them (``ack: durable``).
    """
    workers = [
        SinkWorker(s, Spool(spool_dir / s.name, spool_max_bytes), max_queue_batches, hold=hold)
        for s in sinks
    ]
    return Pipeline(workers, batch_size, flush_interval_s, max_tokens)
