"""The Prometheus /metrics endpoint: a custom collector over the agent's live snapshot.

At scrape time :class:`SnapshotCollector` asks its provider for one
:class:`~greendc.snapshot.Snapshot` and turns it into metric families. It keeps nothing
between scrapes, so a meter the snapshot no longer holds (stale) simply disappears. Every
name, help text, type and label set comes from :mod:`greendc.catalogue`.

:func:`serve` runs the endpoint on its own fresh ``CollectorRegistry`` (never the global
one) in a named daemon thread, with optional basic auth and TLS from a Prometheus web
config file (see :mod:`greendc.exporters.webconfig`).
"""

from __future__ import annotations

import gzip
import logging
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from greendc.catalogue import IGNORE_REASONS, METRICS, REJECTION_REASONS, window_label
from greendc.config import MetricsSettings, Site
from greendc.quality import Quality
from greendc.snapshot import Histogram, MeterState, Snapshot

from .webconfig import WebConfig, WSGIApp, load_web_config, make_http_server

log = logging.getLogger(__name__)

WH_TO_JOULES = 3600.0
THREAD_NAME = "greendc-metrics-http"


_Simple = GaugeMetricFamily | CounterMetricFamily


def _family(name: str) -> _Simple:
    """An empty gauge or counter family for catalogue metric ``name``."""
    m = METRICS[name]
    if m.type == "gauge":
        return GaugeMetricFamily(name, m.help, labels=list(m.labels))
    if m.type == "counter":
        return CounterMetricFamily(name, m.help, labels=list(m.labels))
    raise TypeError(f"{name} is a {m.type} in the catalogue, not a gauge or counter")


def _histogram(name: str) -> HistogramMetricFamily:
    m = METRICS[name]
    if m.type != "histogram":
        raise TypeError(f"{name} is a {m.type} in the catalogue, not a histogram")
    return HistogramMetricFamily(name, m.help, labels=list(m.labels))


def _info(name: str) -> InfoMetricFamily:
    m = METRICS[name]
    if m.type != "info":
        raise TypeError(f"{name} is a {m.type} in the catalogue, not an info metric")
    # An info metric's catalogue labels are the keys of its value, not label names.
    return InfoMetricFamily(name, m.help)


def _histogram_buckets(h: Histogram) -> list[tuple[str, float]]:
    out = [(floatToGoString(bound), float(count)) for bound, count in h.buckets]
    if not h.buckets or not math.isinf(h.buckets[-1][0]):
        out.append(("+Inf", float(h.count)))
    return out


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _help_type(name: str) -> str:
    m = METRICS[name]
    doc = m.help.replace("\\", "\\\\").replace("\n", "\\n")
    return f"# HELP {name} {doc}\n# TYPE {name} {m.type}\n"


def _value_text(v: float) -> str:
    if v == v and v not in (math.inf, -math.inf):
        return repr(float(v))
    return floatToGoString(v)


def _meters_text(meters: Sequence[MeterState]) -> str:
    """The three per-meter families in text format, each meter's label set built once."""
    power = [_help_type("greendc_meter_power_watts")]
    temp = [_help_type("greendc_meter_temperature_celsius")]
    seen = [_help_type("greendc_meter_last_seen_timestamp_seconds")]
    p_app, t_app, s_app = power.append, temp.append, seen.append
    for m in meters:
        site, meter, role = m.site, m.meter, m.role
        raw = site + meter + role
        if '"' in raw or "\\" in raw or "\n" in raw:
            site, meter, role = _escape_label(site), _escape_label(meter), _escape_label(role)
        labels = f'{{site="{site}",meter="{meter}",role="{role}"}} '
        s_app(f"greendc_meter_last_seen_timestamp_seconds{labels}{_value_text(m.last_seen_s)}\n")
        if m.power_w is not None:
            p_app(f"greendc_meter_power_watts{labels}{_value_text(m.power_w)}\n")
        if m.temp_c is not None:
            t_app(f"greendc_meter_temperature_celsius{labels}{_value_text(m.temp_c)}\n")
    return "".join(power) + "".join(temp) + "".join(seen)


class _Families:
    """Adapts an iterable of families to the collect() interface generate_latest expects."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


class SnapshotCollector(Collector):
    """Builds every greendc metric family from one snapshot per scrape.

    ``sites`` supplies the configured targets and installed IT power (configuration, not
    live state); the snapshot supplies everything else.
    """

    def __init__(self, provider: Callable[[], Snapshot], sites: Sequence[Site] = ()) -> None:
        """Collect from ``provider`` (called once per scrape) and the configured ``sites``."""
        self._provider = provider
        self._sites = tuple(sites)

    def describe(self) -> list[Metric]:
        """No up-front description: registering must not call the provider."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Yield the families of one snapshot (called by the registry on every scrape)."""
        yield from self.collect_snapshot(self._provider())

    def collect_snapshot(self, snap: Snapshot, *, meters: bool = True) -> Iterator[Metric]:
        """Yield the families of ``snap`` (without the per-meter ones when ``meters`` is False)."""
        if meters:
            yield from self._meters(snap)
        yield from self._site_live(snap)
        yield from self._targets()
        yield from self._health(snap)

    def exposition(self) -> bytes:
        """One scrape in the Prometheus text format 0.0.4, from one snapshot.

        The same samples as ``generate_latest`` over :meth:`collect` (a test compares them),
        but the per-meter families, the only ones that grow with the fleet, are formatted
        directly from the snapshot: generate_latest took about 2 s for 100k meters.
        """
        snap = self._provider()
        rest = generate_latest(_Families(self.collect_snapshot(snap, meters=False)))
        return _meters_text(snap.meters).encode("utf-8") + rest

    # -- meters ------------------------------------------------------------------------

    @staticmethod
    def _meters(snap: Snapshot) -> Iterator[Metric]:
        power = _family("greendc_meter_power_watts")
        temp = _family("greendc_meter_temperature_celsius")
        seen = _family("greendc_meter_last_seen_timestamp_seconds")
        for m in snap.meters:
            labels = [m.site, m.meter, m.role]
            seen.add_metric(labels, m.last_seen_s)
            if m.power_w is not None:
                power.add_metric(labels, m.power_w)
            if m.temp_c is not None:
                temp.add_metric(labels, m.temp_c)
        yield power
        yield temp
        yield seen

    # -- live site figures -------------------------------------------------------------

    @staticmethod
    def _site_live(snap: Snapshot) -> Iterator[Metric]:
        energy = _family("greendc_site_energy_joules_total")
        water = _family("greendc_site_water_litres_total")
        emissions = _family("greendc_site_emissions_grams_total")
        grid = _family("greendc_site_grid_energy_joules_total")
        intensity = _family("greendc_site_grid_carbon_intensity_grams_per_kwh")
        pue = _family("greendc_site_pue_ratio")
        coverage = _family("greendc_site_pue_coverage_ratio")
        withheld = _family("greendc_site_pue_withheld")
        renewable = _family("greendc_site_renewable_share_ratio")
        ppue = _family("greendc_zone_ppue_ratio")
        quality = _family("greendc_site_kpi_quality")
        shares = _family("greendc_site_kpi_share_ratio")
        events = _family("greendc_meter_counter_events_total")
        # A stale meter's series all disappear together, its counter events too.
        fresh = {(m.site, m.meter) for m in snap.meters}
        for s in snap.sites:
            for (meter, kind), n in sorted(s.counter_events.items()):
                if (s.site, meter) in fresh:
                    events.add_metric([s.site, meter, kind], float(n))
            for role in sorted(s.energy_wh):
                energy.add_metric([s.site, role], s.energy_wh[role] * WH_TO_JOULES)
            water.add_metric([s.site], s.water_l)
            emissions.add_metric([s.site], s.emissions_g)
            grid.add_metric([s.site], s.grid_energy_wh * WH_TO_JOULES)
            if s.grid_intensity_g_per_kwh is not None:
                intensity.add_metric([s.site, s.grid_zone], s.grid_intensity_g_per_kwh)
            for window_s in sorted(s.kpis):
                window = window_label(window_s)
                kpis = s.kpis[window_s]
                k = kpis.get("pue")
                if k is not None:
                    coverage.add_metric([s.site, window], k.coverage)
                    withheld.add_metric([s.site, window], 0.0 if k.quality == "ok" else 1.0)
                    if k.value is not None:
                        pue.add_metric([s.site, window, str(s.pue_category)], k.value)
                r = kpis.get("renewable_share")
                if r is not None and r.value is not None:
                    renewable.add_metric([s.site, window], r.value)
                for name in sorted(kpis):
                    z = kpis[name]
                    if z.zone is not None and z.value is not None:
                        ppue.add_metric([s.site, z.zone, window], z.value)
                    for word in Quality:
                        flag = 1.0 if z.quality == word else 0.0
                        quality.add_metric([s.site, window, name, word], flag)
                    missing = max(0.0, 1.0 - z.coverage)
                    for share, v in (
                        ("measured", z.coverage - z.bridged),
                        ("bridged", z.bridged),
                        ("missing", missing),
                    ):
                        shares.add_metric([s.site, window, name, share], v)
        yield from (
            energy,
            water,
            emissions,
            grid,
            intensity,
            pue,
            coverage,
            withheld,
            renewable,
            ppue,
        )
        yield from (quality, shares, events)

    # -- configuration -----------------------------------------------------------------

    def _targets(self) -> Iterator[Metric]:
        families = {
            name: _family(name)
            for name in (
                "greendc_site_pue_target_ratio",
                "greendc_site_pue_warning_ratio",
                "greendc_site_pue_critical_ratio",
                "greendc_site_renewable_target_ratio",
                "greendc_site_installed_it_watts",
            )
        }
        for site in self._sites:
            t = site.targets
            families["greendc_site_pue_target_ratio"].add_metric([site.name], t.pue)
            families["greendc_site_pue_warning_ratio"].add_metric([site.name], t.pue_warning)
            families["greendc_site_pue_critical_ratio"].add_metric([site.name], t.pue_critical)
            families["greendc_site_renewable_target_ratio"].add_metric(
                [site.name], t.renewable_share
            )
            families["greendc_site_installed_it_watts"].add_metric(
                [site.name], site.installed_it_kw * 1000.0
            )
        yield from families.values()

    # -- the agent's own health --------------------------------------------------------

    @staticmethod
    def _health(snap: Snapshot) -> Iterator[Metric]:
        h = snap.health
        info = _info("greendc_agent")
        info.add_metric([], {"version": h.version, "agent": h.agent})
        yield info

        def single(name: str, value: float) -> _Simple:
            fam = _family(name)
            fam.add_metric([], value)
            return fam

        yield single("greendc_agent_start_time_seconds", h.start_time_s)
        yield single("greendc_agent_messages_received_total", h.messages_received)
        yield single("greendc_agent_readings_accepted_total", h.readings_accepted)
        rejections = _family("greendc_agent_rejections_total")
        # Every known reason is exported from the start (at 0), so rate() sees the first
        # rejection instead of a series that appears already incremented.
        for reason in sorted(set(REJECTION_REASONS) | set(h.rejections)):
            rejections.add_metric([reason], h.rejections.get(reason, 0))
        yield rejections
        ignored = _family("greendc_agent_messages_ignored_total")
        for reason in sorted(set(IGNORE_REASONS) | set(h.ignored)):
            ignored.add_metric([reason], h.ignored.get(reason, 0))
        yield ignored
        yield single("greendc_agent_mqtt_connected", 1.0 if h.mqtt_connected else 0.0)
        yield single("greendc_agent_mqtt_reconnects_total", h.mqtt_reconnects)
        yield single("greendc_agent_mqtt_read_errors_total", h.mqtt_read_errors)
        yield single("greendc_agent_series_refused_total", h.series_refused)
        yield single("greendc_agent_meters_tracked", h.meters_tracked)

        histograms = {
            name: _histogram(name)
            for name in ("greendc_sink_write_duration_seconds", "greendc_sink_batch_size_readings")
        }
        per_sink = {
            name: _family(name)
            for name in (
                "greendc_sink_readings_written_total",
                "greendc_sink_write_failures_total",
                "greendc_sink_last_success_timestamp_seconds",
                "greendc_sink_queue_batches",
                "greendc_spool_bytes",
                "greendc_spool_batches",
                "greendc_spool_oldest_age_seconds",
                "greendc_spool_full",
                "greendc_spool_held_readings",
                "greendc_spool_free_bytes",
                "greendc_spool_dropped_readings_total",
            )
        }
        for sink in sorted(h.sinks, key=lambda x: x.name):
            lv = [sink.name]
            for name, hist in (
                ("greendc_sink_write_duration_seconds", sink.write_seconds),
                ("greendc_sink_batch_size_readings", sink.batch_readings),
            ):
                histograms[name].add_metric(lv, _histogram_buckets(hist), hist.sum)
            per_sink["greendc_sink_readings_written_total"].add_metric(lv, sink.written)
            per_sink["greendc_sink_write_failures_total"].add_metric(lv, sink.failures)
            if sink.last_success_s is not None:
                per_sink["greendc_sink_last_success_timestamp_seconds"].add_metric(
                    lv, sink.last_success_s
                )
            per_sink["greendc_sink_queue_batches"].add_metric(lv, sink.queue_batches)
            per_sink["greendc_spool_bytes"].add_metric(lv, sink.spool_bytes)
            per_sink["greendc_spool_batches"].add_metric(lv, sink.spool_batches)
            per_sink["greendc_spool_oldest_age_seconds"].add_metric(lv, sink.spool_oldest_age_s)
            per_sink["greendc_spool_full"].add_metric(lv, 1.0 if sink.spool_full else 0.0)
            per_sink["greendc_spool_held_readings"].add_metric(lv, sink.held_readings)
            if sink.spool_free_bytes >= 0:
                per_sink["greendc_spool_free_bytes"].add_metric(lv, sink.spool_free_bytes)
            per_sink["greendc_spool_dropped_readings_total"].add_metric(lv, sink.dropped)
        yield from histograms.values()
        yield from per_sink.values()


def metrics_app(collector: SnapshotCollector) -> WSGIApp:
    """A WSGI app answering GET (any path, like prometheus_client) with one exposition.

    gzip is used when the scraper accepts it (Prometheus does), at level 1: at 100k meters
    the text is about 20 MB and the default level costs more than the scrape itself.
    """

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD")])
            return [b"use GET\n"]
        body = collector.exposition()
        headers = [("Content-Type", CONTENT_TYPE_LATEST)]
        if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
            body = gzip.compress(body, compresslevel=1)
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Content-Length", str(len(body))))
        start_response("200 OK", headers)
        return [b""] if method == "HEAD" else [body]

    return app


class MetricsServer:
    """A running /metrics endpoint; ``close()`` (or leaving the ``with``) stops it."""

    def __init__(self, httpd: Any, thread: threading.Thread, registry: CollectorRegistry) -> None:
        """Wrap a started server and the thread serving it (use :func:`serve`)."""
        self._httpd = httpd
        self._thread = thread
        self.registry = registry
        self.host: str = httpd.server_address[0]
        self.port: int = httpd.server_address[1]
        self.tls: bool = bool(getattr(httpd, "ssl_context", None))
        self._closed = False

    @property
    def url(self) -> str:
        """The endpoint's URL (``https`` when TLS is on)."""
        scheme = "https" if self.tls else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving, close the listening socket and join the thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10.0)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(
    settings: MetricsSettings,
    provider: Callable[[], Snapshot],
    sites: Sequence[Site] = (),
    *,
    web_config: WebConfig | None = None,
) -> MetricsServer:
    """Serve /metrics on ``settings.listen:settings.port`` (0 picks a free port).

    Basic auth and TLS come from ``web_config`` when given, else from
    ``settings.web_config_file``. A fresh registry is used, so several servers (and
    tests) never share state.
    """
    if web_config is None and settings.web_config_file is not None:
        web_config = load_web_config(Path(settings.web_config_file))
    collector = SnapshotCollector(provider, sites)
    # The registry is the standard (slower) view of the same collector, for in-process use.
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    app = metrics_app(collector)
    httpd = make_http_server(settings.listen, settings.port, app, web_config)
    thread = threading.Thread(target=httpd.serve_forever, name=THREAD_NAME, daemon=True)
    thread.start()
    server = MetricsServer(httpd, thread, registry)
    log.info("serving /metrics on %s", server.url)
    return server
