"""The shipped device profiles' examples as test cases, for the unit and integration tests.

Each profile (greendc/data/profiles/NAME.yaml) carries the payloads it was written from and
the rows greendc must store for them; these helpers build a site and a config around one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from greendc.config import load_profile, profile_names

FIELDS = ("power_w", "energy_wh", "water_l", "temp_c")
SITE = "sg1"


@dataclass(frozen=True)
class Example:
    """One example of a profile: a message and what greendc makes of it."""

    profile: str
    index: int
    topic: str
    payload: bytes
    now_s: float
    site_timezone: str
    readings: list[dict[str, Any]]  # meter, ts (ms or "arrival"), fields
    ignored: list[str]

    @property
    def id(self) -> str:
        return f"{self.profile}[{self.index}]"

    def meters(self) -> list[str]:
        return [r["meter"] for r in self.readings]


def examples(profile: str) -> list[Example]:
    """Every example of one profile."""
    out = []
    for i, ex in enumerate(load_profile(profile)["examples"]):
        if "payload_text" in ex:
            payload = str(ex["payload_text"]).encode()
        else:
            payload = json.dumps(ex["payload"]).encode()
        out.append(
            Example(
                profile=profile,
                index=i,
                topic=ex["topic"],
                payload=payload,
                now_s=float(ex["now"]),
                site_timezone=ex.get("site_timezone", "UTC"),
                readings=list(ex.get("readings", [])),
                ignored=list(ex.get("ignored", [])),
            )
        )
    return out


def all_examples() -> list[Example]:
    """Every example of every shipped profile."""
    return [ex for name in profile_names() for ex in examples(name)]


def site(meters: list[str], timezone: str = "UTC") -> dict[str, Any]:
    """A site whose meters are those an example stores (roles do not matter here)."""
    return {
        "name": SITE,
        "timezone": timezone,
        "grid_zone": "SG",
        "installed_it_kw": 100,
        "pue_category": 1,
        "meters": [{"name": m, "role": "other_overhead"} for m in dict.fromkeys(meters)],
    }


def profile_mapping(profile: str, **extra: Any) -> dict[str, Any]:
    """The mapping a user writes to use a profile for the test site."""
    mapping: dict[str, Any] = {"profile": profile, **extra}
    if "site" not in extra and profile != "native":
        mapping["site"] = SITE
    return mapping


def expected_row(reading: dict[str, Any], role: str = "other_overhead") -> tuple[Any, ...]:
    """A reading of an example as the embedded store's row (ts left as given)."""
    return (
        SITE,
        reading["meter"],
        role,
        reading["ts"],
        *(float(reading[f]) if f in reading else None for f in FIELDS),
    )
