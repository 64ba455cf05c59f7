"""Where the report reads samples from: the embedded SQLite store or InfluxDB (InfluxQL).

Both sources answer one question, :meth:`Source.samples`: the raw samples of some meters of a
site over ``[start_ms, end_ms)``, as a long table with columns ``meter``, ``ts_s``,
``power_w``, ``energy_wh`` and ``water_l`` (NaN where a sample lacks a field). Energy is then
computed from them by :mod:`greendc.energy`, the same way for both, so the two sources give
identical figures for identical data.

The embedded source reads the SQLite file directly, one meter at a time on the primary key
``(site, meter, ts_ms)``, without building a :class:`~greendc.model.Reading` per row: a month
of 1-minute data for 100 sites x 8 meters is 36 million rows, too many for per-row objects.

The InfluxDB source speaks InfluxQL over the v1-compatible ``/query`` API, which InfluxDB
1.8+, 2.x (through a DBRP mapping) and 3.x serve; a v2 token is sent as
``Authorization: Token ...``, v1 credentials as HTTP basic auth. Results are read chunked.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from greendc._errors import GreendcError
from greendc.catalogue import READING
from greendc.config import Settings
from greendc.model import Role

COLUMNS = ("meter", "ts_s", "power_w", "energy_wh", "water_l")
_FIELDS = ("power_w", "energy_wh", "water_l")


class SourceError(GreendcError):
    """The report's data source could not be opened or queried."""


class Source(Protocol):
    """A store the report reads raw samples from."""

    name: str

    def samples(self, site: str, meters: Sequence[str], start_ms: int, end_ms: int) -> pd.DataFrame:
        """Samples of ``meters`` of ``site`` in ``[start_ms, end_ms)`` (columns: COLUMNS)."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


def empty_frame() -> pd.DataFrame:
    """A sample table with no rows and the right columns and dtypes."""
    frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in COLUMNS})
    frame["meter"] = frame["meter"].astype(object)
    return frame


def _frame(parts: list[tuple[str, np.ndarray]]) -> pd.DataFrame:
    """Build the long table from (meter, array of [ts_ms, power_w, energy_wh, water_l])."""
    parts = [(m, a) for m, a in parts if len(a)]
    if not parts:
        return empty_frame()
    data = np.concatenate([a for _, a in parts])
    meters = np.concatenate([np.full(len(a), m, dtype=object) for m, a in parts])
    return pd.DataFrame(
        {
            "meter": meters,
            "ts_s": data[:, 0] / 1000.0,
            "power_w": data[:, 1],
            "energy_wh": data[:, 2],
            "water_l": data[:, 3],
        }
    )


_WHERE = " FROM greendc_reading WHERE site = ? AND meter = ? AND ts_ms >= ? AND ts_ms < ?"
_SQL_ENERGY = "SELECT ts_ms, power_w, energy_wh" + _WHERE + " ORDER BY ts_ms"
_SQL_WATER = "SELECT ts_ms, water_l" + _WHERE + " ORDER BY ts_ms"


class EmbeddedSource:
    """Reads the embedded store's SQLite file (read-only, beside a running collector)."""

    name = "embedded"

    def __init__(
        self, path: str | Path, water_meters: Mapping[str, set[str]] | None = None
    ) -> None:
        """Open the store; ``water_meters`` (site -> meter names) are read as litre counters."""
        self.water_meters: Mapping[str, set[str]] = water_meters or {}
        p = Path(path)
        if not p.exists():
            raise SourceError(
                f"the embedded store {p} does not exist: run the collector first, or point "
                "sinks.embedded.path at the store it writes"
            )
        try:
            # Read-only URI: a report must never create or modify the store it reads.
            self._db = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True)
            self._db.execute("SELECT 1 FROM greendc_reading LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise SourceError(f"cannot read the embedded store {p}: {exc}") from exc
        self.path = p

    def samples(self, site: str, meters: Sequence[str], start_ms: int, end_ms: int) -> pd.DataFrame:
        """Samples per meter, each read with one range scan of the primary key."""
        parts = []
        for meter in meters:
            # Fewer columns, fewer Python floats: the read is the bulk of a report's time.
            water = meter in self.water_meters.get(site, ())
            sql = _SQL_WATER if water else _SQL_ENERGY
            try:
                rows = self._db.execute(sql, (site, meter, start_ms, end_ms)).fetchall()
            except sqlite3.Error as exc:
                raise SourceError(f"query of {site}/{meter} failed: {exc}") from exc
            # numpy turns SQL NULL (None) into NaN for a float64 array.
            arr = np.array(rows, dtype=np.float64).reshape(-1, 3 if not water else 2)
            full = np.full((len(arr), 4), np.nan)
            full[:, 0] = arr[:, 0]
            if water:
                full[:, 3] = arr[:, 1]
            else:
                full[:, 1:3] = arr[:, 1:3]
            parts.append((meter, full))
        return _frame(parts)

    def close(self) -> None:
        """Close the SQLite connection."""
        self._db.close()


class InfluxQLSource:
    """Reads InfluxDB through the v1-compatible ``/query`` endpoint with InfluxQL."""

    name = "influxdb"

    def __init__(
        self,
        url: str,
        db: str,
        *,
        rp: str | None = None,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout_seconds: float = 30.0,
        chunk_size: int = 20_000,
    ) -> None:
        self.url = url.rstrip("/")
        self.db = db
        self.rp = rp
        self.timeout_seconds = timeout_seconds
        self.chunk_size = chunk_size
        self._headers: dict[str, str] = {"Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Token {token}"
        elif username:
            cred = f"{username}:{password or ''}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(cred).decode()

    @classmethod
    def from_settings(cls, settings: Settings) -> InfluxQLSource:
        """The configured InfluxDB (v2 preferred when both are set), or SourceError."""
        v2, v1 = settings.sinks.influxdb_v2, settings.sinks.influxdb_v1
        if v2 is not None:
            token = v2.token.get_secret_value() if v2.token is not None else None
            # A v2 bucket is queried through its DBRP mapping, whose database name is the bucket.
            return cls(v2.url, v2.bucket, token=token, timeout_seconds=v2.timeout_seconds * 3)
        if v1 is not None:
            pw = v1.password.get_secret_value() if v1.password is not None else None
            return cls(
                v1.url,
                v1.db,
                rp=v1.rp,
                username=v1.username,
                password=pw,
                timeout_seconds=v1.timeout_seconds * 3,
            )
        raise SourceError("no InfluxDB is configured (sinks.influxdb_v1 or sinks.influxdb_v2)")

    def _measurement(self) -> str:
        m = f'"{READING.name}"'
        if self.rp:
            return f'"{self.db}"."{self.rp}".{m}'
        return m

    def _query(self, influxql: str) -> list[dict[str, object]]:
        params = {
            "db": self.db,
            "q": influxql,
            "epoch": "ms",
            "chunked": "true",
            "chunk_size": str(self.chunk_size),
        }
        req = urllib.request.Request(
            f"{self.url}/query",
            data=urllib.parse.urlencode(params).encode(),
            headers={**self._headers, "Content-Type": "application/x-www-form-urlencoded"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_seconds) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode(errors="replace")
            exc.close()
            raise SourceError(f"InfluxDB at {self.url} answered {exc.code}: {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise SourceError(f"cannot reach InfluxDB at {self.url}: {exc}") from exc
        series: list[dict[str, object]] = []
        # A chunked answer is one JSON document per line.
        for line in body.splitlines():
            if not line.strip():
                continue
            doc = json.loads(line)
            if "error" in doc:
                raise SourceError(f"InfluxDB query failed: {doc['error']}")
            for result in doc.get("results", []):
                if "error" in result:
                    raise SourceError(f"InfluxDB query failed: {result['error']}")
                series.extend(result.get("series", []))
        return series

    def samples(self, site: str, meters: Sequence[str], start_ms: int, end_ms: int) -> pd.DataFrame:
        """Samples of the site's meters, one InfluxQL query grouped by meter."""
        if not meters:
            return empty_frame()
        meter_re = "|".join(m.replace(".", r"\.") for m in meters)
        q = (
            f'SELECT "power_w", "energy_wh", "water_l" FROM {self._measurement()}'
            f' WHERE "site" = \'{site}\' AND "meter" =~ /^({meter_re})$/'
            f' AND time >= {int(start_ms)}ms AND time < {int(end_ms)}ms GROUP BY "meter"'
        )
        chunks: dict[str, list[list[object]]] = {}
        for s in self._query(q):
            tags = s.get("tags") or {}
            meter = str(tags.get("meter", "")) if isinstance(tags, dict) else ""
            columns = list(s.get("columns", []))  # type: ignore[call-overload]
            idx = [columns.index(c) if c in columns else -1 for c in ("time", *_FIELDS)]
            for row in s.get("values", []):  # type: ignore[attr-defined]
                chunks.setdefault(meter, []).append(
                    [np.nan if i < 0 or row[i] is None else row[i] for i in idx]
                )
        parts = [
            (m, np.array(chunks[m], dtype=np.float64).reshape(-1, 4)) for m in meters if m in chunks
        ]
        for _, arr in parts:
            order = np.argsort(arr[:, 0], kind="stable")
            arr[:] = arr[order]
        return _frame(parts)

    def close(self) -> None:
        """Nothing to release: every query is its own HTTP request."""


def open_source(settings: Settings, which: str) -> Source:
    """The source ``which`` (auto, influxdb, embedded) for these settings.

    ``auto`` is InfluxDB when one is configured, else the embedded store.
    """
    has_influx = settings.sinks.influxdb_v1 is not None or settings.sinks.influxdb_v2 is not None
    if which == "influxdb" or (which == "auto" and has_influx):
        return InfluxQLSource.from_settings(settings)
    if which not in ("auto", "embedded"):
        raise SourceError(f"--source {which!r} is not one of auto, influxdb, embedded")
    emb = settings.sinks.embedded
    path = emb.path if emb is not None else Path("var/greendc.sqlite")
    return EmbeddedSource(path, water_meters_of(settings))


def water_meters_of(settings: Settings) -> dict[str, set[str]]:
    """Site name -> names of its water meters (read as litre counters, not energy)."""
    return {s.name: {m.name for m in s.meters if m.role is Role.WATER} for s in settings.sites}


__all__ = [
    "COLUMNS",
    "EmbeddedSource",
    "InfluxQLSource",
    "Source",
    "SourceError",
    "empty_frame",
    "open_source",
    "water_meters_of",
]
