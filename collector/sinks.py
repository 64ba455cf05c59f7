"""Sinks: where accepted readings are stored.

Each sink takes a batch and either stores all of it or raises:
:class:`SinkUnavailable` when the server could not take it now (the batch is retried or
spooled) or :class:`SinkError` when the server refuses this batch for good (it is moved
aside, counted and logged, never retried forever). A batch is a list of readings, or, for
sinks that say ``accepts_lines``, those readings already encoded as InfluxDB line protocol
(:class:`~greendc.lineproto.Lines`), as the pipeline hands batches to the InfluxDB sinks.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import shutil
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol, cast
from urllib.parse import urlencode

import urllib3

from greendc._errors import SinkError, SinkUnavailable
from greendc.config import EmbeddedSettings, InfluxV1Settings, InfluxV2Settings, Settings
from greendc.lineproto import LineEncoder, Lines, Payload, readings_in
from greendc.model import Reading
from greendc.store import EmbeddedStore

log = logging.getLogger(__name__)


class Sink(Protocol):
    """What the pipeline needs of a sink."""

    name: str
    # True when the sink takes line protocol (Lines) as well as readings; when every sink
    # does, the pipeline encodes readings once, as they arrive, and queues and spools text.
    accepts_lines: bool

    def write(self, batch: Payload) -> None:
        """Store the whole batch or raise SinkUnavailable / SinkError."""

    def close(self) -> None:
        """Release connections and files."""


# A batch smaller than this goes as one request: splitting pays for large batches only.
MIN_READINGS_PER_REQUEST = 1000


def _worst(errors: list[BaseException]) -> BaseException:
    """The error the pipeline must act on: an outage (retry all) before a refusal."""
    for kind in (SinkUnavailable, SinkError):
        for exc in errors:
            if isinstance(exc, kind):
                return exc
    return errors[0]


class ParallelWrites:
    """Writes one batch as up to ``n`` line-protocol requests in flight at once.

    Written serially, a 5,000-reading batch waited on our encoding, then on influxd, then on
    encoding again, and influxd worked one request at a time. Here the first parts go to
    helper threads as soon as they are encoded (the GIL is free while they wait on the
    server), so influxd works on them while the next part is encoded, and on several at
    once. Measured here with influxd 1.6 alone: 206,000 points/s serially, 337,000 with two
    requests at a time. To the pipeline the batch stays all or nothing: if any part fails,
    the whole batch fails and is retried or spooled; the parts that did land are written
    again then, which InfluxDB stores once (same series, time and values).
    """

    def __init__(
        self, sink_name: str, n: int, encoder: LineEncoder, post: Callable[[str], None]
    ) -> None:
        self._name = sink_name
        self._n = n
        self._encoder = encoder
        self._post = post
        self._pool = (
            ThreadPoolExecutor(max_workers=n - 1, thread_name_prefix=f"greendc-sink-{sink_name}")
            if n > 1
            else None
        )

    def write(self, batch: Payload) -> None:
        """Encode (if need be) and post every part; raise the worst failure once all ended."""
        parts = min(self._n, readings_in(batch) // MIN_READINGS_PER_REQUEST)
        if parts <= 1 or self._pool is None:
            self._post(self._body(batch))
            return
        pieces: list[str] | list[list[Reading]]
        if isinstance(batch, Lines):
            pieces = batch.split(parts)
        else:
            size = -(-len(batch) // parts)
            pieces = [batch[i : i + size] for i in range(0, len(batch), size)]
        futures: list[Future[None]] = []
        errors: list[BaseException] = []
        # Every part ends before one error is chosen: nothing is in flight once we return.
        try:
            for piece in pieces[:-1]:
                futures.append(self._pool.submit(self._post, self._body(piece)))
            self._post(self._body(pieces[-1]))
        except Exception as exc:
            errors.append(exc)
        for future in futures:
            failed = future.exception()
            if failed is not None:
                errors.append(failed)
        if errors:
            raise _worst(errors)

    def _body(self, piece: Payload | str) -> str:
        if isinstance(piece, str):
            return piece
        if isinstance(piece, Lines):
            return piece.text
        try:
            return self._encoder.encode(piece)
        except Exception as exc:
            # Retrying cannot help, so not an outage: refused, the batch is set aside in the
            # spool's rejected/ folder and counted. (The decoder admits nothing that cannot
            # be written; with InfluxDB sinks only, the pipeline drops just the bad reading.)
            raise SinkError(
                self._name, f"a reading cannot be written as line protocol: {exc}"
            ) from exc

    def close(self) -> None:
        """Wait for requests in flight and stop the helper threads."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def _body_excerpt(data: bytes | str | None) -> str:
    if data is None:
        return ""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return text.strip().replace("\n", " ")[:300]


class WriteStatus(enum.Enum):
    """What an HTTP status from an InfluxDB write means for the batch (both sinks)."""

    STORED = "stored"
    REFUSED = "refused"  # the server refuses this batch itself: resending it cannot succeed
    CREDENTIALS = "credentials"  # keep the batch; the operator must fix the credentials
    NO_DATABASE = "no database"  # InfluxDB 1.x: keep the batch; the database must be created
    UNAVAILABLE = "unavailable"  # keep the batch and retry: the server cannot take it now


# Bad line protocol (or a field type conflict), a body over the server's limit, a body the
# server cannot process: the batch is at fault. Every other failure keeps it (a 404 from a
# wrong path or a 429 from a busy server is fixed without touching the data).
REFUSED_STATUSES = frozenset({400, 413, 422})


def classify_status(status: int, detail: str = "") -> WriteStatus:
    """The one classification of an InfluxDB write's HTTP status, for the v1 and v2 sinks."""
    if 200 <= status < 300:
        return WriteStatus.STORED
    if status in (401, 403):
        return WriteStatus.CREDENTIALS
    if status == 404 and "database not found" in detail:
        return WriteStatus.NO_DATABASE
    if status in REFUSED_STATUSES:
        return WriteStatus.REFUSED
    return WriteStatus.UNAVAILABLE


def status_error(
    sink: str, url: str, status: int, detail: str, *, database: str = "", credentials: str = ""
) -> SinkUnavailable | SinkError | None:
    """The error a sink raises for a write's HTTP status (None when it was stored).

    ``credentials`` says what to check on a 401/403; ``database`` names the v1 database.
    """
    outcome = classify_status(status, detail)
    if outcome is WriteStatus.STORED:
        return None
    if outcome is WriteStatus.REFUSED:
        return SinkError(sink, f"HTTP {status} refused the batch: {detail}")
    if outcome is WriteStatus.CREDENTIALS:
        return SinkUnavailable(sink, f"HTTP {status} from {url}: {credentials}")
    if outcome is WriteStatus.NO_DATABASE:
        return SinkUnavailable(
            sink,
            f"database {database!r} does not exist on {url}: "
            f"create it (CREATE DATABASE {database})",
        )
    return SinkUnavailable(sink, f"HTTP {status} from {url}: {detail}")


class InfluxV1Sink:
    """InfluxDB 1.x (or any server with the v1 /write API) over HTTP."""

    accepts_lines = True

    def __init__(self, settings: InfluxV1Settings, name: str = "influxdb_v1") -> None:
        self.name = name
        self._settings = settings
        self._encoder = LineEncoder()
        params = {"db": settings.db, "precision": "ms"}
        if settings.rp:
            params["rp"] = settings.rp
        self._url = settings.url.rstrip("/") + "/write?" + urlencode(params)
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        if settings.username:
            pw = settings.password.get_secret_value() if settings.password else ""
            self._headers.update(urllib3.make_headers(basic_auth=f"{settings.username}:{pw}"))
        self._http = urllib3.PoolManager(
            retries=False,
            timeout=urllib3.Timeout(total=settings.timeout_seconds),
            maxsize=max(2, settings.parallel_requests),
        )
        self._writes = ParallelWrites(name, settings.parallel_requests, self._encoder, self._post)

    def write(self, batch: Payload) -> None:
        """Store the batch (in parallel parts when it is large) or raise."""
        self._writes.write(batch)

    def _post(self, text: str) -> None:
        """POST one line-protocol body; 204 is success."""
        body = text.encode("utf-8")
        try:
            resp = self._http.request("POST", self._url, body=body, headers=self._headers)
        except urllib3.exceptions.HTTPError as exc:
            raise SinkUnavailable(self.name, f"cannot reach {self._settings.url}: {exc}") from exc
        error = status_error(
            self.name,
            self._settings.url,
            resp.status,
            _body_excerpt(resp.data),
            database=self._settings.db,
            credentials="check the credentials",
        )
        if error is not None:
            raise error

    def close(self) -> None:
        """Finish requests in flight, then close pooled connections."""
        self._writes.close()
        self._http.clear()


@contextlib.contextmanager
def _numpy_hidden() -> Iterator[None]:
    """Import influxdb-client without numpy (about 20 MiB of the agent's memory).

    influxdb-client imports numpy whenever it is installed (the report needs it), only to
    format numpy values in its Point objects; this sink posts line protocol and builds no
    Point. While the client is first imported, numpy reads as absent (its own fallback);
    afterwards numpy imports as usual for anyone else in the process.
    """
    if "numpy" in sys.modules or "influxdb_client" in sys.modules:
        yield
        return
    sys.modules["numpy"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if "numpy" in sys.modules and sys.modules["numpy"] is None:
            del sys.modules["numpy"]


class InfluxV2Sink:
    """InfluxDB 2.x/3.x/Cloud (or a v2-compatible server) through influxdb-client.

    influxdb-client's own batching WriteApi retries and drops on its own schedule; we batch
    and spool ourselves and use its synchronous API, so a failure reaches us and nothing is
    dropped behind our back. Line protocol is pre-built (Point objects cost ~10x).
    """

    accepts_lines = True

    def __init__(self, settings: InfluxV2Settings, name: str = "influxdb_v2") -> None:
        with _numpy_hidden():
            from influxdb_client import InfluxDBClient, WritePrecision
            from influxdb_client.client.write_api import SYNCHRONOUS

        self.name = name
        self._settings = settings
        self._encoder = LineEncoder()
        token = settings.token.get_secret_value() if settings.token else ""
        self._client = InfluxDBClient(
            url=settings.url,
            token=token,
            org=settings.org,
            timeout=int(settings.timeout_seconds * 1000),  # influxdb-client takes milliseconds
            verify_ssl=settings.verify_ssl,
            retries=False,
        )
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        # influxdb-client declares WritePrecision.MS as a plain str constant.
        self._precision = cast(WritePrecision, WritePrecision.MS)
        self._writes = ParallelWrites(name, settings.parallel_requests, self._encoder, self._post)

    def write(self, batch: Payload) -> None:
        """Store the batch (in parallel parts when it is large) or raise."""
        self._writes.write(batch)

    def _post(self, body: str) -> None:
        """Write one line-protocol body synchronously."""
        from influxdb_client.rest import ApiException

        try:
            self._write_api.write(
                bucket=self._settings.bucket,
                org=self._settings.org,
                record=body,
                write_precision=self._precision,
            )
        except ApiException as exc:
            error = status_error(
                self.name,
                self._settings.url,
                exc.status or 0,
                _body_excerpt(exc.body),
                credentials="check the token and its write permission",
            )
            raise (error or SinkUnavailable(self.name, f"HTTP {exc.status}")) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise SinkUnavailable(self.name, f"cannot reach {self._settings.url}: {exc}") from exc

    def close(self) -> None:
        """Finish requests in flight, then close the client."""
        self._writes.close()
        self._write_api.close()
        self._client.close()


class EmbeddedSink:
    """The embedded SQLite store."""

    accepts_lines = False  # it stores readings in columns

    def __init__(self, settings: EmbeddedSettings, name: str = "embedded") -> None:
        self.name = name
        self.store = EmbeddedStore(settings.path)

    def write(self, batch: Payload) -> None:
        """Insert in one transaction; a full disk or locked file is retried later."""
        import sqlite3

        if isinstance(batch, Lines):  # the pipeline never gives it these (accepts_lines)
            raise SinkError(self.name, "the embedded store takes readings, not line protocol")
        try:
            self.store.write(batch)
        except sqlite3.Error as exc:
            # A full disk (SQLITE_FULL) or an I/O error rolls the transaction back: nothing of
            # the batch is stored, it is spooled and retried, and writes resume by themselves
            # once space returns.
            try:
                free = f"{shutil.disk_usage(self.store.path.parent).free} bytes free"
            except OSError:
                free = "free space unknown"
            raise SinkUnavailable(
                self.name, f"cannot write to {self.store.path} ({free} on its file system): {exc}"
            ) from exc

    def close(self) -> None:
        """Close the database."""
        self.store.close()


def build_sinks(settings: Settings) -> list[Sink]:
    """The sinks the settings ask for; the embedded store when no InfluxDB is configured."""
    out: list[Sink] = []
    s = settings.sinks
    if s.influxdb_v2 is not None:
        out.append(InfluxV2Sink(s.influxdb_v2))
    if s.influxdb_v1 is not None:
        out.append(InfluxV1Sink(s.influxdb_v1))
    if "embedded" in settings.effective_sinks:
        out.append(EmbeddedSink(s.embedded or EmbeddedSettings()))
    return out
