"""Re-exports from tests.support (the old import path, kept for existing tests)."""

from tests.support.builders import (
    PUE_TARGETS,
    SITES,
    idle_health,
    make_settings,
    settings_from,
    site_config,
)
from tests.support.mqtt import Publisher
from tests.support.polling import wait_until

__all__ = [
    "PUE_TARGETS",
    "SITES",
    "Publisher",
    "idle_health",
    "make_settings",
    "settings_from",
    "site_config",
    "wait_until",
]
