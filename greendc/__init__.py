"""greendc: an open-source energy monitor for data centres.

The core package: configuration schema, domain model, metric catalogue, decoding, line
protocol and the energy and KPI math. The layers install under this one namespace
(``greendc.collector``, ``greendc.exporters``, ``greendc.dashboards``,
``greendc.simulator``) from their own top-level folders; ``greendc.app`` (the command line,
the demo) is the only code that imports them all. The core imports none of them
(tests/unit/test_layers.py).
"""

from greendc._errors import (
    ConfigError,
    ConfigUnreadable,
    DecodeError,
    GreendcError,
    KPIError,
    NotAvailableError,
    SinkError,
    SinkUnavailable,
    SpoolError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "ConfigUnreadable",
    "DecodeError",
    "GreendcError",
    "KPIError",
    "NotAvailableError",
    "SinkError",
    "SinkUnavailable",
    "SpoolError",
    "__version__",
]
