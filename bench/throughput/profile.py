"""Where greendc spends its time: a /metrics scrape timed, Agent.handle() under cProfile,
py-spy during a burst."""

from __future__ import annotations

import contextlib
import cProfile
import os
import pstats
import re
import shutil
import signal
import statistics
import time
from io import StringIO
from pathlib import Path
from typing import Any

from bench.throughput.common import PYSPY_BIN, RESULTS, SITE, WORK, BenchError
from bench.throughput.contenders import Ctx, Greendc
from bench.throughput.measure import measure
from bench.throughput.stream import Stream, bench_meters
from tests.support.procfs import Proc
from tests.support.servers import InfluxDB1, http_request


def time_scrape(url: str, repeats: int = 3) -> dict[str, Any]:
    """Wall time of GET /metrics, plain and gzip."""
    out: dict[str, Any] = {}
    for label, headers in (("plain", {}), ("gzip", {"Accept-Encoding": "gzip"})):
        times = []
        size = 0
        body = b""
        for _ in range(repeats):
            began = time.perf_counter()
            status, body = http_request(url, headers=headers, timeout_seconds=120.0)
            times.append(time.perf_counter() - began)
            if status != 200:
                raise BenchError(f"scrape answered {status}")
            size = len(body)
        out[label] = {"best_s": min(times), "median_s": statistics.median(times), "bytes": size}
        if label == "plain":
            out["series"] = sum(1 for ln in body.splitlines() if ln and not ln.startswith(b"#"))
            out["meter_power_series"] = sum(
                1
                for ln in body.splitlines()
                if b'meter="m' in ln and b"power" in ln and not ln.startswith(b"#")
            )
    return out


def py_spy_profile(pid: int, seconds: float, out: Path) -> Proc | None:
    """Start py-spy recording the agent (raw collapsed stacks)."""
    if not PYSPY_BIN.exists():
        return None
    return Proc(
        [
            str(PYSPY_BIN),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "250",
            "--format",
            "raw",
            "--threads",
            "--output",
            str(out),
            "--nonblocking",
        ],
        log=out.with_suffix(".log"),
    )


def summarise_collapsed(path: Path, top: int = 25) -> dict[str, list[tuple[str, float]]]:
    """Self and inclusive sample shares per function from py-spy's raw output."""
    self_counts: dict[str, int] = {}
    incl_counts: dict[str, int] = {}
    thread_counts: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n_text = line.rpartition(" ")
        if not stack:
            continue
        n = int(n_text)
        total += n
        frames = stack.split(";")
        thread_counts[frames[0]] = thread_counts.get(frames[0], 0) + n
        funcs = [re.sub(r":\d+\)", ")", f) for f in frames[1:]]
        if funcs:
            self_counts[funcs[-1]] = self_counts.get(funcs[-1], 0) + n
        for f in set(funcs):
            incl_counts[f] = incl_counts.get(f, 0) + n

    def share(d: dict[str, int]) -> list[tuple[str, float]]:
        return [(k, v / total) for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top]]

    return {
        "self": share(self_counts),
        "inclusive": share(incl_counts),
        "threads": share(thread_counts),
        "samples": [("total", float(total))],
    }


def cprofile_handle(stream: Stream) -> dict[str, Any]:
    """Agent.handle() alone (no MQTT, no sink I/O), timed and profiled in this process."""
    from greendc.collector.agent import Agent
    from greendc.config import parse_config

    def agent() -> Any:
        cfg = {
            "validation": {"unknown_meters": "accept", "max_meters": 1_000_000},
            "sites": [
                {
                    "name": SITE,
                    "grid_zone": "SG",
                    "installed_it_kw": 1000,
                    "pue_category": 1,
                    "meters": bench_meters(stream.meters),
                }
            ],
            "sinks": {"spool": {"dir": str(WORK / "spool-profile")}},
        }
        a = Agent(parse_config(cfg, env={}), sinks=[])
        with contextlib.suppress(ImportError):
            from greendc.collector.site_figures import attach_live

            attach_live(a, a.settings)
        return a

    items = [(t.decode(), p) for t, p in stream.items]
    a = agent()
    began = time.process_time()
    for t, p in items:
        a.handle(t, p)
    plain_s = time.process_time() - began
    a = agent()
    prof = cProfile.Profile()
    prof.enable()
    for t, p in items:
        a.handle(t, p)
    prof.disable()
    text = StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(20)
    return {
        "kind": stream.kind,
        "messages": stream.messages,
        "readings": stream.readings,
        "cpu_us_per_message": plain_s / stream.messages * 1e6,
        "cpu_us_per_reading": plain_s / stream.readings * 1e6,
        "pstats_tottime": text.getvalue(),
    }


# -- report --------------------------------------------------------------------------------


def run_py_spy(stream: Stream, influx: InfluxDB1, args: Any) -> dict[str, Any] | None:
    """Record greendc with py-spy during a single-message QoS 0 burst."""
    if not PYSPY_BIN.exists():
        return None
    raw = WORK / "py-spy.raw.txt"
    raw.unlink(missing_ok=True)
    spy: list[Proc] = []

    class Spied(Greendc):
        def start(self, ctx: Ctx) -> None:
            super().start(ctx)
            assert self.proc is not None
            p = py_spy_profile(self.proc.pid, 600, raw)
            if p is not None:
                spy.append(p)

        def finish(self, ctx: Ctx) -> dict[str, Any]:
            for p in spy:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGINT)
                deadline = time.monotonic() + 30
                while not p.exited() and time.monotonic() < deadline:
                    time.sleep(0.05)
            return super().finish(ctx)

    r = measure(Spied(), stream, 0, influx, args)
    if not raw.exists():
        return {"status": r.status, "self": [], "inclusive": []}
    summary: dict[str, Any] = dict(summarise_collapsed(raw))
    summary["status"] = r.status
    summary["readings_per_s_under_profiler"] = r.readings_per_s
    shutil.copy(raw, RESULTS / "py-spy-greendc-single-q0.txt")
    return summary
