"""Decoding: a pure function from (topic, payload bytes) to readings or rejections.

Every payload is untrusted. :class:`Decoder` is built once from the settings (topic
patterns, JSON paths, units, known meters, limits) and its :meth:`Decoder.decode` never
raises for any input: it returns the accepted :class:`~greendc.model.Reading` objects and a
list of ``(reason, detail)`` rejections, reasons taken from
:data:`greendc.catalogue.REJECTION_REASONS`. A batch that parses as JSON is judged item by
item: one bad item is rejected on its own and the good ones are kept. A document that is not
strict JSON (NaN or Infinity literals, invalid UTF-8, a number beyond the float range,
nesting deeper than 1024) is refused whole, since no part of it can be trusted.

Timestamps are Unix seconds (float or int; numbers above 1e11 are read as milliseconds)
or RFC 3339 strings with an offset. A message without a timestamp is stamped with the
time it was received, unless the mapping says the timestamp is required.

Arrival stamps never collide: every sink keys a point by (site, meter, millisecond), so two
readings of one meter stamped on arrival in the same millisecond (a persistent session's
backlog replayed by the broker arrives hundreds per millisecond) would overwrite each other
silently. Each meter's arrival stamp is therefore at least one millisecond after its previous
one (a per-meter monotonic nudge): a backlog of N messages is stored as N points, in arrival
order, spread over N milliseconds from the moment it arrived. Those are arrival times, not
measurement times: where the measurement time matters, the device must send it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, tzinfo
from typing import Any, NamedTuple, cast
from zoneinfo import ZoneInfo

import orjson

from greendc.config import (
    IDENT_RE,
    WILDCARD,
    PathKey,
    Settings,
    TopicMapping,
    ValueMapping,
    parse_path,
    topic_variables,
)
from greendc.model import UNITS, Quantity, Reading
from greendc.sparkplug import MessageType, Sessions

Rejection = tuple[str, str]
# Why a message was set aside without being an error (its reason, a detail): the label
# values are greendc.catalogue.IGNORE_REASONS.
Ignored = tuple[str, str]


class Decoded(NamedTuple):
    """What one message gave: readings, rejections (errors) and ignores (not readings).

    Sparkplug B adds two requests to the agent: messages to publish (a rebirth request to
    a node whose sequence skipped) and meters that are stale now (a node's or device's
    death).
    """

    readings: list[Reading]
    rejections: list[Rejection]
    ignored: list[Ignored]
    publish: list[tuple[str, bytes]] = []  # noqa: RUF012 (NamedTuple default, never mutated)
    stale: list[tuple[str, str]] = []  # noqa: RUF012


_NOTHING: list[Any] = []  # shared, never appended to: the native path's empty extras
_new_decoded = tuple.__new__  # Decoded(...) without NamedTuple's __new__ (as _new_reading)


@dataclass
class _Extra:
    """What a message gives besides readings and rejections (see Decoded)."""

    ignored: list[Ignored]
    publish: list[tuple[str, bytes]]
    stale: list[tuple[str, str]]


_IDENT = re.compile(IDENT_RE)
_COUNTERS = frozenset({Quantity.ENERGY_WH.value, Quantity.WATER_L.value})
_MS_THRESHOLD = 1e11  # a Unix-seconds value this large would be in the year 5138
_MS_THRESHOLD_X1000 = 1e14  # integers beyond take parse_timestamp's path (and its errors)
# The topic cache holds accepted topics only, bounded in bytes: its keys' characters plus an
# estimate of each entry's own cost (dict slot, str header, result tuple).
_TOPIC_CACHE_MAX_BYTES = 32 * 1024 * 1024
_TOPIC_CACHE_ENTRY_BYTES = 200
_DETAIL_MAX = 120


def _compile_path(path: str) -> tuple[str | int, ...]:
    if not path:
        return ()
    return tuple(int(p) if p.isdigit() else p for p in path.split("."))


def _get(obj: Any, path: tuple[str | int, ...]) -> Any:
    """Follow a compiled dotted path; None when any step is missing."""
    for key in path:
        if isinstance(key, int):
            if not isinstance(obj, list) or key >= len(obj):
                return None
            obj = obj[key]
        else:
            if not isinstance(obj, dict):
                return None
            obj = obj.get(key)
            if obj is None:
                return None
    return obj


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _DETAIL_MAX else text[: _DETAIL_MAX - 3] + "..."


@dataclass(frozen=True)
class _Compiled:
    mapping: TopicMapping
    segments: tuple[str, ...]
    site_index: int | None
    meter_index: int | None
    multi_level: bool  # ends in '#'
    items_path: tuple[str | int, ...]
    meter_path: tuple[str | int, ...]
    ts_path: tuple[str | int, ...]
    # (field, key or path, factor, is a counter): a key (str) when the path is one segment
    values: tuple[tuple[str, str | tuple[str | int, ...], float, bool], ...]
    plain_values: bool  # every value's path is one key deep (the common case)
    fast: _FastItems | None  # the straight-line path for plain mappings (see _fast_items)
    # the mapping language beyond the native shape (see _Plan), or Sparkplug B
    rich: _Plan | _SparkplugPlan | None = None


def _compile(m: TopicMapping) -> _Compiled:
    if not m.legacy:
        return _Compiled(
            mapping=m,
            segments=(),
            site_index=None,
            meter_index=None,
            multi_level=False,
            items_path=(),
            meter_path=(),
            ts_path=(),
            values=(),
            plain_values=False,
            fast=None,
            rich=_SparkplugPlan(m) if m.payload == "sparkplug" else _Plan(m),
        )
    segs = tuple(m.topic.split("/"))
    multi = segs[-1] == "#"
    # A legacy mapping's paths are plain dotted text (TopicMapping.legacy).
    paths = [cast(str, v.path) for v in m.values]
    values = tuple(
        (
            v.quantity.value,
            p if "." not in p and not p.isdigit() else _compile_path(p),
            UNITS[v.quantity][v.unit],
            v.quantity.value in _COUNTERS,
        )
        for v, p in zip(m.values, paths, strict=True)
    )
    plain_values = all(type(v[1]) is str for v in values)
    meter_path = _compile_path(m.meter_path)
    ts_path = _compile_path(cast(str, m.timestamp_path))
    meter_index = segs.index("{meter}") if "{meter}" in segs else None
    meter_in_topic = meter_index is not None
    fast = None
    # A meter key that is text: item[key] then raises for anything but an object (a list
    # indexed by a number would not), which is how the fast path hands such items over.
    meter_key_ok = meter_in_topic or (len(meter_path) == 1 and type(meter_path[0]) is str)
    if plain_values and meter_key_ok and len(ts_path) <= 1:
        fast = _fast_items(meter_in_topic, meter_path, ts_path, values)
    return _Compiled(
        mapping=m,
        segments=segs[:-1] if multi else segs,
        site_index=segs.index("{site}") if "{site}" in segs else None,
        meter_index=meter_index,
        multi_level=multi,
        items_path=_compile_path(m.items_path),
        meter_path=meter_path,
        ts_path=ts_path,
        values=values,
        plain_values=plain_values,
        fast=fast,
    )


# The fast path's signature: (items, site, topic meter, the site's roles, timestamp of an
# item without one or None, lo, hi, readings, rejections, general, general's arguments).
_FastItems = Callable[..., None]
# Timestamps the fast path takes as Unix seconds without further checks; anything else
# (milliseconds, text, out of range) goes to the general path.
_FAST_TS_MAX = 1e10


def _fast_items(
    meter_in_topic: bool,
    meter_path: tuple[str | int, ...],
    ts_path: tuple[str | int, ...],
    values: tuple[tuple[str, str | tuple[str | int, ...], float, bool], ...],
) -> _FastItems:
    """A decoder loop written out for one mapping whose paths are each one key deep.

    The general loop in :meth:`Decoder._general_items` interprets the mapping for every
    item: a loop over its values with a tuple to unpack, a factor and a counter flag to test
    each time. For gateway batches that interpretation was a third of the decoder's time, so
    for the common mappings this writes the loop out once, at start-up, with the keys,
    factors and counter checks as constants (as :mod:`dataclasses` writes ``__init__``).
    It takes only items that are wholly valid and already known; every other item goes to
    the general loop, which decides its reading or rejection, so both paths give the same
    result for every input (tested with hypothesis).
    """
    lines = [
        "def fast(items, site, meter, roles, default_ts, lo, hi, readings, rejections,"
        " general, args, arrival, now_s):",
        "    append = readings.append",
        "    role = roles.get(meter) if meter is not None else None",
        "    for item in items:",
    ]
    if meter_in_topic:
        lines += [
            "        if role is None or type(item) is not dict:",
            "            general(*args, (item,), readings, rejections)",
            "            continue",
        ]
    else:
        # Not a dict, no meter, a meter that is not text or not known (yet): a TypeError
        # or KeyError, and the general path decides. Roles are keyed by text only.
        lines += [
            "        try:",
            f"            meter = item[{meter_path[0]!r}]",
            "            role = roles[meter]",
            "        except (KeyError, TypeError):",
            "            general(*args, (item,), readings, rejections)",
            "            continue",
        ]
    lines.append(f"        ts = item.get({ts_path[0]!r})" if ts_path else "        ts = None")
    lines += [
        "        if ts is None:",
        "            ts = default_ts",
        # No timestamp anywhere: stamped on arrival once the item is known to be good (the
        # nudge is taken only by readings that are kept, as on the general path).
        "        if ts is None and arrival is not None:",
        "            ts_ms = None",
        "        elif type(ts) is int and lo <= ts <= hi:",
        "            ts_ms = ts * 1000",
        "        elif type(ts) is float and lo <= ts <= hi:",
        "            ts_ms = round(ts * 1000)",
        "        else:",
        "            general(*args, (item,), readings, rejections)",
        "            continue",
        "        fields = {}",
    ]
    for field, key, factor, counter in values:
        bad = "v - v != 0.0 or v < 0.0" if counter else "v - v != 0.0"
        lines += [
            f"        v = item.get({key!r})",
            "        if v is not None:",
            "            if type(v) is not float:",
            "                if type(v) is not int:",
            "                    general(*args, (item,), readings, rejections)",
            "                    continue",
            "                v = float(v)",
            f"            if {bad}:",
            "                general(*args, (item,), readings, rejections)",
            "                continue",
        ]
        if factor != 1.0:
            lines += [
                f"            v = v * {factor!r}",
                "            if v - v != 0.0:",
                "                general(*args, (item,), readings, rejections)",
                "                continue",
            ]
        lines.append(f"            fields[{field!r}] = v")
    lines += [
        "        if not fields:",
        "            general(*args, (item,), readings, rejections)",
        "            continue",
        "        if ts_ms is None:",
        "            ts_ms = arrival(site, meter, now_s)",
        "        append(new(Reading, (site, meter, role, ts_ms, fields)))",
    ]
    namespace: dict[str, Any] = {"new": tuple.__new__, "Reading": Reading}
    exec(compile("\n".join(lines), "<greendc.decode fast path>", "exec"), namespace)
    return cast(_FastItems, namespace["fast"])


def parse_timestamp(value: Any, naive_tz: tzinfo | None = None) -> float:
    """Unix seconds from a number (seconds, or milliseconds above 1e11) or RFC 3339 text.

    Text without an offset is read in ``naive_tz`` when given (a mapping's
    ``naive_timezone``; in a repeated hour at the end of summer time, the first of the two).
    Raises ValueError for anything else, including text without an offset and no zone.
    """
    if isinstance(value, bool):
        raise ValueError("a boolean is not a timestamp")
    if isinstance(value, int | float):
        ts = float(value)
        if not math.isfinite(ts):
            raise ValueError("not finite")
        return ts / 1000.0 if abs(ts) >= _MS_THRESHOLD else ts
    if isinstance(value, str):
        dt = datetime.fromisoformat(value)
        if dt.tzinfo is None:
            if naive_tz is None:
                raise ValueError(
                    "RFC 3339 timestamps need an offset such as Z or +08:00 (or set the"
                    " mapping's naive_timezone)"
                )
            dt = dt.replace(tzinfo=naive_tz)
        return dt.timestamp()
    raise ValueError(f"{type(value).__name__} is not a timestamp")


# Reading(...) goes through NamedTuple's generated __new__; this is the same tuple, 0.15 µs
# cheaper per reading on the batch path.
_new_reading = tuple.__new__


def _bad_timestamp(site: str, meter: str, raw_ts: Any, exc: Exception) -> Rejection:
    """The rejection of a timestamp that does not parse, with the parser's reason."""
    return ("bad_timestamp", f"{site}/{meter}: ts={_short(raw_ts)}: {_short(str(exc))}")


def _out_of_window(site: str, meter: str, ts: float, now_s: float, hi: float) -> Rejection:
    """The rejection of a timestamp outside the accepted window (after ``hi``, else before)."""
    if ts > hi:
        return ("timestamp_future", f"{site}/{meter}: ts={ts:.3f} is {ts - now_s:.0f} s ahead")
    return ("timestamp_past", f"{site}/{meter}: ts={ts:.3f} is {now_s - ts:.0f} s old")


class Decoder:
    """Turns MQTT messages into validated readings, per the configured mappings.

    Keeps two bounded caches (topic matches, accepted unknown meters) and each admitted
    meter's last arrival stamp (see the module docstring); otherwise pure.
    """

    def __init__(self, settings: Settings, *, fast_path: bool = True) -> None:
        """``fast_path=False`` interprets every mapping item by item (the reference path)."""
        self._mappings = [_compile(m) for m in settings.mappings]
        if not fast_path:
            self._mappings = [replace(c, fast=None) for c in self._mappings]
        v = settings.validation
        self._max_payload = v.max_payload_bytes
        self._max_items = v.max_readings_per_message
        self._max_future_s = v.max_future_seconds
        self._max_past_s = v.max_past_seconds
        # The agent's system clock minus its steady clock after a step (collector/clock.py):
        # the timestamp window then spans both clocks, so no batch is refused for the step.
        self.clock_step_s = 0.0
        self._accept_unknown = v.unknown_meters == "accept"
        self._max_meters = v.max_meters
        self._roles: dict[tuple[str, str], str] = {
            (s.name, m.name): m.role.value for s in settings.sites for m in s.meters
        }
        self._sites = frozenset(s.name for s in settings.sites)
        self._site_roles: dict[str, dict[str, str]] = {
            s.name: {m.name: m.role.value for m in s.meters} for s in settings.sites
        }
        self._max_topic = v.max_topic_bytes
        self._site_tz: dict[str, tzinfo] = {s.name: ZoneInfo(s.timezone) for s in settings.sites}
        self._unknown_seen: set[tuple[str, str]] = set()
        self._topic_cache: dict[str, tuple[_Compiled, str, str | None]] = {}
        self._topic_cache_bytes = 0
        # Bounded like the meters themselves: only admitted meters get an entry.
        self._arrival_ms: dict[tuple[str, str], int] = {}
        # Sparkplug B: what each edge node's births said (greendc.sparkplug.Sessions), and
        # when a rebirth was last asked of a node (at most one request per node a second).
        self._sparkplug = Sessions()
        self._extra: _Extra | None = None
        self._rebirth_asked_ms: dict[tuple[str, str], int] = {}

    @property
    def subscriptions(self) -> list[str]:
        """The MQTT filters to subscribe to, one per mapping, without overlaps.

        A filter another one covers is left out: a broker delivers a message once per
        matching subscription, so ``tele/+/SENSOR`` next to ``tele/+/+`` would store every
        reading twice.
        """
        return _without_overlaps(m.mapping.subscription for m in self._mappings)

    def site_subscriptions(self) -> list[str]:
        """Filters for the configured sites only: ``{site}`` replaced by each site's name."""
        out: list[str] = []
        for c in self._mappings:
            if c.site_index is None:
                if c.mapping.site in self._sites:
                    out.append(c.mapping.subscription)
                continue
            for site in sorted(self._sites):
                segs = c.mapping.subscription.split("/")
                segs[c.site_index] = site
                out.append("/".join(segs))
        return _without_overlaps(out)

    # -- topic --------------------------------------------------------------------------
    def _match(self, topic: str) -> tuple[_Compiled, str, str | None] | Rejection:
        n = len(topic)
        # Before any lookup (hashing a 64 KB topic costs as much as matching it). A UTF-8
        # character is at most 4 bytes: only a long topic needs encoding to be measured.
        if n > self._max_topic // 4 and (
            n > self._max_topic or len(topic.encode("utf-8", "surrogatepass")) > self._max_topic
        ):
            return ("topic_too_long", f"{n:,} characters > {self._max_topic} bytes")
        hit = self._topic_cache.get(topic)
        if hit is not None:
            return hit
        result = self._match_uncached(topic)
        if isinstance(result[0], str):
            # Never cached: a publisher could otherwise fill the cache with rejected topics.
            return result
        cost = n + _TOPIC_CACHE_ENTRY_BYTES
        if self._topic_cache_bytes + cost > _TOPIC_CACHE_MAX_BYTES:
            self._topic_cache.clear()
            self._topic_cache_bytes = 0
        self._topic_cache[topic] = result
        self._topic_cache_bytes += cost
        return result

    def _match_uncached(self, topic: str) -> tuple[_Compiled, str, str | None] | Rejection:
        parts = topic.split("/")
        for c in self._mappings:
            if c.rich is not None:
                found = c.rich.topic_re.fullmatch(topic)
                if found is None:
                    continue
                if isinstance(c.rich, _SparkplugPlan) and c.rich.is_state(topic):
                    return (c, "", None)  # a host's STATE: no site, ignored by the plan
                site = found.groupdict().get("site") or c.mapping.site
                assert site is not None  # config validation guarantees a site source
                if not _IDENT.fullmatch(site):
                    return ("bad_identifier", f"site {_short(site)} in topic {_short(topic)}")
                if site not in self._sites:
                    return ("unknown_site", f"site {site!r} (topic {_short(topic)})")
                return (c, site, None)
            segs = c.segments
            if c.multi_level:
                if len(parts) < len(segs):
                    continue
            elif len(parts) != len(segs):
                continue
            ok = True
            for seg, part in zip(segs, parts, strict=False):
                if seg == "+" or seg.startswith("{"):
                    if not part:
                        ok = False
                        break
                elif seg != part:
                    ok = False
                    break
            if not ok:
                continue
            site = parts[c.site_index] if c.site_index is not None else c.mapping.site
            assert site is not None  # config validation guarantees a site source
            if not _IDENT.fullmatch(site):
                return ("bad_identifier", f"site {_short(site)} in topic {_short(topic)}")
            if site not in self._sites:
                return ("unknown_site", f"site {site!r} (topic {_short(topic)})")
            meter = parts[c.meter_index] if c.meter_index is not None else None
            if meter is not None and not _IDENT.fullmatch(meter):
                return ("bad_identifier", f"meter {_short(meter)} in topic {_short(topic)}")
            return (c, site, meter)
        return ("no_mapping", f"topic {_short(topic)}")

    # -- meters -------------------------------------------------------------------------
    def _role(self, site: str, meter: str) -> str | Rejection:
        role = self._roles.get((site, meter))
        if role is not None:
            return role
        if not self._accept_unknown:
            return ("unknown_meter", f"{site}/{meter}")
        key = (site, meter)
        if key not in self._unknown_seen:
            if len(self._roles) + len(self._unknown_seen) >= self._max_meters:
                return ("series_cap", f"{site}/{meter}: cap of {self._max_meters} meters reached")
            self._unknown_seen.add(key)
            # Admitted for good: later items take the fast path (bounded by max_meters).
            self._site_roles.setdefault(site, {})[meter] = "unknown"
        return "unknown"

    def _arrival(self, site: str, meter: str, now_s: float) -> int:
        """The arrival stamp (ms) of a reading without a timestamp: never one already used."""
        key = (site, meter)
        ts_ms = round(now_s * 1000)
        last = self._arrival_ms.get(key)
        if last is not None and ts_ms <= last:
            ts_ms = last + 1
        self._arrival_ms[key] = ts_ms
        return ts_ms

    # -- payload ------------------------------------------------------------------------
    def decode(
        self, topic: str, payload: bytes, now_s: float
    ) -> tuple[list[Reading], list[Rejection]]:
        """Decode one message. Never raises; returns (readings, rejections).

        Messages a mapping sets aside as not readings (:meth:`decode_full`) appear in
        neither list.
        """
        decoded = self.decode_full(topic, payload, now_s)
        return decoded.readings, decoded.rejections

    def decode_full(self, topic: str, payload: bytes, now_s: float) -> Decoded:
        """Decode one message. Never raises; also says what was ignored, and why."""
        try:
            readings, rejections = self._decode(topic, payload, now_s)
        except Exception as exc:  # a decoder bug must not take the agent down
            self._extra = None
            readings = []
            rejections = [("bad_structure", f"unexpected {type(exc).__name__}: {_short(str(exc))}")]
        extra = self._extra
        if extra is None:  # the native path: no objects beyond the result
            return _new_decoded(Decoded, (readings, rejections, _NOTHING, _NOTHING, _NOTHING))
        self._extra = None
        return Decoded(readings, rejections, extra.ignored, extra.publish, extra.stale)

    def _decode(
        self, topic: str, payload: bytes, now_s: float
    ) -> tuple[list[Reading], list[Rejection]]:
        if len(payload) > self._max_payload:
            return [], [("payload_too_large", f"{len(payload)} bytes > {self._max_payload}")]
        match = self._match(topic)
        if isinstance(match[0], str):
            return [], [match]
        c, site, meter = match
        if c.rich is not None:
            # What a mapping-language message gives besides readings, handed to decode_full
            # beside the result so the native path allocates nothing for it.
            self._extra = extra = _Extra([], [], [])
            return c.rich.decode(self, topic, site, payload, now_s, extra)
        m = c.mapping
        if m.payload == "number":
            return self._decode_number(c, site, meter, payload, now_s)
        try:
            # orjson: strict JSON (NaN and Infinity literals are not JSON), UTF-8 checked,
            # nesting capped at 1024, and ~10x faster than the json module.
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            return [], [_json_rejection(topic, exc)]
        if c.items_path:
            items = _get(doc, c.items_path)
            if not isinstance(items, list):
                return [], [
                    ("bad_structure", f"no array at {m.items_path!r} (topic {_short(topic)})")
                ]
        elif isinstance(doc, list):
            items = doc
        elif isinstance(doc, dict):
            items = [doc]
        else:
            return [], [("bad_structure", f"expected an object or array, got {_short(doc)}")]
        if len(items) > self._max_items:
            return [], [("too_many_readings", f"{len(items)} items > {self._max_items}")]
        outer = doc if isinstance(doc, dict) else None
        return self._items(c, site, meter, items, outer, now_s)

    def _decode_number(
        self, c: _Compiled, site: str, meter: str | None, payload: bytes, now_s: float
    ) -> tuple[list[Reading], list[Rejection]]:
        assert meter is not None  # config validation: number payloads have {meter}
        role = self._role(site, meter)
        if isinstance(role, tuple):
            return [], [role]
        try:
            raw = float(payload.decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            return [], [("non_numeric", f"{site}/{meter}: payload {_short(payload[:40])}")]
        field, _key, factor, counter = c.values[0]
        value = raw * factor
        if not math.isfinite(value):  # nan/inf text, or finite but beyond range once converted
            return [], [("non_finite", f"{site}/{meter}: {field}={raw}")]
        if counter and value < 0:
            return [], [("negative_counter", f"{site}/{meter}: {field}={raw}")]
        return [Reading(site, meter, role, self._arrival(site, meter, now_s), {field: value})], []

    def _items(
        self,
        c: _Compiled,
        site: str,
        topic_meter: str | None,
        items: list[Any],
        outer: dict[str, Any] | None,
        now_s: float,
    ) -> tuple[list[Reading], list[Rejection]]:
        readings: list[Reading] = []
        rejections: list[Rejection] = []
        if c.fast is None:
            self._general_items(c, site, topic_meter, outer, now_s, items, readings, rejections)
            return readings, rejections
        # An item without a timestamp and no message-level one is stamped on arrival (or,
        # when the timestamp is required, handed to the general path, which rejects it).
        default_ts = None
        if outer is not None and c.ts_path:
            default_ts = _get(outer, c.ts_path)
        c.fast(
            items,
            site,
            topic_meter,
            self._site_roles[site],
            default_ts,
            max(0.0, now_s - self._max_past_s + min(0.0, self.clock_step_s)),
            min(_FAST_TS_MAX, now_s + self._max_future_s + max(0.0, self.clock_step_s)),
            readings,
            rejections,
            self._general_items,
            (c, site, topic_meter, outer, now_s),
            None if c.mapping.timestamp_required else self._arrival,
            now_s,
        )
        return readings, rejections

    def _general_items(
        self,
        c: _Compiled,
        site: str,
        topic_meter: str | None,
        outer: dict[str, Any] | None,
        now_s: float,
        items: Iterable[Any],
        readings: list[Reading],
        rejections: list[Rejection],
    ) -> None:
        """Judge each item by interpreting the mapping; append its reading or rejection."""
        # Never before 1970, whatever validation.max_past_seconds says (as the fast path); a
        # recent step of the agent's clock widens the window by the step (collector/clock.py).
        lo = max(0.0, now_s - self._max_past_s + min(0.0, self.clock_step_s))
        hi = now_s + self._max_future_s + max(0.0, self.clock_step_s)
        roles = self._site_roles.get(site, {})
        meter_path = c.meter_path
        meter_key = meter_path[0] if len(meter_path) == 1 else None
        values = c.values
        plain = c.plain_values
        ts_path = c.ts_path
        ts_key = ts_path[0] if len(ts_path) == 1 else None
        for item in items:
            if type(item) is not dict:
                rejections.append(
                    ("bad_structure", f"{site}: item {_short(item)} is not an object")
                )
                continue
            meter = topic_meter
            if meter is None:
                meter = item.get(meter_key) if meter_key is not None else _get(item, meter_path)
                if meter is None:
                    rejections.append(
                        ("missing_meter", f"{site}: item has no {c.mapping.meter_path!r}")
                    )
                    continue
                if type(meter) is not str:
                    rejections.append(("bad_identifier", f"{site}: meter {_short(meter)}"))
                    continue
                role = roles.get(meter)
                if role is None and not _IDENT.fullmatch(meter):
                    rejections.append(("bad_identifier", f"{site}: meter {_short(meter)}"))
                    continue
            else:
                role = roles.get(meter)
            if role is None:
                looked_up = self._role(site, meter)
                if isinstance(looked_up, tuple):
                    rejections.append(looked_up)
                    continue
                role = looked_up
            fields: dict[str, float] = {}
            bad: Rejection | None = None
            get = item.get
            for field, key, factor, counter in values:
                value = get(key) if plain or isinstance(key, str) else _get(item, key)
                if value is None:
                    continue
                vt = type(value)
                if vt is float:
                    if value - value != 0.0:  # NaN or infinity, without a function call
                        bad = ("non_finite", f"{site}/{meter}: {field}={value}")
                        break
                elif vt is not int:
                    bad = ("non_numeric", f"{site}/{meter}: {field}={_short(value)}")
                    break
                if counter and value < 0:
                    bad = ("negative_counter", f"{site}/{meter}: {field}={value}")
                    break
                if factor == 1.0:
                    fields[field] = value if vt is float else float(value)
                else:
                    converted = value * factor
                    if converted - converted != 0.0:  # e.g. 1e305 MW is beyond float range in W
                        bad = ("non_finite", f"{site}/{meter}: {field}={value} x {factor}")
                        break
                    fields[field] = converted
            if bad is not None:
                rejections.append(bad)
                continue
            if not fields:
                rejections.append(("no_values", f"{site}/{meter}: none of the mapped values"))
                continue
            if ts_key is not None:
                raw_ts = get(ts_key)
            elif ts_path:
                raw_ts = _get(item, ts_path)
            else:
                raw_ts = None
            if raw_ts is None and outer is not None and ts_path:
                raw_ts = _get(outer, ts_path)
            if raw_ts is None:
                if c.mapping.timestamp_required:
                    rejections.append(("bad_timestamp", f"{site}/{meter}: no timestamp"))
                    continue
                ts_ms = self._arrival(site, meter, now_s)
                readings.append(_new_reading(Reading, (site, meter, role, ts_ms, fields)))
                continue
            else:
                try:
                    tt = type(raw_ts)
                    if tt is float and raw_ts < _MS_THRESHOLD and raw_ts - raw_ts == 0.0:
                        ts = raw_ts  # the common cases, without a function call
                    elif tt is int and -_MS_THRESHOLD_X1000 < raw_ts < _MS_THRESHOLD_X1000:
                        # seconds, or milliseconds above 1e11 (as parse_timestamp)
                        ts = (
                            float(raw_ts)
                            if -_MS_THRESHOLD < raw_ts < _MS_THRESHOLD
                            else raw_ts / 1e3
                        )
                    else:
                        ts = parse_timestamp(raw_ts)
                except (ValueError, OverflowError, OSError) as exc:
                    rejections.append(_bad_timestamp(site, meter, raw_ts, exc))
                    continue
                if not lo <= ts <= hi:
                    rejections.append(_out_of_window(site, meter, ts, now_s, hi))
                    continue
            readings.append(_new_reading(Reading, (site, meter, role, round(ts * 1000), fields)))


def _covers(wide: str, narrow: str) -> bool:
    """Whether every topic the MQTT filter ``narrow`` matches is matched by ``wide``."""
    w, n = wide.split("/"), narrow.split("/")
    for i, seg in enumerate(w):
        if seg == "#":
            return True
        if i >= len(n):
            return False
        if seg == "+":
            if n[i] == "#":
                return False
            continue
        if seg != n[i]:
            return False
    return len(w) == len(n)


def _without_overlaps(filters: Iterable[str]) -> list[str]:
    """The filters in order, without duplicates and without those another one covers."""
    unique = list(dict.fromkeys(filters))
    return [f for f in unique if not any(g != f and _covers(g, f) for g in unique)]


def _json_rejection(topic: str, exc: orjson.JSONDecodeError) -> Rejection:
    """The rejection of a payload that is not strict JSON, with the parser's own words."""
    text = str(exc)
    if "depth limit" in text:
        reason = "too_deep"
    elif "infinity" in text:  # 1e999: valid JSON syntax, not a finite number
        reason = "non_finite"
    else:
        reason = "malformed_json"
    return (reason, f"topic {_short(topic)}: {_short(text)}")


# -- the mapping language (issue 24): device payloads by configuration -------------------------


def _get_at(obj: Any, path: tuple[PathKey, ...], index: int | None) -> Any:
    """Follow a path whose '*' step (if any) stands for array item ``index``."""
    for key in path:
        if key == WILDCARD:
            key = index if index is not None else -1
        if isinstance(key, int):
            if not isinstance(obj, list) or not 0 <= key < len(obj):
                return None
            obj = obj[key]
        else:
            if not isinstance(obj, dict):
                return None
            obj = obj.get(key)
            if obj is None:
                return None
    return obj


class _Template:
    """A meter name template (``{node}-ct1``), compiled to its literal and named parts."""

    __slots__ = ("names", "parts", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.parts: list[tuple[bool, str]] = []
        pos = 0
        for m in re.finditer(r"\{([^{}]*)\}", text):
            if m.start() > pos:
                self.parts.append((False, text[pos : m.start()]))
            self.parts.append((True, m.group(1)))
            pos = m.end()
        if pos < len(text):
            self.parts.append((False, text[pos:]))
        self.names = [p for var, p in self.parts if var]

    def render(self, variables: dict[str, str]) -> str:
        return "".join(variables[p] if var else p for var, p in self.parts)


@dataclass(frozen=True)
class _ValuePlan:
    field: str
    paths: tuple[tuple[PathKey, ...], ...]  # the path, then its fallbacks
    factor: float
    counter: bool


@dataclass(frozen=True)
class _ReadingPlan:
    meter: _Template | None  # None: the topic's {meter}, else meter_path in the item
    values: tuple[_ValuePlan, ...]
    ts_path: tuple[PathKey, ...]
    wildcard: bool  # one reading per array item


def _value_plans(values: list[ValueMapping]) -> tuple[_ValuePlan, ...]:
    return tuple(
        _ValuePlan(
            v.quantity.value,
            v.all_steps,
            UNITS[v.quantity][v.unit],
            v.quantity.value in _COUNTERS,
        )
        for v in values
    )


def _topic_regex(topic: str) -> re.Pattern[str]:
    """A regular expression matching the topics of a mapping, capturing its named segments."""
    segs = topic.split("/")
    out: list[str] = []
    tail = ""
    for i, seg in enumerate(segs):
        if seg == "#" and i == len(segs) - 1:
            tail = "(?:/.*)?" if out else ".*"
            break
        if seg == "+":
            out.append("[^/]+")
            continue
        m = re.search(r"\{([a-z_][a-z0-9_]*)(#?)\}", seg)
        if m is None:
            out.append(re.escape(seg))
        elif m.group(2):
            out.append(f"(?P<{m.group(1)}>.+)")
        else:
            before, after = seg[: m.start()], seg[m.end() :]
            out.append(f"{re.escape(before)}(?P<{m.group(1)}>[^/]+){re.escape(after)}")
    return re.compile("/".join(out) + tail)


class _Plan:
    """A mapping beyond the native shape, compiled once and interpreted per message.

    Slower than the native decoder's written-out loop (every step is looked up), and only
    used for the mappings that need it: the native format keeps its cost per message.
    """

    def __init__(self, m: TopicMapping) -> None:
        self.mapping = m
        self.topic_re = _topic_regex(m.topic)
        self.multi = {n for n, multi in topic_variables(m.topic) if multi}
        self.topic_meter = "meter" in {n for n, _ in topic_variables(m.topic)}
        self.items_path = parse_path(m.items_path)
        self.meter_path = parse_path(m.meter_path)
        self.ts_path = parse_path(m.timestamp_path)
        self.when = tuple(
            (parse_path(path), tuple(v if isinstance(v, list) else [v]))
            for path, v in m.when.items()
        )
        specs: list[_ReadingPlan] = []
        if m.readings is not None:
            for r in m.readings:
                values = _value_plans(r.values)
                specs.append(
                    _ReadingPlan(
                        _Template(r.meter),
                        values,
                        parse_path(r.timestamp_path)
                        if r.timestamp_path is not None
                        else self.ts_path,
                        any(WILDCARD in p for v in values for p in v.paths),
                    )
                )
        else:
            values = _value_plans(m.values)
            specs.append(
                _ReadingPlan(
                    _Template(m.meter) if m.meter is not None else None,
                    values,
                    self.ts_path,
                    any(WILDCARD in p for v in values for p in v.paths),
                )
            )
        self.readings = tuple(specs)

    def decode(
        self,
        dec: Decoder,
        topic: str,
        site: str,
        payload: bytes,
        now_s: float,
        extra: _Extra,
    ) -> tuple[list[Reading], list[Rejection]]:
        ignored = extra.ignored
        m = self.mapping
        if m.ignore:
            ignored.append(("ignored_topic", f"topic {_short(topic)}"))
            return [], []
        found = self.topic_re.fullmatch(topic)
        assert found is not None  # matched when the topic was looked up
        variables = {
            k: (v.replace("/", "-") if k in self.multi else v) for k, v in found.groupdict().items()
        }
        doc: Any
        if m.payload == "number":
            try:
                doc = float(payload.decode("ascii").strip())
            except (UnicodeDecodeError, ValueError) as exc:
                return [], [("non_numeric", f"topic {_short(topic)}: {_short(str(exc))}")]
        else:
            try:
                doc = orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                return [], [_json_rejection(topic, exc)]
        for path, choices in self.when:
            value = _get_at(doc, path, None)
            if value is None or not any(
                (type(value) is bool) == (type(c) is bool) and value == c for c in choices
            ):
                ignored.append(
                    (
                        "filtered",
                        f"topic {_short(topic)}: {'.'.join(map(str, path))}={_short(value)}",
                    )
                )
                return [], []
        if self.items_path:
            items = _get_at(doc, self.items_path, None)
            if not isinstance(items, list):
                return [], [("bad_structure", f"no array at {m.items_path!r} (topic {topic})")]
        elif isinstance(doc, list):
            items = doc
        else:
            items = [doc]
        if len(items) > dec._max_items:
            return [], [("too_many_readings", f"{len(items)} items > {dec._max_items}")]
        outer = doc if isinstance(doc, dict) else None
        readings: list[Reading] = []
        rejections: list[Rejection] = []
        # The same window as the native path (a clock step widens it; nothing before 1970).
        lo = max(0.0, now_s - dec._max_past_s + min(0.0, dec.clock_step_s))
        hi = now_s + dec._max_future_s + max(0.0, dec.clock_step_s)
        naive_tz: tzinfo | None = None
        if m.naive_timezone == "site":
            naive_tz = dec._site_tz[site]
        elif m.naive_timezone is not None:
            naive_tz = ZoneInfo(m.naive_timezone)
        for item in items:
            if m.payload == "json" and not isinstance(item, dict) and len(items) > 1:
                rejections.append(
                    ("bad_structure", f"{site}: item {_short(item)} is not an object")
                )
                continue
            before = len(readings) + len(rejections)
            for spec in self.readings:
                self._reading(
                    dec,
                    spec,
                    site,
                    variables,
                    item,
                    outer,
                    now_s,
                    lo,
                    hi,
                    naive_tz,
                    readings,
                    rejections,
                )
            if len(readings) + len(rejections) == before:
                what = f"{site}: topic {_short(topic)} carries none of the mapped values"
                if m.without_values == "ignore":
                    ignored.append(("not_a_reading", what))
                else:
                    rejections.append(("no_values", what))
        return readings, rejections

    def _reading(
        self,
        dec: Decoder,
        spec: _ReadingPlan,
        site: str,
        variables: dict[str, str],
        item: Any,
        outer: dict[str, Any] | None,
        now_s: float,
        lo: float,
        hi: float,
        naive_tz: tzinfo | None,
        readings: list[Reading],
        rejections: list[Rejection],
    ) -> None:
        """The readings of one spec from one item (one per array item with a '*')."""
        indices: Iterable[int | None] = (None,)
        if spec.wildcard:
            longest = 0
            for v in spec.values:
                for path in v.paths:
                    if WILDCARD in path:
                        arr = _get_at(item, path[: path.index(WILDCARD)], None)
                        if isinstance(arr, list):
                            longest = max(longest, len(arr))
            indices = range(longest)
        for index in indices:
            fields: dict[str, float] = {}
            bad: Rejection | None = None
            for v in spec.values:
                raw = None
                for path in v.paths:
                    raw = _get_at(item, path, index)
                    if raw is not None:
                        break
                if raw is None:
                    continue
                where = f"{site}: {v.field}" + (f"[{index}]" if index is not None else "")
                if type(raw) is bool or not isinstance(raw, int | float):
                    hint = (
                        " (an array: map every item with '*' or one by its index)"
                        if isinstance(raw, list)
                        else ""
                    )
                    bad = ("non_numeric", f"{where}={_short(raw)} is not a number{hint}")
                    break
                value = float(raw) * v.factor
                if not math.isfinite(value):
                    bad = ("non_finite", f"{where}={_short(raw)} x {v.factor}")
                    break
                if v.counter and value < 0:
                    bad = ("negative_counter", f"{where}={raw}")
                    break
                fields[v.field] = value
            if bad is not None:
                rejections.append(bad)
                continue
            if not fields:
                continue
            # The meter: a template, the topic's {meter}, or the item's meter_path.
            meter: Any
            if spec.meter is not None:
                names = dict(variables)
                if index is not None:
                    names["index"] = str(index)
                    names["number"] = str(index + 1)
                meter = spec.meter.render(names)
            elif self.topic_meter:
                meter = variables["meter"]
            else:
                meter = _get_at(item, self.meter_path, None)
                if meter is None:
                    rejections.append(
                        ("missing_meter", f"{site}: item has no {self.mapping.meter_path!r}")
                    )
                    continue
            if type(meter) is not str or not _IDENT.fullmatch(meter):
                rejections.append(
                    ("bad_identifier", f"{site}: meter {_short(meter)} is not a plain identifier")
                )
                continue
            role = dec._site_roles.get(site, {}).get(meter)
            if role is None:
                looked_up = dec._role(site, meter)
                if isinstance(looked_up, tuple):
                    rejections.append(looked_up)
                    continue
                role = looked_up
            raw_ts = _get_at(item, spec.ts_path, None) if spec.ts_path else None
            if raw_ts is None and outer is not None and spec.ts_path and outer is not item:
                raw_ts = _get_at(outer, spec.ts_path, None)
            if raw_ts is None:
                if self.mapping.timestamp_required:
                    rejections.append(("bad_timestamp", f"{site}/{meter}: no timestamp"))
                    continue
                ts_ms = dec._arrival(site, meter, now_s)
            else:
                try:
                    ts = parse_timestamp(raw_ts, naive_tz)
                except (ValueError, OverflowError, OSError) as exc:
                    rejections.append(_bad_timestamp(site, meter, raw_ts, exc))
                    continue
                if not lo <= ts <= hi:
                    rejections.append(_out_of_window(site, meter, ts, now_s, hi))
                    continue
                ts_ms = round(ts * 1000)
            readings.append(_new_reading(Reading, (site, meter, role, ts_ms, fields)))


# -- Sparkplug B ---------------------------------------------------------------------------------

_REBIRTH_EVERY_MS = 1000


class _SparkplugPlan:
    """A ``payload: sparkplug`` mapping: births, data by alias, sequence checks, deaths."""

    def __init__(self, m: TopicMapping) -> None:
        assert m.sparkplug is not None  # config validation
        self.mapping = m
        self.topic_re = _topic_regex(m.topic)
        sp = m.sparkplug
        self.rebirth = sp.rebirth
        self.device_meter = _Template(sp.device_meter)
        self.node_meter = _Template(sp.node_meter)
        # birth name -> [(meter template or None for the default, field, factor, counter)]
        self.metrics: dict[str, list[tuple[_Template | None, str, float, bool]]] = {}
        for metric in sp.metrics:
            self.metrics.setdefault(metric.name, []).append(
                (
                    _Template(metric.meter) if metric.meter else None,
                    metric.quantity.value,
                    UNITS[metric.quantity][metric.unit],
                    metric.quantity.value in _COUNTERS,
                )
            )

    @staticmethod
    def is_state(topic: str) -> bool:
        parts = topic.split("/")
        return len(parts) == 3 and parts[1] == "STATE"

    def _ask_rebirth(
        self, dec: Decoder, group: str, node: str, now_s: float, extra: _Extra
    ) -> None:
        if not self.rebirth:
            return
        from greendc.sparkplug import NAMESPACE, rebirth_request

        now_ms = round(now_s * 1000)
        last = dec._rebirth_asked_ms.get((group, node))
        if last is not None and now_ms - last < _REBIRTH_EVERY_MS:
            return
        if len(dec._rebirth_asked_ms) >= dec._max_meters:
            dec._rebirth_asked_ms.clear()
        dec._rebirth_asked_ms[(group, node)] = now_ms
        extra.publish.append((f"{NAMESPACE}/{group}/NCMD/{node}", rebirth_request(now_ms)))

    def decode(
        self,
        dec: Decoder,
        topic: str,
        site: str,
        payload: bytes,
        now_s: float,
        extra: _Extra,
    ) -> tuple[list[Reading], list[Rejection]]:
        from greendc.sparkplug import BDSEQ_METRIC, decode_payload, parse_topic

        try:
            t = parse_topic(topic)
        except ValueError as exc:
            return [], [("bad_structure", f"topic {_short(topic)}: {exc}")]
        if t.kind in (MessageType.STATE, MessageType.NCMD, MessageType.DCMD):
            extra.ignored.append(("sparkplug_state", f"{t.kind.value} on {_short(topic)}"))
            return [], []
        try:
            p = decode_payload(payload)
        except ValueError as exc:
            return [], [("bad_structure", f"topic {_short(topic)}: {_short(str(exc))}")]
        where = f"Sparkplug node {t.group}/{t.node}"
        sessions = dec._sparkplug
        if t.kind is MessageType.NBIRTH:
            bdseq = next((m.value for m in p.metrics if m.name == BDSEQ_METRIC), None)
            born = sessions.birth(t.group, t.node, bdseq if isinstance(bdseq, int) else None)
            born.seq = p.seq
            self._learn(born, None, p)
            return self._readings(dec, site, t.group, t.node, None, born, p, now_s)
        if t.kind is MessageType.NDEATH:
            dying = sessions.get(t.group, t.node)
            bdseq = next((m.value for m in p.metrics if m.name == BDSEQ_METRIC), None)
            # A death whose bdSeq is not the current birth's is an old session's (the broker
            # sends the Will of a connection the node has since replaced): not this one.
            if dying is not None and (
                dying.bdseq is None or not isinstance(bdseq, int) or bdseq == dying.bdseq
            ):
                sessions.end(t.group, t.node)
                for meters in dying.meters.values():
                    extra.stale.extend(sorted(meters))
            extra.ignored.append(("sparkplug_state", f"NDEATH of {where}"))
            return [], []
        session = sessions.get(t.group, t.node)
        if session is None:
            self._ask_rebirth(dec, t.group, t.node, now_s, extra)
            return [], [("sparkplug_no_birth", f"{t.kind.value} from {where} before its NBIRTH")]
        rejections: list[Rejection] = []
        if p.seq is not None and session.seq is not None:
            expected = (session.seq + 1) % 256
            if p.seq != expected:
                lost = (p.seq - expected) % 256
                rejections.append(
                    (
                        "sparkplug_seq_gap",
                        f"{where}: seq {p.seq} after {session.seq}: {lost} message(s) lost",
                    )
                )
                self._ask_rebirth(dec, t.group, t.node, now_s, extra)
        if p.seq is not None:
            session.seq = p.seq
        if t.kind is MessageType.DDEATH:
            assert t.device is not None
            session.devices.discard(t.device)
            extra.stale.extend(sorted(session.meters.pop(t.device, set())))
            extra.ignored.append(("sparkplug_state", f"DDEATH of {where}/{t.device}"))
            return [], rejections
        if t.kind is MessageType.DBIRTH:
            assert t.device is not None
            session.devices.add(t.device)
            self._learn(session, t.device, p)
        readings, more = self._readings(dec, site, t.group, t.node, t.device, session, p, now_s)
        return readings, rejections + more

    @staticmethod
    def _learn(session: Any, device: str | None, p: Any) -> None:
        """Record a birth's names, aliases and types (an earlier birth's are replaced)."""
        for key in [k for k in session.aliases if k[0] == device]:
            del session.aliases[key]
        for key in [k for k in session.types if k[0] == device]:
            del session.types[key]
        for m in p.metrics:
            if m.name is None:
                continue
            session.types[(device, m.name)] = m.datatype
            if m.alias is not None:
                session.aliases[(device, m.alias)] = (m.name, m.datatype)

    def _readings(
        self,
        dec: Decoder,
        site: str,
        group: str,
        node: str,
        device: str | None,
        session: Any,
        p: Any,
        now_s: float,
    ) -> tuple[list[Reading], list[Rejection]]:
        from greendc.sparkplug import numeric_value

        rejections: list[Rejection] = []
        names = {"group": group, "node": node, "device": device or ""}
        default = self.node_meter if device is None else self.device_meter
        # (meter, ts_ms or None) -> fields, in the order first seen
        grouped: dict[tuple[str, int | None], dict[str, float]] = {}
        where = f"Sparkplug {group}/{node}" + (f"/{device}" if device else "")
        for m in p.metrics:
            name = m.name
            datatype = m.datatype
            if name is None:
                if m.alias is None:
                    continue
                known = session.aliases.get((device, m.alias))
                if known is None:
                    rejections.append(
                        ("sparkplug_unknown_alias", f"{where}: alias {m.alias} is not in its birth")
                    )
                    continue
                name, birth_type = known
                datatype = datatype if datatype is not None else birth_type
            elif datatype is None:
                datatype = session.types.get((device, name))
            targets = self.metrics.get(name)
            if not targets:
                continue
            value = numeric_value(m, datatype)
            if value is None:
                if m.value is not None:
                    rejections.append(
                        ("non_numeric", f"{where}: {name}={_short(m.value)} is not a number")
                    )
                continue
            ts_ms = m.timestamp_ms if m.timestamp_ms is not None else p.timestamp_ms
            for template, fld, factor, counter in targets:
                converted = value * factor
                if not math.isfinite(converted):
                    rejections.append(("non_finite", f"{where}: {name}={value} x {factor}"))
                    continue
                if counter and converted < 0:
                    rejections.append(("negative_counter", f"{where}: {name}={value}"))
                    continue
                meter = (template or default).render(names)
                grouped.setdefault((meter, ts_ms), {})[fld] = converted
        readings: list[Reading] = []
        lo_ms = max(0.0, now_s - dec._max_past_s + min(0.0, dec.clock_step_s)) * 1000
        hi_ms = (now_s + dec._max_future_s + max(0.0, dec.clock_step_s)) * 1000
        for (meter, ts_ms), fields in grouped.items():
            if not _IDENT.fullmatch(meter):
                rejections.append(("bad_identifier", f"{where}: meter {_short(meter)}"))
                continue
            role = dec._site_roles.get(site, {}).get(meter)
            if role is None:
                looked_up = dec._role(site, meter)
                if isinstance(looked_up, tuple):
                    rejections.append(looked_up)
                    continue
                role = looked_up
            if ts_ms is None:
                stamp = dec._arrival(site, meter, now_s)
            elif ts_ms > hi_ms:
                rejections.append(("timestamp_future", f"{site}/{meter}: ts={ts_ms} ms"))
                continue
            elif ts_ms < lo_ms:
                rejections.append(("timestamp_past", f"{site}/{meter}: ts={ts_ms} ms"))
                continue
            else:
                stamp = int(ts_ms)
            session.meters.setdefault(device, set()).add((site, meter))
            readings.append(_new_reading(Reading, (site, meter, role, stamp, fields)))
        return readings, rejections
