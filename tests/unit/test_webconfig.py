"""Basic auth and TLS on /metrics, configured like Prometheus' web config file."""

from __future__ import annotations

import base64
import functools
import http.client
import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import bcrypt
import pytest

from greendc._errors import ConfigError
from greendc.config import MetricsSettings
from greendc.exporters import WebConfig, load_web_config, parse_web_config, serve
from greendc.exporters.webconfig import MAX_CONCURRENT_REQUESTS, MIN_BCRYPT_COST, BasicAuth
from greendc.snapshot import Snapshot
from tests.helpers import idle_health, wait_until

PASSWORD = "s3cret-pass"


def _snapshot() -> Snapshot:
    return Snapshot(taken_at_s=1.0, meters=(), sites=(), health=idle_health(start_time_s=1.0))


@functools.cache
def _hash(password: str, cost: int = MIN_BCRYPT_COST) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost)).decode()


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def _request(
    port: int, headers: dict[str, str] | None = None, context: ssl.SSLContext | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn: http.client.HTTPConnection
    if context is not None:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics", headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


@pytest.fixture
def cert(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the openssl CLI."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("the openssl CLI is needed to make a test certificate (Debian: openssl)")
    crt, key = tmp_path / "server.crt", tmp_path / "server.key"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(crt),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return crt, key


def test_basic_auth_401_without_or_with_wrong_credentials_200_with_right_ones() -> None:
    web = WebConfig(basic_auth_users={"prometheus": _hash(PASSWORD)})
    with serve(MetricsSettings(port=0), _snapshot, web_config=web) as server:
        status, headers, _ = _request(server.port)
        assert status == 401
        assert headers["www-authenticate"].startswith('Basic realm="greendc"')
        assert _request(server.port, _basic("prometheus", "wrong"))[0] == 401
        assert _request(server.port, _basic("nobody", PASSWORD))[0] == 401
        assert _request(server.port, _basic("prometheus", "x" * 100))[0] == 401
        assert _request(server.port, {"Authorization": "Basic !!!not-base64"})[0] == 401
        assert _request(server.port, {"Authorization": "Bearer abc"})[0] == 401
        status, _, body = _request(server.port, _basic("prometheus", PASSWORD))
        assert status == 200
        assert b"greendc_agent_info" in body
        # Served again from the verified-credentials cache, and still refused when wrong.
        assert _request(server.port, _basic("prometheus", PASSWORD))[0] == 200
        assert _request(server.port, _basic("prometheus", PASSWORD + "x"))[0] == 401


def test_tls_and_basic_auth_from_a_web_config_file(tmp_path: Path, cert: tuple[Path, Path]) -> None:
    crt, key = cert
    config = tmp_path / "web.yml"
    # Relative paths resolve against the web config file, as in Prometheus.
    config.write_text(
        f"tls_server_config:\n  cert_file: {crt.name}\n  key_file: {key.name}\n"
        f"basic_auth_users:\n  prometheus: {_hash(PASSWORD)}\n"
    )
    settings = MetricsSettings(port=0, web_config_file=config)
    context = ssl.create_default_context(cafile=str(crt))
    with serve(settings, _snapshot) as server:
        assert server.url.startswith("https://")
        assert _request(server.port, context=context)[0] == 401
        status, _, body = _request(server.port, _basic("prometheus", PASSWORD), context)
        assert status == 200
        assert b"greendc_agent_mqtt_connected 1.0" in body
        # Plain HTTP to the TLS port gets no metrics.
        with pytest.raises((http.client.HTTPException, OSError)):
            _request(server.port, _basic("prometheus", PASSWORD))
        # A client that does not trust the certificate is refused by its own check.
        with pytest.raises(ssl.SSLError):
            _request(server.port, context=ssl.create_default_context())
        # The server survived the failed handshakes.
        assert _request(server.port, _basic("prometheus", PASSWORD), context)[0] == 200


def test_tls_only(tmp_path: Path, cert: tuple[Path, Path]) -> None:
    crt, key = cert
    web = parse_web_config(
        {"tls_server_config": {"cert_file": str(crt), "key_file": str(key)}}, tmp_path
    )
    with serve(MetricsSettings(port=0), _snapshot, web_config=web) as server:
        status, _, _ = _request(server.port, context=ssl.create_default_context(cafile=str(crt)))
        assert status == 200


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"basic_auth_users": {"u": "plain-text"}}, "basic_auth_users.u: is not a bcrypt hash"),
        ({"basic_auth_users": ["u"]}, "basic_auth_users: expected a mapping"),
        (
            {"tls_server_config": {"cert_file": "missing.crt", "key_file": "missing.key"}},
            "tls_server_config.cert_file: file",
        ),
        ({"tls_server_config": {"cert_file": "a"}}, "tls_server_config.key_file: is required"),
        (
            {"tls_server_config": {"cert_file": "a", "key_file": "b", "min_version": "TLS10"}},
            "tls_server_config.min_version: 'TLS10' is not one of",
        ),
        ({"http_server_config": {}}, "http_server_config: is not a known setting"),
        ([1, 2], "expected a mapping"),
    ],
)
def test_invalid_web_config_names_the_field(tmp_path: Path, data: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as info:
        parse_web_config(data, tmp_path)
    assert "plain-text" not in str(info.value)  # a pasted password is never echoed


def test_a_hash_below_the_minimum_cost_is_refused(tmp_path: Path) -> None:
    weak = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    with pytest.raises(ConfigError, match=r"basic_auth_users\.prom: the bcrypt cost 4 is below"):
        parse_web_config({"basic_auth_users": {"prom": weak}}, tmp_path)
    with pytest.raises(ConfigError, match="cost less than 10"):
        BasicAuth({"prom": weak})


def test_an_unknown_user_is_checked_at_the_cost_of_the_real_ones() -> None:
    """Same cost, same time: the response does not tell which user names exist."""
    assert BasicAuth({"prometheus": _hash(PASSWORD)}).dummy_cost == MIN_BCRYPT_COST
    assert BasicAuth({"prometheus": _hash(PASSWORD, 11)}).dummy_cost == 11


def test_connections_beyond_the_concurrency_bound_are_closed_not_threaded() -> None:
    """Idle connections hold their request threads; one more is closed at once, and a
    request is served again as soon as the idle ones go."""
    web = WebConfig(basic_auth_users={"prometheus": _hash(PASSWORD)})
    with serve(MetricsSettings(port=0), _snapshot, web_config=web) as server:
        idle = [
            socket.create_connection(("127.0.0.1", server.port))
            for _ in range(MAX_CONCURRENT_REQUESTS)
        ]
        try:
            extra = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            with extra:
                extra.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
                try:
                    answer = extra.recv(100)
                except ConnectionResetError:
                    answer = b""
            assert answer == b"", answer
        finally:
            for s in idle:
                s.close()

        def served() -> bool:
            try:
                return _request(server.port, _basic("prometheus", PASSWORD))[0] == 200
            except (ConnectionError, http.client.HTTPException):
                return False

        assert wait_until(served), "requests were not served again once the idle ones closed"


def test_load_web_config_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "web.yml"
    bad.write_text("basic_auth_users: {u: nope}\n")
    with pytest.raises(ConfigError, match=r"web\.yml: invalid web config"):
        load_web_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_web_config(tmp_path / "absent.yml")
    empty = tmp_path / "empty.yml"
    empty.write_text("")
    assert load_web_config(empty) == WebConfig()
