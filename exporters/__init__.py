"""What faces outward: the Prometheus /metrics endpoint and alert/recording rules as code."""

from greendc.exporters.prometheus import MetricsServer, SnapshotCollector, serve, window_label
from greendc.exporters.rules import build_rules, write_rules
from greendc.exporters.webconfig import WebConfig, load_web_config, parse_web_config

__all__ = [
    "MetricsServer",
    "SnapshotCollector",
    "WebConfig",
    "build_rules",
    "load_web_config",
    "parse_web_config",
    "serve",
    "window_label",
    "write_rules",
]
