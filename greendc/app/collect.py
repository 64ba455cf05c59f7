"""The collector's wiring, once: an agent with live KPIs and its /metrics endpoint.

``greendc collect`` and ``greendc demo`` both run the collector through
:func:`running_collector`, so the demo shows what production runs.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from greendc.config import Settings

if TYPE_CHECKING:
    from greendc.collector.agent import Agent
    from greendc.exporters.prometheus import MetricsServer

log = logging.getLogger("greendc")

# Young objects allowed before the collector runs a generation-0 collection (CPython: 700).
GC_YOUNG_THRESHOLD = 50_000


def tune_gc_for_streaming() -> None:
    """Keep CPython's cycle collector off the per-reading path of a long-running agent.

    Every message allocates containers (the parsed items, a reading per item), so with the
    default threshold of 700 the collector ran every few hundred readings, and readings
    waiting for their batch survived into the older generations, whose collections walk the
    whole heap (configuration, modules, live state: tens of thousands of objects that live
    as long as the process). Measured with py-spy holding the GIL, gateway batches of 50:
    10.4 µs of CPU per reading with the defaults, 8.1 µs with this. Two changes: what exists
    after start-up is moved to the permanent generation (:func:`gc.freeze`), and the young
    generation may hold 50,000 objects; readings freed by reference counting before then
    are never walked at all. Reference cycles are still collected, only less often.
    """
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


@dataclass(frozen=True)
class RunningCollector:
    """A started agent and its /metrics server (None when ``metrics.enabled`` is off)."""

    agent: Agent
    metrics: MetricsServer | None


@contextmanager
def running_collector(settings: Settings, *, tune_gc: bool = True) -> Iterator[RunningCollector]:
    """Start the agent (MQTT in, sinks, live KPIs) and /metrics; on exit, stop both.

    Stopping disconnects from MQTT first, then flushes every sink (what cannot be written in
    time goes to the spool), then closes /metrics. ``tune_gc`` applies
    :func:`tune_gc_for_streaming` once everything is built: right for a process that only
    collects, not for one that has just built a report it will not need again (the demo).
    """
    from greendc.collector.agent import Agent
    from greendc.collector.site_figures import attach_live

    agent = Agent(settings)
    attach_live(agent, settings)
    server = None
    if settings.metrics.enabled:
        from greendc.exporters.prometheus import serve

        server = serve(settings.metrics, agent.snapshot, settings.sites)
    try:
        if tune_gc:
            tune_gc_for_streaming()
        log.info("collector %s starting: sinks %s", agent.name, ", ".join(settings.effective_sinks))
        agent.start()
        try:
            yield RunningCollector(agent, server)
        finally:
            agent.stop()
    finally:
        if server is not None:
            server.close()


__all__ = ["GC_YOUNG_THRESHOLD", "RunningCollector", "running_collector", "tune_gc_for_streaming"]
