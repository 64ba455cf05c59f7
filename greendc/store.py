"""The embedded store: SQLite, the default sink when no InfluxDB is configured.

Why SQLite: it ships with Python (no server, no extra dependency), is durable across
crashes (WAL journal, transactions), and handles the row counts one site produces
(a few million readings a month) with an index on (site, meter, ts). The table holds the
same schema as the InfluxDB measurement; the primary key (site, meter, ts_ms) makes a
reading written twice land once, as a point with the same series and timestamp does in
InfluxDB (a later write of the same point merges its fields).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from greendc.model import Reading

FIELDS: tuple[str, ...] = ("power_w", "energy_wh", "water_l", "temp_c")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS greendc_reading (
    site TEXT NOT NULL,
    meter TEXT NOT NULL,
    role TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    power_w REAL,
    energy_wh REAL,
    water_l REAL,
    temp_c REAL,
    PRIMARY KEY (site, meter, ts_ms)
) WITHOUT ROWID;
"""

_UPSERT = (
    "INSERT INTO greendc_reading (site, meter, role, ts_ms, power_w, energy_wh, water_l, temp_c)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (site, meter, ts_ms) DO UPDATE SET role = excluded.role,"
    " power_w = coalesce(excluded.power_w, power_w),"
    " energy_wh = coalesce(excluded.energy_wh, energy_wh),"
    " water_l = coalesce(excluded.water_l, water_l),"
    " temp_c = coalesce(excluded.temp_c, temp_c)"
)


class EmbeddedStore:
    """A SQLite file holding greendc readings. Safe to share between threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        # A reader (the report, a test, an operator's sqlite3 shell) may hold the file for a
        # moment: wait for it rather than fail the write and spool the batch.
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process crash; only an OS crash can lose the last commit.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def write(self, readings: Sequence[Reading]) -> int:
        """Store readings in one transaction; returns how many rows were written."""
        rows = [
            (
                r.site,
                r.meter,
                r.role,
                r.ts_ms,
                r.fields.get("power_w"),
                r.fields.get("energy_wh"),
                r.fields.get("water_l"),
                r.fields.get("temp_c"),
            )
            for r in readings
        ]
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(_UPSERT, rows)
                self._db.execute("COMMIT")
            except BaseException:
                # SQLite rolls back by itself on some errors (SQLITE_FULL, SQLITE_IOERR): a
                # second ROLLBACK would then raise and hide the real error.
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        return len(rows)

    def count(self, site: str | None = None) -> int:
        """Number of stored readings (for one site when given)."""
        with self._lock:
            if site is None:
                row = self._db.execute("SELECT count(*) FROM greendc_reading").fetchone()
            else:
                row = self._db.execute(
                    "SELECT count(*) FROM greendc_reading WHERE site = ?", (site,)
                ).fetchone()
        return int(row[0])

    def readings(
        self,
        *,
        site: str | None = None,
        meters: Iterable[str] | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> Iterator[Reading]:
        """Readings in (site, meter, ts) order, filtered by site, meters and [start, end)."""
        sql = (
            "SELECT site, meter, role, ts_ms, power_w, energy_wh, water_l, temp_c"
            " FROM greendc_reading"
        )
        where: list[str] = []
        args: list[object] = []
        if site is not None:
            where.append("site = ?")
            args.append(site)
        if meters is not None:
            ms = list(meters)
            where.append(f"meter IN ({','.join('?' * len(ms))})")
            args.extend(ms)
        if start_ms is not None:
            where.append("ts_ms >= ?")
            args.append(start_ms)
        if end_ms is not None:
            where.append("ts_ms < ?")
            args.append(end_ms)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY site, meter, ts_ms"
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        for row in rows:
            fields = {f: v for f, v in zip(FIELDS, row[4:], strict=True) if v is not None}
            yield Reading(row[0], row[1], row[2], row[3], fields)

    def close(self) -> None:
        """Close the database file."""
        with self._lock:
            self._db.close()
