"""Fault injection: the things real meters and gateways do wrong, each at a chosen rate.

A rate is the probability per reading (per meter per step) that the fault starts.

    dropout        the reading is not sent
    stuck          the meter repeats its last values (power and counters) for
                   ``stuck_samples`` readings, timestamps still advancing
    spike          power_w is multiplied by ``spike_factor`` for one reading
    counter_reset  the meter's counters restart from zero (and keep counting from there)
    clock_skew     the timestamp is off by ± ``skew_seconds`` for one reading
    invalid_json   the message carrying the reading is truncated (not valid JSON / number)
    nan            one value is NaN (JSON ``NaN``, which strict parsers reject)
    string         one value is a string ("n/a")
    unknown_meter  an extra reading for a meter the config does not know

:func:`parse_faults` reads the command-line form ``dropout=0.01,spike=0.001`` (``all=R``
sets every rate). The injector is deterministic for a given seed.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, field, fields, replace

from greendc._errors import ConfigError

FAULT_KINDS = (
    "dropout",
    "stuck",
    "spike",
    "counter_reset",
    "clock_skew",
    "invalid_json",
    "nan",
    "string",
    "unknown_meter",
)


@dataclass(frozen=True)
class FaultRates:
    """Per-reading probabilities of each fault (0 = never), with the faults' sizes."""

    dropout: float = 0.0
    stuck: float = 0.0
    spike: float = 0.0
    counter_reset: float = 0.0
    clock_skew: float = 0.0
    invalid_json: float = 0.0
    nan: float = 0.0
    string: float = 0.0
    unknown_meter: float = 0.0
    stuck_samples: int = 30
    spike_factor: float = 50.0
    skew_seconds: float = 900.0

    def __post_init__(self) -> None:
        for kind in FAULT_KINDS:
            rate = getattr(self, kind)
            if not 0.0 <= rate <= 1.0:
                raise ConfigError(f"faults.{kind}: rate must be between 0 and 1 (got {rate!r})")

    @property
    def any(self) -> bool:
        """Whether any fault is enabled."""
        return any(getattr(self, k) > 0 for k in FAULT_KINDS)


def parse_faults(text: str) -> FaultRates:
    """Parse ``kind=rate,...`` (kinds: FAULT_KINDS, ``all``, and the size settings).

    Raises :class:`ConfigError` naming the bad item.
    """
    known = {f.name: f.type for f in fields(FaultRates)}
    values: dict[str, float | int] = {}
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep:
            raise ConfigError(f"--faults: {item!r} should look like kind=rate, e.g. dropout=0.01")
        if key != "all" and key not in known:
            raise ConfigError(f"--faults: {key!r} is not one of all, {', '.join(known)}")
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"--faults: {key}={raw!r} is not a number") from None
        if key == "all":
            values.update(dict.fromkeys(FAULT_KINDS, value))
        elif key == "stuck_samples":
            values[key] = int(value)
        else:
            values[key] = value
    return FaultRates(**values)  # type: ignore[arg-type]


@dataclass
class Sample:
    """One reading on its way to being published (values may be corrupted on purpose)."""

    ts: float
    site: str
    meter: str
    fields: dict[str, object]
    corrupt: bool = False  # the message carrying it must be made invalid


@dataclass
class FaultInjector:
    """Applies :class:`FaultRates` to a stream of samples; counts what it injected."""

    rates: FaultRates
    seed: int = 0
    counts: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._rng = random.Random(f"faults/{self.seed}")
        self._stuck: dict[tuple[str, str], tuple[int, dict[str, object]]] = {}
        self._offset: dict[tuple[str, str], dict[str, float]] = {}
        self._unknown_n = 0
        self._enabled = self.rates.any

    def _hit(self, kind: str) -> bool:
        rate: float = getattr(self.rates, kind)
        if rate > 0 and self._rng.random() < rate:
            self.counts[kind] += 1
            return True
        return False

    def apply(self, ts: float, site: str, meter: str, values: dict[str, float]) -> list[Sample]:
        """The samples to publish for one true reading (none, one, or more)."""
        if not self._enabled:
            return [Sample(ts, site, meter, dict(values))]
        key = (site, meter)
        out_fields: dict[str, object] = dict(values)

        # A reset persists: every later reading counts from the reset point.
        if self._hit("counter_reset"):
            self._offset[key] = {k: v for k, v in values.items() if k in ("energy_wh", "water_l")}
        for k, off in self._offset.get(key, {}).items():
            if k in out_fields:
                out_fields[k] = round(values[k] - off, 3)

        if key in self._stuck:
            left, frozen = self._stuck[key]
            out_fields = dict(frozen)
            if left <= 1:
                del self._stuck[key]
            else:
                self._stuck[key] = (left - 1, frozen)
        elif self._hit("stuck"):
            self._stuck[key] = (self.rates.stuck_samples, dict(out_fields))

        if self._hit("dropout"):
            return []
        if "power_w" in out_fields and self._hit("spike"):
            out_fields["power_w"] = float(values["power_w"]) * self.rates.spike_factor
        if self._hit("clock_skew"):
            ts += self._rng.choice((-1.0, 1.0)) * self.rates.skew_seconds
        if out_fields and self._hit("nan"):
            out_fields[self._rng.choice(sorted(out_fields))] = math.nan
        if out_fields and self._hit("string"):
            out_fields[self._rng.choice(sorted(out_fields))] = "n/a"
        sample = Sample(ts, site, meter, out_fields, corrupt=self._hit("invalid_json"))
        out = [sample]
        if self._hit("unknown_meter"):
            self._unknown_n += 1
            out.append(replace(sample, meter=f"ghost-{self._unknown_n}", corrupt=False))
        return out
