"""The docker-compose stack: docker-compose.yml and what it mounts, validated without an engine.

``docker-compose config`` (Compose 1.29, no daemon needed) resolves the file; the tests then
check the resolved model against the repository: every file it mounts exists, every greendc
config it mounts loads with the environment compose gives it, ports are unique and bound to
127.0.0.1, every service has a healthcheck, and the ``scale`` profile partitions the sites.
Least privilege is read from the files: which InfluxDB authorization each service gets and
what the init script lets it do, the three bind settings, and basic auth on /metrics.

Secrets are never committed. Each secret file compose names must be created by
config/compose/secrets/generate.sh (a test runs it into a temporary directory), and the
secrets a greendc config reads have a committed ``<name>.example`` placeholder that the
config-loading tests use in place of ``/run/secrets/<name>``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import paho.mqtt.client as mqtt
import pytest
import yaml

from greendc.config import MetricsSettings, Settings, load_config
from greendc.exporters import serve
from greendc.exporters.rules import ALERTS_FILE, write_rules
from greendc.exporters.webconfig import MIN_BCRYPT_COST, load_web_config
from greendc.snapshot import Snapshot
from tests.support.builders import idle_health
from tests.support.servers import (
    ProductionMosquitto,
    ServerNotInstalled,
    generate_compose_secrets,
)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE_DIR = ROOT / "config" / "compose"
SECRETS_DIR = COMPOSE_DIR / "secrets"
ENV_EXAMPLE = COMPOSE_DIR / ".env.example"
MOSQUITTO_CONF = ROOT / "config" / "mosquitto" / "mosquitto.conf"
MOSQUITTO_ACL = ROOT / "config" / "mosquitto" / "acl"
GREENDC_CONFIG_TARGET = "/etc/greendc/greendc.yaml"
SCALE_SERVICES = ("greendc-collector-a", "greendc-collector-b")

# The interpolated variables of docker-compose.yml: removed from the child's environment so
# the developer's shell cannot change what the tests see.
_VAR_RE = re.compile(r"(?<!\$)\$\{([A-Z0-9_]+)")


def _compose_variables() -> set[str]:
    lines = COMPOSE_FILE.read_text(encoding="utf-8").splitlines()
    return {v for ln in lines if not ln.lstrip().startswith("#") for v in _VAR_RE.findall(ln)}


def _run_compose(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip("docker-compose (Debian package docker-compose) is not installed")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _compose_variables() and not k.startswith(("COMPOSE_", "DOCKER_"))
    }
    return subprocess.run(
        [exe, "-f", str(COMPOSE_FILE), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _resolved(*args: str) -> dict[str, Any]:
    proc = _run_compose(*args, "config")
    assert proc.returncode == 0, f"docker-compose {' '.join(args)} config failed:\n{proc.stderr}"
    data = yaml.safe_load(proc.stdout)
    assert isinstance(data, dict) and data.get("services"), proc.stdout
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The resolved compose model (all profiles' services: `config` lists them all)."""
    return _resolved()


@pytest.fixture(scope="module")
def compose_example_env() -> dict[str, Any]:
    """The resolved compose model with config/compose/.env.example as the env file."""
    return _resolved("--env-file", str(ENV_EXAMPLE))


@pytest.fixture(scope="module")
def generated_secrets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run config/compose/secrets/generate.sh into a temporary directory."""
    try:
        return generate_compose_secrets(tmp_path_factory.mktemp("secrets") / "secrets")
    except ServerNotInstalled as exc:
        pytest.skip(str(exc))


# -- helpers over the resolved model ------------------------------------------------------------
def _bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    """(host source, container target) of each bind mount; named volumes are skipped."""
    out = []
    for vol in service.get("volumes", []):
        if isinstance(vol, dict):
            if vol.get("type") == "bind":
                out.append((Path(vol["source"]), vol["target"]))
            continue
        source, target = vol.split(":")[:2]
        if source.startswith(("/", ".")):
            out.append((Path(source), target))
    return out


def _greendc_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose["services"].items() if "build" in svc}


def _mounted_greendc_config(name: str, service: dict[str, Any]) -> Path:
    for source, target in _bind_mounts(service):
        if target == GREENDC_CONFIG_TARGET:
            return source
    raise AssertionError(f"service {name} mounts no greendc config at {GREENDC_CONFIG_TARGET}")


def _service_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _env_with_example_secrets(name: str, service: dict[str, Any]) -> dict[str, str]:
    """The service's environment with /run/secrets/X replaced by the committed X.example."""
    env = _service_env(service)
    for key, value in env.items():
        if value.startswith("/run/secrets/"):
            secret = value.removeprefix("/run/secrets/")
            example = SECRETS_DIR / f"{secret}.example"
            assert example.is_file(), (
                f"service {name}: {key}={value} has no placeholder {example.relative_to(ROOT)}"
            )
            env[key] = str(example)
    return env


def _load_service_config(name: str, service: dict[str, Any]) -> Settings:
    path = _mounted_greendc_config(name, service)
    return load_config(path, env=_env_with_example_secrets(name, service))


def _secret_names(service: dict[str, Any]) -> set[str]:
    return {s["source"] if isinstance(s, dict) else s for s in service.get("secrets", [])}


def _collector_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in _greendc_services(compose).items()
        if svc.get("command", [])[:1] == ["collect"]
    }


# -- the compose file itself ------------------------------------------------------------------
def test_compose_config_passes_for_every_profile(compose: dict[str, Any]) -> None:
    """`docker-compose config` accepts the file, with and without the scale profile."""
    scale = _resolved("--profile", "scale")
    assert set(scale["services"]) == set(compose["services"])
    for name in SCALE_SERVICES:
        assert name in compose["services"], f"service {name} (profile scale) is missing"
        assert compose["services"][name].get("profiles") == ["scale"], name


def test_expected_services_exist(compose: dict[str, Any]) -> None:
    """The stack of issue 7: broker, InfluxDB, Prometheus (+ rules), Alertmanager, Grafana,
    the collector and the simulator."""
    wanted = {
        "mosquitto",
        "influxdb",
        "rules",
        "prometheus",
        "alertmanager",
        "grafana",
        "greendc-collector",
        "greendc-simulator",
    }
    missing = sorted(wanted - set(compose["services"]))
    assert not missing, f"docker-compose.yml lacks the services {missing}"


def test_env_example_lists_every_variable_and_matches_the_defaults(
    compose: dict[str, Any], compose_example_env: dict[str, Any]
) -> None:
    """.env.example names each ${VAR} of the compose file; its values are the defaults."""
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    listed = set(re.findall(r"^([A-Z0-9_]+)=", text, flags=re.MULTILINE))
    missing = sorted(_compose_variables() - listed)
    assert not missing, f"{ENV_EXAMPLE.relative_to(ROOT)} does not list {missing}"
    assert compose_example_env["services"] == compose["services"]


def test_every_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    """Each service declares a real healthcheck (not NONE, not disabled)."""
    for name, svc in compose["services"].items():
        check = svc.get("healthcheck")
        assert check, f"service {name} has no healthcheck"
        assert not check.get("disable"), f"service {name} disables its healthcheck"
        test = check.get("test")
        assert test and test != ["NONE"], f"service {name} has an empty healthcheck test"


def test_published_ports_are_unique_and_local(compose: dict[str, Any]) -> None:
    """No two services publish the same host port; every port binds to 127.0.0.1."""
    seen: dict[tuple[str, str], str] = {}
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            if isinstance(port, dict):
                host_ip, published = port.get("host_ip", ""), str(port.get("published", ""))
            else:
                parts = str(port).split("/")[0].split(":")
                assert len(parts) == 3, f"service {name}: port {port!r} names no host address"
                host_ip, published = parts[0], parts[1]
            assert host_ip == "127.0.0.1", f"service {name}: port {port!r} is not on 127.0.0.1"
            key = (host_ip, published)
            assert key not in seen, f"host port {published} used by {seen[key]} and {name}"
            seen[key] = name
    assert seen, "no service publishes a port"


def test_no_secret_is_inline(compose: dict[str, Any]) -> None:
    """Secrets reach services as files: no password or token value in any environment."""
    secretish = re.compile(r"(PASSWORD|TOKEN|SECRET)(?!_FILE$|__FILE$)", re.IGNORECASE)
    for name, svc in compose["services"].items():
        for key, value in _service_env(svc).items():
            assert not secretish.search(key), f"service {name}: {key}={value!r} is inline"
            if key.endswith("_FILE"):
                secret = value.removeprefix("/run/secrets/")
                assert value.startswith("/run/secrets/"), f"service {name}: {key} is not a secret"
                assert secret in _secret_names(svc), f"service {name} does not mount {secret}"


# -- files the compose file references exist ---------------------------------------------------
def test_build_context_and_dockerfile_exist(compose: dict[str, Any]) -> None:
    """The greendc image builds from files in the repository."""
    services = _greendc_services(compose)
    assert services, "no service builds the greendc image"
    for name, svc in services.items():
        context = Path(svc["build"]["context"])
        assert context.is_dir(), f"service {name}: build context {context} is missing"
        dockerfile = context / svc["build"].get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), f"service {name}: {dockerfile} is missing"
    assert (ROOT / ".dockerignore").is_file(), ".dockerignore is missing"


def test_every_mounted_file_exists(compose: dict[str, Any]) -> None:
    """Each bind mount, env_file and config names a file or directory of the repository."""
    missing = []
    for name, svc in compose["services"].items():
        for source, _target in _bind_mounts(svc):
            if not source.exists():
                missing.append(f"service {name}: mount source {source.relative_to(ROOT)}")
        for env_file in svc.get("env_file", []):
            if not Path(env_file).is_file():
                missing.append(f"service {name}: env_file {env_file}")
    for cname, config in (compose.get("configs") or {}).items():
        if not Path(config["file"]).is_file():
            missing.append(f"config {cname}: {config['file']}")
    assert not missing, "missing files:\n  " + "\n  ".join(missing)


def test_every_secret_is_generated_and_ignored(
    compose: dict[str, Any], generated_secrets: Path
) -> None:
    """Each secret file compose names lives in config/compose/secrets/, which git ignores,
    and generate.sh creates it."""
    ignore = (SECRETS_DIR / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert "*" in ignore, "config/compose/secrets/.gitignore must ignore everything by default"
    secrets = compose.get("secrets") or {}
    assert secrets, "docker-compose.yml declares no secrets"
    used = set().union(*(_secret_names(s) for s in compose["services"].values()))
    for name, secret in secrets.items():
        path = Path(secret["file"])
        assert path.parent == SECRETS_DIR, f"secret {name}: {path} is outside {SECRETS_DIR}"
        assert (generated_secrets / path.name).is_file(), (
            f"secret {name}: generate.sh does not create {path.name}"
        )
        assert name in used, f"secret {name} is declared but no service uses it"


# -- the greendc configs compose mounts -----------------------------------------------------------
def test_every_mounted_greendc_config_loads(compose: dict[str, Any]) -> None:
    """Each greendc service's config passes load_config with the environment compose sets."""
    for name, svc in _greendc_services(compose).items():
        settings = _load_service_config(name, svc)
        assert settings.sites, f"service {name}: no sites"


def test_collectors_write_influxdb_and_serve_metrics(compose: dict[str, Any]) -> None:
    """The collectors' sink is the compose InfluxDB, as the write-only greendc-collector with
    the password from its secret file, and /metrics listens where the healthcheck and the
    published port expect it."""
    collectors = _collector_services(compose)
    assert {"greendc-collector", *SCALE_SERVICES} <= set(collectors)
    password = (SECRETS_DIR / "influx_collector_password.example").read_text().strip()
    for name, svc in collectors.items():
        settings = _load_service_config(name, svc)
        v1 = settings.sinks.influxdb_v1
        assert v1 is not None, f"service {name}: no InfluxDB sink"
        assert settings.sinks.influxdb_v2 is None, f"service {name}: holds a v2 token"
        assert v1.url == "http://influxdb:8086" and v1.db == "greendc", name
        assert v1.username == INFLUX_WRITER, name
        assert v1.password is not None and v1.password.get_secret_value() == password, name
        assert settings.mqtt.username == "collector", name
        assert settings.mqtt.password is not None, f"service {name}: no MQTT password"
        assert settings.metrics.listen == "0.0.0.0", f"service {name}: /metrics not reachable"
        port = settings.metrics.port
        assert any(str(p).split("/")[0].endswith(f":{port}") for p in svc["ports"]), name
        assert f":{port}/metrics" in " ".join(svc["healthcheck"]["test"]), name


# -- least privilege -------------------------------------------------------------------------------
INFLUX_WRITER = "greendc-collector"
INFLUX_READER = "greendc-reader"
AUTH_SCRIPT = COMPOSE_DIR / "influxdb-init" / "20-greendc-auth.sh"
GRAFANA_DATASOURCES = ROOT / "config" / "grafana" / "provisioning" / "datasources" / "greendc.yaml"
# influx v1 auth create flags that grant something; anything else is not a permission.
_GRANTS = {"--read-bucket", "--write-bucket"}


def _influx_authorizations() -> dict[str, set[tuple[str, str]]]:
    """user name -> the (grant flag, value) pairs of its `influx v1 auth create` line."""
    out: dict[str, set[tuple[str, str]]] = {}
    for line in AUTH_SCRIPT.read_text(encoding="utf-8").splitlines():
        words = shlex.split(line, comments=True)
        if words[:4] != ["influx", "v1", "auth", "create"]:
            continue
        flags = dict(zip(words[4::2], words[5::2], strict=False))
        grants = {(k, v) for k, v in flags.items() if k.startswith(("--read", "--write"))}
        out[flags["--username"]] = grants
    return out


def test_influx_authorizations_are_scoped_to_the_bucket_and_one_access(
    compose: dict[str, Any],
) -> None:
    """The init script makes a write-only and a read-only authorization for the one bucket;
    the operator token is mounted into influxdb alone."""
    auths = _influx_authorizations()
    assert auths == {
        INFLUX_WRITER: {("--write-bucket", "$bucket_id")},
        INFLUX_READER: {("--read-bucket", "$bucket_id")},
    }, auths
    assert all(flag in _GRANTS for grants in auths.values() for flag, _ in grants)
    influx = compose["services"]["influxdb"]
    env = _service_env(influx)
    assert env["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN_FILE"] == "/run/secrets/influx_admin_token"
    for key, secret in (
        ("GREENDC_INFLUX_COLLECTOR_PASSWORD_FILE", "influx_collector_password"),
        ("GREENDC_INFLUX_READER_PASSWORD_FILE", "influx_reader_password"),
    ):
        assert env[key] == f"/run/secrets/{secret}" and secret in _secret_names(influx)
        assert f"${{{key}" in AUTH_SCRIPT.read_text(encoding="utf-8"), key
    mounts = {t for _s, t in _bind_mounts(influx)}
    assert "/docker-entrypoint-initdb.d" in mounts
    for name, svc in compose["services"].items():
        if name != "influxdb":
            assert "influx_admin_token" not in _secret_names(svc), f"{name} gets the operator token"


def test_each_service_gets_only_the_influx_credential_of_its_job(compose: dict[str, Any]) -> None:
    """Collectors write, Grafana and the report read; the simulator and the rules builder get
    no InfluxDB credential at all."""
    services = compose["services"]
    holders: dict[str, set[str]] = {
        name: _secret_names(svc) & {"influx_collector_password", "influx_reader_password"}
        for name, svc in services.items()
        if name != "influxdb"
    }
    for name in _collector_services(compose):
        assert holders.pop(name) == {"influx_collector_password"}, name
    assert holders.pop("grafana") == {"influx_reader_password"}
    assert holders.pop("report") == {"influx_reader_password"}
    assert not any(holders.values()), holders
    for name in ("greendc-simulator", "rules"):
        settings = _load_service_config(name, services[name])
        assert settings.sinks.influxdb_v1 is None and settings.sinks.influxdb_v2 is None, name

    report = _load_service_config("report", services["report"])
    v1 = report.sinks.influxdb_v1
    assert v1 is not None and v1.username == INFLUX_READER and v1.password is not None
    assert services["report"]["command"][:1] == ["report"]


def test_grafana_reads_influxdb_read_only_with_get(compose: dict[str, Any]) -> None:
    """Grafana's InfluxQL data source signs in as the reader and queries with GET (which
    InfluxDB answers only for SELECT and SHOW); the password comes from the secret."""
    data = yaml.safe_load(GRAFANA_DATASOURCES.read_text(encoding="utf-8"))
    influx = [d for d in data["datasources"] if d["type"] == "influxdb"]
    assert len(influx) == 1
    ds = influx[0]
    assert ds["jsonData"]["version"] == "InfluxQL"
    assert ds["jsonData"]["httpMode"] == "GET"
    assert ds["user"] == INFLUX_READER
    assert ds["secureJsonData"] == {"password": "${INFLUX_READER_PASSWORD}"}
    assert "httpHeaderName1" not in ds["jsonData"], "no token header beside the reader"
    grafana = compose["services"]["grafana"]
    entry = " ".join(grafana["entrypoint"])
    assert "INFLUX_READER_PASSWORD=" in entry and "/run/secrets/influx_reader_password" in entry


def _ports_by_service(data: dict[str, Any]) -> dict[str, dict[str, str]]:
    """service -> {container port: host address} of its published ports."""
    out: dict[str, dict[str, str]] = {}
    for name, svc in data["services"].items():
        for port in svc.get("ports", []):
            host_ip, _published, target = str(port).split("/")[0].split(":")
            out.setdefault(name, {})[target] = host_ip
    return out


def _resolved_with(tmp_path: Path, **env: str) -> dict[str, Any]:
    env_file = tmp_path / f"{'-'.join(sorted(env))}.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()), encoding="utf-8")
    return _resolved("--env-file", str(env_file))


def test_the_tls_listener_the_rest_and_the_admin_apis_have_separate_bind_settings(
    tmp_path: Path,
) -> None:
    """Opening the TLS listener to the network opens nothing else; opening the rest never
    opens Prometheus or Alertmanager, whose APIs silence alerts and change state."""
    tls_open = _ports_by_service(_resolved_with(tmp_path, GREENDC_MQTTS_BIND_ADDRESS="0.0.0.0"))
    opened = {
        (n, t) for n, ports in tls_open.items() for t, ip in ports.items() if ip != "127.0.0.1"
    }
    assert opened == {("mosquitto", "8883")}, opened

    rest_open = _ports_by_service(_resolved_with(tmp_path, GREENDC_BIND_ADDRESS="0.0.0.0"))
    for name in ("prometheus", "alertmanager"):
        assert set(rest_open[name].values()) == {"127.0.0.1"}, name
    assert rest_open["mosquitto"]["8883"] == "127.0.0.1"
    assert rest_open["mosquitto"]["1883"] == "0.0.0.0"

    admin_open = _ports_by_service(_resolved_with(tmp_path, GREENDC_ADMIN_BIND_ADDRESS="0.0.0.0"))
    opened = {
        (n, t) for n, ports in admin_open.items() for t, ip in ports.items() if ip != "127.0.0.1"
    }
    assert opened == {("prometheus", "9090"), ("alertmanager", "9093")}, opened


def test_prometheus_exposes_no_lifecycle_or_admin_api(compose: dict[str, Any]) -> None:
    command = compose["services"]["prometheus"]["command"]
    assert not [
        c for c in command if c.startswith(("--web.enable-lifecycle", "--web.enable-admin"))
    ]


def test_collector_metrics_need_basic_auth(
    compose: dict[str, Any], generated_secrets: Path
) -> None:
    """Every collector serves /metrics behind the generated bcrypt web config; Prometheus
    scrapes with the matching password, and the healthcheck signs in the same way."""
    services = compose["services"]
    for name, svc in _collector_services(compose).items():
        settings = _load_service_config(name, svc)
        web = settings.metrics.web_config_file
        assert web is not None and str(web) == "/run/secrets/metrics_web_config.yml", name
        assert {"metrics_web_config.yml", "metrics_password"} <= _secret_names(svc), name
        assert "/run/secrets/metrics_password" in " ".join(svc["healthcheck"]["test"]), name

    web_config = load_web_config(generated_secrets / "metrics_web_config.yml")
    password = (generated_secrets / "metrics_password").read_text(encoding="utf-8").strip()
    assert set(web_config.basic_auth_users) == {"prometheus"}
    hashed = web_config.basic_auth_users["prometheus"]
    assert bcrypt.checkpw(password.encode(), hashed.encode())
    assert int(hashed.split("$")[2]) >= MIN_BCRYPT_COST

    prom = services["prometheus"]
    assert "metrics_password" in _secret_names(prom)
    source = next(s for s, t in _bind_mounts(prom) if t == "/etc/prometheus/prometheus.yml")
    jobs = yaml.safe_load(source.read_text(encoding="utf-8"))["scrape_configs"]
    greendc = next(j for j in jobs if j["job_name"] == "greendc")
    assert greendc["basic_auth"] == {
        "username": "prometheus",
        "password_file": "/run/secrets/metrics_password",
    }


def test_collector_identities_are_distinct_and_dead_letters_do_not_loop(
    compose: dict[str, Any],
) -> None:
    """Each collector has its own client id (its own persistent session), and no collector
    subscribes to any collector's dead-letter topic (two would bounce rejects forever)."""
    configs = {n: _load_service_config(n, s) for n, s in _collector_services(compose).items()}
    ids = [c.mqtt.client_id for c in configs.values()]
    assert len(ids) == len(set(ids)), f"collectors share a client_id: {ids}"
    for name, cfg in configs.items():
        dlq = cfg.mqtt.dead_letter_topic
        assert dlq, f"service {name}: no dead_letter_topic"
        for other, other_cfg in configs.items():
            for m in other_cfg.mappings:
                assert not mqtt.topic_matches_sub(m.subscription, dlq), (
                    f"{other} subscribes {m.subscription}, which matches {name}'s {dlq}"
                )


def test_scale_profile_partitions_the_sites(compose: dict[str, Any]) -> None:
    """The scale collectors cover every site exactly once, with the full config's sites, and
    subscribe only to their own sites' topics."""
    services = compose["services"]
    full = _load_service_config("greendc-collector", services["greendc-collector"])
    owner: dict[str, str] = {}
    for name in SCALE_SERVICES:
        cfg = _load_service_config(name, services[name])
        for site in cfg.sites:
            assert site.name not in owner, f"site {site.name} in {owner[site.name]} and {name}"
            owner[site.name] = name
            assert site == full.site(site.name), f"{name}: site {site.name} differs from full"
        for m in cfg.mappings:
            sites = {s.name for s in cfg.sites}
            topic_sites = {seg for seg in m.subscription.split("/")[1:2]}
            assert m.site in sites and topic_sites == {m.site}, (
                f"{name}: mapping {m.topic} is not limited to its own sites {sorted(sites)}"
            )
    missing = sorted({s.name for s in full.sites} - set(owner))
    assert not missing, f"the scale profile collects no collector for sites {missing}"


def test_simulator_runs_at_real_time_against_the_compose_broker(compose: dict[str, Any]) -> None:
    """`greendc simulate --config ... --speed 1` as the simulator user."""
    svc = compose["services"]["greendc-simulator"]
    command = svc["command"]
    assert command[:3] == ["simulate", "--config", GREENDC_CONFIG_TARGET], command
    assert command[command.index("--speed") + 1] == "1", command
    settings = _load_service_config("greendc-simulator", svc)
    assert settings.mqtt.host == "mosquitto" and settings.mqtt.username == "simulator"


# -- Prometheus and the generated rules ------------------------------------------------------------
def test_rules_service_feeds_prometheus(compose: dict[str, Any], tmp_path: Path) -> None:
    """The one-shot rules service writes into the volume Prometheus reads; Prometheus waits
    for it, and its rule_files glob matches what `greendc rules build` writes."""
    services = compose["services"]
    rules, prom = services["rules"], services["prometheus"]
    out_dir = rules["command"][rules["command"].index("--out") + 1]
    rules_volume = next(v.split(":")[0] for v in rules["volumes"] if f":{out_dir}" in v)
    prom_target = next(v.split(":")[1] for v in prom["volumes"] if v.startswith(rules_volume))
    assert rules_volume in compose["volumes"], f"{rules_volume} is not a named volume"
    assert prom["depends_on"]["rules"]["condition"] == "service_completed_successfully"
    assert rules.get("restart") == "no"

    prom_config = next(s for s, t in _bind_mounts(prom) if t == "/etc/prometheus/prometheus.yml")
    data = yaml.safe_load(prom_config.read_text(encoding="utf-8"))
    patterns = data["rule_files"]
    assert all(p.startswith(prom_target + "/") for p in patterns), patterns

    settings = _load_service_config("rules", rules)
    written = write_rules(settings, tmp_path)
    names = {p.name for p in written}
    assert ALERTS_FILE in names, names
    assert ALERTS_FILE in " ".join(rules["healthcheck"]["test"])
    for p in written:
        assert any(Path(p.name).match(Path(pat).name) for pat in patterns), p.name


def test_prometheus_config_and_generated_rules_pass_promtool(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    """promtool accepts the compose Prometheus config with the rules it will load."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed")
    rules = compose["services"]["rules"]
    write_rules(_load_service_config("rules", rules), tmp_path / "rules")
    prom = compose["services"]["prometheus"]
    source = next(s for s, t in _bind_mounts(prom) if t == "/etc/prometheus/prometheus.yml")
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    data["rule_files"] = [str(tmp_path / "rules" / Path(p).name) for p in data["rule_files"]]
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    proc = subprocess.run(
        [promtool, "check", "config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout + proc.stderr


# -- Mosquitto ----------------------------------------------------------------------------------
def _conf_lines(path: Path) -> list[list[str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [ln.split() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def test_mosquitto_config_is_durable_and_authenticated(compose: dict[str, Any]) -> None:
    """Persistence, no queue cap, no anonymous access, both listeners, and every file the
    config names is mounted into the mosquitto service."""
    conf = {ln[0]: ln[1:] for ln in _conf_lines(MOSQUITTO_CONF)}
    assert conf["persistence"] == ["true"]
    assert conf["max_queued_messages"] == ["0"], "the default 1000 silently drops QoS 1"
    assert conf["allow_anonymous"] == ["false"]
    listeners = [ln[1] for ln in _conf_lines(MOSQUITTO_CONF) if ln[0] == "listener"]
    assert listeners == ["1883", "8883"], listeners

    svc = compose["services"]["mosquitto"]
    mounted = {t for _s, t in _bind_mounts(svc)} | {f"/run/secrets/{n}" for n in _secret_names(svc)}
    for key in ("password_file", "acl_file", "cafile", "certfile", "keyfile"):
        assert key in conf, f"mosquitto.conf sets no {key}"
        assert conf[key][0] in mounted, f"mosquitto.conf {key} {conf[key][0]} is not mounted"
    published = {str(p).split(":")[2].split("/")[0] for p in svc["ports"]}
    assert published == set(listeners), published


def _acl_grants(path: Path) -> dict[str, list[tuple[str, str]]]:
    grants: dict[str, list[tuple[str, str]]] = {}
    user = ""
    for ln in _conf_lines(path):
        if ln[0] == "user":
            user = ln[1]
            grants.setdefault(user, [])
        elif ln[0] == "topic":
            access, topic = (ln[1], ln[2]) if len(ln) == 3 else ("readwrite", ln[1])
            assert user, f"{path.name}: topic {topic} before any user line"
            grants[user].append((access, topic))
    return grants


def test_acl_confines_each_gateway_to_its_site(compose: dict[str, Any]) -> None:
    """gw-<site> may write greendc/<site>/# only; the collector reads greendc/# and writes its
    dead-letter topics; the simulator writes exactly the compose sites."""
    grants = _acl_grants(MOSQUITTO_ACL)
    services = compose["services"]
    full = _load_service_config("greendc-collector", services["greendc-collector"])
    for site in full.sites:
        user = f"gw-{site.name}"
        assert grants.get(user) == [("write", f"greendc/{site.name}/#")], user
    assert ("read", "greendc/#") in grants["collector"]
    for name, svc in _collector_services(compose).items():
        dlq = _load_service_config(name, svc).mqtt.dead_letter_topic
        assert dlq is not None
        assert any(
            a == "write" and mqtt.topic_matches_sub(t, dlq) for a, t in grants["collector"]
        ), f"{name}'s dead-letter topic {dlq} is not writable by user collector"
    assert sorted(grants["simulator"]) == sorted(
        ("write", f"greendc/{s.name}/#") for s in full.sites
    )
    assert all(a != "readwrite" for g in grants.values() for a, _t in g)


# A real broker with the production config: the ACL does what the tests above read it as.
GATEWAY_PASSWORD = "gateway-password-for-tests"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def production_broker(generated_secrets: Path, tmp_path: Path) -> Iterator[tuple[int, int, Path]]:
    """Mosquitto with config/mosquitto/mosquitto.conf, paths moved to temporary files, and
    the generated password file plus one user per site gateway (gw-sg1, gw-jhr1)."""
    users = dict.fromkeys(("gw-sg1", "gw-jhr1"), GATEWAY_PASSWORD)
    try:
        broker = ProductionMosquitto(generated_secrets, users, workdir=tmp_path / "broker")
    except ServerNotInstalled as exc:
        pytest.skip(str(exc))
    with broker:
        yield broker.port, broker.tls_port, broker.secrets


def _wait_for(pred: Any, what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _client(
    port: int, user: str | None, password: str | None, ca: Path | None = None
) -> tuple[mqtt.Client, Any]:
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"test-{user}-{time.monotonic_ns()}",
        protocol=mqtt.MQTTv5,
    )
    if user is not None:
        client.username_pw_set(user, password)
    if ca is not None:
        client.tls_set(ca_certs=str(ca))
    connack: list[Any] = []
    client.on_connect = lambda _c, _u, _f, rc, _p: connack.append(rc)
    client.connect("127.0.0.1", port, keepalive=10)
    client.loop_start()
    _wait_for(lambda: connack, f"the CONNACK for user {user}")
    return client, connack[0]


def _publish_reason(port: int, user: str, password: str, topic: str) -> int:
    """Connect, publish one QoS 1 message, and return the PUBACK's reason code."""
    client, rc = _client(port, user, password)
    assert not rc.is_failure, f"{user}: {rc}"
    reasons: list[int] = []
    client.on_publish = lambda _c, _u, _mid, reason, _p: reasons.append(reason.value)
    client.publish(topic, b'{"power_w": 1}', qos=1)
    _wait_for(lambda: reasons, f"the PUBACK of {user}'s publish to {topic}")
    client.disconnect()
    client.loop_stop()
    return reasons[0]


@pytest.mark.integration
def test_production_broker_enforces_the_acl(production_broker: tuple[int, int, Path]) -> None:
    """Anonymous is refused; a site's gateway reaches the collector for its own site only,
    over TLS with the generated CA; the simulator writes every compose site."""
    plain, tls, secrets = production_broker
    anon, rc = _client(plain, None, None)
    anon.loop_stop()
    assert rc.is_failure, "an anonymous client was accepted"

    received: list[str] = []
    subscribed: list[bool] = []
    collector, rc = _client(
        plain, "collector", (secrets / "mqtt_collector_password").read_text().strip()
    )
    assert not rc.is_failure, rc
    collector.on_message = lambda _c, _u, msg: received.append(msg.topic)
    collector.on_subscribe = lambda *_a: subscribed.append(True)
    collector.subscribe("greendc/#", qos=1)
    _wait_for(lambda: subscribed, "the collector's SUBACK")

    # TLS: the generated CA verifies the listener's certificate and the login works. (Data
    # goes over the plain listener below: paho's loop thread and a publishing thread sharing
    # one SSL socket make the test flaky, not the broker.)
    secure, rc = _client(tls, "gw-sg1", GATEWAY_PASSWORD, ca=secrets / "mqtt_ca.crt")
    secure.disconnect()
    secure.loop_stop()
    assert not rc.is_failure, rc
    simulator_password = (secrets / "mqtt_simulator_password").read_text().strip()
    # MQTT 5 reports a denied publish in its PUBACK (135, not authorised). Each publish uses
    # its own connection: paho may drop a connection whose publish was refused.
    sends = [
        ("gw-sg1", GATEWAY_PASSWORD, "greendc/jhr1/pdu-a", False),  # another site
        ("gw-sg1", GATEWAY_PASSWORD, "greendc/sg1/ups-1", True),
        ("gw-sg1", GATEWAY_PASSWORD, "greendc/sg1", True),  # the site's batch topic
        ("gw-sg1", GATEWAY_PASSWORD, "greendc-deadletter/x", False),
        ("simulator", simulator_password, "greendc/other/x", False),  # not a compose site
        ("simulator", simulator_password, "greendc/jhr1/pdu-a", True),
    ]
    for user, password, topic, allowed in sends:
        assert _publish_reason(plain, user, password, topic) == (0 if allowed else 135), (
            f"{user} publishing to {topic}"
        )
    expected = [topic for _u, _p, topic, allowed in sends if allowed]
    _wait_for(lambda: len(received) >= len(expected), "the allowed readings")
    collector.disconnect()
    collector.loop_stop()
    assert received == expected


@pytest.mark.parametrize("connected", [True, False])
def test_the_collector_healthcheck_signs_in_and_requires_a_live_mqtt_connection(
    compose: dict[str, Any], generated_secrets: Path, connected: bool
) -> None:
    """The healthcheck's own command, run against a real /metrics behind the generated web
    config: healthy only while the agent reports MQTT connected."""
    test = compose["services"]["greendc-collector"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"], test
    code = test[3].replace("/run/secrets/", f"{generated_secrets}/")
    web = load_web_config(generated_secrets / "metrics_web_config.yml")
    health = dataclasses.replace(idle_health(), mqtt_connected=connected)
    snap = Snapshot(taken_at_s=1.0, meters=(), sites=(), health=health)
    with serve(MetricsSettings(port=0), lambda: snap, web_config=web) as server:
        code = code.replace("127.0.0.1:9108", f"127.0.0.1:{server.port}")
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
        )
    assert (proc.returncode == 0) == connected, proc.stderr[-2000:]
