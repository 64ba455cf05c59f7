"""The bridge's pure parts: value validation and units, register codecs and batching, the
schedule's backoff, the health metrics, and the ``bridges:`` configuration."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from greendc._errors import ConfigError
from greendc.catalogue import BRIDGE_METRICS
from greendc.collector.bridge._base import DeviceError
from greendc.collector.bridge.health import BridgeCollector, DeviceHealth, Health
from greendc.collector.bridge.registers import decode, encode, plan_reads
from greendc.collector.bridge.scheduler import Job, Scheduler, backoff_seconds, validate
from greendc.collector.bridge.values import REFUSAL_REASONS, RawValue, Refused, to_canonical
from greendc.config import ModbusProfile, ModbusRegister, parse_config, shipped_modbus_profiles
from greendc.model import Quantity
from tests.support.builders import SITES

W = Quantity.POWER_W
WH = Quantity.ENERGY_WH
WIDE = (-1e12, 1e16)


# -- values ------------------------------------------------------------------------------
def test_a_decimal_scale_gives_the_decimal_value_not_a_binary_product() -> None:
    assert 1001 * 0.1 != 100.1  # the naive product is off by one unit in the last place
    assert to_canonical(RawValue(W, 1001, "W", 0.1), WIDE) == 100.1
    assert to_canonical(RawValue(W, 7, "kW", 0.1), WIDE) == 700.0


def test_units_are_converted_at_the_edge() -> None:
    assert to_canonical(RawValue(W, 250.125, "kW"), WIDE) == 250125.0
    assert to_canonical(RawValue(WH, 98765.25, "kWh"), WIDE) == 98765250.0
    assert to_canonical(RawValue(WH, 123456, "kWh", 0.1), WIDE) == 12345600.0
    assert to_canonical(RawValue(WH, 2**63 - 1, "Wh"), (0, 1e20)) == float(2**63 - 1)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (RawValue(W, math.nan, "W"), "non_finite"),
        (RawValue(W, math.inf, "kW"), "non_finite"),
        (RawValue(W, 1e308, "MW"), "non_finite"),
        (RawValue(W, "12", "W"), "wrong_type"),
        (RawValue(W, True, "W"), "wrong_type"),
        (RawValue(W, None, "W"), "wrong_type"),
        (RawValue(WH, -1, "Wh"), "negative_counter"),
        (RawValue(W, 5e6, "W", 1.0, (0.0, 1e6)), "out_of_range"),
        (RawValue(Quantity.TEMP_C, 900.0, "C"), "out_of_range"),
    ],
)
def test_bad_values_are_refused_with_a_catalogued_reason(value: RawValue, reason: str) -> None:
    with pytest.raises(Refused) as info:
        to_canonical(value, (-60.0, 200.0) if value.quantity is Quantity.TEMP_C else WIDE)
    assert info.value.reason == reason
    assert reason in REFUSAL_REASONS


def test_validate_keeps_the_good_values_of_a_poll_and_lists_the_refused() -> None:
    fields, refused = validate(
        [RawValue(W, math.nan, "W"), RawValue(WH, 1.5, "kWh"), RawValue(Quantity.TEMP_C, "x", "C")]
    )
    assert fields == {"energy_wh": 1500.0}
    assert sorted(r for r, _ in refused) == ["non_finite", "wrong_type"]


# -- registers ---------------------------------------------------------------------------
def _reg(type_: str, **kw: Any) -> ModbusRegister:
    return ModbusRegister(quantity=W, address=kw.pop("address", 0), type=type_, unit="W", **kw)


def test_float32_big_endian_words_as_a_meter_sends_them() -> None:
    reg = _reg("float32")
    assert encode(reg, 12345.5) == [0x4640, 0xE600]
    assert decode(reg, [0x4640, 0xE600]) == 12345.5


def test_low_word_first_int32_as_carlo_gavazzi_meters_send_it() -> None:
    reg = _reg("int32", word_order="little")
    assert encode(reg, 123457) == [0xE241, 0x0001]
    assert decode(reg, [0xE241, 0x0001]) == 123457
    assert decode(reg, [0xFFFF, 0xFFFF]) == -1


def test_byte_swapped_words() -> None:
    reg = _reg("uint32", byte_order="little")
    assert decode(reg, [0x3412, 0x7856]) == 0x12345678


_INTS = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}


@given(
    st.sampled_from(sorted(_INTS)),
    st.sampled_from(["big", "little"]),
    st.sampled_from(["big", "little"]),
    st.data(),
)
def test_integer_registers_round_trip(type_: str, words: str, bytes_: str, data: Any) -> None:
    lo, hi = _INTS[type_]
    value = data.draw(st.integers(lo, hi))
    reg = _reg(type_, word_order=words, byte_order=bytes_)
    out = encode(reg, value)
    assert len(out) == reg.count and all(0 <= w <= 0xFFFF for w in out)
    assert decode(reg, out) == value


@given(st.floats(allow_nan=False, width=32), st.sampled_from(["big", "little"]))
def test_float32_registers_round_trip(value: float, words: str) -> None:
    reg = _reg("float32", word_order=words)
    assert decode(reg, encode(reg, value)) == value


def test_decode_refuses_words_of_the_wrong_count_or_size() -> None:
    with pytest.raises(ValueError, match="needs 2 registers"):
        decode(_reg("float32"), [1])
    with pytest.raises(ValueError, match="16-bit"):
        decode(_reg("uint16"), [70000])


def test_shipped_profiles_batch_as_their_register_maps_allow() -> None:
    profiles = shipped_modbus_profiles()
    sdm = plan_reads(profiles["eastron-sdm630"])
    assert [(r.function, r.address, r.count) for r in sdm] == [("input", 52, 22)]
    iem = plan_reads(profiles["schneider-iem3000"])
    assert [(r.function, r.address, r.count) for r in iem] == [
        ("holding", 3059, 2),
        ("holding", 3203, 4),
    ]


def test_batching_merges_contiguous_registers_and_respects_the_gap_and_the_limit() -> None:
    def profile(gap: int, *regs: tuple[int, str]) -> ModbusProfile:
        quantities = [W, WH, Quantity.TEMP_C, Quantity.WATER_L]
        units = {W: "W", WH: "Wh", Quantity.TEMP_C: "C", Quantity.WATER_L: "L"}
        return ModbusProfile(
            name="p",
            max_gap_registers=gap,
            registers=[
                ModbusRegister(quantity=q, address=a, type=t, unit=units[q])  # type: ignore[arg-type]
                for q, (a, t) in zip(quantities, regs, strict=False)
            ],
        )

    contiguous = plan_reads(profile(0, (0, "float32"), (2, "float32"), (4, "int16")))
    assert [(r.address, r.count, len(r.registers)) for r in contiguous] == [(0, 5, 3)]
    split = plan_reads(profile(0, (0, "float32"), (3, "float32")))
    assert [(r.address, r.count) for r in split] == [(0, 2), (3, 2)]
    bridged = plan_reads(profile(1, (0, "float32"), (3, "float32")))
    assert [(r.address, r.count) for r in bridged] == [(0, 5)]
    too_long = plan_reads(profile(120, (0, "float32"), (124, "float32")))
    assert [(r.address, r.count) for r in too_long] == [(0, 2), (124, 2)]


# -- the schedule --------------------------------------------------------------------------
def test_backoff_doubles_from_the_interval_up_to_its_cap() -> None:
    assert [backoff_seconds(10, n, 300) for n in range(7)] == [10, 10, 20, 40, 80, 160, 300]
    assert backoff_seconds(10, 10_000, 300) == 300


class _Scripted:
    """A poller answering from a script: a list of values, or a DeviceError to raise."""

    def __init__(self, script: list[Any]) -> None:
        self.script = script

    async def poll(self) -> list[RawValue]:
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return list(step)

    async def close(self) -> None:
        return None


def test_a_failing_device_publishes_nothing_and_says_why_then_recovers() -> None:
    health = Health([DeviceHealth("m1", "modbus", "sg1", "incomer")])
    published: list[tuple[str, str, dict[str, float]]] = []
    poller = _Scripted(
        [
            DeviceError("timeout", "10.0.0.5:502 unit 1"),
            DeviceError("timeout", "10.0.0.5:502 unit 1"),
            [RawValue(W, 7.5, "kW"), RawValue(WH, math.nan, "kWh")],
        ]
    )
    job = Job("m1", "sg1", "incomer", poller, 10.0)
    sched = Scheduler(
        [job],
        health,
        lambda s, m, _ts, f: published.append((s, m, f)),
        jitter_fraction=0.1,
        max_concurrency=4,
        backoff_max_s=60,
    )

    async def run() -> list[int]:
        return [await sched.poll_once(job) for _ in range(3)]

    failures = asyncio.run(run())
    assert failures == [1, 2, 0]
    assert published == [("sg1", "incomer", {"power_w": 7500.0})]
    d = health.snapshot().device("m1")
    assert d.up and d.consecutive_failures == 0 and d.errors == {"timeout": 2}
    assert d.refused == {"non_finite": 1}


def test_bridge_metrics_name_the_failing_device_and_its_reason() -> None:
    health = Health(
        [
            DeviceHealth("m1", "modbus", "sg1", "incomer"),
            DeviceHealth("m2", "modbus", "sg1", "ups-1"),
        ]
    )
    health.success("m1", 1000.0, ["out_of_range"], {"ups_battery_status": 2.0})
    health.failure("m2", "unreachable", "10.0.0.6:502: connection refused")
    families = list(BridgeCollector(health.snapshot).collect())
    samples = {}
    for fam in families:
        name = fam.name + "_total" if fam.type == "counter" else fam.name
        m = BRIDGE_METRICS[name]
        assert fam.type == m.type and fam.documentation == m.help
        for s in fam.samples:
            assert set(s.labels) == set(m.labels), (name, s.labels)
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    assert {f.name + ("_total" if f.type == "counter" else "") for f in families} == set(
        BRIDGE_METRICS
    )
    up = "greendc_bridge_device_up"
    assert (
        samples[
            (up, (("device", "m2"), ("meter", "ups-1"), ("protocol", "modbus"), ("site", "sg1")))
        ]
        == 0
    )
    failing = [k for k in samples if k[0] == "greendc_bridge_device_failing"]
    assert failing == [
        (
            "greendc_bridge_device_failing",
            (
                ("detail", "10.0.0.6:502: connection refused"),
                ("device", "m2"),
                ("reason", "unreachable"),
            ),
        )
    ]
    refused = (
        "greendc_bridge_values_refused_total",
        (("device", "m1"), ("reason", "out_of_range")),
    )
    assert samples[refused] == 1.0
    status = ("greendc_bridge_device_status", (("device", "m1"), ("name", "ups_battery_status")))
    assert samples[status] == 2.0


# -- configuration ---------------------------------------------------------------------------
def _config(bridges: dict[str, Any], env: dict[str, str] | None = None) -> Any:
    return parse_config({"sites": SITES, "bridges": bridges}, env=env or {})


def _bacnet(**kw: Any) -> dict[str, Any]:
    return {
        "protocol": "bacnet",
        "address": "10.30.0.12",
        "site": "sg1",
        "meter": "chiller",
        "points": [{"object": "analog-input,1", "quantity": "power_w"}],
        **kw,
    }


def _redfish(**kw: Any) -> dict[str, Any]:
    return {
        "protocol": "redfish",
        "url": "https://bmc.example",
        "username": "greendc",
        "password": "x",
        "site": "sg1",
        "meter": "ups-1",
        **kw,
    }


def _snmp(**kw: Any) -> dict[str, Any]:
    return {
        "protocol": "snmp",
        "host": "10.0.0.9",
        "profile": "ups-mib",
        "site": "sg1",
        "meter": "ups-1",
        **kw,
    }


def _modbus(**kw: Any) -> dict[str, Any]:
    return {
        "protocol": "modbus",
        "host": "10.0.0.5",
        "unit_id": 1,
        "profile": "eastron-sdm630",
        "site": "sg1",
        "meter": "incomer",
        **kw,
    }


def test_a_bridges_section_with_shipped_and_generic_profiles_validates() -> None:
    generic = {
        "name": "em24-like",
        "registers": [
            {
                "quantity": "power_w",
                "address": 40,
                "type": "int32",
                "word_order": "little",
                "scale": 0.1,
                "unit": "W",
            },
        ],
    }
    s = _config(
        {
            "modbus_profiles": [generic],
            "devices": [
                _modbus(),
                _modbus(unit_id=2, profile="em24-like", meter="ups-1", interval_seconds=5),
            ],
        }
    )
    assert s.bridges is not None
    assert [d.id for d in s.bridges.devices] == ["sg1.incomer", "sg1.ups-1"]
    assert s.bridges.modbus_profile("em24-like").registers[0].scale == 0.1
    assert s.bridges.modbus_profile("schneider-iem3000").registers[1].type == "int64"


@pytest.mark.parametrize(
    ("bridges", "expected"),
    [
        ({"devices": [_modbus(profile="nope")]}, "devices[0].profile: 'nope' is neither"),
        ({"devices": [_modbus(), _modbus(unit_id=2)]}, "two devices publish the same meter"),
        (
            {"devices": [_modbus(port=70000)]},
            "bridges.devices[0].modbus.port: Input should be less than",
        ),
        ({"devices": [_modbus(protocol="zigbee")]}, "bridges.devices[0]"),
        (
            {
                "modbus_profiles": [
                    {
                        "name": "p",
                        "registers": [
                            {"quantity": "power_w", "address": 1, "type": "float32", "unit": "kWh"}
                        ],
                    }
                ]
            },
            "bridges.modbus_profiles[0].registers[0]: unit 'kWh' is not one of W, kW, MW",
        ),
        (
            {
                "modbus_profiles": [
                    {
                        "name": "p",
                        "registers": [
                            {
                                "quantity": "power_w",
                                "address": 65535,
                                "type": "float32",
                                "unit": "W",
                            }
                        ],
                    }
                ]
            },
            "runs past register 65535",
        ),
        ({"jitter_fraction": 0.9}, "bridges.jitter_fraction"),
        ({"devices": [_snmp()]}, "SNMP v2c needs community (or community_file / community_env)"),
        (
            {"devices": [_snmp(version="3", user="u", auth_key="12345678")]},
            "SNMP v3 (authPriv) needs priv_key",
        ),
        (
            {"devices": [_snmp(version="3", user="u", auth_key="short", priv_key="12345678")]},
            "auth_key must be at least 8 characters",
        ),
        ({"devices": [_snmp(community="c", profile="x")]}, "is neither a shipped SNMP profile"),
        ({"devices": [_snmp(community_env="NOT_SET")]}, "'NOT_SET' is not set or empty"),
        (
            {"devices": [_bacnet(points=[{"object": "binary-input,1", "quantity": "power_w"}])]},
            "bridges.devices[0].bacnet.points[0].object: String should match pattern",
        ),
        (
            {
                "devices": [
                    _bacnet(
                        points=[{"object": "analog-input,1", "quantity": "temp_c", "unit": "kW"}]
                    )
                ]
            },
            "unit 'kW' is not one of C for temp_c",
        ),
        (
            {"devices": [_redfish(url="https://user:pw@bmc.example")]},
            "must not carry credentials",
        ),
        ({"devices": [_redfish(password_env="UNSET")]}, "'UNSET' is not set or empty"),
    ],
)
def test_bridge_config_errors_name_the_field(bridges: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        _config(bridges)
    assert expected in str(info.value)


def test_greendc_bridge_without_devices_is_a_configuration_error(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    from greendc.app.cli import main

    path = tmp_path / "greendc.yaml"
    path.write_text(yaml.safe_dump({"sites": SITES}))
    assert main(["bridge", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "bridges.devices: is empty or missing" in err and str(path) in err


def test_snmp_secrets_come_from_files_or_the_environment_and_are_never_shown(
    tmp_path: Any,
) -> None:
    key = tmp_path / "priv.key"
    key.write_text("priv-secret-1\n")
    s = _config(
        {
            "devices": [
                _snmp(
                    version="3",
                    user="greendc",
                    auth_key_env="AUTH",
                    priv_key_file=str(key),
                    auth_protocol="SHA256",
                    priv_protocol="AES256",
                ),
                _snmp(meter="ups-2", community_env="COMMUNITY"),
            ]
        },
        env={"AUTH": "auth-secret-1", "COMMUNITY": "community-secret"},
    )
    assert s.bridges is not None
    v3, v2 = s.bridges.devices
    assert v3.priv_key.get_secret_value() == "priv-secret-1"  # type: ignore[union-attr]
    assert v3.auth_key.get_secret_value() == "auth-secret-1"  # type: ignore[union-attr]
    assert v2.community.get_secret_value() == "community-secret"  # type: ignore[union-attr]
    shown = repr(s) + str(s.redacted())
    assert not any(x in shown for x in ("priv-secret-1", "auth-secret-1", "community-secret"))
    with pytest.raises(ConfigError) as info:
        _config({"devices": [_snmp(community_file=str(tmp_path / "missing"))]})
    assert "bridges.devices[0].community_file: cannot read secret file" in str(info.value)


def test_a_poll_that_hangs_past_its_deadline_fails_as_a_timeout() -> None:
    class Hangs:
        async def poll(self) -> list[RawValue]:
            await asyncio.Event().wait()  # never set: a poller stuck forever
            return []

        async def close(self) -> None:
            return None

    health = Health([DeviceHealth("m1", "redfish", "sg1", "incomer")])
    job = Job("m1", "sg1", "incomer", Hangs(), 10.0, deadline_s=0.01)
    sched = Scheduler(
        [job], health, lambda *_: None, jitter_fraction=0, max_concurrency=1, backoff_max_s=60
    )
    assert asyncio.run(sched.poll_once(job)) == 1
    d = health.snapshot().device("m1")
    assert d.last_reason == "timeout" and "whole poll" in d.last_detail


def test_a_bridge_whose_pollers_cannot_be_built_refuses_to_start() -> None:
    from greendc._errors import GreendcError
    from greendc.collector.bridge import Bridge

    settings = parse_config(
        {
            "mqtt": {"url": "mqtt://127.0.0.1:9"},  # nothing listens: the bridge never connects
            "sites": SITES,
            "bridges": {"metrics": {"enabled": False}, "devices": [_modbus()]},
        },
        env={},
    )

    def broken(_b: Any) -> Any:
        raise OSError("address already in use")

    bridge = Bridge(settings, pollers=broken)
    with pytest.raises(GreendcError, match="could not start polling: address already in use"):
        bridge.start()
    bridge.stop()


def test_greendc_bridge_with_its_metrics_port_taken_says_so() -> None:
    import socket
    import threading

    from greendc._errors import GreendcError
    from greendc.app.cli import run_bridge

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = parse_config(
            {
                "mqtt": {"url": "mqtt://127.0.0.1:9"},
                "sites": SITES,
                "bridges": {"metrics": {"port": port}, "devices": [_modbus()]},
            },
            env={},
        )
        with pytest.raises(GreendcError) as info:
            run_bridge(settings, threading.Event())
    assert f"bridges.metrics: cannot listen on 127.0.0.1:{port}" in str(info.value)
