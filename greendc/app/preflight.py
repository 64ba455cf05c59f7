"""What ``collect`` refuses at start-up, checked without starting anything.

``greendc check-config`` and ``greendc collect`` both call :func:`preflight`, so a config
that passes the one starts the other (short of servers being down). Beyond the schema
(:mod:`greendc.config`, which already refuses bad KPI windows and intervals), it reads
every file the collector reads at start-up: the emission factor file and every site's grid
zone in it, each hourly factor file, the MQTT TLS files, the /metrics web config and its
certificates. Every problem names its setting; all of them are reported at once.
"""

from __future__ import annotations

import ssl

from greendc._errors import ConfigError
from greendc.config import Settings
from greendc.factors import load_grid_factors


def _tls_problems(settings: Settings) -> list[str]:
    tls = settings.mqtt.tls
    if tls is None or not settings.mqtt.use_tls:
        return []
    problems = []
    for name in ("ca_file", "cert_file", "key_file"):
        path = getattr(tls, name)
        if path is None:
            continue
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            problems.append(f"mqtt.tls.{name}: cannot read {str(path)!r}: {exc.strerror}")
    if problems:
        return problems
    ctx = ssl.create_default_context()
    try:
        if tls.ca_file is not None:
            ctx.load_verify_locations(cafile=str(tls.ca_file))
    except (OSError, ssl.SSLError) as exc:
        problems.append(f"mqtt.tls.ca_file: not a usable CA certificate: {exc}")
    try:
        if tls.cert_file is not None:
            ctx.load_cert_chain(certfile=str(tls.cert_file), keyfile=str(tls.key_file))
    except (OSError, ssl.SSLError) as exc:
        problems.append(f"mqtt.tls.cert_file: cannot load it with key_file: {exc}")
    return problems


def _web_config_problems(settings: Settings) -> list[str]:
    path = settings.metrics.web_config_file
    if not settings.metrics.enabled or path is None:
        return []
    from greendc.exporters.webconfig import load_web_config

    try:
        web = load_web_config(path)
        if web.tls is not None:
            web.tls.ssl_context()
    except ConfigError as exc:
        return [f"metrics.web_config_file: {p}" for p in exc.problems]
    return []


def preflight(settings: Settings) -> None:
    """Raise :class:`ConfigError` listing every start-up problem of ``settings``."""
    problems: list[str] = []
    try:
        load_grid_factors(settings)
    except ConfigError as exc:
        problems += exc.problems
    problems += _tls_problems(settings)
    problems += _web_config_problems(settings)
    if problems:
        raise ConfigError(
            "cannot start with this configuration:\n  " + "\n  ".join(problems), problems
        )


__all__ = ["preflight"]
