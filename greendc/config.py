"""The configuration schema: one YAML file, validated when loaded.

``load_config(path)`` reads the file, applies environment overrides (``GREENDC_*``), reads
secrets from files where asked, and validates everything into frozen objects. Any problem
raises :class:`ConfigError` whose message lists each bad field by its path and value, e.g.
``sites[0].meters[2].role: 'it_lod' is not one of facility, it, cooling, ...``. Secret
values (passwords, tokens) are never echoed.
"""

from __future__ import annotations

import copy
import functools
import os
import re
from collections import Counter
from collections.abc import Iterable
from collections.abc import Mapping as AbcMapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from greendc._errors import ConfigError, ConfigUnreadable
from greendc.model import UNITS, ITPoint, Quantity, Role

# Identifiers become InfluxDB tags and Prometheus labels: keep them boring.
IDENT_RE = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
_SECRET_FIELDS = {"password", "token", "community", "auth_key", "priv_key"}
_TOPIC_VAR = re.compile(r"^\{([a-z_]+)\}$")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TLSSettings(_Frozen):
    """TLS for the MQTT connection (CA file, optional client certificate)."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure_skip_verify: bool = False

    @model_validator(mode="after")
    def _pair(self) -> TLSSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        return self


class MqttSettings(_Frozen):
    """How the agent connects to the broker."""

    url: str = "mqtt://127.0.0.1:1883"
    # Fail-over: more brokers, tried in order after ``url`` (each with the same credentials
    # and TLS settings), the next one whenever a connection is lost or refused, with capped
    # exponential backoff. A persistent session lives on one broker: see the README.
    fallback_urls: tuple[str, ...] = ()
    client_id: str = "greendc-collector"
    protocol: Literal["auto", "5", "3.1.1"] = "auto"
    qos: Literal[0, 1] = 1
    clean_start: bool = False
    session_expiry_seconds: int = Field(default=7 * 86400, ge=0)
    keepalive_seconds: int = Field(default=30, ge=5, le=3600)
    reconnect_min_seconds: float = Field(default=1.0, gt=0)
    reconnect_max_seconds: float = Field(default=60.0, gt=0)
    username: str | None = None
    password: SecretStr | None = None
    tls: TLSSettings | None = None
    # MQTT 5 shared subscription group: agents in one group split the messages between them
    # (each reading is stored once). Live KPIs and per-meter metrics then describe only the
    # share each agent saw: for an exact Prometheus view partition by site instead.
    shared_group: str | None = Field(default=None, pattern=IDENT_RE)
    # "all": subscribe to each mapping's filter as written. "sites": only to the configured
    # sites' topics ({site} replaced by each site name), so agents with disjoint site lists
    # partition the load and no meter is ever exported by two agents.
    subscribe: Literal["all", "sites"] = "all"
    dead_letter_topic: str | None = None
    max_inflight: int = Field(default=1000, ge=1, le=65535)
    # "durable": acknowledge a QoS 1 message only once its readings are stored or spooled to
    # disk (paho manual acks), so a crash before that makes the broker redeliver it.
    # "receipt": acknowledge on arrival (faster, but a crash loses the in-memory batch).
    ack: Literal["durable", "receipt"] = "durable"
    # "buffered": read the socket 64 KiB at a time and parse PUBLISH packets in place
    # (collector/mqttio.py; about half the CPU per single-reading message). "paho": paho's
    # own packet reader, one MQTTMessage per message.
    receive: Literal["buffered", "paho"] = "buffered"

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if "@" in v.partition("://")[2]:
            # paho takes credentials from username/password only: userinfo here would be
            # silently unused, and printed wherever the URL is.
            raise ValueError(
                "must not carry user:password: set mqtt.username and mqtt.password_file "
                "(or GREENDC_MQTT_USERNAME and GREENDC_MQTT_PASSWORD / GREENDC_MQTT_PASSWORD_FILE)"
            )
        parts = urlsplit(v)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
            raise ValueError("must look like mqtt://host:1883 or mqtts://host:8883")
        try:
            parts.port  # noqa: B018 (urlsplit checks the port only when asked)
        except ValueError:
            raise ValueError("the port must be a number from 0 to 65535") from None
        return v

    @field_validator("fallback_urls")
    @classmethod
    def _fallback_urls(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for i, url in enumerate(v):
            parts = urlsplit(url)
            if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
                raise ValueError(
                    f"[{i}] {url!r} must look like mqtt://host:1883 or mqtts://host:8883"
                )
        return v

    @model_validator(mode="after")
    def _same_transport(self) -> MqttSettings:
        tls = {urlsplit(u).scheme in ("mqtts", "ssl") for u in (self.url, *self.fallback_urls)}
        if len(tls) > 1:
            raise ValueError(
                "url and fallback_urls must all use TLS (mqtts://) or all not (mqtt://): "
                "one TLS setting serves every broker"
            )
        return self

    @property
    def brokers(self) -> tuple[tuple[str, int], ...]:
        """(host, port) of ``url`` then of each fallback URL, in the order they are tried."""
        out = []
        for url in (self.url, *self.fallback_urls):
            parts = urlsplit(url)
            out.append(
                (
                    parts.hostname or "127.0.0.1",
                    parts.port or (8883 if parts.scheme in ("mqtts", "ssl") else 1883),
                )
            )
        return tuple(out)

    @property
    def host(self) -> str:
        """Broker host name from the URL."""
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        """Broker port from the URL (1883, or 8883 for mqtts)."""
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme in ("mqtts", "ssl") else 1883)

    @property
    def use_tls(self) -> bool:
        """Whether to connect with TLS."""
        return self.tls is not None or urlsplit(self.url).scheme in ("mqtts", "ssl")


PathKey = str | int
"""One step of a JSON path: an object key, an array index, or ``"*"`` (every array item)."""

WILDCARD = "*"


def parse_path(path: str | list[PathKey]) -> tuple[PathKey, ...]:
    """A JSON path as its steps.

    Text is dotted (``ENERGY.Power``, ``points.0.kW``): a step of digits is an array index,
    ``*`` is every item of an array, and ``\\.`` is a dot inside a key (OBIS codes such as
    ``1-0:1\\.8\\.0``). A list gives the steps as they are (``["data", "1-0:1.8.0"]``),
    for keys a dotted string cannot say. Raises ValueError for an empty step or a second
    ``*``.
    """
    if isinstance(path, list):
        steps: list[PathKey] = []
        for step in path:
            if isinstance(step, bool) or not isinstance(step, str | int):
                raise ValueError(f"path step {step!r} is neither a key nor an index")
            steps.append(step)
    else:
        if not path:
            return ()
        steps = []
        key = ""
        i = 0
        while i < len(path):
            ch = path[i]
            if ch == "\\" and i + 1 < len(path) and path[i + 1] in ".\\":
                key += path[i + 1]
                i += 2
                continue
            if ch == ".":
                steps.append(key)
                key = ""
            else:
                key += ch
            i += 1
        steps.append(key)
        steps = [int(k) if isinstance(k, str) and k.isdigit() else k for k in steps]
    if any(k == "" for k in steps):
        raise ValueError(f"path {path!r} has an empty step (a doubled or trailing dot?)")
    if sum(1 for k in steps if k == WILDCARD) > 1:
        raise ValueError(f"path {path!r} has more than one '*'")
    return tuple(steps)


class ValueMapping(_Frozen):
    """One value inside a payload: where it is (JSON path), what it is and its unit.

    ``fallbacks`` are further paths tried in order when ``path`` is absent from a message
    (the same quantity under another name, e.g. a firmware that renamed a field).
    """

    path: str | list[PathKey] = ""
    quantity: Quantity
    unit: str
    fallbacks: list[str | list[PathKey]] = Field(default_factory=list)

    @field_validator("path")
    @classmethod
    def _path(cls, v: str | list[PathKey]) -> str | list[PathKey]:
        parse_path(v)
        return v

    @field_validator("fallbacks")
    @classmethod
    def _fallbacks(cls, v: list[str | list[PathKey]]) -> list[str | list[PathKey]]:
        for p in v:
            if not parse_path(p):
                raise ValueError("a fallback path must not be empty")
        return v

    @model_validator(mode="after")
    def _unit(self) -> ValueMapping:
        allowed = UNITS[self.quantity]
        if self.unit not in allowed:
            raise ValueError(
                f"unit {self.unit!r} is not one of {', '.join(allowed)} for {self.quantity.value}"
            )
        return self

    @property
    def steps(self) -> tuple[PathKey, ...]:
        """The path as its steps (see :func:`parse_path`)."""
        return parse_path(self.path)

    @property
    def all_steps(self) -> tuple[tuple[PathKey, ...], ...]:
        """The path, then each fallback, as steps."""
        return (self.steps, *(parse_path(p) for p in self.fallbacks))

    @property
    def simple(self) -> bool:
        """A dotted path without escapes, lists, wildcards or fallbacks (the native kind)."""
        return (
            isinstance(self.path, str)
            and "\\" not in self.path
            and WILDCARD not in self.steps
            and not self.fallbacks
        )


def _check_values(values: list[ValueMapping], where: str) -> None:
    """Two values may not feed one quantity: the second would silently overwrite the first."""
    seen: dict[Quantity, int] = {}
    for i, v in enumerate(values):
        if v.quantity in seen:
            raise ValueError(
                f"{where}[{seen[v.quantity]}] and {where}[{i}] both map {v.quantity.value}: one"
                f" would silently replace the other. Keep one, and list the other path under"
                f" its 'fallbacks' if it is the same value under another name"
            )
        seen[v.quantity] = i
    wild = {WILDCARD in s for v in values for s in v.all_steps}
    if len(wild) > 1:
        raise ValueError(
            f"{where}: either every value path has a '*' (one reading per array item) or none"
        )


def _native_values() -> list[ValueMapping]:
    return [
        ValueMapping(path="power_w", quantity=Quantity.POWER_W, unit="W"),
        ValueMapping(path="energy_wh", quantity=Quantity.ENERGY_WH, unit="Wh"),
        ValueMapping(path="water_l", quantity=Quantity.WATER_L, unit="L"),
        ValueMapping(path="temp_c", quantity=Quantity.TEMP_C, unit="C"),
    ]


_NAME = r"[a-z_][a-z0-9_]*"
_SEGMENT_VAR = re.compile(r"\{(" + _NAME + r")(#?)\}")
_TEMPLATE_VAR = re.compile(r"\{([^{}]*)\}")
_LEGACY_MAPPING_FIELDS = frozenset(
    {
        "topic",
        "payload",
        "items_path",
        "site",
        "meter_path",
        "timestamp_path",
        "timestamp_required",
        "values",
    }
)
# Template names a meter may use besides the topic's named segments, when a value path has
# a '*': the array item's index from 0, and from 1.
_INDEX_NAMES = ("index", "number")


def topic_variables(topic: str) -> list[tuple[str, bool]]:
    """The named segments of a mapping's topic, in order: (name, captures several segments)."""
    return [(m.group(1), m.group(2) == "#") for m in _SEGMENT_VAR.finditer(topic)]


def template_names(template: str) -> list[str]:
    """The ``{name}`` placeholders of a meter template."""
    return _TEMPLATE_VAR.findall(template)


class SparkplugMetric(_Frozen):
    """One Sparkplug B metric (by its birth name) mapped to a quantity of a meter.

    ``meter`` (a template of ``{group}``, ``{node}``, ``{device}``) overrides the mapping's
    meter for this metric, e.g. several power meters behind one edge node.
    """

    name: str = Field(min_length=1)
    quantity: Quantity
    unit: str
    meter: str | None = None

    @model_validator(mode="after")
    def _unit(self) -> SparkplugMetric:
        allowed = UNITS[self.quantity]
        if self.unit not in allowed:
            raise ValueError(
                f"unit {self.unit!r} is not one of {', '.join(allowed)} for {self.quantity.value}"
            )
        return self


_SPARKPLUG_NAMES = ("group", "node", "device")


class SparkplugMapping(_Frozen):
    """How Sparkplug B (3.0) edge nodes and devices become meters.

    ``device_meter`` names the meter of a device's metrics (DBIRTH/DDATA), ``node_meter``
    that of the node's own (NBIRTH/NDATA); both are templates of ``{group}``, ``{node}``,
    ``{device}``. ``metrics`` maps birth names to quantities; other metrics are skipped.
    ``rebirth: true`` asks a node for a new birth (NCMD Node Control/Rebirth) when its
    sequence numbers skip or data arrives before a birth; the gap is counted either way.
    """

    device_meter: str = "{node}-{device}"
    node_meter: str = "{node}"
    metrics: list[SparkplugMetric]
    rebirth: bool = True

    @model_validator(mode="after")
    def _shape(self) -> SparkplugMapping:
        if not self.metrics:
            raise ValueError("metrics must name at least one Sparkplug metric")
        checks = [("device_meter", self.device_meter), ("node_meter", self.node_meter)]
        checks += [(f"metrics[{i}].meter", m.meter) for i, m in enumerate(self.metrics) if m.meter]
        for where, template in checks:
            for name in template_names(template):
                if name not in _SPARKPLUG_NAMES:
                    raise ValueError(
                        f"{where}: {{{name}}} is not one of {{group}}, {{node}}, {{device}}"
                    )
        if "{device}" in self.node_meter:
            raise ValueError("node_meter: a node's own metrics have no {device}")
        seen: dict[tuple[str, str | None], int] = {}
        for i, m in enumerate(self.metrics):
            key = (m.name, m.meter)
            if key in seen:
                raise ValueError(f"metrics[{seen[key]}] and metrics[{i}] both map {m.name!r}")
            seen[key] = i
        return self


class ReadingMapping(_Frozen):
    """One of several readings taken from one message: its meter and its values.

    ``meter`` is a name or a template of the topic's named segments (``{node}-ct1``), and
    ``{index}`` / ``{number}`` (the array item from 0 / from 1) when the value paths hold a
    ``*``. ``timestamp_path`` overrides the mapping's for this reading.
    """

    meter: str
    values: list[ValueMapping]
    timestamp_path: str | list[PathKey] | None = None

    @model_validator(mode="after")
    def _shape(self) -> ReadingMapping:
        if not self.values:
            raise ValueError("values must name at least one value")
        _check_values(self.values, "values")
        if self.timestamp_path is not None:
            parse_path(self.timestamp_path)
        return self


class TopicMapping(_Frozen):
    """Maps messages on a topic pattern to readings.

    ``topic`` is an MQTT filter whose segments may be named wildcards: ``{site}``,
    ``{meter}`` or any other ``{name}``; a segment may also be text around one name
    (``P{channel}``), and the last may be ``{name#}``, which captures all remaining
    segments (joined with ``-`` where a meter name uses it). ``payload`` is ``json`` (an
    object, or an array of objects for a gateway batch), ``number`` (a plain numeric payload
    whose single value is ``values[0]``) or ``sparkplug`` (Sparkplug B, see
    :class:`SparkplugMapping`). Paths are dotted (``data.power.value``, ``items.0.p``), see
    :func:`parse_path`.

    The mapping language for real devices (docs: README "Device profiles"):

    - ``meter``: the meter's name, constant or a template of named segments (``{node}-ct1``);
    - ``readings``: several readings from one message, each with its meter and values;
    - a ``*`` in value paths: one reading per array item (meter template ``{index}``);
    - ``naive_timezone``: ``site`` or an IANA zone for timestamps without an offset;
    - ``when``: path -> value (or list of values) the message must carry, else ignored;
    - ``without_values: ignore``: a message with none of the values is not a reading here
      (another device on the same bridge), counted as ignored, not rejected;
    - ``ignore: true``: messages on this topic are not readings at all (counted as ignored).
    """

    topic: str
    payload: Literal["json", "number", "sparkplug"] = "json"
    items_path: str = ""  # where the array of readings is in a batch ("" = the payload itself)
    site: str | None = Field(default=None, pattern=IDENT_RE)  # fixed site if not in the topic
    meter: str | None = None  # a meter name or template; else {meter} or meter_path
    meter_path: str = "meter"  # in a batch item (or object) when the topic has no {meter}
    timestamp_path: str | list[PathKey] = "ts"
    timestamp_required: bool = False  # if false, a missing ts means "received now"
    naive_timezone: str | None = None  # "site" or an IANA zone, for timestamps without offset
    values: list[ValueMapping] = Field(default_factory=_native_values)
    readings: list[ReadingMapping] | None = None
    when: dict[str, Any] = Field(default_factory=dict)
    without_values: Literal["reject", "ignore"] = "reject"
    ignore: bool = False
    sparkplug: SparkplugMapping | None = None

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        segs = v.split("/")
        for i, s in enumerate(segs):
            if "#" in s and not (i == len(segs) - 1 and (s == "#" or _SEGMENT_VAR.fullmatch(s))):
                raise ValueError("'#' may only be the whole last segment, or {name#} last")
            if "+" in s and s != "+":
                raise ValueError(f"segment {s!r}: '+' must be a whole segment")
            if "{" in s or "}" in s:
                found = _SEGMENT_VAR.findall(s)
                rest = _SEGMENT_VAR.sub("", s)
                if len(found) != 1 or "{" in rest or "}" in rest:
                    raise ValueError(
                        f"segment {s!r} must hold exactly one {{name}} (lower case letters,"
                        " digits, _), optionally with text around it"
                    )
                name, multi = found[0]
                if multi and s != f"{{{name}#}}":
                    raise ValueError(f"segment {s!r}: a {{name#}} capture is a whole segment")
                if rest and name in ("site", "meter"):
                    raise ValueError(f"segment {s!r}: {{{name}}} must be a whole segment")
        names = [n for n, _ in topic_variables(v)]
        if len(names) != len(set(names)):
            raise ValueError("a named segment appears twice")
        return v

    @field_validator("naive_timezone")
    @classmethod
    def _naive_tz(cls, v: str | None) -> str | None:
        if v is not None and v != "site":
            try:
                ZoneInfo(v)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(
                    "is neither 'site' nor an IANA time zone such as Europe/Berlin"
                ) from exc
        return v

    @field_validator("when")
    @classmethod
    def _when(cls, v: dict[str, Any]) -> dict[str, Any]:
        for path, expected in v.items():
            parse_path(path)
            choices = expected if isinstance(expected, list) else [expected]
            for c in choices:
                if not isinstance(c, str | int | float | bool) or c is None:
                    raise ValueError(f"when.{path}: {c!r} is not a text, number or boolean")
        return v

    @model_validator(mode="after")
    def _shape(self) -> TopicMapping:
        segs = self.topic.split("/")
        names = [n for n, _ in topic_variables(self.topic)]
        if "site" not in names and self.site is None:
            named = ", ".join("{" + n + "}" for n in names)
            raise ValueError(
                "the topic has no {site} segment"
                + (f" (it names {named})" if named else "")
                + ", so 'site' must be set"
            )
        if self.ignore:
            return self
        if self.payload == "sparkplug":
            if self.sparkplug is None:
                raise ValueError("a 'sparkplug' payload needs a 'sparkplug' section (metrics)")
            if segs[0] != "spBv1.0" or len(segs) < 2:
                raise ValueError(
                    "a Sparkplug B topic starts with spBv1.0/ and its group, e.g."
                    " spBv1.0/{site}/# or spBv1.0/plant-1/#"
                )
            if any(n not in ("site",) for n in names):
                raise ValueError("in a Sparkplug topic only the group may be named, as {site}")
            return self
        if self.sparkplug is not None:
            raise ValueError("'sparkplug' is only for payload: sparkplug")
        parse_path(self.timestamp_path)
        if self.readings is not None:
            if "values" in self.model_fields_set:
                raise ValueError("give either values (with meter) or readings, not both")
            if not self.readings:
                raise ValueError("readings must hold at least one reading")
            if self.payload == "number":
                raise ValueError("a 'number' payload has one value: use values, not readings")
            templates = [
                (f"readings[{i}].meter", r.meter, r.values) for i, r in enumerate(self.readings)
            ]
        else:
            if not self.values:
                raise ValueError("values must name at least one value")
            _check_values(self.values, "values")
            templates = [("meter", self.meter, self.values)] if self.meter is not None else []
            if self.payload == "number":
                if len(self.values) != 1:
                    raise ValueError("a 'number' payload maps exactly one value")
                if "meter" not in names and self.meter is None:
                    raise ValueError(
                        "a 'number' payload needs a {meter} segment in the topic or a 'meter'"
                    )
                if any(WILDCARD in st for st in self.values[0].all_steps):
                    raise ValueError("a 'number' payload has no array to take '*' from")
        for where, template, values in templates:
            wild = any(WILDCARD in st for v in values for st in v.all_steps)
            allowed = set(names) | (set(_INDEX_NAMES) if wild else set())
            for name in template_names(template):
                if name not in allowed:
                    raise ValueError(
                        f"{where}: {{{name}}} is not one of the topic's named segments"
                        f" ({', '.join('{' + n + '}' for n in names) or 'none'})"
                        + (", {index}, {number}" if wild else "")
                    )
            if not template_names(template) and not re.fullmatch(IDENT_RE, template):
                raise ValueError(f"{where}: {template!r} is not a valid meter name")
        del segs
        return self

    @property
    def legacy(self) -> bool:
        """Uses only what the native decoder's fast path interprets (and plain paths)."""
        return (
            self.model_fields_set <= _LEGACY_MAPPING_FIELDS
            and all(n in ("site", "meter") for n, _ in topic_variables(self.topic))
            and all(
                s == "#" or not ("{" in s and not _TOPIC_VAR.match(s))
                for s in self.topic.split("/")
            )
            and self.payload != "sparkplug"
            and isinstance(self.timestamp_path, str)
            and "\\" not in self.timestamp_path
            and all(v.simple for v in self.values)
        )

    @property
    def subscription(self) -> str:
        """The MQTT subscription filter (named segments become '+', a {name#} '#')."""
        out = []
        for s in self.topic.split("/"):
            m = _SEGMENT_VAR.search(s)
            if m is None:
                out.append(s)
            else:
                out.append("#" if m.group(2) else "+")
        return "/".join(out)


def _meter_shape(m: TopicMapping) -> tuple[int, str, str] | None:
    """How a mapping names its meter from the topic alone, by segment position, or None.

    ``emon/{meter}/P1`` and ``emon/{node}/P2`` with ``meter: "{node}"`` both give
    (3, "{#1}", site source): two different topics, one meter.
    """
    if m.ignore or m.payload == "sparkplug" or m.readings is not None:
        return None
    segs = m.topic.split("/")
    if any("#" in seg for seg in segs):
        return None
    position = {n: i for i, seg in enumerate(segs) for n, _ in topic_variables(seg)}
    if m.meter is not None:
        template = m.meter
    elif "meter" in position:
        template = "{meter}"
    else:
        return None  # the meter comes from the payload
    shape = re.sub(r"\{([^{}]*)\}", lambda g: "{#" + str(position[g.group(1)]) + "}", template)
    site = f"{{#{position['site']}}}" if "site" in position else str(m.site)
    # The same device publishes both topics when they agree up to their last named segment
    # and differ only after it (emon/{meter}/P1, emon/{meter}/P2); bms/{site}/{meter} next to
    # greendc/{site}/{meter} are two systems whose meters may well be different.
    last = max(position.values(), default=-1)
    prefix = "/".join(_SEGMENT_VAR.sub("{}", seg) for seg in segs[: last + 1])
    return (len(segs), shape + " " + prefix, site)


def _check_mappings_apart(mappings: list[TopicMapping]) -> None:
    """Two mappings of different topics must not feed one quantity of one meter.

    Four mappings emon/{meter}/P1, E1, P2, E2 once passed and wrote two circuits into one
    meter, its counter alternating between two values: name the meter from the channel
    instead (``meter: "{node}-ct{channel}"``).
    """
    seen: dict[tuple[tuple[int, str, str], str], int] = {}
    for i, m in enumerate(mappings):
        shape = _meter_shape(m)
        if shape is None:
            continue
        for v in m.values:
            key = (shape, v.quantity.value)
            j = seen.get(key)
            if j is not None and mappings[j].topic != m.topic:
                raise ValueError(
                    f"mappings[{j}] ({mappings[j].topic}) and mappings[{i}] ({m.topic}) both"
                    f" write {v.quantity.value} of the same meter, so one would overwrite the"
                    ' other: give each its own meter, e.g. meter: "{node}-ct{channel}" with'
                    " a topic segment P{channel}"
                )
            seen.setdefault(key, i)


class ValidationSettings(_Frozen):
    """What a reading must satisfy to be accepted."""

    max_future_seconds: float = Field(default=300.0, ge=0)
    max_past_seconds: float = Field(default=7 * 86400.0, ge=0)
    unknown_meters: Literal["reject", "accept"] = "reject"
    max_payload_bytes: int = Field(default=256 * 1024, ge=64)
    # Longer topics are refused before any lookup (MQTT allows 64 KiB; ours are ~40 bytes).
    max_topic_bytes: int = Field(default=512, ge=16, le=65_535)
    max_readings_per_message: int = Field(default=10_000, ge=1)
    max_meters: int = Field(default=100_000, ge=1)  # cap on distinct (site, meter) series


class InfluxV2Settings(_Frozen):
    """An InfluxDB 2.x/3.x or Cloud bucket, written through influxdb-client."""

    url: str
    org: str
    bucket: str
    token: SecretStr | None = None
    timeout_seconds: float = Field(default=10.0, gt=0)
    verify_ssl: bool = True
    # A large batch is written as up to this many requests at once (see collector/sinks.py).
    parallel_requests: int = Field(default=2, ge=1, le=16)

    @model_validator(mode="after")
    def _token(self) -> InfluxV2Settings:
        if self.token is None or not self.token.get_secret_value():
            raise ValueError(
                "token is missing: set sinks.influxdb_v2.token_file, or GREENDC_INFLUX_TOKEN"
                " / GREENDC_INFLUX_TOKEN_FILE in the environment"
            )
        return self


class InfluxV1Settings(_Frozen):
    """An InfluxDB 1.x database, written through its v1 /write API."""

    url: str
    db: str
    rp: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    timeout_seconds: float = Field(default=10.0, gt=0)
    # A large batch is written as up to this many requests at once (see collector/sinks.py).
    parallel_requests: int = Field(default=2, ge=1, le=16)


class EmbeddedSettings(_Frozen):
    """The embedded SQLite store, used when no InfluxDB is configured."""

    path: Path = Path("var/greendc.sqlite")


class SpoolSettings(_Frozen):
    """The bounded durable spool used while a sink is down or slow."""

    dir: Path = Path("var/spool")
    max_bytes: int = Field(default=512 * 1024 * 1024, ge=1024)


class SinkSettings(_Frozen):
    """Where accepted readings go, and how they are batched."""

    influxdb_v2: InfluxV2Settings | None = None
    influxdb_v1: InfluxV1Settings | None = None
    embedded: EmbeddedSettings | None = None
    batch_size: int = Field(default=5000, ge=1, le=100_000)
    flush_interval_seconds: float = Field(default=1.0, gt=0, le=60)
    max_queue_batches: int = Field(default=64, ge=1)
    spool: SpoolSettings = Field(default_factory=SpoolSettings)


class MetricsSettings(_Frozen):
    """The Prometheus /metrics endpoint."""

    enabled: bool = True
    listen: str = "127.0.0.1"
    port: int = Field(default=9108, ge=0, le=65535)
    web_config_file: Path | None = (
        None  # Prometheus web config: basic_auth_users, tls_server_config
    )
    default_expiry_seconds: float = Field(default=300.0, gt=0)


class KPISettings(_Frozen):
    """How energy and KPIs are computed."""

    interval_seconds: int = Field(default=60, ge=1, le=3600)
    max_gap_seconds: float = Field(default=300.0, gt=0)
    min_coverage: float = Field(default=0.9, ge=0, le=1)
    windows_seconds: list[int] = Field(default_factory=lambda: [300, 3600, 86400], min_length=1)
    # A counter step is energy only if at most this many times the larger of the step's
    # power readings and the site's installed IT power (unless the meter sets max_power_w).
    max_power_factor: float = Field(default=3.0, ge=1.0)

    @field_validator("interval_seconds")
    @classmethod
    def _divides_an_hour(cls, v: int) -> int:
        # Hourly factors and hourly CFE sum whole intervals into clock hours.
        if 3600 % v:
            raise ValueError("must divide an hour (3600 s) evenly, e.g. 10, 15, 30, 60, 300, 900")
        return v

    @field_validator("windows_seconds")
    @classmethod
    def _whole_intervals(cls, v: list[int], info: ValidationInfo) -> list[int]:
        step = info.data.get("interval_seconds")  # absent when it failed its own check
        for w in v:
            if w <= 0:
                raise ValueError(f"{w} is not a positive number of seconds")
            if step and w % step:
                raise ValueError(
                    f"{w} is not a multiple of kpi.interval_seconds ({step}): a window is a "
                    "whole number of intervals"
                )
        return v


class Meter(_Frozen):
    """One meter of a site and the role it plays in the energy balance."""

    name: str = Field(pattern=IDENT_RE)
    role: Role
    point: ITPoint | None = None  # for role 'it': where IT energy is measured
    zone: str | None = Field(default=None, pattern=IDENT_RE)  # for pPUE
    sign: Literal[1, -1] = 1  # -1: a sub-meter subtracted from its role's total
    expiry_seconds: float | None = Field(default=None, gt=0)
    description: str = ""
    # The most power the meter can see (W; for water, litres per hour): a counter step above
    # it over the elapsed time is a spike or a meter swap, not energy.
    max_power_w: float | None = Field(default=None, gt=0)
    # The register's width: it wraps to 0 at 2**register_bits, or at rollover_at (in the
    # canonical unit, Wh or L). A counter that went down by most of that range rolled over.
    register_bits: int | None = Field(default=None, ge=8, le=64)
    rollover_at: float | None = Field(default=None, gt=0)

    @property
    def rollover(self) -> float | None:
        """Where the counter register wraps to 0 (Wh, or L), or None when not configured."""
        if self.register_bits is not None:
            return float(2**self.register_bits)
        return self.rollover_at

    @model_validator(mode="after")
    def _register(self) -> Meter:
        if self.register_bits is not None and self.rollover_at is not None:
            raise ValueError("give register_bits or rollover_at, not both")
        return self

    @model_validator(mode="after")
    def _point(self) -> Meter:
        if self.role is Role.IT and self.point is None:
            raise ValueError(
                "an 'it' meter needs point: ups_output (Category 1), pdu_output (2) or it_input (3)"
            )
        if self.role is not Role.IT and self.point is not None:
            raise ValueError("point is only for meters with role 'it'")
        return self


class Contract(_Frozen):
    """Renewable energy attributes the site owns and retires for a month (GO, REC or PPA)."""

    month: str = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")
    kind: Literal["go", "rec", "ppa"]
    energy_kwh: float = Field(ge=0)
    factor_kg_per_kwh: float = Field(default=0.0, ge=0)  # the instrument's emission rate
    hourly: bool = False  # a PPA delivered as an hourly profile (counts in CFE per hour)
    reference: str = ""


class Targets(_Frozen):
    """Site targets and alert thresholds."""

    pue: float = Field(default=1.5, ge=1.0)
    pue_warning: float = Field(default=1.6, ge=1.0)
    pue_critical: float = Field(default=1.8, ge=1.0)
    renewable_share: float = Field(default=0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _order(self) -> Targets:
        if not self.pue <= self.pue_warning <= self.pue_critical:
            raise ValueError(
                f"must satisfy pue <= pue_warning <= pue_critical (got {self.pue}, "
                f"{self.pue_warning}, {self.pue_critical})"
            )
        return self


class Site(_Frozen):
    """One data centre."""

    name: str = Field(pattern=IDENT_RE)
    display_name: str = ""
    timezone: str = "UTC"
    grid_zone: str
    climate: str = ""
    installed_it_kw: float = Field(gt=0)
    pue_category: Literal[1, 2, 3]
    targets: Targets = Field(default_factory=Targets)
    meters: list[Meter]
    contracts: list[Contract] = Field(default_factory=list)
    # An hourly grid emission factor series (CSV: ts, kg_per_kwh) for location-based
    # Scope 2; hours it does not cover use the zone's annual factor.
    hourly_factors_file: Path | None = None
    # Bridged energy (a counter difference across a gap, timing unknown) counts in daily,
    # monthly and annual totals; in hourly figures (hourly emissions, CFE) only if this is set.
    bridged_in_hourly: bool = False

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("is not an IANA time zone such as Asia/Singapore") from exc
        return v

    @model_validator(mode="after")
    def _meters(self) -> Site:
        counts = Counter(m.name for m in self.meters)  # not list.count: 100k meters
        dup = sorted(n for n, k in counts.items() if k > 1)
        if dup:
            raise ValueError(f"meter names must be unique; repeated: {', '.join(dup)}")
        cats = {m.point.category for m in self.meters if m.point is not None}
        if cats and cats != {self.pue_category}:
            raise ValueError(
                f"pue_category {self.pue_category} does not match the IT meters' points "
                f"(categories {sorted(cats)})"
            )
        return self

    def meter(self, name: str) -> Meter | None:
        """The meter of that name, or None."""
        for m in self.meters:
            if m.name == name:
                return m
        return None


# ---------------------------------------------------------------------------------------
# Sensor bridges (greendc bridge): devices polled over Modbus TCP, SNMP, Redfish, BACnet/IP
# and published as native greendc readings. Kept in its own section: the shipped Modbus
# profiles are data (greendc/data/modbus_profiles.yaml), read here so a device naming an
# unknown profile fails validation with its field path.

_MODBUS_SIZES = {
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
    "int64": 4,
    "uint64": 4,
    "float64": 4,
}
# What a value may plausibly be, in canonical units, unless a register says otherwise.
_DEFAULT_LIMITS: dict[Quantity, tuple[float, float]] = {
    Quantity.POWER_W: (-1e9, 1e9),  # a 1 GW site is past any data centre; negative = export
    Quantity.ENERGY_WH: (0.0, 1e16),
    Quantity.WATER_L: (0.0, 1e16),
    Quantity.TEMP_C: (-60.0, 200.0),
}
BRIDGE_SECRET_FIELDS = ("community", "auth_key", "priv_key", "password")


class ModbusRegister(_Frozen):
    """Where one value lives in a Modbus device and how to decode it."""

    quantity: Quantity
    address: int = Field(ge=0, le=65535)  # the PDU address (0-based), not the 3xxxx/4xxxx number
    function: Literal["holding", "input"] = "holding"
    type: Literal["int16", "uint16", "int32", "uint32", "float32", "int64", "uint64", "float64"]
    word_order: Literal["big", "little"] = "big"  # big: most significant register first
    byte_order: Literal["big", "little"] = "big"  # within each 16-bit register
    scale: float = 1.0  # device value x scale = value in `unit`
    unit: str
    min: float | None = None  # plausible range in canonical units (W, Wh, L, C)
    max: float | None = None

    @model_validator(mode="after")
    def _check(self) -> ModbusRegister:
        allowed = UNITS[self.quantity]
        if self.unit not in allowed:
            raise ValueError(
                f"unit {self.unit!r} is not one of {', '.join(allowed)} for {self.quantity.value}"
            )
        if self.address + _MODBUS_SIZES[self.type] > 65536:
            raise ValueError(f"a {self.type} at address {self.address} runs past register 65535")
        if self.scale == 0 or self.scale != self.scale:
            raise ValueError("scale must be a non-zero number")
        lo, hi = self.limits
        if lo >= hi:
            raise ValueError(f"min ({lo}) must be below max ({hi})")
        return self

    @property
    def count(self) -> int:
        """How many 16-bit registers the value spans."""
        return _MODBUS_SIZES[self.type]

    @property
    def limits(self) -> tuple[float, float]:
        """The plausible range (canonical units): the register's own, else the quantity's."""
        lo, hi = _DEFAULT_LIMITS[self.quantity]
        return (lo if self.min is None else self.min, hi if self.max is None else self.max)


def _each_quantity_once(quantities: Iterable[Quantity]) -> None:
    """Refuse a device profile that maps one quantity twice (which value would win?)."""
    counts = Counter(quantities)
    dup = sorted(q.value for q, k in counts.items() if k > 1)
    if dup:
        raise ValueError(f"a quantity is mapped twice: {', '.join(dup)}")


class ModbusProfile(_Frozen):
    """A device model's register map: which registers hold which quantities."""

    name: str = Field(pattern=IDENT_RE)
    description: str = ""
    source: str = ""  # the published register map the profile was written from
    registers: list[ModbusRegister] = Field(min_length=1)
    # Registers between two wanted values that may be read (and ignored) to save a request;
    # 0 reads only what is asked for (some devices refuse reads of unmapped registers).
    max_gap_registers: int = Field(default=0, ge=0, le=120)

    @model_validator(mode="after")
    def _unique(self) -> ModbusProfile:
        _each_quantity_once(r.quantity for r in self.registers)
        return self


class _BridgeDevice(_Frozen):
    """What every polled device has: its greendc identity and its polling overrides."""

    name: str | None = Field(default=None, pattern=IDENT_RE)  # default: <site>.<meter>
    site: str = Field(pattern=IDENT_RE)
    meter: str = Field(pattern=IDENT_RE)
    interval_seconds: float | None = Field(default=None, gt=0, le=86400)
    timeout_seconds: float | None = Field(default=None, gt=0, le=300)

    @property
    def id(self) -> str:
        """The device's name in logs and in the bridge's /metrics."""
        return self.name or f"{self.site}.{self.meter}"


class ModbusDevice(_BridgeDevice):
    """A Modbus TCP device, or one meter behind a Modbus TCP gateway (its unit id)."""

    protocol: Literal["modbus"]
    host: str = Field(min_length=1)
    port: int = Field(default=502, ge=1, le=65535)
    unit_id: int = Field(default=1, ge=0, le=255)
    profile: str = Field(pattern=IDENT_RE)


_OID_RE = r"^[0-2](\.[0-9]+)+(\.\{index\})?(\.[0-9]+)*$"


class SnmpValue(_Frozen):
    """One value of an SNMP profile: an OID (``{index}`` = the device's index) and its unit.

    ``read: get`` reads the one instance; ``read: sum`` walks a table column with GETBULK and
    adds up its rows (a UPS's output power per output line, for example).
    """

    quantity: Quantity
    oid: str = Field(pattern=_OID_RE)
    read: Literal["get", "sum"] = "get"
    scale: float = 1.0
    unit: str
    min: float | None = None  # plausible range in canonical units
    max: float | None = None

    @model_validator(mode="after")
    def _check(self) -> SnmpValue:
        allowed = UNITS[self.quantity]
        if self.unit not in allowed:
            raise ValueError(
                f"unit {self.unit!r} is not one of {', '.join(allowed)} for {self.quantity.value}"
            )
        if self.scale == 0 or self.scale != self.scale:
            raise ValueError("scale must be a non-zero number")
        lo, hi = self.limits
        if lo >= hi:
            raise ValueError(f"min ({lo}) must be below max ({hi})")
        return self

    @property
    def limits(self) -> tuple[float, float]:
        """The plausible range (canonical units): the value's own, else the quantity's."""
        lo, hi = _DEFAULT_LIMITS[self.quantity]
        return (lo if self.min is None else self.min, hi if self.max is None else self.max)

    def oid_for(self, index: int) -> tuple[int, ...]:
        """The OID with the device's index put in, as integers."""
        return tuple(int(p) for p in self.oid.replace("{index}", str(index)).split("."))


class SnmpStatus(_Frozen):
    """A device state that is not a reading (a UPS's load, its battery status): exported on
    the bridge's /metrics as greendc_bridge_device_status{device,name}, not published."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    oid: str = Field(pattern=_OID_RE)
    read: Literal["get", "sum", "max"] = "get"  # max: the largest row (the busiest line)

    def oid_for(self, index: int) -> tuple[int, ...]:
        """The OID with the device's index put in, as integers."""
        return tuple(int(p) for p in self.oid.replace("{index}", str(index)).split("."))


class SnmpProfile(_Frozen):
    """A MIB's power, energy and temperature objects as the bridge reads them."""

    name: str = Field(pattern=IDENT_RE)
    description: str = ""
    source: str = ""  # the MIB (and objects) the profile was written from
    values: list[SnmpValue] = Field(min_length=1)
    status: list[SnmpStatus] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> SnmpProfile:
        _each_quantity_once(v.quantity for v in self.values)
        return self


class SnmpDevice(_BridgeDevice):
    """An SNMP agent (UPS, rack PDU): v2c with a community, or v3 with USM authPriv."""

    protocol: Literal["snmp"]
    host: str = Field(min_length=1)
    port: int = Field(default=161, ge=1, le=65535)
    version: Literal["2c", "3"] = "2c"
    community: SecretStr | None = None  # v2c; or community_file / community_env
    user: str | None = None  # v3 USM user; v3 is always authPriv here
    auth_protocol: Literal["SHA", "SHA224", "SHA256", "SHA384", "SHA512", "MD5"] = "SHA"
    auth_key: SecretStr | None = None  # or auth_key_file / auth_key_env
    priv_protocol: Literal["AES", "AES192", "AES256", "DES", "3DES"] = "AES"
    priv_key: SecretStr | None = None  # or priv_key_file / priv_key_env
    context_name: str = ""
    profile: str = Field(pattern=IDENT_RE)
    index: int = Field(default=1, ge=0)  # the row a profile's {index} stands for
    max_repetitions: int = Field(default=16, ge=1, le=64)  # rows per GETBULK

    @model_validator(mode="after")
    def _credentials(self) -> SnmpDevice:
        if self.version == "2c":
            if self.community is None or not self.community.get_secret_value():
                raise ValueError("SNMP v2c needs community (or community_file / community_env)")
            return self
        missing = [n for n in ("user", "auth_key", "priv_key") if not getattr(self, n)]
        if missing:
            raise ValueError(
                f"SNMP v3 (authPriv) needs {', '.join(missing)}"
                " (keys may come from *_file or *_env)"
            )
        for name in ("auth_key", "priv_key"):
            key = getattr(self, name)
            if len(key.get_secret_value()) < 8:
                raise ValueError(f"{name} must be at least 8 characters (RFC 3414)")
        return self


class RedfishDevice(_BridgeDevice):
    """A Redfish service (a server's BMC, a chassis manager): chassis power and energy.

    The chassis is found from the service root; its EnvironmentMetrics (PowerWatts,
    EnergykWh) are read, or the older Power resource (PowerControl PowerConsumedWatts), or
    the PowerSubsystem's power supplies (InputPowerWatts summed).
    """

    protocol: Literal["redfish"]
    url: str  # https://bmc.example:443 (the service root is <url>/redfish/v1)
    auth: Literal["session", "basic"] = "session"
    username: str = Field(min_length=1)
    password: SecretStr  # or password_file / password_env
    chassis: str | None = None  # the chassis Id; default: the first one with power readings
    verify_tls: bool = True  # certificate checking is on unless turned off here
    ca_file: Path | None = None  # a private CA for the BMCs' certificates

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("must look like https://bmc.example.net")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials: use username and password_file")
        return v.rstrip("/")


_BACNET_OBJECT_RE = r"^(analog-input|analog-output|analog-value),[0-9]{1,7}$"


class BacnetPoint(_Frozen):
    """One analog point of a BACnet device: its object and the quantity it measures.

    The unit comes from the object's own ``units`` property (watts, kilowatts,
    kilowatt-hours, degrees-celsius, degrees-fahrenheit, ...); ``unit`` here is only used
    when the device reports ``no-units``.
    """

    object: str = Field(pattern=_BACNET_OBJECT_RE)  # e.g. analog-input,3
    quantity: Quantity
    unit: str | None = None
    scale: float = 1.0
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _check(self) -> BacnetPoint:
        if self.unit is not None and self.unit not in UNITS[self.quantity]:
            raise ValueError(
                f"unit {self.unit!r} is not one of {', '.join(UNITS[self.quantity])}"
                f" for {self.quantity.value}"
            )
        if self.scale == 0 or self.scale != self.scale:
            raise ValueError("scale must be a non-zero number")
        return self

    @property
    def limits(self) -> tuple[float, float]:
        """The plausible range (canonical units): the point's own, else the quantity's."""
        lo, hi = _DEFAULT_LIMITS[self.quantity]
        return (lo if self.min is None else self.min, hi if self.max is None else self.max)


class BacnetDevice(_BridgeDevice):
    """A BACnet/IP device (a chiller, a CRAH, a BMS controller): analog present values."""

    protocol: Literal["bacnet"]
    address: str = Field(pattern=r"^[0-9.]+(:[0-9]{1,5})?$")  # 10.30.0.12 or 10.30.0.12:47808
    device_instance: int | None = Field(default=None, ge=0, le=4194303)  # for the logs only
    points: list[BacnetPoint] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> BacnetDevice:
        counts = Counter(p.quantity for p in self.points)
        dup = sorted(q.value for q, k in counts.items() if k > 1)
        if dup:
            raise ValueError(f"a quantity is mapped twice: {', '.join(dup)}")
        return self


BridgeDevice = Annotated[
    ModbusDevice | SnmpDevice | RedfishDevice | BacnetDevice, Field(discriminator="protocol")
]


class BridgeMetricsSettings(_Frozen):
    """The bridge's own Prometheus /metrics endpoint (device health, refusals)."""

    enabled: bool = True
    listen: str = "127.0.0.1"
    port: int = Field(default=9109, ge=0, le=65535)


class BridgeSettings(_Frozen):
    """``bridges:``: the devices ``greendc bridge`` polls and how it publishes them.

    The MQTT connection (URL, credentials, TLS, session expiry) is the top-level ``mqtt:``
    section with this section's ``client_id``; readings go to ``<topic_prefix>/<site>/<meter>``
    in the native format at QoS 1 on a persistent session.
    """

    client_id: str = Field(default="greendc-bridge", min_length=1)
    topic_prefix: str = Field(default="greendc", min_length=1)
    interval_seconds: float = Field(default=10.0, gt=0, le=86400)
    jitter_fraction: float = Field(default=0.1, ge=0, le=0.5)  # each interval +- this share
    timeout_seconds: float = Field(default=3.0, gt=0, le=300)  # per request
    max_concurrency: int = Field(default=256, ge=1, le=100_000)  # polls in flight at once
    backoff_max_seconds: float = Field(default=300.0, gt=0)  # cap of the failure backoff
    metrics: BridgeMetricsSettings = Field(default_factory=BridgeMetricsSettings)
    modbus_profiles: list[ModbusProfile] = Field(default_factory=list)
    snmp_profiles: list[SnmpProfile] = Field(default_factory=list)
    # The bridge's own BACnet/IP address and device instance (it is a BACnet client device).
    bacnet_local_address: str = "host:47808"
    bacnet_device_instance: int = Field(default=4194000, ge=0, le=4194302)
    devices: list[BridgeDevice] = Field(default_factory=list)

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if any(c in v for c in "+#") or v.startswith("/") or v.endswith("/"):
            raise ValueError("must be a plain topic prefix such as greendc (no +, #, edge /)")
        return v

    @model_validator(mode="after")
    def _references(self) -> BridgeSettings:
        problems = []
        shipped = shipped_modbus_profiles()
        own = Counter(p.name for p in self.modbus_profiles)
        dup = sorted(n for n, k in own.items() if k > 1)
        if dup:
            problems.append(f"modbus_profiles names must be unique; repeated: {', '.join(dup)}")
        known = set(shipped) | set(own)
        snmp_shipped = shipped_snmp_profiles()
        snmp_own = Counter(p.name for p in self.snmp_profiles)
        dup = sorted(n for n, k in snmp_own.items() if k > 1)
        if dup:
            problems.append(f"snmp_profiles names must be unique; repeated: {', '.join(dup)}")
        snmp_known = set(snmp_shipped) | set(snmp_own)
        ids = Counter(d.id for d in self.devices)
        dup = sorted(n for n, k in ids.items() if k > 1)
        if dup:
            problems.append(f"device names must be unique; repeated: {', '.join(dup)}")
        meters = Counter((d.site, d.meter) for d in self.devices)
        twice = sorted(f"{s}/{m}" for (s, m), k in meters.items() if k > 1)
        if twice:
            problems.append(f"two devices publish the same meter: {', '.join(twice)}")
        for i, d in enumerate(self.devices):
            if isinstance(d, ModbusDevice) and d.profile not in known:
                problems.append(
                    f"devices[{i}].profile: {d.profile!r} is neither a shipped profile"
                    f" ({', '.join(sorted(shipped))}) nor one under bridges.modbus_profiles"
                )
            if isinstance(d, SnmpDevice) and d.profile not in snmp_known:
                problems.append(
                    f"devices[{i}].profile: {d.profile!r} is neither a shipped SNMP profile"
                    f" ({', '.join(sorted(snmp_shipped))}) nor one under bridges.snmp_profiles"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def modbus_profile(self, name: str) -> ModbusProfile:
        """The profile of that name: the config's own first, then the shipped ones."""
        for p in self.modbus_profiles:
            if p.name == name:
                return p
        return shipped_modbus_profiles()[name]

    def snmp_profile(self, name: str) -> SnmpProfile:
        """The SNMP profile of that name: the config's own first, then the shipped ones."""
        for p in self.snmp_profiles:
            if p.name == name:
                return p
        return shipped_snmp_profiles()[name]


@functools.cache
def shipped_modbus_profiles() -> dict[str, ModbusProfile]:
    """The Modbus profiles shipped with greendc (greendc/data/modbus_profiles.yaml), by name."""
    path = Path(__file__).parent / "data" / "modbus_profiles.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {p.name: p for p in (ModbusProfile.model_validate(x) for x in raw["profiles"])}


@functools.cache
def shipped_snmp_profiles() -> dict[str, SnmpProfile]:
    """The SNMP profiles shipped with greendc (greendc/data/snmp_profiles.yaml), by name."""
    path = Path(__file__).parent / "data" / "snmp_profiles.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {p.name: p for p in (SnmpProfile.model_validate(x) for x in raw["profiles"])}


def _apply_bridge_secrets(
    data: dict[str, Any], env: AbcMapping[str, str], base_dir: Path | None = None
) -> None:
    """Resolve ``<secret>_file`` (relative to ``base_dir``, the config file's folder, when
    given) and ``<secret>_env`` of every bridge device in place."""
    bridges = data.get("bridges")
    devices = bridges.get("devices") if isinstance(bridges, dict) else None
    if not isinstance(devices, list):
        return
    for i, dev in enumerate(devices):
        if not isinstance(dev, dict):
            continue
        for name in BRIDGE_SECRET_FIELDS:
            where = f"bridges.devices[{i}].{name}"
            if f"{name}_file" in dev:
                dev[name] = _read_secret_file(
                    str(dev.pop(f"{name}_file")), where + "_file", base_dir
                )
            if f"{name}_env" in dev:
                var = str(dev.pop(f"{name}_env"))
                if not env.get(var):
                    raise ConfigError(
                        f"{where}_env: the environment variable {var!r} is not set or empty"
                    )
                dev[name] = env[var]


class Settings(_Frozen):
    """The whole greendc configuration."""

    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    mappings: list[TopicMapping] = Field(
        default_factory=lambda: [
            TopicMapping(topic="greendc/{site}/{meter}"),
            TopicMapping(topic="greendc/{site}"),
        ]
    )
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    sinks: SinkSettings = Field(default_factory=SinkSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    kpi: KPISettings = Field(default_factory=KPISettings)
    emission_factors_file: Path | None = None  # default: the factors shipped with greendc
    sites: list[Site]
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    bridges: BridgeSettings | None = None  # greendc bridge: devices to poll (see above)

    @model_validator(mode="after")
    def _sites(self) -> Settings:
        names = [s.name for s in self.sites]
        dup = sorted(n for n, k in Counter(names).items() if k > 1)
        if dup:
            raise ValueError(f"site names must be unique; repeated: {', '.join(dup)}")
        _check_mappings_apart(self.mappings)
        return self

    def site(self, name: str) -> Site | None:
        """The site of that name, or None."""
        for s in self.sites:
            if s.name == name:
                return s
        return None

    @property
    def effective_sinks(self) -> list[str]:
        """Names of the sinks in use; the embedded store when no InfluxDB is configured."""
        out = []
        if self.sinks.influxdb_v2 is not None:
            out.append("influxdb_v2")
        if self.sinks.influxdb_v1 is not None:
            out.append("influxdb_v1")
        if self.sinks.embedded is not None or not out:
            out.append("embedded")
        return out

    def redacted(self) -> dict[str, Any]:
        """The settings as plain data with every secret replaced by '***'."""
        return _redact(self.model_dump(mode="json"))


# ---------------------------------------------------------------------------------------
# Loading


def _redact(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {
            k: ("***" if k in _SECRET_FIELDS and v is not None else _redact(v))
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [_redact(v) for v in obj]
    return obj


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-", "tagged-union")) or part in ("literal", "enum"):
            continue
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


_USERINFO = re.compile(r"(?<=://)[^\s]*@")


def redact_url(text: str) -> str:
    """``text`` with the user:password part of any URL in it replaced by ``***@``."""
    return _USERINFO.sub("***@", text)


def _describe(err: Any) -> str:
    loc = tuple(err["loc"])
    where = _path(loc)
    secret = any(isinstance(p, str) and p in _SECRET_FIELDS for p in loc)
    value = "***" if secret else err.get("input")
    if isinstance(value, str):
        value = redact_url(value)
    etype = err["type"]
    if etype in ("enum", "literal_error"):
        expected = str(err.get("ctx", {}).get("expected", ""))
        choices = ", ".join(
            c.strip().strip("'") for c in re.split(r",| or ", expected) if c.strip()
        )
        return f"{where}: {value!r} is not one of {choices}"
    if etype == "missing":
        return f"{where}: is required but missing"
    if etype == "extra_forbidden":
        return f"{where}: is not a known setting (check the spelling)"
    msg = str(err["msg"])
    msg = msg.removeprefix("Value error, ")
    if isinstance(value, dict | list):
        return f"{where}: {msg}"
    return f"{where}: {msg} (got {value!r})"


def _read_secret_file(path: str, what: str, base_dir: Path | None = None) -> str:
    p = Path(path)
    if base_dir is not None and not p.is_absolute():
        p = base_dir / p
    try:
        return p.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read secret file {path!r}: {exc.strerror}") from exc


def _apply_secret_files(data: dict[str, Any], base_dir: Path | None = None) -> None:
    """Replace ``*_file`` secret settings with the secret they point to (a relative path is
    read from ``base_dir``, the config file's folder, when given)."""
    mqtt = data.get("mqtt")
    if isinstance(mqtt, dict) and "password_file" in mqtt:
        mqtt["password"] = _read_secret_file(
            str(mqtt.pop("password_file")), "mqtt.password_file", base_dir
        )
    sinks = data.get("sinks")
    if isinstance(sinks, dict):
        v2 = sinks.get("influxdb_v2")
        if isinstance(v2, dict) and "token_file" in v2:
            v2["token"] = _read_secret_file(
                str(v2.pop("token_file")), "sinks.influxdb_v2.token_file", base_dir
            )
        v1 = sinks.get("influxdb_v1")
        if isinstance(v1, dict) and "password_file" in v1:
            v1["password"] = _read_secret_file(
                str(v1.pop("password_file")), "sinks.influxdb_v1.password_file", base_dir
            )


def _env_secret(env: AbcMapping[str, str], name: str) -> str | None:
    if env.get(name):
        return env[name]
    if env.get(name + "_FILE"):
        return _read_secret_file(env[name + "_FILE"], name + "_FILE")
    return None


def split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """``scheme://user:password@host:port`` as (``scheme://host:port``, user, password).

    The user information ends at the last ``@``, so a password with an unescaped ``/``,
    ``@``, ``?`` or ``#`` is taken whole instead of being split (and quoted in an error) by
    a URL parser; percent-escapes are decoded.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url, None, None
    userinfo, _, hostpart = rest.rpartition("@")
    user, colon, password = userinfo.partition(":")
    host = hostpart.split("/", 1)[0]
    return f"{scheme}://{host}", unquote(user) or None, unquote(password) if colon else None


def apply_environment(data: dict[str, Any], env: AbcMapping[str, str]) -> dict[str, Any]:
    """Apply ``GREENDC_*`` connection overrides to raw config data (a new dict is returned).

    GREENDC_MQTT_URL (may carry user:password), GREENDC_MQTT_USERNAME, GREENDC_MQTT_PASSWORD;
    GREENDC_INFLUX_URL with GREENDC_INFLUX_DB configures the v1 sink, with any of
    GREENDC_INFLUX_TOKEN/ORG/BUCKET the v2 sink. Every secret may come from ``NAME_FILE``.
    """
    data = copy.deepcopy(data)
    mqtt = data.setdefault("mqtt", {}) if isinstance(data.get("mqtt", {}), dict) else {}
    if env.get("GREENDC_MQTT_URL"):
        mqtt_url, user, password = split_userinfo(env["GREENDC_MQTT_URL"])
        if user or password:
            try:
                MqttSettings._url(mqtt_url)
            except ValueError as exc:
                # Which part is the host is a guess once a password may hold any character:
                # the value is not shown at all.
                raise ConfigError(
                    f"GREENDC_MQTT_URL: {exc} (the value is not shown: it carries a password;"
                    " write it as mqtt://user:password@host:port, or set GREENDC_MQTT_USERNAME"
                    " and GREENDC_MQTT_PASSWORD_FILE instead)"
                ) from None
        if user:
            mqtt["username"] = user
        if password:
            mqtt["password"] = password
        mqtt["url"] = mqtt_url
    if env.get("GREENDC_MQTT_USERNAME"):
        mqtt["username"] = env["GREENDC_MQTT_USERNAME"]
    pw = _env_secret(env, "GREENDC_MQTT_PASSWORD")
    if pw is not None:
        mqtt["password"] = pw

    sinks = data.setdefault("sinks", {})
    if not isinstance(sinks, dict):
        return data
    url = env.get("GREENDC_INFLUX_URL")
    token = _env_secret(env, "GREENDC_INFLUX_TOKEN")
    v2_keys = {"org": env.get("GREENDC_INFLUX_ORG"), "bucket": env.get("GREENDC_INFLUX_BUCKET")}
    wants_v2 = (
        token is not None
        or any(v2_keys.values())
        or (url and isinstance(sinks.get("influxdb_v2"), dict))
    )
    if wants_v2:
        v2 = sinks.setdefault("influxdb_v2", {}) or {}
        sinks["influxdb_v2"] = v2
        if url:
            v2["url"] = url
        if token is not None:
            v2["token"] = token
        for k, v in v2_keys.items():
            if v:
                v2[k] = v
    db = env.get("GREENDC_INFLUX_DB")
    if db or (url and not wants_v2):
        v1 = sinks.setdefault("influxdb_v1", {}) or {}
        sinks["influxdb_v1"] = v1
        if url:
            v1["url"] = url
        if db:
            v1["db"] = db
        pw1 = _env_secret(env, "GREENDC_INFLUX_PASSWORD")
        if env.get("GREENDC_INFLUX_USERNAME"):
            v1["username"] = env["GREENDC_INFLUX_USERNAME"]
        if pw1 is not None:
            v1["password"] = pw1
    return data


_MAX_PROBLEMS_SHOWN = 20  # the message stays readable; ConfigError.problems has them all

# -- device profiles ----------------------------------------------------------------------------

PROFILE_DIR = Path(__file__).parent / "data" / "profiles"
# What a mapping that names a profile may set; anything else means a mapping of one's own
# (copy the profile's from greendc/data/profiles/NAME.yaml and change it).
PROFILE_SETTINGS = (
    "profile",
    "base_topic",
    "site",
    "naive_timezone",
    "timestamp_required",
    "without_values",
)


def profile_names() -> list[str]:
    """The names of the device profiles shipped with greendc."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def load_profile(name: str) -> dict[str, Any]:
    """A shipped device profile as data: title, source, base_topic, mappings, examples."""
    path = PROFILE_DIR / f"{name}.yaml"
    if name not in profile_names():
        raise ConfigError(
            f"{name!r} is not a greendc device profile; the profiles are: "
            + ", ".join(profile_names())
        )
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data


def profile_mappings(name: str, settings: AbcMapping[str, Any]) -> list[dict[str, Any]]:
    """The mappings of a profile with a user's settings applied (see PROFILE_SETTINGS)."""
    profile = load_profile(name)
    base = str(settings.get("base_topic", profile.get("base_topic", ""))).strip("/")
    out = []
    for m in profile["mappings"]:
        mapping = dict(m)
        mapping["topic"] = f"{base}/{m['topic']}" if base else str(m["topic"])
        for key in PROFILE_SETTINGS[2:]:
            if key in settings:
                mapping[key] = settings[key]
        out.append(mapping)
    return out


def _expand_profiles(data: dict[str, Any]) -> None:
    """Replace each ``{profile: NAME, ...}`` mapping by the profile's mappings, in place."""
    mappings = data.get("mappings")
    if not isinstance(mappings, list):
        return
    problems: list[str] = []
    expanded: list[Any] = []
    for i, m in enumerate(mappings):
        if not isinstance(m, dict) or "profile" not in m:
            expanded.append(m)
            continue
        name = m["profile"]
        extra = sorted(set(m) - set(PROFILE_SETTINGS))
        if extra:
            problems.append(
                f"mappings[{i}]: {', '.join(extra)} cannot be set on a profile (only "
                f"{', '.join(PROFILE_SETTINGS[1:])}); to change more, copy the profile's "
                f"mappings from greendc/data/profiles/{name}.yaml into your own"
            )
            continue
        if not isinstance(name, str) or name not in profile_names():
            problems.append(
                f"mappings[{i}].profile: {name!r} is not one of {', '.join(profile_names())}"
            )
            continue
        expanded.extend(profile_mappings(name, m))
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems), problems)
    data["mappings"] = expanded


def parse_config(
    data: Any, *, env: AbcMapping[str, str] | None = None, base_dir: Path | None = None
) -> Settings:
    """Validate raw config data (as loaded from YAML) into :class:`Settings`.

    Relative paths in the config are resolved against ``base_dir`` when given.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"(top level): expected a mapping of settings, got {type(data).__name__}")
    data = apply_environment(data, os.environ if env is None else env)
    _apply_secret_files(data, base_dir)
    _apply_bridge_secrets(data, os.environ if env is None else env, base_dir)
    _expand_profiles(data)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(e) for e in exc.errors()]
        shown = problems[:_MAX_PROBLEMS_SHOWN]
        if len(problems) > len(shown):
            shown.append(f"... and {len(problems) - len(shown):,} more problems like these")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(shown), problems) from None
    if base_dir is not None:
        settings = _resolve_paths(settings, base_dir)
    return settings


def _resolve_paths(settings: Settings, base: Path) -> Settings:
    """Every relative path of the settings, made relative to ``base`` (the config's folder)."""

    def fix(p: Path) -> Path:
        return p if p.is_absolute() else base / p

    def opt(p: Path | None) -> Path | None:
        return None if p is None else fix(p)

    sinks = settings.sinks
    updates: dict[str, Any] = {
        "spool": sinks.spool.model_copy(update={"dir": fix(sinks.spool.dir)}),
    }
    if sinks.embedded is not None:
        updates["embedded"] = sinks.embedded.model_copy(update={"path": fix(sinks.embedded.path)})
    new: dict[str, Any] = {"sinks": sinks.model_copy(update=updates)}
    new["emission_factors_file"] = opt(settings.emission_factors_file)
    new["metrics"] = settings.metrics.model_copy(
        update={"web_config_file": opt(settings.metrics.web_config_file)}
    )
    tls = settings.mqtt.tls
    if tls is not None:
        files = {k: opt(getattr(tls, k)) for k in ("ca_file", "cert_file", "key_file")}
        new["mqtt"] = settings.mqtt.model_copy(update={"tls": tls.model_copy(update=files)})
    new["sites"] = [
        s.model_copy(update={"hourly_factors_file": opt(s.hourly_factors_file)})
        for s in settings.sites
    ]
    return settings.model_copy(update=new)


def _load_text(text: str) -> Any:
    """YAML, or JSON (which is YAML) read with orjson: a generated 100,000-meter campus
    config loads in a fraction of a second as JSON, several seconds as YAML even with libyaml.
    """
    if text.lstrip().startswith("{"):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass  # YAML flow style, or a mistake: YAML gives the better message
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def load_config(path: str | Path, *, env: AbcMapping[str, str] | None = None) -> Settings:
    """Read, override from the environment, and validate a greendc YAML config file.

    Relative paths inside the file (store, spool, factor files, TLS and secret files, the
    web config) are resolved against the file's own folder, so the same file means the
    same paths from any working directory (a service manager's, a container's, a shell's).
    A file that cannot be read raises :class:`ConfigUnreadable`; one that can but is
    invalid, :class:`ConfigError`.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        where = "" if p.is_absolute() else f" (looked for {p.absolute()})"
        raise ConfigUnreadable(f"{p}: cannot read the config file: {exc.strerror}{where}") from exc
    try:
        data = _load_text(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{p}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    try:
        return parse_config(data, env=env, base_dir=p.absolute().parent)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}", exc.problems) from None
