"""A bounded durable spool: batches a sink could not take yet, kept on disk in order.

Each batch is one file ``<seq>.lp`` (InfluxDB line protocol, for the InfluxDB sinks) or
``<seq>.jsonl`` (one JSON reading a line, for the other sinks), named by a zero-padded
sequence number so name order is arrival order, written to a temporary name, fsynced and
renamed, so a crash leaves either the whole batch or nothing. A spool may hold both kinds
(one written by an older greendc, which spooled readings only); each replays as it is.
Replay reads the oldest batch, hands it to the sink and deletes the file only after the
sink confirmed the write. When the spool holds ``max_bytes``, or the disk refuses the write
(ENOSPC, EIO), a new batch is refused and ``refusal`` says why, naming the path and the free
space; the caller then holds the batch unacknowledged (``ack: durable``) or counts its
readings as dropped: never silent.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import threading
import time
from pathlib import Path

from greendc._errors import SpoolError
from greendc.lineproto import Lines, Payload
from greendc.model import Reading

_SUFFIXES = (".lp", ".jsonl")

_SEQ_START = 10**15


def _encode(readings: list[Reading]) -> bytes:
    return b"".join(
        json.dumps([r.site, r.meter, r.role, r.ts_ms, r.fields], separators=(",", ":")).encode()
        + b"\n"
        for r in readings
    )


def _decode(data: bytes) -> list[Reading]:
    out = []
    for line in data.splitlines():
        if line:
            site, meter, role, ts_ms, fields = json.loads(line)
            out.append(Reading(site, meter, role, ts_ms, fields))
    return out


def _decode_lines(data: bytes) -> Lines:
    text = data.decode("utf-8").rstrip("\n")
    return Lines(text, text.count("\n") + 1 if text else 0)


class Spool:
    """A directory of batch files for one sink, bounded in bytes. Thread-safe."""

    def __init__(self, directory: str | Path, max_bytes: int) -> None:
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(
                f"cannot create spool directory {self.dir}: {exc.strerror}; "
                "set sinks.spool.dir to a writable folder"
            ) from exc
        for tmp in self.dir.glob("*.tmp"):  # a crash mid-write leaves only temporaries
            tmp.unlink(missing_ok=True)
        files = self._files()
        # Sequence numbers start high so batches can also be put in front (a retried batch
        # that is older than everything spooled) and still sort by number.
        self._seq = int(files[-1].stem) + 1 if files else _SEQ_START
        self._first = int(files[0].stem) if files else _SEQ_START
        self._bytes = sum(f.stat().st_size for f in files)
        self._count = len(files)
        self.refusal: str | None = None  # why the last put was refused; None after a success
        self.disk_error = False  # the last refusal came from the disk, not from max_bytes

    def _files(self) -> list[Path]:
        files = [f for f in self.dir.iterdir() if f.suffix in _SUFFIXES and f.stem.isdigit()]
        return sorted(files, key=lambda f: int(f.stem))

    @property
    def bytes(self) -> int:
        """Bytes held."""
        return self._bytes

    @property
    def batches(self) -> int:
        """Batches held."""
        return self._count

    def free_bytes(self) -> int:
        """Bytes free on the spool's file system (for the unprivileged user); -1 if unknown."""
        try:
            return shutil.disk_usage(self.dir).free
        except OSError:
            return -1

    def oldest_age_seconds(self, now_s: float | None = None) -> float:
        """Age of the oldest batch file (0 when empty)."""
        with self._lock:
            files = self._files()
        if not files:
            return 0.0
        try:
            mtime = files[0].stat().st_mtime
        except FileNotFoundError:
            return 0.0
        return max(0.0, (now_s if now_s is not None else time.time()) - mtime)

    def put(self, batch: Payload, *, front: bool = False) -> Path | None:
        """Persist a batch and return its file; None (nothing written) when full or disk error.

        ``front=True`` puts it before everything held (a batch older than the spooled ones).
        """
        if isinstance(batch, Lines):
            data, suffix = batch.text.encode("utf-8") + b"\n", ".lp"
        else:
            data, suffix = _encode(batch), ".jsonl"
        with self._lock:
            if self._bytes + len(data) > self.max_bytes:
                self.refusal = (
                    f"spool {self.dir} is full: {self._bytes} of sinks.spool.max_bytes "
                    f"{self.max_bytes} bytes held, a batch of {len(data)} bytes does not fit"
                )
                self.disk_error = False
                return None
            if self._count == 0:
                self._first = self._seq
            seq = self._first - 1 if front and self._count else self._seq
            name = f"{seq:016d}{suffix}"
            tmp = self.dir / (name + ".tmp")
            try:
                with open(tmp, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self.dir / name)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    tmp.unlink(missing_ok=True)
                code = errno.errorcode.get(exc.errno or 0, "error")
                self.refusal = (
                    f"the disk refused a write to spool {self.dir} ({code}: {exc.strerror}); "
                    f"{self.free_bytes()} bytes free on its file system"
                )
                self.disk_error = True
                return None
            self.refusal = None
            self.disk_error = False
            if seq == self._seq:
                self._seq += 1
            else:
                self._first = seq
            self._bytes += len(data)
            self._count += 1
            return self.dir / name

    def peek(self) -> tuple[Path, Payload] | None:
        """The oldest batch and its file, or None when empty."""
        with self._lock:
            files = self._files()
        if not files:
            return None
        path = files[0]
        try:
            data = path.read_bytes()
            return path, _decode_lines(data) if path.suffix == ".lp" else _decode(data)
        except (OSError, ValueError) as exc:
            raise SpoolError(f"spool file {path} is unreadable: {exc}") from exc

    def remove(self, path: Path) -> None:
        """Delete a batch after its sink confirmed it."""
        with self._lock:
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                return
            self._bytes -= size
            self._count -= 1

    def quarantine(self, path: Path) -> Path:
        """Move a batch the sink permanently refuses aside (kept, not replayed)."""
        bad = self.dir / "rejected"
        bad.mkdir(exist_ok=True)
        with self._lock:
            size = path.stat().st_size
            target = bad / path.name
            if target.exists():  # sequence numbers restart once the spool is empty
                target = bad / f"{path.stem}-{time.time_ns()}{path.suffix}"
            os.replace(path, target)
            self._bytes -= size
            self._count -= 1
        return target
