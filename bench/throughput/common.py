"""Paths, names and the error every part of the throughput bench shares."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
WORK = BENCH / ".work"
RESULTS = BENCH / "results"
VENV_PY = ROOT / ".venv" / "bin" / "python"
GREENDC_CLI = ROOT / ".venv" / "bin" / "greendc"
EXPORTER_BIN = WORK / "venv-mqtt-exporter" / "bin" / "mqtt-exporter"
PYSPY_BIN = WORK / "venv-mqtt-exporter" / "bin" / "py-spy"
NODE_RED_JS = WORK / "node-red" / "node_modules" / "node-red" / "red.js"
SITE = "bench"
MEASUREMENT = "greendc_reading"


class BenchError(RuntimeError):
    """A contender could not be started or measured."""
