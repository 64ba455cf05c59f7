"""greendc: an open-source energy monitor for data centres.

The core package: configuration schema, domain model, metric catalogue, decoding, line
protocol, KPI math and the command line. It imports none of collector/, exporters/ or
dashboards/ except in ``greendc.cli``, the composition root, which loads them lazily.
"""

from greendc._errors import (
    ConfigError,
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
    "DecodeError",
    "GreendcError",
    "KPIError",
    "NotAvailableError",
    "SinkError",
    "SinkUnavailable",
    "SpoolError",
    "__version__",
]
