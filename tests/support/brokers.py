"""The Mosquitto configurations the benchmarks run, on tests.support.servers.Mosquitto."""

from __future__ import annotations

from tests.support.servers import Mosquitto


class BurstBroker(Mosquitto):
    """Mosquitto for a burst: persistence off and (as always here) no queue cap, so QoS 1
    is never dropped to a slow subscriber."""

    persistent = False


class BenchBroker(BurstBroker):
    """A burst broker that also reports its subscriptions in $SYS every second (the
    side-by-side bench waits on ``$SYS/broker/subscriptions/count``) and gives MQTT 3.1.1
    clients an in-flight window of 1,000."""

    extra_config = (
        # $SYS/broker/subscriptions/count tells when a contender has subscribed.
        "sys_interval 1",
        # MQTT 3.1.1 clients get this in-flight window (MQTT 5 clients set their own
        # Receive Maximum); 20, the default, starves a subscriber that acks durably.
        "max_inflight_messages 1000",
    )


__all__ = ["BenchBroker", "BurstBroker"]
