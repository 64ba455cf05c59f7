"""Configuration: the example loads; broken configs name the field path and value."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from greendc._errors import ConfigError
from greendc.config import load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "greendc.example.yaml"


def example_data() -> dict[str, Any]:
    data = yaml.safe_load(EXAMPLE.read_text())
    assert isinstance(data, dict)
    return data


def problems(data: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_config(data, env=env or {})
    return err.value.problems


def test_example_config_loads_two_sites_with_native_mappings() -> None:
    s = load_config(EXAMPLE, env={})
    assert [site.name for site in s.sites] == ["sg1", "jhr1"]
    assert [m.subscription for m in s.mappings] == ["greendc/+/+", "greendc/+"]
    assert s.site("sg1") is not None and s.site("sg1").timezone == "Asia/Singapore"  # type: ignore[union-attr]
    assert s.effective_sinks == ["embedded"]


def test_bad_role_names_path_value_and_choices() -> None:
    data = example_data()
    data["sites"][0]["meters"][2]["role"] = "it_lod"
    (msg,) = problems(data)
    assert msg.startswith("sites[0].meters[2].role: 'it_lod' is not one of facility, it, cooling")


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda d: d["sites"][1].__setitem__("timezone", "Mars/Base"),
            "sites[1].timezone: is not an IANA time zone",
        ),
        (lambda d: d["mqtt"].__setitem__("qos", 2), "mqtt.qos: 2 is not one of 0, 1"),
        (
            lambda d: d["sites"][0]["meters"][3].pop("point"),
            "sites[0].meters[3]: an 'it' meter needs point",
        ),
        (
            lambda d: d["sites"][0]["meters"].append({"name": "ups-1", "role": "cooling"}),
            "sites[0]: meter names must be unique; repeated: ups-1",
        ),
        (
            lambda d: d["sites"][0].__setitem__("pue_category", 3),
            "sites[0]: pue_category 3 does not match",
        ),
        (lambda d: d.__setitem__("mapings", []), "mapings: is not a known setting"),
        (
            lambda d: d["mappings"].append({"topic": "x/{sight}/{meter}"}),
            "mappings[2]: the topic has no {site} segment (it names {sight}, {meter})",
        ),
        (
            lambda d: d["mappings"].append(
                {
                    "topic": "x/{site}/{meter}",
                    "values": [{"path": "p", "quantity": "power_w", "unit": "kWh"}],
                }
            ),
            "mappings[2].values[0]: unit 'kWh' is not one of W, kW, MW",
        ),
        (
            lambda d: d["sites"][0]["targets"].__setitem__("pue_warning", 1.2),
            "sites[0].targets: must satisfy pue <= pue_warning <= pue_critical",
        ),
        (
            lambda d: d["sites"][0]["meters"][0].__setitem__("name", "bad name"),
            "sites[0].meters[0].name: String should match pattern",
        ),
    ],
)
def test_broken_configs_name_the_field(mutate: Any, expected: str) -> None:
    data = example_data()
    mutate(data)
    msgs = problems(data)
    assert any(m.startswith(expected) for m in msgs), msgs


def test_secret_is_never_echoed_in_errors() -> None:
    data = example_data()
    data["mqtt"]["password"] = ["hunter2-secret"]  # wrong type: error must not show it
    msgs = problems(data)
    assert any(m.startswith("mqtt.password") for m in msgs)
    assert not any("hunter2" in m for m in msgs)


# A secret with every character a URL parser treats specially.
SECRET = "Zq9/x@W:k7#p?Q%"


def _pieces(secret: str, n: int = 4) -> set[str]:
    """Every run of ``n`` characters of the secret: none may appear in a message."""
    return {secret[i : i + n] for i in range(len(secret) - n + 1)}


def _config_error(data: dict[str, Any], env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as err:
        parse_config(data, env=env)
    return str(err.value) + "\n".join(err.value.problems)


def _with_url(url: str) -> dict[str, Any]:
    data = example_data()
    data["mqtt"]["url"] = url
    return data


def _bad_password_type() -> dict[str, Any]:
    data = example_data()
    data["mqtt"]["password"] = [SECRET]
    return data


def _bad_v2_token() -> dict[str, Any]:
    data = example_data()
    data["sinks"]["influxdb_v2"] = {"url": "http://i:8086", "org": "o", "bucket": "b"}
    data["sinks"]["influxdb_v2"]["token"] = {"not": SECRET}
    return data


def _bad_v1_url_with_userinfo() -> dict[str, Any]:
    data = example_data()
    data["sinks"]["influxdb_v1"] = {"url": f"http://u:{SECRET}@influx:port", "db": 5}
    data["sinks"]["influxdb_v1"]["db"] = ["not", "a", "name"]
    return data


@pytest.mark.parametrize(
    ("data", "env", "where"),
    [
        (lambda: _with_url(f"mqtt://agent:{SECRET}@broker:1883"), {}, "mqtt.url"),
        (lambda: _with_url(f"mqtt://agent:{SECRET}@broker:notaport"), {}, "mqtt.url"),
        (example_data, {"GREENDC_MQTT_URL": f"mqtt://agent:{SECRET}@broker:port"}, "MQTT_URL"),
        (example_data, {"GREENDC_MQTT_URL": f"mqtt://agent:{SECRET}@"}, "GREENDC_MQTT_URL"),
        (example_data, {"GREENDC_MQTT_URL": f"mqtt://agent:{SECRET}"}, "GREENDC_MQTT_URL"),
        (_bad_password_type, {}, "mqtt.password"),
        (_bad_password_type, {"GREENDC_INFLUX_TOKEN": SECRET, "GREENDC_INFLUX_DB": "x"}, ""),
        (_bad_v2_token, {}, "sinks.influxdb_v2"),
        (_bad_v1_url_with_userinfo, {}, "sinks.influxdb_v1"),
    ],
)
def test_no_configuration_error_contains_a_secrets_characters(
    data: Any, env: dict[str, str], where: str
) -> None:
    message = _config_error(data(), env)
    assert where in message
    leaked = sorted(p for p in _pieces(SECRET) if p in message)
    assert not leaked, f"{leaked} of the secret in: {message}"


def test_userinfo_in_mqtt_url_is_refused_naming_the_right_settings() -> None:
    message = _config_error(_with_url("mqtt://collector:hunter2@broker:1883"), {})
    assert "mqtt.url: must not carry user:password" in message
    assert "mqtt.username" in message and "mqtt.password_file" in message
    assert "GREENDC_MQTT_PASSWORD" in message
    assert "hunter2" not in message and "mqtt://***@broker:1883" in message


def test_a_password_with_url_delimiters_in_the_environment_is_taken_whole() -> None:
    """An unescaped '/' used to split the URL inside the password and crash with an error
    quoting part of it."""
    s = parse_config(example_data(), env={"GREENDC_MQTT_URL": f"mqtts://agent:{SECRET}@b:8883"})
    assert s.mqtt.host == "b" and s.mqtt.port == 8883 and s.mqtt.username == "agent"
    assert s.mqtt.password is not None and s.mqtt.password.get_secret_value() == SECRET
    assert SECRET not in s.mqtt.url


def test_environment_overrides_and_secret_files(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cr3t-token\n")
    env = {
        "GREENDC_MQTT_URL": "mqtts://agent:pa%40ss@broker.example:8883",
        "GREENDC_INFLUX_URL": "http://influx:8086",
        "GREENDC_INFLUX_TOKEN_FILE": str(token),
        "GREENDC_INFLUX_ORG": "ops",
        "GREENDC_INFLUX_BUCKET": "energy",
    }
    s = parse_config(example_data(), env=env)
    assert s.mqtt.host == "broker.example" and s.mqtt.port == 8883 and s.mqtt.use_tls
    assert s.mqtt.username == "agent"
    assert s.mqtt.password is not None and s.mqtt.password.get_secret_value() == "pa@ss"
    v2 = s.sinks.influxdb_v2
    assert v2 is not None and v2.url == "http://influx:8086" and v2.bucket == "energy"
    assert v2.token is not None and v2.token.get_secret_value() == "s3cr3t-token"
    assert "s3cr3t" not in repr(s) and "pa@ss" not in repr(s)
    assert "s3cr3t" not in str(s.redacted())
    assert s.effective_sinks == ["influxdb_v2", "embedded"]


def test_influx_v1_from_environment() -> None:
    env = {"GREENDC_INFLUX_URL": "http://127.0.0.1:8086", "GREENDC_INFLUX_DB": "greendc"}
    s = parse_config(example_data(), env=env)
    assert s.sinks.influxdb_v1 is not None and s.sinks.influxdb_v1.db == "greendc"
    assert s.sinks.influxdb_v2 is None


def test_v2_without_token_is_an_error_that_says_where_to_put_it() -> None:
    data = example_data()
    data["sinks"]["influxdb_v2"] = {"url": "http://x:8086", "org": "o", "bucket": "b"}
    (msg,) = problems(data)
    assert msg.startswith("sinks.influxdb_v2: token is missing")
    assert "GREENDC_INFLUX_TOKEN" in msg


def test_unreadable_secret_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="GREENDC_INFLUX_TOKEN_FILE: cannot read secret file"):
        parse_config(example_data(), env={"GREENDC_INFLUX_TOKEN_FILE": str(tmp_path / "nope")})


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("mqtt:\n  url: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(p, env={})


def test_check_config_cli_exit_codes(tmp_path: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "greendc.app.cli", "check-config", str(EXAMPLE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert "sites: 2" in ok.stdout
    data = example_data()
    data["sites"][0]["meters"][2]["role"] = "it_lod"
    data["mqtt"]["password"] = "hunter2"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    res = subprocess.run(
        [sys.executable, "-m", "greendc.app.cli", "check-config", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 2
    assert "sites[0].meters[2].role: 'it_lod' is not one of" in res.stderr
    assert "hunter2" not in res.stderr + res.stdout


def test_thousands_of_errors_show_the_first_twenty_and_a_count() -> None:
    data = example_data()
    data["sites"][0]["meters"] = [{"name": f"rack{i}", "role": "it"} for i in range(3000)]
    with pytest.raises(ConfigError) as err:
        parse_config(data, env={})
    text = str(err.value)
    assert len(err.value.problems) == 3000
    assert text.count("an 'it' meter needs point") == 20
    assert text.rstrip().endswith("... and 2,980 more problems like these")


def test_a_campus_of_many_meters_and_a_repeated_name_is_reported_once() -> None:
    data = example_data()
    meters = [{"name": f"rack{i}", "role": "cooling"} for i in range(20_000)]
    data["sites"][0]["meters"] = [*meters, {"name": "rack7", "role": "cooling"}]
    (msg,) = problems(data)
    assert "meter names must be unique; repeated: rack7" in msg


def test_a_json_config_loads_the_same_settings_as_its_yaml(tmp_path: Path) -> None:
    data = example_data()
    as_yaml, as_json = tmp_path / "c.yaml", tmp_path / "c.json"
    as_yaml.write_text(yaml.safe_dump(data))
    as_json.write_text(json.dumps(data))
    assert load_config(as_json, env={}) == load_config(as_yaml, env={})
    # Flow-style YAML also starts with "{" but is not JSON: it still loads as YAML.
    flow = tmp_path / "flow.yaml"
    flow.write_text("{" + yaml.safe_dump(data, default_flow_style=True).strip()[1:])
    assert load_config(flow, env={}) == load_config(as_yaml, env={})
    broken = tmp_path / "broken.json"
    broken.write_text('{"sites": [}')
    with pytest.raises(ConfigError, match="not valid YAML at line 1"):
        load_config(broken, env={})


def test_fallback_brokers_are_tried_after_the_url_and_share_one_transport() -> None:
    data = example_data()
    data["mqtt"] = {
        "url": "mqtts://a.example:8883",
        "fallback_urls": ["mqtts://b.example", "ssl://c.example:9883"],
    }
    s = parse_config(data, env={})
    assert s.mqtt.brokers == (("a.example", 8883), ("b.example", 8883), ("c.example", 9883))
    data["mqtt"]["fallback_urls"] = ["mqtt://b.example:1883"]
    assert any("all use TLS" in p for p in problems(data))
    data["mqtt"]["fallback_urls"] = ["http://b.example"]
    assert any("fallback_urls" in p and "http://b.example" in p for p in problems(data))
