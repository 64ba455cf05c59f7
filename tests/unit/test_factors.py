"""The shipped emission factor file, its validation, lookups and hourly series."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from greendc._errors import ConfigError, KPIError
from greendc.factors import (
    HourlyFactors,
    default_factors_path,
    load_factors,
    load_hourly_factors,
    parse_factors,
)

REQUIRED_ZONES = ("SG", "MY-PEN", "TH", "VN", "ID", "PH", "FR", "DE", "US")


def test_shipped_file_covers_the_required_zones_with_provenance() -> None:
    table = load_factors()
    for zone in REQUIRED_ZONES:
        z = table.zone(zone)
        f = z.grid_average
        assert 0 < f.value < 1.5, zone
        assert f.unit in ("kgCO2e/kWh", "kgCO2/kWh")
        assert len(f.source) > 10 and f.url.startswith("https://"), zone
        assert str(f.year) in f.citation


def test_missing_zone_names_the_known_zones() -> None:
    with pytest.raises(KPIError, match=r"'XX'.*known zones: .*SG"):
        load_factors().zone("XX")


def _raw() -> dict:
    data = yaml.safe_load(default_factors_path().read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_factor_in_grams_is_rejected_with_its_path() -> None:
    data = _raw()
    data["zones"]["SG"]["grid_average"]["value"] = 405.7
    with pytest.raises(ConfigError, match=r"zones\.SG\.grid_average\.value"):
        parse_factors(data)


def test_unknown_basis_and_missing_source_are_rejected(tmp_path: Path) -> None:
    data = _raw()
    data["zones"]["VN"]["grid_average"]["basis"] = "guess"
    del data["zones"]["TH"]["grid_average"]["source"]
    p = tmp_path / "f.yaml"
    p.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_factors(p)
    text = str(info.value)
    assert "zones.VN.grid_average.basis" in text and "zones.TH.grid_average.source" in text


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_factors(tmp_path / "absent.yaml")


def test_hourly_csv_in_unix_seconds_and_rfc3339(tmp_path: Path) -> None:
    a = tmp_path / "a.csv"
    a.write_text("ts,kg_per_kwh\n7200,0.5\n0,0.3\n", encoding="utf-8")
    h = load_hourly_factors(a)
    assert h.start_s == 0
    np.testing.assert_allclose(h.values_for(0, 3), [0.3, np.nan, 0.5])
    b = tmp_path / "b.csv"
    b.write_text(
        "ts,kg_per_kwh\n1970-01-01T00:00:00Z,0.3\n1970-01-01T03:00:00+02:00,0.5\n",
        encoding="utf-8",
    )
    np.testing.assert_allclose(load_hourly_factors(b).values_for(0, 2), [0.3, 0.5])


def test_hourly_series_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(KPIError, match="on the hour"):
        HourlyFactors.from_pairs([60], [0.4])
    with pytest.raises(KPIError, match="repeats"):
        HourlyFactors.from_pairs([0, 0], [0.4, 0.5])
    with pytest.raises(KPIError, match="between 0 and 2"):
        HourlyFactors.from_pairs([0], [400.0])
    bad = tmp_path / "bad.csv"
    bad.write_text("time,value\n0,1\n", encoding="utf-8")
    with pytest.raises(KPIError, match="missing column"):
        load_hourly_factors(bad)


def test_values_outside_the_series_are_unknown() -> None:
    h = HourlyFactors.from_pairs([3600], [0.4])
    np.testing.assert_allclose(h.values_for(0, 3), [np.nan, 0.4, np.nan])
