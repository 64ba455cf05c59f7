"""/proc sampling and measured processes: what a benchmark charges to a consumer.

CPU is utime + stime of every thread (``/proc/PID/stat``, or ``wait4`` rusage once a
process has exited); memory is VmHWM (peak) or VmRSS (now) from ``/proc/PID/status``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


def host_cpu_ticks() -> tuple[int, int]:
    """(all ticks, idle+iowait ticks) over every core, from /proc/stat."""
    values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(values), values[3] + values[4]


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (all threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    return 0


def proc_peak_rss_mib(pid: int) -> float:
    """VmHWM of a live process, in MiB."""
    return _status_kib(pid, "VmHWM:") / 1024


def proc_rss_kib(pid: int) -> int:
    """Resident set size (VmRSS) of a process in KiB; 0 when it is gone."""
    try:
        return _status_kib(pid, "VmRSS:")
    except OSError:
        return 0


def children_cpu_seconds() -> float:
    """CPU used by this process's reaped children."""
    t = os.times()
    return t.children_user + t.children_system


@dataclass
class Usage:
    """What a consumer process used."""

    cpu_seconds: float
    peak_rss_mib: float


class Proc:
    """A consumer process, reaped with wait4 so its rusage is known when it exits."""

    def __init__(
        self,
        cmd: list[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        log: Path | None = None,
        stdout_pipe: bool = False,
    ) -> None:
        """Start ``cmd`` in its own session."""
        self.log = log
        out: Any = (
            subprocess.PIPE
            if stdout_pipe
            else (log.open("wb") if log is not None else subprocess.DEVNULL)
        )
        self.popen = subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT if log is None or stdout_pipe else out,
            start_new_session=True,
        )
        if out not in (subprocess.PIPE, subprocess.DEVNULL):
            out.close()
        self.pid = self.popen.pid
        self.exit_usage: Usage | None = None
        self.ended_at = 0.0

    def exited(self) -> bool:
        """Reap the process if it has exited (keeping its rusage)."""
        if self.exit_usage is not None:
            return True
        pid, status, ru = os.wait4(self.pid, os.WNOHANG)
        if pid == 0:
            return False
        self.ended_at = time.monotonic()
        self.popen.returncode = os.waitstatus_to_exitcode(status)
        self.exit_usage = Usage(ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024)
        return True

    def cpu_seconds(self) -> float:
        """CPU used so far (or in total, once exited)."""
        if self.exit_usage is not None:
            return self.exit_usage.cpu_seconds
        return proc_cpu_seconds(self.pid)

    def usage(self) -> Usage:
        """CPU and peak RSS now (or at exit)."""
        if self.exit_usage is not None:
            return self.exit_usage
        return Usage(proc_cpu_seconds(self.pid), proc_peak_rss_mib(self.pid))

    def stop(self, timeout_seconds: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after a deadline."""
        if self.exited():
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_seconds
        while not self.exited():
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
            time.sleep(0.02)


__all__ = [
    "CLK_TCK",
    "Proc",
    "Usage",
    "children_cpu_seconds",
    "host_cpu_ticks",
    "proc_cpu_seconds",
    "proc_peak_rss_mib",
    "proc_rss_kib",
]
