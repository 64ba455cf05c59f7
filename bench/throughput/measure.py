"""One measured run: a fresh broker, one contender, the burst, until verified."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.throughput.common import WORK, BenchError
from bench.throughput.contenders import Contender, Ctx
from bench.throughput.stream import Stream
from bench.throughput.watch import SubscriptionWatch
from tests.support.brokers import BenchBroker
from tests.support.mqtt import BurstPublisher
from tests.support.procfs import host_cpu_ticks, proc_cpu_seconds
from tests.support.servers import InfluxDB1


@dataclass
class Result:
    """One contender on one stream at one QoS."""

    contender: str
    stream: str
    qos: int
    meters: int
    messages: int
    readings: int
    status: str = "ok"
    seconds: float = 0.0
    publish_seconds: float = 0.0
    messages_per_s: float = 0.0
    readings_per_s: float = 0.0
    cpu_seconds: float = 0.0
    cpu_us_per_message: float = 0.0
    cpu_us_per_reading: float = 0.0
    cpu_s_per_100k_readings: float = 0.0
    peak_rss_mib: float = 0.0
    verified: int = 0
    lost: int | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def measure(
    contender: Contender,
    stream: Stream,
    qos: int,
    influx: InfluxDB1,
    args: Any,
    *,
    keep: Callable[[Contender, Ctx], dict[str, Any]] | None = None,
) -> Result:
    """Run one contender against one burst on a fresh broker."""
    res = Result(
        contender.name,
        stream.kind,
        qos,
        stream.meters,
        stream.messages,
        stream.readings,
        note=contender.note,
    )
    why = contender.available()
    if why is not None:
        res.status = f"skipped: {why}"
        return res
    run_id = f"{stream.kind}_q{qos}_{stream.meters}_{time.time_ns() % 10**9}"
    workdir = WORK / "runs" / run_id
    workdir.mkdir(parents=True)
    publisher = BurstPublisher(stream.items, qos, args.qos1_window)
    with BenchBroker(workdir / "broker") as broker:
        ctx = Ctx(broker, influx, stream, qos, run_id, workdir)
        watch = SubscriptionWatch(broker)
        try:
            contender.start(ctx)
            proc = contender.proc
            assert proc is not None
            watch.wait_for(contender.subscriptions, lambda: not proc.exited(), 60)
            cpu0 = proc.cpu_seconds()
            broker_cpu0 = proc_cpu_seconds(broker.pid or 0)
            host0 = host_cpu_ticks()
            t0 = time.monotonic()
            thread = threading.Thread(target=publisher.run, args=(broker.host, broker.port))
            thread.start()
            done, count = False, 0
            last_change, last_count = t0, -1
            end = t0
            while True:
                done, count = contender.progress(ctx, final=False)
                now = time.monotonic()
                if done:
                    stored = contender.stored
                    if proc.exit_usage is not None:
                        end = proc.ended_at
                    elif stored is not None and stored.done_at is not None:
                        end = stored.done_at
                    else:
                        end = now
                    break
                if count != last_count:
                    last_change, last_count = now, count
                    end = now
                idle_s = 600.0 if contender.self_terminating else args.idle_seconds
                if not thread.is_alive() and now - last_change > idle_s:
                    done, count = contender.progress(ctx, final=True)
                    res.status = "incomplete (idle timeout)"
                    break
                time.sleep(contender.poll_seconds())
            thread.join()
            host1 = host_cpu_ticks()
            all_ticks = max(1, host1[0] - host0[0])
            # Other work on the machine skews wall-clock rates; CPU per message is robust.
            res.extra["host_busy_share"] = round(1 - (host1[1] - host0[1]) / all_ticks, 3)
            res.extra["broker_cpu_seconds"] = round(
                proc_cpu_seconds(broker.pid or 0) - broker_cpu0, 2
            )
            if publisher.error is not None:
                res.status = f"publisher failed: {publisher.error!r}"
            res.extra.update(contender.finish(ctx))
            # Before keep(): what it does (timing /metrics scrapes) is not the burst's cost.
            usage = proc.usage()
            if keep is not None:
                res.extra.update(keep(contender, ctx))
            res.seconds = end - t0
            res.publish_seconds = publisher.seconds
            res.cpu_seconds = usage.cpu_seconds - cpu0
            res.peak_rss_mib = usage.peak_rss_mib
            res.verified = count
            res.lost = max(0, stream.readings - count)
            if res.seconds > 0:
                res.messages_per_s = (
                    stream.messages * min(1.0, count / stream.readings) / (res.seconds)
                )
                res.readings_per_s = count / res.seconds
            if count:
                res.cpu_us_per_message = (
                    res.cpu_seconds / (stream.messages * count / stream.readings) * 1e6
                )
                res.cpu_us_per_reading = res.cpu_seconds / count * 1e6
                res.cpu_s_per_100k_readings = res.cpu_seconds / count * 100_000
        except BenchError as exc:
            res.status = f"failed: {exc}"
        finally:
            watch.close()
            if contender.proc is not None:
                contender.proc.stop()
    if res.extra.get("host_busy_share") is not None and contender.proc is not None:
        # busy core-seconds not spent by the consumer or the broker: everything else
        cores = os.cpu_count() or 1
        res.extra["other_cpu_seconds"] = round(
            res.extra["host_busy_share"] * cores * res.seconds
            - res.cpu_seconds
            - res.extra.get("broker_cpu_seconds", 0.0),
            1,
        )
    if not args.keep_work:
        shutil.rmtree(workdir, ignore_errors=True)
    with contextlib.suppress(Exception):
        for db in (getattr(contender, "db", ""),):
            if db:
                influx.drop_database(db)
    return res


# -- scrape, growth, profile -------------------------------------------------------------
