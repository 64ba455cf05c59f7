"""The exit codes of every ``greendc`` command: one table, documented in the README.

argparse exits with 2 for a command line it cannot parse, which is :attr:`ExitCode.INVALID`
too: both mean "nothing was done; fix what you asked for".
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What a ``greendc`` command's exit status means."""

    OK = 0
    """The command did what was asked."""
    FAILURE = 1
    """An operational error: a file, server or broker could not be reached or used (a missing
    config file, InfluxDB down, messages the broker never acknowledged). The message says
    what and where; the same command may work once that is fixed."""
    INVALID = 2
    """Invalid configuration or arguments; nothing was done. The message names the field."""
    NO_DATA = 3
    """``greendc report``: the files were written but no measured figure is ``ok`` (no data,
    no meter, every figure incomplete or withheld; contracted energy alone does not count).
    Each site's notes in them say why."""


__all__ = ["ExitCode"]
