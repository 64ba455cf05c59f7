"""The packages' public faces are pinned: changing them is a deliberate act."""

from __future__ import annotations

import greendc
from greendc import collector


def test_greendc_public_names() -> None:
    assert sorted(greendc.__all__) == [
        "ConfigError",
        "ConfigUnreadable",
        "DecodeError",
        "GreendcError",
        "KPIError",
        "NotAvailableError",
        "SinkError",
        "SinkUnavailable",
        "SpoolError",
        "__version__",
    ]
    assert all(hasattr(greendc, n) for n in greendc.__all__)


def test_collector_public_names() -> None:
    assert sorted(collector.__all__) == ["Agent", "Pipeline", "Spool"]
    assert all(hasattr(collector, n) for n in collector.__all__)


def test_error_tree() -> None:
    for name in greendc.__all__:
        obj = getattr(greendc, name)
        if isinstance(obj, type):
            assert issubclass(obj, greendc.GreendcError)
    assert issubclass(greendc.SinkUnavailable, greendc.SinkError)


def test_the_collector_does_not_load_pandas_or_numpy() -> None:
    """pandas costs ~30 MiB of resident memory and numpy ~20 MiB; only the report needs them.

    The live KPIs share the report's KPI code (greendc.kpi), so this also pins that the
    shared code stays plain Python.
    """
    import subprocess
    import sys

    code = (
        "import sys, greendc.collector.agent, greendc.collector.site_figures,"
        " greendc.collector.sinks, greendc.exporters.prometheus,"
        " greendc.app.cli, greendc.kpi, greendc.rolling, greendc.steps, greendc.factors;"
        "from greendc.config import InfluxV2Settings;"
        # influxdb-client (the v2 sink) imports numpy itself when it can
        "greendc.collector.sinks.InfluxV2Sink(InfluxV2Settings(url='http://127.0.0.1:9', org='o',"
        " bucket='b', token='t')).close();"
        "print(sorted(m for m in ('pandas', 'numpy') if m in sys.modules));"
        "import numpy; print(numpy.__name__)"  # and numpy still imports for anyone else
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", "numpy"]
