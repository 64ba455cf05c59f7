"""greendc health: the pipeline itself, for the SREs who keep it running.

Answers: is data flowing in (ingest rate), what is being refused and why, are the sinks
keeping up (write latency, failures, queue, spool depth and age, dropped readings), is the
agent connected to MQTT, and which meters have gone quiet.
"""

from __future__ import annotations

from grafanalib import core as g

from greendc.dashboards.common import (
    GREEN,
    ORANGE,
    PROM_DS,
    RED,
    UNIT_BYTES,
    UNIT_PER_SECOND,
    UNIT_SECONDS,
    Layout,
    make_dashboard,
    meter_age_seconds,
    prom,
    prom_stat,
    prom_timeseries,
    rename_unit,
    sel,
    steps,
)

UID = "greendc-health"

QUANTILES = (0.5, 0.9, 0.99)

_CONNECTED_MAPPING = [
    {
        "type": "value",
        "options": {
            "0": {"text": "disconnected", "color": RED, "index": 0},
            "1": {"text": "connected", "color": GREEN, "index": 1},
        },
    }
]


def _rate(name: str, by: str = "") -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({sel(name)}[$__rate_interval]))"


def _increase(name: str) -> str:
    return f"sum(increase({sel(name)}[$__range]))"


def _count_stat(title: str, expr: str, description: str) -> g.Stat:
    return prom_stat(
        title,
        expr,
        "none",
        0,
        instant=True,
        description=description,
        graphMode="none",
        colorMode="background",
        thresholds=steps((GREEN, None), (RED, 1)),
    )


def dashboard() -> g.Dashboard:
    """The greendc health dashboard."""
    lay = Layout()
    lay.row("Agent")
    lay.add(
        prom_stat(
            "MQTT connection",
            "greendc_agent_mqtt_connected",
            legend="{{instance}}",
            mappings=_CONNECTED_MAPPING,
            graphMode="none",
            colorMode="background",
            thresholds=steps((RED, None), (GREEN, 1)),
        ),
        w=4,
        h=5,
    )
    lay.add(
        prom_stat(
            "Readings accepted", _rate("greendc_agent_readings_accepted_total"), UNIT_PER_SECOND, 1
        ),
        w=4,
        h=5,
    )
    lay.add(prom_stat("Meters tracked", "sum(greendc_agent_meters_tracked)", decimals=0), w=4, h=5)
    lay.add(
        _count_stat(
            "Readings dropped (spool full)",
            _increase("greendc_spool_dropped_readings_total"),
            "Over the time range. Anything above zero is data lost: see the spool.",
        ),
        w=4,
        h=5,
    )
    lay.add(
        _count_stat(
            "Series refused (cap)",
            _increase("greendc_agent_series_refused_total"),
            "New meters refused over the time range because validation.max_meters was reached.",
        ),
        w=4,
        h=5,
    )
    lay.add(
        prom_stat(
            "Agent uptime",
            "time() - max(greendc_agent_start_time_seconds)",
            UNIT_SECONDS,
            0,
            graphMode="none",
            colorMode="none",
        ),
        w=4,
        h=5,
    )

    lay.row("Ingest")
    lay.add(
        prom_timeseries(
            "Ingest rate",
            [
                prom("A", _rate("greendc_agent_messages_received_total"), "messages received"),
                prom("B", _rate("greendc_agent_readings_accepted_total"), "readings accepted"),
                prom(
                    "C",
                    _rate("greendc_sink_readings_written_total", by="sink"),
                    "written: {{sink}}",
                ),
            ],
            UNIT_PER_SECOND,
            1,
        ),
        w=12,
        h=8,
    )
    lay.add(
        prom_timeseries(
            "Rejections by reason",
            [prom("A", _rate("greendc_agent_rejections_total", by="reason"), "{{reason}}")],
            UNIT_PER_SECOND,
            2,
            fillOpacity=40,
            stacking={"mode": "normal", "group": "A"},
            drawStyle="bars",
        ),
        w=12,
        h=8,
    )
    lay.add(
        prom_timeseries(
            "MQTT connected and reconnects",
            [
                prom("A", "min(greendc_agent_mqtt_connected)", "connected (1 = yes)"),
                prom(
                    "B",
                    "sum(increase(greendc_agent_mqtt_reconnects_total[$__rate_interval]))",
                    "reconnects",
                ),
            ],
            "none",
            0,
            lineInterpolation="stepAfter",
        ),
        w=12,
        h=8,
    )
    lay.add(_stale_meters(), w=12, h=8)

    lay.row("Sinks and spool")
    lay.add(
        prom_timeseries(
            "Sink write latency",
            [
                prom(
                    chr(ord("A") + i),
                    f"histogram_quantile({q}, sum by (le, sink) "
                    f"(rate({sel('greendc_sink_write_duration_seconds_bucket')}"
                    "[$__rate_interval])))",
                    f"p{round(q * 100)} {{{{sink}}}}",
                )
                for i, q in enumerate(QUANTILES)
            ],
            UNIT_SECONDS,
            3,
            description="Quantiles of the time to write one batch, from the histogram.",
        ),
        w=12,
        h=8,
    )
    lay.add(
        prom_timeseries(
            "Sink failures and queue",
            [
                prom(
                    "A",
                    _rate("greendc_sink_write_failures_total", by="sink"),
                    "failed batches/s {{sink}}",
                ),
                prom("B", "max by (sink) (greendc_sink_queue_batches)", "queued batches {{sink}}"),
            ],
            "none",
            2,
        ),
        w=12,
        h=8,
    )
    lay.add(
        prom_timeseries(
            "Spool depth (batches)",
            [prom("A", "max by (sink) (greendc_spool_batches)", "{{sink}}")],
            "none",
            0,
        ),
        w=8,
        h=8,
    )
    lay.add(
        prom_timeseries(
            "Spool size",
            [prom("A", "max by (sink) (greendc_spool_bytes)", "{{sink}}")],
            UNIT_BYTES,
            0,
        ),
        w=8,
        h=8,
    )
    lay.add(
        prom_timeseries(
            "Spool oldest batch age and time since last write",
            [
                prom(
                    "A",
                    "max by (sink) (greendc_spool_oldest_age_seconds)",
                    "oldest spooled {{sink}}",
                ),
                prom(
                    "B",
                    "time() - max by (sink) (greendc_sink_last_success_timestamp_seconds)",
                    "since last write {{sink}}",
                ),
            ],
            UNIT_SECONDS,
            0,
        ),
        w=8,
        h=8,
    )
    return make_dashboard(
        title="greendc / Health",
        uid=UID,
        description="The greendc pipeline: ingest, rejections, sinks, spool, MQTT, stale meters.",
        layout=lay,
        time=("now-3h", "now"),
    )


def _stale_meters() -> g.Table:
    age = "Seconds since last reading"
    override = rename_unit(age, UNIT_SECONDS, 0)
    override["properties"] += [
        {
            "id": "thresholds",
            "value": {"mode": "absolute", "steps": steps((GREEN, None), (ORANGE, 120), (RED, 300))},
        },
        {"id": "custom.displayMode", "value": "color-background"},
    ]
    return g.Table(
        title="Meters by data age (stale first)",
        description="Meters silent past their expiry leave /metrics; see Site detail "
        "(InfluxDB) for meters that stopped entirely.",
        dataSource=PROM_DS,
        targets=[
            prom(
                "A",
                f"sort_desc({meter_age_seconds()})",
                table=True,
            )
        ],
        transformations=[
            {
                "id": "organize",
                "options": {
                    "excludeByName": {"Time": True},
                    "renameByName": {"Value": age},
                },
            }
        ],
        overrides=[override],
        sortBy=[g.TableSortByField(displayName=age, desc=True)],
    )
