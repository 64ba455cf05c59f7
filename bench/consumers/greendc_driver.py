"""Fallback runner of the greendc agent when ``greendc collect`` cannot start.

Usage: greendc_driver.py CONFIG

Does what ``greendc collect`` does (Agent, live KPIs when available, /metrics) without the
CLI, so the benchmark still measures the same agent while the CLI wiring is unfinished.
Stops cleanly (MQTT disconnect, sinks flushed) on SIGTERM.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType


def main(argv: list[str]) -> int:
    """Run the agent until SIGTERM; see the module docstring."""
    from greendc.collector.agent import Agent
    from greendc.config import load_config
    from greendc.exporters.prometheus import serve

    settings = load_config(argv[0])
    logging.basicConfig(level=logging.WARNING)
    stop = threading.Event()

    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    agent = Agent(settings)
    try:
        from greendc.collector.site_figures import attach_live

        attach_live(agent, settings)
    except ImportError:
        pass  # live KPIs are optional here: the throughput path is the agent's
    server = serve(settings.metrics, agent.snapshot, settings.sites)
    agent.start()
    try:
        stop.wait()
    finally:
        agent.stop()
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
