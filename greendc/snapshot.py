"""A point-in-time copy of the agent's live state, handed to exporters at scrape time.

The collector builds a :class:`Snapshot` under its lock and hands it over; exporters read
it without locks and keep nothing between scrapes. Only plain data crosses this boundary,
so the collector and the exporters never import each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MeterState:
    """The latest values of one meter that is not stale."""

    site: str
    meter: str
    role: str
    last_seen_s: float
    power_w: float | None = None
    temp_c: float | None = None


@dataclass(frozen=True)
class LiveKPI:
    """One KPI over one rolling window; ``value`` is None when withheld.

    ``quality`` is one of the words of :class:`greendc.quality.Quality`; ``coverage`` the
    share of the window the value stands on, ``bridged`` the bridged part of it.
    """

    value: float | None
    coverage: float
    label: str = ""
    quality: str = "ok"
    bridged: float = 0.0
    zone: str | None = None  # a per-zone KPI's zone (pPUE); None for the site's own

    def __post_init__(self) -> None:
        if self.value is None and self.quality != "withheld":
            object.__setattr__(self, "quality", "withheld")


@dataclass(frozen=True)
class SiteLive:
    """Live figures of one site."""

    site: str
    energy_wh: dict[str, float]  # role -> signed cumulative Wh counted by this agent
    water_l: float
    emissions_g: float  # location-based gCO2e counted by this agent
    grid_zone: str
    grid_intensity_g_per_kwh: float | None
    pue_category: int
    # window seconds -> KPI name ("pue", "renewable_share", ...) -> value
    kpis: dict[int, dict[str, LiveKPI]] = field(default_factory=dict)
    # (meter, event) -> count since start: spikes, resets, jumps, rollovers, gaps bridged
    counter_events: dict[tuple[str, str], int] = field(default_factory=dict)
    grid_energy_wh: float = 0.0  # E_grid counted by this agent (greendc.kpi.grid_energy)


@dataclass(frozen=True)
class Histogram:
    """Cumulative histogram counts: ``buckets`` are (upper bound, cumulative count)."""

    buckets: tuple[tuple[float, int], ...]
    count: int
    sum: float


@dataclass(frozen=True)
class SinkHealth:
    """Health of one sink and its spool."""

    name: str
    written: int
    failures: int
    last_success_s: float | None
    queue_batches: int
    spool_bytes: int
    spool_batches: int
    spool_oldest_age_s: float
    dropped: int
    write_seconds: Histogram
    batch_readings: Histogram
    # The spool refuses batches (limit reached or disk error); with ack: durable the agent
    # holds them unacknowledged and stops reading until it drains.
    spool_full: bool = False
    held_readings: int = 0  # readings held in memory, unacknowledged, waiting for the spool
    spool_free_bytes: int = -1  # free bytes on the spool's file system (-1: unknown)


@dataclass(frozen=True)
class Health:
    """The agent's own health counters."""

    agent: str
    version: str
    start_time_s: float
    messages_received: int
    readings_accepted: int
    rejections: dict[str, int]
    mqtt_connected: bool
    mqtt_reconnects: int
    series_refused: int
    meters_tracked: int
    sinks: tuple[SinkHealth, ...] = ()
    # Exceptions in the MQTT read path (each dropped the connection, which then reconnected).
    mqtt_read_errors: int = 0
    ignored: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    """Everything an exporter needs for one scrape."""

    taken_at_s: float
    meters: tuple[MeterState, ...]
    sites: tuple[SiteLive, ...]
    health: Health
