"""The agent: subscribes over MQTT, decodes, keeps live state, hands readings to the sinks.

Lifecycle: ``Agent(settings)`` builds everything; ``start()`` connects (asynchronously,
with capped exponential reconnect, through ``mqtt.url`` then each of ``mqtt.fallback_urls``)
and starts the pipeline; ``stop()`` stops reading, flushes every sink (what cannot be written
in time is spooled to disk), sends the acknowledgements that flush earned, and only then
disconnects. ``with Agent(settings) as agent:`` does both.

Back-pressure (``ack: durable``): when a sink's spool refuses a batch (full, or the disk
refuses the write) the pipeline holds it unacknowledged and the buffered reader stops
reading until the spool drains; the broker keeps the messages meanwhile.

paho-mqtt 2.x specifics: CallbackAPIVersion.VERSION2; subscriptions are made in
``on_connect`` so a reconnect resubscribes; MQTT 5 with a persistent session (clean start
off, session expiry set) so the broker keeps QoS 1 messages while the agent is away; with
``protocol: auto`` a broker that refuses MQTT 5 is retried with MQTT 3.1.1.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from greendc import __version__
from greendc.collector import mqttio
from greendc.collector.clock import SteadyClock
from greendc.collector.health import AgentStats
from greendc.collector.pipeline import Pipeline, build_pipeline
from greendc.collector.sinks import Sink, build_sinks
from greendc.config import Settings
from greendc.decode import Decoder, Rejection
from greendc.model import Reading
from greendc.snapshot import Health, MeterState, SiteLive, Snapshot

log = logging.getLogger(__name__)

_UNSUPPORTED_PROTOCOL = (132, 1)  # MQTT 5 reason code / MQTT 3.1.1 CONNACK return code
_LOG_EVERY_S = 10.0
# A message whose handling raised this many times is dead-lettered and acknowledged: the
# first failure drops the connection so the broker redelivers it (the cause may have been
# transient, e.g. memory); a second one means the message itself is the problem.
POISON_TRIES = 2
_FAILURES_TRACKED = 1024  # message fingerprints remembered between the two tries
_DEAD_LETTER_TOPIC_MAX = 256  # characters of the original topic kept in a dead letter
_DEAD_LETTER_PAYLOAD_MAX = 1024  # bytes of the original payload kept in a dead letter
_DETAIL_MAX = 300  # characters of a rejection detail in a log line or a dead letter


@dataclass(frozen=True, slots=True)
class Delivery:
    """A QoS 1/2 MQTT message whose readings are on their way to the sinks: acknowledged
    (PUBACK) once every sink holds them durably, on the connection it came in on."""

    generation: int  # the connection's number; a delivery of an earlier one is not acked
    client: mqtt.Client
    mid: int
    qos: int


class RateLimitedLog:
    """Logs the first rejection of each reason, then at most one line per interval."""

    def __init__(self, logger: logging.Logger, every_s: float = _LOG_EVERY_S) -> None:
        """``now_s`` given to :meth:`warn` must be monotonic time."""
        self._log = logger
        self._every_s = every_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warn(self, reason: str, detail: str, now_s: float) -> None:
        """Log, unless this reason was logged less than the interval ago."""
        last = self._last.get(reason)
        if last is not None and now_s - last < self._every_s:
            self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
            return
        more = self._suppressed.pop(reason, 0)
        self._last[reason] = now_s
        tail = f" (and {more} more since the last report)" if more else ""
        self._log.warning("rejected (%s): %s%s", reason, clip(detail, _DETAIL_MAX), tail)


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was when cut."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 30]}... ({len(text):,} characters)"


def _fingerprint(topic: str, payload: bytes) -> bytes:
    """What identifies a message for the poison count: a hash of its topic and payload."""
    data = topic.encode("utf-8", "surrogatepass") + b"\0" + payload
    return hashlib.blake2b(data, digest_size=16).digest()


class _MeterLive:
    __slots__ = ("last_seen_s", "power_w", "received_s", "role", "temp_c")

    def __init__(self, role: str) -> None:
        self.role = role
        self.last_seen_s = 0.0
        self.received_s = 0.0
        self.power_w: float | None = None
        self.temp_c: float | None = None


ReadingObserver = Callable[[list[Reading]], None]


class Agent:
    """One greendc collector process."""

    def __init__(
        self,
        settings: Settings,
        *,
        sinks: list[Sink] | None = None,
        agent_name: str | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        self.settings = settings
        self.name = agent_name or settings.mqtt.client_id
        # ``clock`` is the system clock, ``monotonic`` the clock of durations; dates come
        # from the steady clock built on both (collector/clock.py). A test that injects only
        # ``clock`` simulates time passing: durations then follow the same clock. A test of
        # a clock step injects both.
        self._clock = clock
        if monotonic is None:
            monotonic = time.monotonic if clock is time.time else clock
        self.clock = SteadyClock(clock, monotonic)
        self.decoder = Decoder(settings)
        self.stats = AgentStats()
        self._lock = threading.Lock()
        self._meters: dict[tuple[str, str], _MeterLive] = {}
        self._expiry: dict[tuple[str, str], float] = {
            (s.name, m.name): m.expiry_seconds or settings.metrics.default_expiry_seconds
            for s in settings.sites
            for m in s.meters
        }
        self._observers: list[ReadingObserver] = []
        self._rejection_log = RateLimitedLog(log)
        self.started_at_s = clock()
        s = settings.sinks
        self._manual_ack = settings.mqtt.ack == "durable" and settings.mqtt.qos > 0
        self.pipeline: Pipeline[Delivery] = build_pipeline(
            sinks if sinks is not None else build_sinks(settings),
            s.spool.dir,
            s.spool.max_bytes,
            s.max_queue_batches,
            s.batch_size,
            s.flush_interval_seconds,
            # Flush before half the broker's in-flight window waits on us for an ack.
            max(1, settings.mqtt.max_inflight // 2),
            # Only messages the broker still holds may wait on a full spool.
            hold=self._manual_ack,
        )
        self._dead_letter = settings.mqtt.dead_letter_topic
        self._generation = 0  # bumped per connection: a message id is only valid on its own
        # Messages taken but not yet acknowledged. Mosquitto 2.0.11 stops honouring our Receive
        # Maximum once acknowledgements flow (eclipse-mosquitto/mosquitto#2301), so a slow sink
        # would make memory grow; past twice the window the buffered reader holds off instead.
        self._taken = 0  # tokens handed to the pipeline (network thread only)
        self._settled = 0
        self._settled_lock = threading.Lock()
        self._hold_at = 2 * settings.mqtt.max_inflight
        self.pipeline.on_settled = self._acknowledge
        self._protocol = mqtt.MQTTv311 if settings.mqtt.protocol == "3.1.1" else mqtt.MQTTv5
        self._client: mqtt.Client | None = None
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._subscribe_mid: int | None = None
        self._brokers = settings.mqtt.brokers
        self._broker = 0  # index into _brokers of the broker in use (or being tried)
        self._held_back = False  # reading paused for a full spool (logged on change)
        self.paho_log = mqttio.PahoLogFilter()
        self._site_live: Callable[[float], tuple[SiteLive, ...]] = lambda _now: ()
        # Fingerprints of messages whose handling raised, with how often (network thread).
        self._failures: dict[bytes, int] = {}
        self._max_packet = mqttio.max_packet_bytes(settings.validation.max_payload_bytes)
        # The network loop turns at least once a second (paho's select timeout) and pings
        # every keepalive: a loop silent for longer than this is stuck, not idle.
        self._stall_after_s = float(settings.mqtt.keepalive_seconds + 10)

    # -- wiring -----------------------------------------------------------------------------
    def add_observer(self, fn: ReadingObserver) -> None:
        """Call ``fn(readings)`` (under the agent's lock) for every accepted batch."""
        self._observers.append(fn)

    def set_site_live(self, fn: Callable[[float], tuple[SiteLive, ...]]) -> None:
        """Set the function (called under the lock) that reports live site figures."""
        self._site_live = fn

    # -- MQTT ---------------------------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        m = self.settings.mqtt
        kwargs: dict[str, Any] = {
            "callback_api_version": CallbackAPIVersion.VERSION2,
            "client_id": m.client_id,
            "protocol": self._protocol,
            "clean_session": None if self._protocol == mqtt.MQTTv5 else m.clean_start,
            "manual_ack": self._manual_ack,
        }
        client: mqtt.Client
        if not mqttio.supported():
            log.warning(
                "this paho-mqtt (%s) lacks the internals greendc's receive path relies on "
                "(%s); using paho's own reader, without the packet-size limit or the guarded "
                "network thread",
                getattr(mqtt, "__version__", "?"),
                "; ".join(mqttio.paho_problems()),
            )
            client = mqtt.Client(**kwargs)
        elif m.receive == "buffered":
            client = mqttio.BufferedClient(
                deliver=self._on_publish,
                hold=self._hold_reading,
                oversized=self._on_oversized,
                max_packet_bytes=self._max_packet,
                **kwargs,
            )
        else:
            client = mqttio.GuardedClient(max_packet_bytes=self._max_packet, **kwargs)
        client.max_inflight_messages_set(m.max_inflight)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(
            min_delay=max(1, int(m.reconnect_min_seconds)), max_delay=int(m.reconnect_max_seconds)
        )
        if m.username:
            client.username_pw_set(
                m.username, m.password.get_secret_value() if m.password else None
            )
        if m.use_tls:
            tls = m.tls
            client.tls_set(
                ca_certs=str(tls.ca_file) if tls and tls.ca_file else None,
                certfile=str(tls.cert_file) if tls and tls.cert_file else None,
                keyfile=str(tls.key_file) if tls and tls.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            if tls and tls.insecure_skip_verify:
                client.tls_insecure_set(True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_connect_fail = self._on_connect_fail
        mqtt_log = logging.getLogger("greendc.mqtt")
        if self.paho_log not in mqtt_log.filters:
            mqtt_log.addFilter(self.paho_log)
        client.enable_logger(mqtt_log)
        return client

    def _connect(self) -> None:
        client = self._make_client()
        self._client = client
        self._connect_async(client)
        client.loop_start()

    def _connect_async(self, client: mqtt.Client) -> None:
        """Point the client at the current broker; its network loop connects (with backoff)."""
        m = self.settings.mqtt
        props = None
        kwargs: dict[str, Any] = {}
        if self._protocol == mqtt.MQTTv5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = m.session_expiry_seconds
            props.ReceiveMaximum = m.max_inflight
            # A conforming broker then never sends us a packet larger than we accept.
            props.MaximumPacketSize = self._max_packet
            kwargs["clean_start"] = m.clean_start
        host, port = self._brokers[self._broker]
        client.connect_async(host, port, m.keepalive_seconds, properties=props, **kwargs)

    @property
    def broker(self) -> str:
        """host:port of the broker in use, or being tried."""
        host, port = self._brokers[self._broker]
        return f"{host}:{port}"

    def _fail_over(self, client: mqtt.Client, why: str) -> None:
        """Try the next broker of the list (called from the network loop; it backs off)."""
        if len(self._brokers) < 2 or self._stopping.is_set():
            return
        before = self.broker
        self._broker = (self._broker + 1) % len(self._brokers)
        log.warning("MQTT broker %s %s; trying %s next", before, why, self.broker)
        self._connect_async(client)

    def _on_connect_fail(self, client: mqtt.Client, _userdata: Any) -> None:
        self._fail_over(client, "cannot be reached")

    def _subscriptions(self) -> list[str]:
        group = self.settings.mqtt.shared_group
        subs = (
            self.decoder.site_subscriptions()
            if self.settings.mqtt.subscribe == "sites"
            else self.decoder.subscriptions
        )
        return [f"$share/{group}/{s}" for s in subs] if group else subs

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, flags: Any, reason: Any, _props: Any
    ) -> None:
        if reason.is_failure:
            value = getattr(reason, "value", None)
            if (
                self.settings.mqtt.protocol == "auto"
                and self._protocol == mqtt.MQTTv5
                and (value in _UNSUPPORTED_PROTOCOL)
            ):
                log.warning("broker refused MQTT 5; falling back to MQTT 3.1.1")
                self._protocol = mqtt.MQTTv311
                threading.Thread(
                    target=self._reconnect_fresh, name="greendc-mqtt-fallback", daemon=True
                ).start()
                return
            log.error(
                "MQTT broker %s refused the connection: %s (check mqtt.username/password, "
                "TLS and ACLs)",
                self.broker,
                reason,
            )
            return
        qos: int = self.settings.mqtt.qos
        subs = self._subscriptions()
        with self._lock:
            self.stats.mqtt_connected = True
            self.stats.mqtt_connections += 1
            self._generation += 1
        _rc, self._subscribe_mid = client.subscribe([(s, qos) for s in subs])
        self._drop_stale_subscriptions(client, subs, bool(getattr(flags, "session_present", False)))
        log.info(
            "connected to MQTT %s (session present: %s); subscribing to %s",
            self.broker,
            getattr(flags, "session_present", "?"),
            ", ".join(subs),
        )

    def _on_subscribe(
        self, _client: mqtt.Client, _userdata: Any, mid: int, reasons: Any, _props: Any
    ) -> None:
        if mid != self._subscribe_mid:
            return
        refused = [str(r) for r in reasons if getattr(r, "is_failure", False)]
        if refused:
            log.error(
                "the broker refused %d of our subscriptions (%s): check the broker's ACL for "
                "this client",
                len(refused),
                ", ".join(refused),
            )
        # Subscribed means the broker routes new messages to us from now on: what
        # wait_connected() promises to callers that publish right after it returns.
        self._connected.set()

    def _drop_stale_subscriptions(
        self, client: mqtt.Client, subs: list[str], session_present: bool
    ) -> None:
        """Unsubscribe filters a persistent session kept from an earlier configuration.

        A broker keeps a persistent session's subscriptions across restarts of the agent, so
        a site moved to another agent would otherwise still arrive here (as unknown_site).
        The filters in use are remembered next to the spool.
        """
        state = self.settings.sinks.spool.dir / "subscriptions.json"
        try:
            previous = json.loads(state.read_text()) if state.exists() else []
        except (OSError, ValueError):
            previous = []
        stale = [f for f in previous if isinstance(f, str) and f not in subs]
        if stale and session_present:
            client.unsubscribe(stale)
            log.info("unsubscribed from filters no longer configured: %s", ", ".join(stale))
        try:
            state.parent.mkdir(parents=True, exist_ok=True)
            state.write_text(json.dumps(subs))
        except OSError as exc:
            log.warning("cannot remember subscriptions in %s: %s", state, exc)

    def _reconnect_fresh(self) -> None:
        old = self._client
        if old is not None:
            old.loop_stop()
        if not self._stopping.is_set():
            self._connect()

    def _on_disconnect(
        self, client: mqtt.Client, _userdata: Any, flags: Any, reason: Any, _props: Any
    ) -> None:
        with self._lock:
            was = self.stats.mqtt_connected
            self.stats.mqtt_connected = False
        self._connected.clear()
        if self._stopping.is_set():
            return
        if getattr(flags, "is_disconnect_packet_from_server", False):
            why = f"closed the connection: {reason}"  # the broker's own reason code
        else:
            # paho reports a lost socket as "Unspecified error"; say what happened instead.
            cause = self.paho_log.take_last_error()
            why = f"connection lost ({cause})" if cause else "connection lost"
        if was:
            log.warning("MQTT broker %s %s; reconnecting with backoff", self.broker, why)
        self._fail_over(client, "is unavailable" if was else why)

    def _on_message(self, client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        # paho's own reader (mqtt.receive: paho), and QoS 2 packets on the buffered one.
        self._on_publish(client, msg.topic, bytes(msg.payload), msg.mid, msg.qos)

    def _hold_reading(self) -> bool:
        """Whether the buffered reader should leave the socket unread for now."""
        if self._stopping.is_set():
            return True  # stopping: nothing new is taken, unacknowledged ones are redelivered
        # Only once subscribed: CONNACK and SUBACK must always be read.
        if not self._manual_ack or not self._connected.is_set():
            return False
        saturated = self.pipeline.saturated()
        if saturated != self._held_back:
            self._held_back = saturated
            if saturated:
                log.warning("a sink's spool is full: MQTT reads paused, the broker is queueing")
            else:
                log.info("the spool takes batches again: MQTT reads resumed")
        return saturated or self._too_many_unacknowledged()

    def _too_many_unacknowledged(self) -> bool:
        # Only once subscribed: CONNACK and SUBACK must always be read.
        return self._connected.is_set() and self._taken - self._settled >= self._hold_at

    def _on_publish(
        self, client: mqtt.Client, topic: str, payload: bytes, mid: int, qos: int
    ) -> None:
        if self._manual_ack and qos > 0 and self._stopping.is_set():
            return  # left unacknowledged: the broker redelivers it to the next session
        token = None
        if self._manual_ack and qos > 0:
            token = Delivery(self._generation, client, mid, qos)
        if self._dead_letter is not None and topic.startswith(self._dead_letter):
            # Our own dead letters, when the operator put them under a subscribed filter.
            if token is not None:
                self._hand_over([], token)
            return
        try:
            self.handle(topic, payload, token)
        except Exception as exc:
            if not self._poisoned(topic, payload, qos, token, exc):
                raise  # the reader drops the connection; the broker redelivers the message

    def _on_oversized(self, client: mqtt.Client, topic: str, mid: int, qos: int, size: int) -> None:
        """A PUBLISH larger than we accept, skipped unread by the reader: count, acknowledge."""
        with self._lock:
            self.stats.messages_received += 1
            self.stats.rejections["payload_too_large"] += 1
        if self._manual_ack and qos > 0:
            self._hand_over([], Delivery(self._generation, client, mid, qos))
        detail = (
            f"a {size:,}-byte packet exceeds the {self._max_packet:,}-byte Maximum Packet Size "
            "(validation.max_payload_bytes); skipped unread"
        )
        self._rejected(
            topic, b"", [("payload_too_large", detail)], self.clock.now(), self.clock.monotonic()
        )

    def _poisoned(
        self, topic: str, payload: bytes, qos: int, token: Delivery | None, exc: Exception
    ) -> bool:
        """Count a message whose handling raised; True when it is now dead-lettered and acked.

        A QoS 0 message cannot come back, so it is dead-lettered at once; a QoS 1 message
        is given a second try (the first failure may have been transient, such as memory).
        """
        digest = _fingerprint(topic, payload)
        tries = self._failures.pop(digest, 0) + 1
        error = clip(f"{type(exc).__name__}: {exc}", _DETAIL_MAX)
        if qos > 0 and tries < POISON_TRIES:
            if len(self._failures) >= _FAILURES_TRACKED:
                self._failures.pop(next(iter(self._failures)))
            self._failures[digest] = tries
            log.error(
                "handling a message on %s failed (%s, try %d of %d); reconnecting so the "
                "broker redelivers it",
                clip(topic, _DEAD_LETTER_TOPIC_MAX),
                error,
                tries,
                POISON_TRIES,
            )
            return False
        log.error(
            "handling a message on %s failed %d time(s) (%s); dead-lettered and acknowledged",
            clip(topic, _DEAD_LETTER_TOPIC_MAX),
            tries,
            error,
            exc_info=exc,
        )
        rejection: Rejection = ("poison_message", f"handling failed {tries} time(s): {error}")
        with self._lock:
            self.stats.rejections["poison_message"] += 1
        if token is not None:
            self._hand_over([], token)
        self._rejected(topic, payload, [rejection], self.clock.now(), self.clock.monotonic())
        return True

    def _hand_over(self, readings: list[Reading], token: Delivery | None) -> None:
        """Give readings (and the message to acknowledge once they are stored) to the sinks."""
        self.pipeline.add(readings, token)
        if token is not None:
            self._taken += 1  # counted once handed over, so a failure before cannot leak it

    def _acknowledge(self, tokens: list[Delivery]) -> None:
        """PUBACK messages whose readings every sink now holds durably (or that were rejected).

        A token from an earlier connection is skipped: its message id may have been reused,
        and the broker redelivers the message on the new session anyway (the sinks then
        store the same points again, which lands once).
        """
        with self._settled_lock:
            self._settled += len(tokens)
        generation = self._generation
        grouped: dict[mqttio.BufferedClient, list[int]] = {}
        for d in tokens:
            if d.generation != generation or not mqttio.network_loop_running(d.client):
                continue  # redelivered by the broker (see mqttio.network_loop_running)
            if d.qos == 1 and isinstance(d.client, mqttio.BufferedClient):
                grouped.setdefault(d.client, []).append(d.mid)
            else:
                d.client.ack(d.mid, d.qos)
        for buffered, mids in grouped.items():
            buffered.ack_many(mids)

    # -- the hot path -----------------------------------------------------------------------
    def handle(self, topic: str, payload: bytes, token: Delivery | None = None) -> list[Reading]:
        """Decode one message, update live state, hand readings to the pipeline.

        ``token`` identifies the MQTT message to acknowledge once its readings are durable.
        """
        now = self.clock.now()
        self.decoder.clock_step_s = self.clock.step_seconds()
        received = self.clock.monotonic()
        decoded = self.decoder.decode_full(topic, payload, now)
        readings, rejections, ignored = decoded.readings, decoded.rejections, decoded.ignored
        with self._lock:
            self.stats.messages_received += 1
            if readings:
                # Observers first: if one raises, this message changed no count or live value
                # (it is retried, then dead-lettered: see _poisoned).
                for obs in self._observers:
                    obs(readings)
                self.stats.readings_accepted += len(readings)
                meters = self._meters
                for site, meter, role, ts_ms, f in readings:
                    key = (site, meter)
                    live = meters.get(key)
                    if live is None:
                        live = meters[key] = _MeterLive(role)
                    live.received_s = received
                    ts = ts_ms / 1000.0
                    if ts >= live.last_seen_s:
                        live.last_seen_s = ts
                        power = f.get("power_w")
                        if power is not None:
                            live.power_w = power
                        if "temp_c" in f:
                            live.temp_c = f["temp_c"]
            if rejections:
                counts = self.stats.rejections
                for reason, _detail in rejections:
                    counts[reason] += 1
            if ignored:
                for reason, _detail in ignored:
                    self.stats.ignored[reason] += 1
            for key in decoded.stale:
                # A Sparkplug death: the meter is stale now, not when its expiry runs out.
                stale = self._meters.get(key)
                if stale is not None:
                    stale.received_s = -math.inf
        if readings or token is not None:
            # A fully rejected message is acknowledged with the next batch: its rejection is
            # final (counted, dead-lettered) and must not be redelivered forever.
            self._hand_over(readings, token)
        if rejections:
            self._rejected(topic, payload, rejections, now, received)
        if decoded.publish:
            self._publish_requests(decoded.publish)
        return readings

    def _publish_requests(self, messages: list[tuple[str, bytes]]) -> None:
        """Publish what the decoder asks for (a Sparkplug rebirth request), QoS 0."""
        client = self._client
        if client is None:
            return
        for topic, body in messages:
            log.info("asking for a Sparkplug rebirth on %s", topic)
            client.publish(topic, body, qos=0)

    def _rejected(
        self, topic: str, payload: bytes, rejections: list[Rejection], now: float, mono: float
    ) -> None:
        for reason, detail in rejections:
            self._rejection_log.warn(reason, detail, mono)
        dlq = self.settings.mqtt.dead_letter_topic
        client = self._client
        if dlq and client is not None and not topic.startswith(dlq):
            # A copy bounded in size whatever the original was: a gateway must not be able
            # to make the collector republish 64 KB topics or megabyte payloads.
            body = json.dumps(
                {
                    "topic": topic[:_DEAD_LETTER_TOPIC_MAX],
                    "topic_chars": len(topic),
                    "received_at": now,
                    "rejections": [
                        {"reason": r, "detail": clip(d, _DETAIL_MAX)} for r, d in rejections
                    ],
                    "payload": payload[:_DEAD_LETTER_PAYLOAD_MAX].decode("utf-8", "replace"),
                    "payload_bytes": len(payload),
                }
            )
            client.publish(dlq, body, qos=1)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start the sink workers and connect to the broker (in the background)."""
        self.pipeline.start()
        self._connect()

    def wait_connected(self, timeout_s: float) -> bool:
        """Block until subscribed to the broker, or the timeout; True when connected."""
        return self._connected.wait(timeout_s)

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop reading, flush every sink, send the acknowledgements, then disconnect.

        What a sink cannot take in time is spooled; what the spool cannot take stays
        unacknowledged, for the broker to redeliver to the next session.
        """
        self._stopping.set()  # the reader takes nothing more from here on
        self.pipeline.stop(timeout_s)  # flush: what is stored or spooled is acknowledged
        client = self._client
        if client is not None:
            # The acknowledgements are queued on the still-running network loop; DISCONNECT
            # goes after them on the same queue, and only once they are out.
            deadline = time.monotonic() + 5.0
            while client.is_connected() and client.want_write() and time.monotonic() < deadline:
                time.sleep(0.01)
            client.disconnect()
            client.loop_stop()
        log.info(
            "stopped: %d messages, %d readings accepted, rejections %s",
            self.stats.messages_received,
            self.stats.readings_accepted,
            dict(self.stats.rejections),
        )

    def __enter__(self) -> Agent:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- what exporters see ----------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """Copy live state under the lock; stale meters are left out."""
        now = self.clock.now()
        mono = self.clock.monotonic()
        default_expiry = self.settings.metrics.default_expiry_seconds
        with self._lock:
            meters = tuple(
                MeterState(site, meter, m.role, m.last_seen_s, m.power_w, m.temp_c)
                for (site, meter), m in self._meters.items()
                if mono - m.received_s <= self._expiry.get((site, meter), default_expiry)
            )
            sites = self._site_live(now)
            st = self.stats
            client = self._client
            if isinstance(client, mqttio.GuardedClient):
                alive = client.network_alive(self._stall_after_s)
                read_errors = client.read_errors + client.loop_restarts
            else:  # plain paho (a version without the internals we guard): nothing to watch
                alive, read_errors = True, 0
            health = Health(
                agent=self.name,
                version=__version__,
                start_time_s=self.started_at_s,
                messages_received=st.messages_received,
                readings_accepted=st.readings_accepted,
                rejections=dict(st.rejections),
                ignored=dict(st.ignored),
                # Connected means the network thread is alive and its loop turning too: a
                # thread that died or hangs reads nothing, whatever the last CONNACK said.
                mqtt_connected=st.mqtt_connected and alive,
                mqtt_reconnects=max(0, st.mqtt_connections - 1),
                mqtt_read_errors=read_errors,
                series_refused=st.rejections.get("series_cap", 0),
                meters_tracked=len(self._meters),
                sinks=(),
            )
        sinks = tuple(w.health(now) for w in self.pipeline.workers)
        health = Health(**{**health.__dict__, "sinks": sinks})
        return Snapshot(taken_at_s=now, meters=meters, sites=sites, health=health)
