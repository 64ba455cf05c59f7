"""The baseline: a bare paho-mqtt subscriber that only decodes each payload with json.loads.

Usage: paho_bare.py HOST PORT TOPIC QOS EXPECTED_READINGS IDLE_SECONDS

It counts readings (1 per JSON object, len() per JSON array), exits as soon as it has seen
EXPECTED_READINGS, or after IDLE_SECONDS without a message, and prints
``messages readings`` on stdout. This is the per-message ceiling of naive Python.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt


def main(argv: list[str]) -> int:
    """Subscribe, count, exit; see the module docstring."""
    host, port, topic, qos = argv[0], int(argv[1]), argv[2], int(argv[3])
    expected, idle_seconds = int(argv[4]), float(argv[5])
    state = {"messages": 0, "readings": 0, "last": time.monotonic()}
    done = threading.Event()
    loads = json.loads

    def on_connect(client: mqtt.Client, _u: Any, _f: Any, _rc: Any, _p: Any) -> None:
        client.subscribe(topic, qos)

    def on_message(client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        doc = loads(msg.payload)
        state["messages"] += 1
        state["readings"] += len(doc) if isinstance(doc, list) else 1
        state["last"] = time.monotonic()
        if state["readings"] >= expected:
            done.set()
            client.disconnect()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-paho-{time.time_ns()}")
    client.on_connect = on_connect
    client.on_message = on_message
    client.connect(host, port, keepalive=60)
    client.loop_start()
    while not done.wait(0.2):
        if state["messages"] and time.monotonic() - float(state["last"]) > idle_seconds:
            break
    client.disconnect()
    client.loop_stop()
    print(f"{state['messages']} {state['readings']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
