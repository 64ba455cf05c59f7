"""The metric catalogue: every Prometheus metric and InfluxDB measurement greendc writes.

This is the contract between the parts. The Prometheus exporter, the InfluxDB schema, the
dashboards and the alert rules all take names from here, and tests fail when a dashboard
panel or a rule names something the catalogue does not declare.

Prometheus names follow the naming guide: base units in the name (``_watts``,
``_joules_total``, ``_seconds``, ``_ratio``); counters end in ``_total``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

MetricType = Literal["gauge", "counter", "histogram", "info"]


@dataclass(frozen=True)
class Metric:
    """One Prometheus metric family as exported by the collector."""

    name: str
    type: MetricType
    unit: str
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()

    @property
    def series_names(self) -> tuple[str, ...]:
        """Every sample name this family exposes (histograms add _bucket/_sum/_count)."""
        if self.type == "histogram":
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        if self.type == "info":
            return (f"{self.name}_info",)
        return (self.name,)


@dataclass(frozen=True)
class Measurement:
    """One InfluxDB measurement: its tags and float fields (with units)."""

    name: str
    help: str
    tags: tuple[str, ...]
    fields: dict[str, str] = field(default_factory=dict)  # field -> unit


_SITE = ("site",)
_METER = ("site", "meter", "role")
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 10, 50, 100, 500, 1000, 2500, 5000, 10000, 50000)

_METRICS = [
    # --- what the meters say ---------------------------------------------------------------
    Metric(
        "greendc_meter_power_watts",
        "gauge",
        "watts",
        "Last instantaneous power reported by a meter.",
        _METER,
    ),
    Metric(
        "greendc_meter_temperature_celsius",
        "gauge",
        "celsius",
        "Last temperature reported by a meter.",
        _METER,
    ),
    Metric(
        "greendc_meter_last_seen_timestamp_seconds",
        "gauge",
        "seconds",
        "Unix time of the newest reading accepted from a meter.",
        _METER,
    ),
    Metric(
        "greendc_site_energy_joules_total",
        "counter",
        "joules",
        "Energy by site and role, counted by this agent since it started (signed sum of the "
        "role's meters; facility is E_DC). increase() over a window gives energy-based KPIs.",
        ("site", "role"),
    ),
    Metric(
        "greendc_site_water_litres_total",
        "counter",
        "litres",
        "Water input by site counted by this agent since it started.",
        _SITE,
    ),
    # --- live KPIs (energy-based, per rolling window) ----------------------------------------
    Metric(
        "greendc_site_pue_ratio",
        "gauge",
        "ratio",
        "PUE over the rolling window: sum of facility energy / sum of IT energy over the "
        "intervals both cover (ISO/IEC 30134-2; interim, category in the label). Absent when "
        "withheld; see greendc_site_kpi_quality for ok or incomplete.",
        ("site", "window", "category"),
    ),
    Metric(
        "greendc_site_pue_coverage_ratio",
        "gauge",
        "ratio",
        "Share of the window covered by data for the PUE inputs (the lower of facility and IT).",
        ("site", "window"),
    ),
    Metric(
        "greendc_site_pue_withheld",
        "gauge",
        "bool",
        "1 when the window's PUE is not ok: incomplete (its inputs cover too little of the "
        "window) or withheld (nothing to compute).",
        ("site", "window"),
    ),
    Metric(
        "greendc_site_kpi_quality",
        "gauge",
        "bool",
        "1 for the quality word of a live KPI over the rolling window (ok, incomplete or "
        "withheld; the same words as the report and the EU EED export), 0 for the others.",
        ("site", "window", "kpi", "quality"),
    ),
    Metric(
        "greendc_site_kpi_share_ratio",
        "gauge",
        "ratio",
        "Share of the rolling window a live KPI stands on that was measured, bridged across "
        "a gap (counter difference, timing unknown) or missing; the three add up to 1.",
        ("site", "window", "kpi", "share"),
    ),
    Metric(
        "greendc_meter_counter_events_total",
        "counter",
        "events",
        "Counter events of a meter since the agent started: spike (one implausible reading "
        "dropped), reset (counter went down), jump (up faster than max power: meter swap), "
        "rollover (register wrapped), bridged (a gap kept as bridged energy).",
        ("site", "meter", "event"),
    ),
    Metric(
        "greendc_zone_ppue_ratio",
        "gauge",
        "ratio",
        "Partial PUE of a zone over the rolling window: (zone IT + zone overhead energy) / zone "
        "IT energy, from meters' zone setting (ISO/IEC 30134-2 pPUE). Absent when withheld.",
        ("site", "zone", "window"),
    ),
    Metric(
        "greendc_site_renewable_share_ratio",
        "gauge",
        "ratio",
        "Renewable energy factor (REF) over the rolling window: on-site renewable plus "
        "contracted instruments over E_DC, capped at 1 (ISO/IEC 30134-3).",
        ("site", "window"),
    ),
    Metric(
        "greendc_site_grid_carbon_intensity_grams_per_kwh",
        "gauge",
        "gCO2e/kWh",
        "Location-based grid emission factor in use for the site's zone: its hourly factor for "
        "the last completed interval where the site has an hourly series, else the annual "
        "grid average.",
        ("site", "zone"),
    ),
    Metric(
        "greendc_site_grid_energy_joules_total",
        "counter",
        "J",
        "Energy drawn from the grid counted by this agent: the grid_import meters where the "
        "site has any, else per interval max(0, E_DC - on-site renewable - generator) (the "
        "report's rule). increase() over a range is the grid energy the emissions are of.",
        _SITE,
    ),
    Metric(
        "greendc_site_emissions_grams_total",
        "counter",
        "gCO2e",
        "Scope 2 location-based emissions of the site's grid energy counted by this agent, "
        "interval by interval at each interval's factor (the report's rule).",
        _SITE,
    ),
    # --- site configuration, for dashboards and alerts ---------------------------------------
    Metric("greendc_site_pue_target_ratio", "gauge", "ratio", "Configured PUE target.", _SITE),
    Metric(
        "greendc_site_pue_warning_ratio",
        "gauge",
        "ratio",
        "Configured PUE warning threshold.",
        _SITE,
    ),
    Metric(
        "greendc_site_pue_critical_ratio",
        "gauge",
        "ratio",
        "Configured PUE critical threshold.",
        _SITE,
    ),
    Metric(
        "greendc_site_renewable_target_ratio",
        "gauge",
        "ratio",
        "Configured renewable share target.",
        _SITE,
    ),
    Metric(
        "greendc_site_installed_it_watts",
        "gauge",
        "watts",
        "Installed IT power of the site.",
        _SITE,
    ),
    # --- the agent's own health ---------------------------------------------------------------
    Metric("greendc_agent", "info", "", "The agent's version and identity.", ("version", "agent")),
    Metric("greendc_agent_start_time_seconds", "gauge", "seconds", "Unix time the agent started."),
    Metric(
        "greendc_agent_messages_received_total", "counter", "messages", "MQTT messages received."
    ),
    Metric(
        "greendc_agent_readings_accepted_total",
        "counter",
        "readings",
        "Readings that passed validation and were handed to the sinks.",
    ),
    Metric(
        "greendc_agent_rejections_total",
        "counter",
        "readings",
        "Rejected messages or readings, by reason.",
        ("reason",),
    ),
    Metric(
        "greendc_agent_messages_ignored_total",
        "counter",
        "messages",
        "Messages a mapping sets aside as not readings (not errors), by reason.",
        ("reason",),
    ),
    Metric(
        "greendc_agent_mqtt_connected",
        "gauge",
        "bool",
        "1 while the agent is connected to the MQTT broker and its network thread is reading.",
    ),
    Metric(
        "greendc_agent_mqtt_read_errors_total",
        "counter",
        "errors",
        "Exceptions in the MQTT read path; each dropped the connection, which then reconnected.",
    ),
    Metric(
        "greendc_agent_mqtt_reconnects_total",
        "counter",
        "connections",
        "Successful MQTT (re)connections after the first.",
    ),
    Metric(
        "greendc_agent_series_refused_total",
        "counter",
        "series",
        "New meter series refused because the series cap was reached.",
    ),
    Metric(
        "greendc_agent_meters_tracked",
        "gauge",
        "series",
        "Meter series currently tracked by the agent.",
    ),
    Metric(
        "greendc_sink_write_duration_seconds",
        "histogram",
        "seconds",
        "Time to write one batch to a sink.",
        ("sink",),
        _LATENCY_BUCKETS,
    ),
    Metric(
        "greendc_sink_batch_size_readings",
        "histogram",
        "readings",
        "Readings per batch written to a sink.",
        ("sink",),
        _BATCH_BUCKETS,
    ),
    Metric(
        "greendc_sink_readings_written_total",
        "counter",
        "readings",
        "Readings a sink confirmed stored.",
        ("sink",),
    ),
    Metric(
        "greendc_sink_write_failures_total",
        "counter",
        "batches",
        "Failed batch writes to a sink (each is retried or spooled).",
        ("sink",),
    ),
    Metric(
        "greendc_sink_last_success_timestamp_seconds",
        "gauge",
        "seconds",
        "Unix time of the last successful write to a sink.",
        ("sink",),
    ),
    Metric(
        "greendc_sink_queue_batches",
        "gauge",
        "batches",
        "Batches waiting in memory for a sink.",
        ("sink",),
    ),
    Metric(
        "greendc_spool_bytes", "gauge", "bytes", "Bytes held in a sink's durable spool.", ("sink",)
    ),
    Metric(
        "greendc_spool_batches",
        "gauge",
        "batches",
        "Batches held in a sink's durable spool.",
        ("sink",),
    ),
    Metric(
        "greendc_spool_oldest_age_seconds",
        "gauge",
        "seconds",
        "Age of the oldest batch in a sink's durable spool (0 when empty).",
        ("sink",),
    ),
    Metric(
        "greendc_spool_full",
        "gauge",
        "boolean",
        "1 while a sink's spool refuses batches (sinks.spool.max_bytes reached, or the disk"
        " refused the write: ENOSPC, EIO); with ack: durable the agent then holds them"
        " unacknowledged and stops reading, so the broker queues.",
        ("sink",),
    ),
    Metric(
        "greendc_spool_held_readings",
        "gauge",
        "readings",
        "Readings held in memory, unacknowledged, because a sink's spool refused them.",
        ("sink",),
    ),
    Metric(
        "greendc_spool_free_bytes",
        "gauge",
        "bytes",
        "Free bytes on the file system of a sink's spool directory.",
        ("sink",),
    ),
    Metric(
        "greendc_spool_dropped_readings_total",
        "counter",
        "readings",
        "Readings a sink will not store: its spool was full, or the server refused the batch"
        " (set aside in the spool's rejected/ folder), or a reading could not be encoded"
        " (never silent: alert on it).",
        ("sink",),
    ),
]

# What `greendc bridge` serves on its own /metrics (device polling health): a separate
# family list, because the collector's exporter does not emit these.
_BRIDGE_METRICS = [
    Metric(
        "greendc_bridge_device_up",
        "gauge",
        "",
        "1 if the device's last poll answered, 0 if it failed or was not polled yet (its"
        " meters then go stale in the collector; nothing is published for them).",
        ("device", "protocol", "site", "meter"),
    ),
    Metric(
        "greendc_bridge_device_failing",
        "gauge",
        "",
        "1 for each device whose last poll failed, with why (reason, and the detail).",
        ("device", "reason", "detail"),
    ),
    Metric(
        "greendc_bridge_device_last_success_timestamp_seconds",
        "gauge",
        "seconds",
        "Unix time of the device's last answered poll.",
        ("device",),
    ),
    Metric(
        "greendc_bridge_device_consecutive_failures",
        "gauge",
        "",
        "Polls of the device that failed in a row (the backoff doubles with each).",
        ("device",),
    ),
    Metric(
        "greendc_bridge_poll_errors_total",
        "counter",
        "",
        "Failed polls by device and reason (timeout, unreachable, device_error, garbage, auth).",
        ("device", "reason"),
    ),
    Metric(
        "greendc_bridge_values_refused_total",
        "counter",
        "",
        "Device values not published: wrong_type, non_finite, out_of_range, negative_counter.",
        ("device", "reason"),
    ),
    Metric(
        "greendc_bridge_device_status",
        "gauge",
        "",
        "A device state its profile reads besides the readings, by name: a UPS's"
        " ups_output_load_percent (busiest output line), ups_battery_status (RFC 1628: 1"
        " unknown, 2 normal, 3 low, 4 depleted) and ups_seconds_on_battery.",
        ("device", "name"),
    ),
    Metric(
        "greendc_bridge_polls_total",
        "counter",
        "",
        "Polls by protocol and outcome (ok, failed).",
        ("protocol", "outcome"),
    ),
    Metric(
        "greendc_bridge_readings_published_total",
        "counter",
        "readings",
        "Readings the bridge handed to MQTT (QoS 1).",
    ),
    Metric(
        "greendc_bridge_readings_acknowledged_total",
        "counter",
        "readings",
        "Readings the broker acknowledged (PUBACK): published minus these are in flight.",
    ),
    Metric("greendc_bridge_mqtt_connected", "gauge", "", "1 while the bridge is connected."),
]

METRICS: dict[str, Metric] = {m.name: m for m in _METRICS}
BRIDGE_METRICS: dict[str, Metric] = {m.name: m for m in _BRIDGE_METRICS}

READING = Measurement(
    name="greendc_reading",
    help="One accepted meter reading, as received (canonical units).",
    tags=("site", "meter", "role"),
    fields={"power_w": "W", "energy_wh": "Wh", "water_l": "L", "temp_c": "°C"},
)

MEASUREMENTS: dict[str, Measurement] = {READING.name: READING}

# Why a reading or message was refused; the label values of greendc_agent_rejections_total.
REJECTION_REASONS: dict[str, str] = {
    "payload_too_large": "the payload exceeds validation.max_payload_bytes",
    "malformed_json": "the payload is not valid UTF-8 JSON",
    "too_deep": "the JSON nests deeper than the parser allows (a hostile payload)",
    "too_many_readings": "a batch holds more than validation.max_readings_per_message",
    "bad_structure": "the payload or an item is not the shape the topic's mapping expects",
    "no_mapping": "no configured mapping matches the topic",
    "missing_meter": "a batch item names no meter",
    "bad_identifier": "a site or meter name is not a plain identifier",
    "unknown_site": "the site is not in the configuration",
    "unknown_meter": "the meter is not configured for its site (validation.unknown_meters)",
    "no_values": "the message carries none of the mapped values",
    "non_numeric": "a mapped value is not a number",
    "non_finite": "a mapped value is NaN or infinite",
    "negative_counter": "a cumulative counter is negative",
    "bad_timestamp": "the timestamp is neither Unix seconds nor RFC 3339",
    "timestamp_future": "the timestamp is further ahead than validation.max_future_seconds",
    "timestamp_past": "the timestamp is older than validation.max_past_seconds",
    "series_cap": "a new meter series would exceed validation.max_meters",
    "topic_too_long": "the topic is longer than validation.max_topic_bytes",
    "poison_message": "handling the message raised twice; it was dead-lettered and acknowledged",
    "sparkplug_no_birth": "Sparkplug data from a node or device whose birth was not seen",
    "sparkplug_unknown_alias": "a Sparkplug metric alias the birth did not define",
    "sparkplug_seq_gap": "a Sparkplug node's sequence number skipped: messages were lost",
}

# Messages that are not readings and not errors (another device on the same bridge, an event
# instead of a status); the label values of greendc_agent_messages_ignored_total. They do
# not count towards the rejection rate the alert rules watch.
IGNORE_REASONS: dict[str, str] = {
    "filtered": "the message does not satisfy its mapping's `when`",
    "not_a_reading": "the message carries none of the mapped values (without_values: ignore)",
    "ignored_topic": "the topic's mapping says ignore: true",
    "sparkplug_state": "a Sparkplug message without readings (a death, a command, STATE)",
}


def metric(name: str) -> Metric:
    """The catalogued metric of that name; KeyError names the missing metric."""
    try:
        return METRICS[name] if name in METRICS else BRIDGE_METRICS[name]
    except KeyError:
        raise KeyError(f"{name!r} is not in the greendc metric catalogue") from None


def all_series_names() -> frozenset[str]:
    """Every Prometheus sample name the collector (or a bridge) can expose."""
    every = (*METRICS.values(), *BRIDGE_METRICS.values())
    return frozenset(s for m in every for s in m.series_names)


# The rolling window the dashboards read from the live KPI gauges (window="1h"); one of the
# default kpi.windows_seconds (a test keeps the two together).
DASHBOARD_WINDOW_SECONDS = 3600


def window_label(seconds: int) -> str:
    """A rolling window's ``window`` label, as a Prometheus duration: 300 -> "5m", 86400 -> "24h".

    Hours are the largest unit so a day reads "24h" like the dashboards show it; a window
    that is not a whole number of minutes keeps its seconds ("90s").
    """
    if seconds <= 0:
        raise ValueError(f"a window must be a positive number of seconds, got {seconds}")
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"
