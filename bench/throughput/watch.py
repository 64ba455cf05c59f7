"""When a contender has subscribed: the broker's $SYS subscription count."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from bench.throughput.common import BenchError
from tests.support.servers import Mosquitto


class SubscriptionWatch:
    """Follows the broker's $SYS subscription count."""

    def __init__(self, broker: Mosquitto) -> None:
        """Connect and subscribe to $SYS/broker/subscriptions/count."""
        self.count = -1
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-sys")
        self._client.on_message = self._on_message
        self._client.connect(broker.host, broker.port)
        self._client.subscribe("$SYS/broker/subscriptions/count")
        self._client.loop_start()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with contextlib.suppress(ValueError):
            self.count = int(msg.payload)

    def wait_for(self, subs: int, alive: Callable[[], bool], deadline_seconds: float) -> None:
        """Block until ``subs`` subscriptions besides our own exist."""
        deadline = time.monotonic() + deadline_seconds
        while self.count < subs + 1:
            if not alive():
                raise BenchError("the contender exited before it subscribed")
            if time.monotonic() > deadline:
                raise BenchError(f"no {subs} subscription(s) within {deadline_seconds} s")
            time.sleep(0.05)

    def close(self) -> None:
        """Disconnect."""
        self._client.disconnect()
        self._client.loop_stop()
