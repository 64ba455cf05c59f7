"""Re-exports tests.support.servers (the old import path, kept for existing tests)."""

from tests.support.servers import (
    LOOPBACK,
    RUNDIR_ENV,
    InfluxDB1,
    Mosquitto,
    Prometheus,
    PrometheusFactory,
    Server,
    ServerError,
    ServerNotInstalled,
    VictoriaMetrics,
    free_port,
    http_request,
)

__all__ = [
    "LOOPBACK",
    "RUNDIR_ENV",
    "InfluxDB1",
    "Mosquitto",
    "Prometheus",
    "PrometheusFactory",
    "Server",
    "ServerError",
    "ServerNotInstalled",
    "VictoriaMetrics",
    "free_port",
    "http_request",
]
