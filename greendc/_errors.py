"""The greendc exception tree.

    GreendcError                 base of everything greendc raises on purpose
    ├── ConfigError              a configuration file or environment value is invalid
    ├── ConfigUnreadable         the configuration file itself cannot be read (missing, no access)
    ├── DecodeError              a payload could not be turned into readings (carries a reason)
    ├── SinkError                a sink could not store a batch (carries the sink name)
    │   └── SinkUnavailable      the sink's server could not be reached (retry later)
    ├── SpoolError               the durable spool could not accept or replay a batch
    ├── KPIError                 a KPI could not be computed from the data given
    └── NotAvailableError        a command or feature is not built yet

Third-party errors are re-raised as one of these with ``raise ... from exc`` so the
cause stays visible in tracebacks while callers catch one family.
"""

from __future__ import annotations


class GreendcError(Exception):
    """Base of every error greendc raises on purpose."""


class ConfigError(GreendcError):
    """A configuration value is invalid; the message names the field path and the value."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems: list[str] = list(problems or [message])


class ConfigUnreadable(GreendcError):
    """The configuration file itself could not be read (missing, a folder, no permission).

    An operational error, not an invalid configuration: there is nothing to validate yet,
    and the fix is a path or a permission, not the file's content. A file the configuration
    refers to (a secret, factors, a web config) that cannot be read is a :class:`ConfigError`
    naming the field.
    """


class DecodeError(GreendcError):
    """A payload was rejected; ``reason`` is one of the catalogued rejection reasons."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class SinkError(GreendcError):
    """A sink failed to store a batch."""

    def __init__(self, sink: str, message: str) -> None:
        super().__init__(f"sink {sink}: {message}")
        self.sink = sink


class SinkUnavailable(SinkError):
    """The sink's server could not be reached; the batch should be retried later."""


class SpoolError(GreendcError):
    """The durable spool could not accept or replay a batch."""


class KPIError(GreendcError):
    """A KPI could not be computed from the data given."""


class NotAvailableError(GreendcError):
    """A command or feature that is not built yet."""
