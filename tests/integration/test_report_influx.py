"""The golden month read back from a real InfluxDB 1.x gives the embedded store's figures."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from greendc.app.exits import ExitCode
from greendc.config import load_config
from greendc.exporters.report import Period, build_report
from greendc.exporters.report.source import EmbeddedSource, InfluxQLSource, water_meters_of
from greendc.factors import load_factors
from greendc.lineproto import LineEncoder
from greendc.store import EmbeddedStore
from tests.servers import InfluxDB1
from tests.unit.test_report import BER1, EXPECTED, SGX, golden_readings, report_cli, write_config

pytestmark = pytest.mark.integration


def test_influx_and_embedded_give_identical_figures(
    influxdb1: InfluxDB1, fresh_influx_db: str, tmp_path: Path
) -> None:
    readings = golden_readings()
    encoder = LineEncoder()
    for i in range(0, len(readings), 5000):
        influxdb1.write(fresh_influx_db, encoder.encode(readings[i : i + 5000]), precision="ms")
    store = EmbeddedStore(tmp_path / "store.sqlite")
    store.write(readings)
    store.close()
    config = write_config(tmp_path, [BER1, SGX])
    data = yaml.safe_load(config.read_text())
    data["sinks"]["influxdb_v1"] = {"url": influxdb1.url, "db": fresh_influx_db}
    config.write_text(yaml.safe_dump(data))
    settings = load_config(config, env={})
    factors = load_factors(settings.emission_factors_file)
    now = datetime(2026, 4, 2, tzinfo=UTC)

    influx = InfluxQLSource.from_settings(settings)
    from_influx = build_report(settings, influx, Period(2026, 3), factors, now=now)
    assert settings.sinks.embedded is not None
    embedded = EmbeddedSource(settings.sinks.embedded.path, water_meters_of(settings))
    try:
        from_store = build_report(settings, embedded, Period(2026, 3), factors, now=now)
    finally:
        embedded.close()

    assert from_influx.source == "influxdb"
    assert from_influx.rows == from_store.rows  # every figure, coverage, note and delta
    assert from_influx.daily == from_store.daily
    got = {(r.site, r.kpi): r.value for r in from_influx.rows}
    for key, want in EXPECTED.items():
        assert got[key] == pytest.approx(want, rel=1e-9, abs=1e-9), key


def test_cli_auto_source_reads_influx(
    influxdb1: InfluxDB1, fresh_influx_db: str, tmp_path: Path
) -> None:
    readings = [r for r in golden_readings() if r.site == "sgx"]
    influxdb1.write(fresh_influx_db, LineEncoder().encode(readings), precision="ms")
    config = write_config(tmp_path, [SGX])
    data = yaml.safe_load(config.read_text())
    data["sinks"] = {"influxdb_v1": {"url": influxdb1.url, "db": fresh_influx_db}}
    config.write_text(yaml.safe_dump(data))
    code = report_cli(config, tmp_path / "out", month="2026-03", format="csv", source="auto")
    assert code == ExitCode.OK
    with (tmp_path / "out" / "greendc-report-2026-03.csv").open(encoding="utf-8") as f:
        rows = {(r["site"], r["kpi"]): r for r in csv.DictReader(f)}
    assert float(rows[("sgx", "E_DC")]["value"]) == pytest.approx(EXPECTED[("sgx", "E_DC")])
    assert float(rows[("sgx", "pue")]["value"]) == pytest.approx(1.3)


def test_unreachable_influx_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, [SGX])
    data = yaml.safe_load(config.read_text())
    data["sinks"] = {"influxdb_v1": {"url": "http://127.0.0.1:9", "db": "nope"}}
    config.write_text(yaml.safe_dump(data))
    code = report_cli(config, tmp_path / "out", month="2026-03", source="influxdb")
    assert code == ExitCode.FAILURE  # an operational error: the configuration is fine
    assert "cannot reach InfluxDB" in capsys.readouterr().err
