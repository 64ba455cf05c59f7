"""Energy truth on a real plant floor, through the real path, with figures worked out by hand.

A month (March 2026, UTC, 744 h) of 15-minute energy counters for five sites, each with one
thing real meters do: a 1e9 Wh spike, a meter swap from register 4,000,000 to 12 Wh, a
2-hour network outage, a facility meter that stops at 83 % of the month, a 32-bit register
rollover. Every site draws 150 kW at the facility meter and 100 kW at the IT meter, so the
true PUE is 1.50 and the true month is 111,600 kWh of E_DC.

The readings are published over a real Mosquitto, stored by ``greendc collect`` (a
subprocess) into both the embedded store and a real InfluxDB 1.x, and read back by
``greendc report`` (a subprocess) from each store: both must give the hand figures.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import Publisher, wait_until
from tests.servers import InfluxDB1, Mosquitto, free_port, http_request
from tests.unit.test_report import FACTORS

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
GREENDC = ROOT / ".venv" / "bin" / "greendc"
STEP_S = 900
START = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp())
END = int(datetime(2026, 4, 1, tzinfo=UTC).timestamp())
HOURS = 744
FAC_PER_STEP = 150_000.0 * STEP_S / 3600  # 37,500 Wh
IT_PER_STEP = 100_000.0 * STEP_S / 3600  # 25,000 Wh
TRUE_E_DC_KWH = 150.0 * HOURS  # 111,600 kWh
TRUE_E_IT_KWH = 100.0 * HOURS  # 74,400 kWh

OUTAGE_FROM = START + 10 * 86400  # both meters silent for two hours from here
PARTIAL_STOP = START + int(617.5 * 3600)  # 617.5 h of 744 h = 83.0 %
SWAP_INDEX = 100  # the reading where the new meter (register 12 Wh) first answers
SPIKE_INDEX = 500
TOP_32 = 2**32

SITES = ("spike", "swap", "outage", "partial", "rollover")


def _times() -> list[int]:
    return list(range(START - STEP_S, END + STEP_S + 1, STEP_S))


def _facility(site: str, i: int, t: int) -> float | None:
    """The facility counter (Wh) of ``site`` at reading ``i`` (time ``t``), None if silent."""
    plain = FAC_PER_STEP * i
    if site == "spike":
        return 1e9 if i == SPIKE_INDEX else plain
    if site == "swap":
        # The old meter reads exactly 4,000,000 Wh just before the swap.
        before = 4_000_000.0 - FAC_PER_STEP * (SWAP_INDEX - 1 - i)
        return before if i < SWAP_INDEX else 12.0 + FAC_PER_STEP * (i - SWAP_INDEX)
    if site == "outage" and OUTAGE_FROM < t < OUTAGE_FROM + 7200:
        return None
    if site == "partial" and t > PARTIAL_STOP:
        return None
    if site == "rollover":
        return (TOP_32 - 100_000.0 + plain) % TOP_32
    return plain


def _messages(prefix: str) -> tuple[list[tuple[str, Any]], int]:
    """One gateway batch per site and instant; and how many readings they hold."""
    msgs: list[tuple[str, Any]] = []
    readings = 0
    for site in SITES:
        for i, t in enumerate(_times()):
            items = []
            fac = _facility(site, i, t)
            if fac is not None:
                items.append({"meter": "incomer", "ts": t, "energy_wh": fac})
            if not (site == "outage" and OUTAGE_FROM < t < OUTAGE_FROM + 7200):
                items.append({"meter": "ups", "ts": t, "energy_wh": IT_PER_STEP * i})
            if items:
                msgs.append((f"{prefix}/greendc/{site}", items))
                readings += len(items)
    return msgs, readings


def _config(
    tmp: Path, mosquitto: Mosquitto, influx: InfluxDB1, db: str, prefix: str, port: int
) -> Path:
    (tmp / "factors.yaml").write_text(yaml.safe_dump(FACTORS))
    # Hourly grid factors for the outage site: 0.5 kg/kWh every hour of the month (the
    # zone's annual factor is 0.4, so a figure that fell back to it would show).
    hourly = tmp / "hourly.csv"
    hourly.write_text("ts,kg_per_kwh\n" + "".join(f"{t},0.5\n" for t in range(START, END, 3600)))
    sites = []
    for name in SITES:
        incomer: dict[str, Any] = {"name": "incomer", "role": "facility"}
        if name == "rollover":
            incomer["register_bits"] = 32
        site: dict[str, Any] = {
            "name": name,
            "grid_zone": "SG-T",
            "installed_it_kw": 100,
            "pue_category": 1,
            "meters": [incomer, {"name": "ups", "role": "it", "point": "ups_output"}],
        }
        if name == "outage":
            site["hourly_factors_file"] = str(hourly)
        sites.append(site)
    config = {
        "mqtt": {
            "url": mosquitto.url,
            "client_id": f"truth-{prefix.replace('/', '-')}",
            "reconnect_max_seconds": 2,
        },
        "mappings": [{"topic": f"{prefix}/greendc/{{site}}"}],
        "validation": {"max_past_seconds": 10 * 365 * 86400.0},
        "sinks": {
            "embedded": {"path": str(tmp / "store.sqlite")},
            "influxdb_v1": {"url": influx.url, "db": db},
            "spool": {"dir": str(tmp / "spool")},
            "flush_interval_seconds": 0.2,
        },
        "metrics": {"port": port},
        "kpi": {"max_gap_seconds": STEP_S},
        "emission_factors_file": str(tmp / "factors.yaml"),
        "sites": sites,
    }
    path = tmp / "greendc.json"
    path.write_text(json.dumps(config))
    return path


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GREENDC_")}


def _written(port: int, sink: str) -> float | None:
    try:
        status, body = http_request(f"http://127.0.0.1:{port}/metrics", timeout_seconds=2)
    except OSError:
        return None
    if status != 200:
        return None
    for line in body.decode().splitlines():
        if line.startswith(f'greendc_sink_readings_written_total{{sink="{sink}"}}'):
            return float(line.split()[-1])
    return None


@pytest.fixture(scope="module")
def reports(
    mosquitto: Mosquitto, influxdb1: InfluxDB1, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, tuple[dict[tuple[str, str], dict[str, str]], str]]]:
    """Collect the month once; the CSV rows and stderr of a report from each store."""
    tmp = tmp_path_factory.mktemp("truth")
    db = "greendc_energy_truth"
    influxdb1.create_database(db)
    prefix = f"t/energy_truth_{os.getpid()}"
    port = free_port()
    config = _config(tmp, mosquitto, influxdb1, db, prefix, port)
    msgs, total = _messages(prefix)
    log = tmp / "collector.log"
    with log.open("ab") as fh:
        proc = subprocess.Popen(
            [str(GREENDC), "collect", "--config", str(config)],
            cwd=tmp,
            env=_env(),
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        assert wait_until(lambda: _written(port, "embedded") is not None, 30), log.read_text()
        pub = Publisher(mosquitto.host, mosquitto.port)
        try:
            pub.publish(msgs)
        finally:
            pub.close()
        assert wait_until(
            lambda: _written(port, "embedded") == total and _written(port, "influxdb_v1") == total,
            timeout_s=120,
        ), log.read_text()[-3000:]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    out: dict[str, tuple[dict[tuple[str, str], dict[str, str]], str]] = {}
    for source in ("embedded", "influxdb"):
        target = tmp / f"out-{source}"
        done = subprocess.run(
            [
                str(GREENDC),
                "report",
                "--config",
                str(config),
                "--month",
                "2026-03",
                "--out",
                str(target),
                "--format",
                "csv",
                "--source",
                source,
            ],
            cwd=tmp,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        with (target / "greendc-report-2026-03.csv").open(encoding="utf-8") as f:
            rows = {(r["site"], r["kpi"]): r for r in csv.DictReader(f)}
        out[source] = (rows, done.stderr)
    yield out
    influxdb1.drop_database(db)


SOURCES = ("embedded", "influxdb")


def _value(rows: dict[tuple[str, str], dict[str, str]], site: str, kpi: str) -> float:
    return float(rows[(site, kpi)]["value_full"])


def test_both_stores_give_the_same_report(
    reports: dict[str, tuple[dict[tuple[str, str], dict[str, str]], str]],
) -> None:
    embedded, influx = reports["embedded"][0], reports["influxdb"][0]
    assert set(embedded) == set(influx)
    for key, row in embedded.items():
        other = influx[key]
        for col in ("status", "note", "coverage", "measured_share", "bridged_share"):
            assert row[col] == other[col], (key, col)
        if row["value"]:
            full, other_full = float(row["value_full"]), float(other["value_full"])
            assert full == pytest.approx(other_full, rel=1e-12), key
        else:
            assert other["value"] == "", key


@pytest.mark.parametrize("source", SOURCES)
def test_a_1e9_wh_spike_adds_nothing_and_is_reported(
    reports: dict[str, tuple[dict[tuple[str, str], dict[str, str]], str]], source: str
) -> None:
    rows, err = reports[source]
    assert _value(rows, "spike", "E_DC") == pytest.approx(TRUE_E_DC_KWH, rel=1e-12)
    assert _value(rows, "spike", "pue") == pytest.approx(1.5, rel=1e-12)
    assert rows[("spike", "pue")]["status"] == "ok"
    assert "spike: meter incomer: counter events: 1 spike" in err


@pytest.mark.parametrize("source", SOURCES)
def test_a_meter_swap_loses_one_interval_and_no_more(
    reports: dict[str, tuple[dict[tuple[str, str], dict[str, str]], str]], source: str
) -> None:
    rows, err = reports[source]
    # The one 15-minute step from 4,000,000 Wh to 12 Wh is unknown: 37.5 kWh lost.
    assert _value(rows, "swap", "E_DC") == pytest.approx(TRUE_E_DC_KWH - 37.5, rel=1e-12)
    assert float(rows[("swap", "E_DC")]["coverage"]) == pytest.approx(
        1 - STEP_S / (HOURS * 3600), abs=5e-5
    )
    assert rows[("swap", "E_DC")]["status"] == "ok"
    assert _value(rows, "swap", "pue") == pytest.approx(1.5, rel=1e-12)
    assert "swap: meter incomer: counter events: 1 reset" in err


@pytest.mark.parametrize("source", SOURCES)
def test_a_two_hour_outage_is_bridged_in_the_month_and_kept_out_of_hourly_emissions(
    reports: dict[str, tuple[dict[tuple[str, str], dict[str, str]], str]], source: str
) -> None:
    rows, err = reports[source]
    e_dc = rows[("outage", "E_DC")]
    # Monthly energy is the counter difference: nothing lost to the outage.
    assert float(e_dc["value_full"]) == pytest.approx(TRUE_E_DC_KWH, rel=1e-12)
    assert e_dc["status"] == "ok"
    assert float(e_dc["bridged_share"]) == pytest.approx(2 / HOURS, abs=5e-5)
    assert float(e_dc["missing_share"]) == pytest.approx(0.0, abs=5e-5)
    assert "300.0 kWh bridged" in e_dc["note"]
    assert _value(rows, "outage", "pue") == pytest.approx(1.5, rel=1e-12)
    # Hourly location-based Scope 2: the 300 kWh of the outage have no hour: left out.
    loc = rows[("outage", "scope2_location")]
    assert "hourly" in loc["label"]
    assert float(loc["value_full"]) == pytest.approx((TRUE_E_DC_KWH - 300) * 0.5 / 1000, rel=1e-12)
    assert "300.0 kWh bridged grid energy not in the hourly figure" in loc["note"]
    assert "outage: meter incomer: counter events: 1 bridged" in err


@pytest.mark.parametrize("source", SOURCES)
def test_83_percent_facility_coverage_gives_pue_1_50_incomplete(
    reports: dict[str, tuple[dict[tuple[str, str], dict[str, str]], str]], source: str
) -> None:
    rows, _ = reports[source]
    pue = rows[("partial", "pue")]
    # From the totals it would be 92,625 / 74,400 = 1.245; on common ground it is 1.50.
    assert float(pue["value_full"]) == pytest.approx(1.5, rel=1e-12)
    assert pue["status"] == "incomplete"
    assert float(pue["coverage"]) == pytest.approx(617.5 / HOURS, abs=5e-5)
    assert "83.0%" in pue["note"]
    e_dc = rows[("partial", "E_DC")]
    assert float(e_dc["value_full"]) == pytest.approx(150 * 617.5, rel=1e-12)
    assert e_dc["status"] == "incomplete"
    assert rows[("partial", "E_IT")]["status"] == "ok"
    assert _value(rows, "partial", "E_IT") == pytest.approx(TRUE_E_IT_KWH, rel=1e-12)


@pytest.mark.parametrize("source", SOURCES)
def test_a_32_bit_rollover_counts_the_true_energy(
    reports: dict[str, tuple[dict[tuple[str, str], dict[str, str]], str]], source: str
) -> None:
    rows, err = reports[source]
    assert _value(rows, "rollover", "E_DC") == pytest.approx(TRUE_E_DC_KWH, rel=1e-12)
    assert _value(rows, "rollover", "pue") == pytest.approx(1.5, rel=1e-12)
    assert rows[("rollover", "E_DC")]["status"] == "ok"
    assert "rollover: meter incomer: counter events: 1 rollover" in err
