"""A simulated Redfish service: HTTPS serving DMTF-schema resources, with basic and session
authentication and a CA of its own (for the simulator, the tests and the demo).

:func:`make_ca` writes a CA and a server certificate for 127.0.0.1 (with ``cryptography``);
:class:`RedfishServer` serves one mockup (a mapping of each URI to its resource: the
tests' files in tests/data/redfish/, or :func:`environment_mockup`) from a thread.
Readings can be changed while it runs, it can refuse every request for a while (503), and
be stopped and started again on the same port.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import ipaddress
import json
import secrets
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from greendc.simulator.devices.modbus import LOOPBACK, free_tcp_port


def environment_mockup(chassis: str = "1U") -> dict[str, Any]:
    """A minimal service: root, sessions, one chassis with EnvironmentMetrics (DMTF 2020.4+)."""
    c = f"/redfish/v1/Chassis/{chassis}"
    return {
        "/redfish/v1": {
            "@odata.id": "/redfish/v1",
            "@odata.type": "#ServiceRoot.v1_15_0.ServiceRoot",
            "Id": "RootService",
            "Name": "Root Service",
            "RedfishVersion": "1.17.0",
            "Chassis": {"@odata.id": "/redfish/v1/Chassis"},
            "SessionService": {"@odata.id": "/redfish/v1/SessionService"},
            "Links": {"Sessions": {"@odata.id": "/redfish/v1/SessionService/Sessions"}},
        },
        "/redfish/v1/Chassis": {
            "@odata.id": "/redfish/v1/Chassis",
            "@odata.type": "#ChassisCollection.ChassisCollection",
            "Name": "Chassis Collection",
            "Members@odata.count": 1,
            "Members": [{"@odata.id": c}],
        },
        c: {
            "@odata.id": c,
            "@odata.type": "#Chassis.v1_25_0.Chassis",
            "Id": chassis,
            "Name": f"Chassis {chassis}",
            "ChassisType": "RackMount",
            "EnvironmentMetrics": {"@odata.id": f"{c}/EnvironmentMetrics"},
        },
        f"{c}/EnvironmentMetrics": {
            "@odata.id": f"{c}/EnvironmentMetrics",
            "@odata.type": "#EnvironmentMetrics.v1_3_2.EnvironmentMetrics",
            "Id": "EnvironmentMetrics",
            "Name": "Chassis Environment Metrics",
            "PowerWatts": {"Reading": 0.0},
            "EnergykWh": {"Reading": 0.0},
        },
    }


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(folder: Path) -> tuple[Path, Path, Path]:
    """(ca.pem, server.pem, server.key) for a server at 127.0.0.1 / localhost."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("greendc test CA"))
        .issuer_name(_name("greendc test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("bmc.test"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(LOOPBACK))]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    paths = (folder / "ca.pem", folder / "server.pem", folder / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


class RedfishServer:
    """One Redfish mockup over HTTPS on a free loopback port."""

    def __init__(
        self,
        docs: dict[str, Any],
        cert: Path,
        key: Path,
        *,
        username: str,
        password: str,
        host: str = LOOPBACK,
        port: int | None = None,
    ) -> None:
        self.docs: dict[str, Any] = copy.deepcopy(docs)
        self.username = username
        self.password = password
        self.host = host
        self.port = port or free_tcp_port(host)
        self.unavailable = False  # answer 503 to everything (a BMC rebooting)
        self.requests: list[tuple[str, str]] = []
        self.sessions: dict[str, str] = {}  # token -> session URI
        self.logins = 0
        self._lock = threading.Lock()
        self._ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ctx.load_cert_chain(cert, key)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The service's base URL (its root is <url>/redfish/v1)."""
        return f"https://{self.host}:{self.port}"

    def set_reading(self, uri: str, path: str, value: object) -> None:
        """Set a value inside a resource: ``path`` is dotted (``PowerWatts.Reading``)."""
        with self._lock:
            doc = self.docs[uri]
            *parents, last = path.split(".")
            for p in parents:
                doc = doc[int(p)] if isinstance(doc, list) else doc[p]
            doc[last] = value

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:
                return None

            def _send(self, status: int, doc: Any = None, headers: dict[str, str] | None = None):
                body = b"" if doc is None else json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _authorized(self) -> bool:
                token = self.headers.get("X-Auth-Token")
                if token is not None:
                    return token in server.sessions
                basic = self.headers.get("Authorization", "")
                if basic.startswith("Basic "):
                    user, _, pw = base64.b64decode(basic[6:]).decode().partition(":")
                    return user == server.username and pw == server.password
                return False

            def _path(self) -> str:
                return self.path.split("?")[0].rstrip("/") or "/"

            def do_GET(self) -> None:
                path = self._path()
                server.requests.append(("GET", path))
                if server.unavailable:
                    return self._send(503, {"error": "service unavailable"})
                if path != "/redfish/v1" and not self._authorized():
                    return self._send(401, {"error": "unauthorized"})
                with server._lock:
                    doc = copy.deepcopy(server.docs.get(path))
                if doc is None:
                    return self._send(404, {"error": f"{path} not found"})
                return self._send(200, doc)

            def do_POST(self) -> None:
                path = self._path()
                server.requests.append(("POST", path))
                if path != "/redfish/v1/SessionService/Sessions":
                    return self._send(405)
                length = int(self.headers.get("Content-Length", "0"))
                creds = json.loads(self.rfile.read(length) or b"{}")
                if (creds.get("UserName"), creds.get("Password")) != (
                    server.username,
                    server.password,
                ):
                    return self._send(401, {"error": "bad credentials"})
                token = secrets.token_hex(16)
                uri = f"{path}/{len(server.sessions) + 1}"
                server.sessions[token] = uri
                server.logins += 1
                return self._send(
                    201,
                    {"@odata.id": uri, "UserName": server.username},
                    {"X-Auth-Token": token, "Location": uri},
                )

            def do_DELETE(self) -> None:
                path = self._path()
                server.requests.append(("DELETE", path))
                for token, uri in list(server.sessions.items()):
                    if uri == path and self.headers.get("X-Auth-Token") == token:
                        del server.sessions[token]
                        return self._send(204)
                return self._send(404)

        return Handler

    def expire_sessions(self) -> None:
        """Forget every session (as a BMC does on reboot or timeout)."""
        self.sessions.clear()

    def start(self) -> RedfishServer:
        """Listen (again, on the same port)."""
        httpd = ThreadingHTTPServer((self.host, self.port), self._handler())
        httpd.socket = self._ctx.wrap_socket(httpd.socket, server_side=True)
        httpd.daemon_threads = True
        self._server = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name="redfish", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (the BMC goes away)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> RedfishServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
