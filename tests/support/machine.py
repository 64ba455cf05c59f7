"""What a benchmark ran on: cores, CPU model, memory, Python, kernel and server versions."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any


def version_of(cmd: list[str]) -> str:
    """The first line a ``--version``-like command prints, or ``?``."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "?"


def mosquitto_binary() -> str | None:
    """mosquitto on PATH, or in /usr/sbin (Debian; not on an ordinary user's PATH)."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"])
    return shutil.which("mosquitto", path=search)


def machine(*, servers: tuple[str, ...] = ("mosquitto",)) -> dict[str, Any]:
    """The machine and the versions of ``servers`` (any of mosquitto, influxd, node)."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_gib, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }
    commands = {
        "mosquitto": lambda: [mosquitto_binary() or "mosquitto", "-h"],
        "influxd": lambda: ["influxd", "version"],
        "node": lambda: ["node", "--version"],
    }
    for name in servers:
        info[name] = version_of(commands[name]())
    return info


__all__ = ["machine", "mosquitto_binary", "version_of"]
