"""Basic auth and TLS for /metrics, configured like Prometheus' own web config file.

The file has the shape of the exporter-toolkit ``--web.config.file``::

    tls_server_config:
      cert_file: server.crt          # relative paths are relative to this file
      key_file: server.key
      client_ca_file: ca.crt         # optional: mutual TLS
      client_auth_type: RequireAndVerifyClientCert
      min_version: TLS12             # TLS12 (default) or TLS13
    basic_auth_users:
      prometheus: $2y$10$...         # bcrypt hash, e.g. `htpasswd -nBC 10 "" | tr -d ':'`

Passwords are checked with the ``bcrypt`` package. Like exporter-toolkit, a successful check
is cached in memory (keyed by an HMAC with a per-process random key, never the password), so
a scrape every few seconds does not pay bcrypt's deliberate cost each time. Hashes below cost
10 are refused; an unknown user is checked against a dummy hash of the configured users'
highest cost, so the response time does not reveal which users exist. At most
``MAX_CONCURRENT_REQUESTS`` requests are served at once; a connection beyond that is closed
at once instead of getting a thread of its own.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import yaml
from prometheus_client.exposition import ThreadingWSGIServer

from greendc._errors import ConfigError

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
_TLS_KEYS = {"cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version"}
_TOP_KEYS = {"tls_server_config", "basic_auth_users"}
# bcrypt only looks at the first 72 bytes; longer passwords are refused, never truncated.
_BCRYPT_MAX_BYTES = 72
# exporter-toolkit's and htpasswd -C's usual cost; cost 4 takes about 1 ms to brute-force a try.
MIN_BCRYPT_COST = 10
MAX_CONCURRENT_REQUESTS = 16
_CACHE_MAX = 1024
REALM = "greendc"


@dataclass(frozen=True)
class TLSServerConfig:
    """Server certificate and optional client-certificate verification."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    client_auth_type: str = "NoClientCert"
    min_version: str = "TLS12"

    def ssl_context(self) -> ssl.SSLContext:
        """A server-side SSL context; ConfigError names the file that cannot be used."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = _TLS_VERSIONS[self.min_version]
        try:
            ctx.load_cert_chain(certfile=str(self.cert_file), keyfile=str(self.key_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"tls_server_config: cannot load cert_file {str(self.cert_file)!r} with "
                f"key_file {str(self.key_file)!r}: {exc}"
            ) from exc
        if self.client_ca_file is not None:
            try:
                ctx.load_verify_locations(cafile=str(self.client_ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f"tls_server_config.client_ca_file: cannot load "
                    f"{str(self.client_ca_file)!r}: {exc}"
                ) from exc
        ctx.verify_mode = _CLIENT_AUTH[self.client_auth_type]
        return ctx


@dataclass(frozen=True)
class WebConfig:
    """Parsed web config: ``basic_auth_users`` maps user -> bcrypt hash; ``tls`` is optional."""

    basic_auth_users: Mapping[str, str] = field(default_factory=dict)
    tls: TLSServerConfig | None = None


def parse_web_config(data: Any, base_dir: Path) -> WebConfig:
    """Validate web config data (as loaded from YAML); relative paths resolve to ``base_dir``."""
    if data is None:
        return WebConfig()
    if not isinstance(data, dict):
        raise ConfigError(f"(top level): expected a mapping, got {type(data).__name__}")
    problems = [
        f"{k}: is not a known setting (one of {', '.join(sorted(_TOP_KEYS))})"
        for k in sorted(set(data) - _TOP_KEYS)
    ]
    users = _parse_users(data.get("basic_auth_users"), problems)
    tls = _parse_tls(data.get("tls_server_config"), base_dir, problems)
    if problems:
        raise ConfigError("invalid web config:\n  " + "\n  ".join(problems), problems)
    return WebConfig(basic_auth_users=users, tls=tls)


def _parse_users(raw: Any, problems: list[str]) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.append("basic_auth_users: expected a mapping of user name to bcrypt hash")
        return {}
    users: dict[str, str] = {}
    for user, hashed in raw.items():
        if not isinstance(user, str) or not user or ":" in user:
            problems.append(f"basic_auth_users: {user!r} is not a valid user name")
        elif not isinstance(hashed, str) or not hashed.startswith(_BCRYPT_PREFIXES):
            # Never echo the value: it might be a plain-text password pasted by mistake.
            problems.append(
                f"basic_auth_users.{user}: is not a bcrypt hash ($2y$...); generate one with "
                "`htpasswd -nBC 10 \"\" | tr -d ':'`"
            )
        elif _cost(hashed) < MIN_BCRYPT_COST:
            problems.append(
                f"basic_auth_users.{user}: the bcrypt cost {_cost(hashed)} is below the minimum "
                f'{MIN_BCRYPT_COST}; regenerate it with `htpasswd -nBC {MIN_BCRYPT_COST} "" '
                "| tr -d ':'`"
            )
        else:
            users[user] = hashed
    return users


def _cost(hashed: str) -> int:
    """The cost factor of a ``$2y$NN$...`` hash (0 when it cannot be read)."""
    field = hashed[4:6]
    return int(field) if field.isdigit() else 0


def _parse_tls(raw: Any, base_dir: Path, problems: list[str]) -> TLSServerConfig | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        problems.append("tls_server_config: expected a mapping")
        return None
    for k in sorted(set(raw) - _TLS_KEYS):
        problems.append(
            f"tls_server_config.{k}: is not a known setting (one of {', '.join(sorted(_TLS_KEYS))})"
        )

    def path(key: str, required: bool) -> Path | None:
        value = raw.get(key)
        if value is None or value == "":
            if required:
                problems.append(f"tls_server_config.{key}: is required but missing")
            return None
        p = Path(str(value))
        p = p if p.is_absolute() else base_dir / p
        if not p.is_file():
            problems.append(f"tls_server_config.{key}: file {str(p)!r} does not exist")
        return p

    cert, key = path("cert_file", True), path("key_file", True)
    ca = path("client_ca_file", False)
    auth = str(
        raw.get("client_auth_type") or ("RequireAndVerifyClientCert" if ca else "NoClientCert")
    )
    if auth not in _CLIENT_AUTH:
        problems.append(
            f"tls_server_config.client_auth_type: {auth!r} is not one of {', '.join(_CLIENT_AUTH)}"
        )
    elif auth != "NoClientCert" and ca is None and "client_ca_file" not in raw:
        problems.append(f"tls_server_config.client_ca_file: is required for {auth}")
    version = str(raw.get("min_version") or "TLS12")
    if version not in _TLS_VERSIONS:
        problems.append(
            f"tls_server_config.min_version: {version!r} is not one of {', '.join(_TLS_VERSIONS)}"
        )
    if cert is None or key is None:
        return None
    return TLSServerConfig(cert, key, ca, auth, version)


def load_web_config(path: Path) -> WebConfig:
    """Read and validate a web config file; ConfigError names the file and the field."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the web config file: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    try:
        return parse_web_config(data, path.parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}", exc.problems) from None


class BasicAuth:
    """Checks ``Authorization: Basic`` headers against bcrypt hashes."""

    def __init__(self, users: Mapping[str, str]) -> None:
        """Check against ``users`` (user -> bcrypt hash); needs the ``bcrypt`` package."""
        try:
            import bcrypt
        except ImportError as exc:
            raise ConfigError(
                "basic_auth_users needs the 'bcrypt' package: pip install bcrypt"
            ) from exc
        weak = sorted(u for u, h in users.items() if _cost(h) < MIN_BCRYPT_COST)
        if weak:
            raise ConfigError(
                f"basic_auth_users: the bcrypt hashes of {', '.join(weak)} cost less than "
                f"{MIN_BCRYPT_COST}; regenerate them with `htpasswd -nBC {MIN_BCRYPT_COST}`"
            )
        self._bcrypt = bcrypt
        self._users = {u: h.encode("ascii") for u, h in users.items()}
        self._key = secrets.token_bytes(32)
        self._ok: set[bytes] = set()
        self._lock = threading.Lock()
        # Checked for unknown users too, at the highest cost in use, so a wrong user name
        # costs as much as a wrong password and the response time does not reveal which
        # users exist.
        self.dummy_cost = min(31, max([MIN_BCRYPT_COST, *(_cost(h) for h in users.values())]))
        self._dummy = bcrypt.hashpw(b"greendc", bcrypt.gensalt(rounds=self.dummy_cost))

    def check(self, header: str | None) -> bool:
        """True when ``header`` carries a configured user and their password."""
        if not header or header[:6].lower() != "basic ":
            return False
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        if not sep:
            return False
        pw = password.encode("utf-8")
        token = hmac.new(self._key, user.encode("utf-8") + b"\0" + pw, hashlib.sha256).digest()
        with self._lock:
            if token in self._ok:
                return True
        hashed = self._users.get(user)
        if len(pw) > _BCRYPT_MAX_BYTES:
            return False
        ok = self._bcrypt.checkpw(pw, hashed if hashed is not None else self._dummy)
        if not ok or hashed is None:
            return False
        with self._lock:
            if len(self._ok) >= _CACHE_MAX:
                self._ok.clear()
            self._ok.add(token)
        return True


def with_basic_auth(app: WSGIApp, users: Mapping[str, str]) -> WSGIApp:
    """Wrap a WSGI app so every request needs valid basic-auth credentials (else 401)."""
    auth = BasicAuth(users)

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if auth.check(environ.get("HTTP_AUTHORIZATION")):
            return app(environ, start_response)
        start_response(
            "401 Unauthorized",
            [
                ("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"'),
                ("Content-Type", "text/plain; charset=utf-8"),
            ],
        )
        return [b"Unauthorized\n"]

    return guarded


class _Handler(WSGIRequestHandler):
    """Quiet request handler; the TLS handshake runs here, in the request's own thread."""

    # A client that connects and says nothing must not hold a thread forever.
    timeout = 30.0

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(self.timeout)
            self.request.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged (one every few seconds would drown the agent's log)."""


class _Server(ThreadingWSGIServer):
    ssl_context: ssl.SSLContext | None = None
    max_concurrent = MAX_CONCURRENT_REQUESTS
    refused = 0  # connections closed because max_concurrent requests were being served

    def server_activate(self) -> None:
        self._slots = threading.BoundedSemaphore(self.max_concurrent)
        super().server_activate()

    def process_request(self, request: Any, client_address: Any) -> None:
        # ThreadingMixIn starts a thread per connection: without a bound, slow or idle
        # connections (each may hold its thread for the handler's timeout) pile up threads.
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        if self.ssl_context is not None:
            # No handshake here: this runs in the accepting thread, which a slow or
            # hostile client must not block.
            sock = self.ssl_context.wrap_socket(
                sock, server_side=True, do_handshake_on_connect=False
            )
        return sock, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Failed handshakes and dropped connections are the client's problem, not ours.
        log.debug("metrics request from %s failed", client_address, exc_info=True)


def make_http_server(
    host: str, port: int, app: WSGIApp, web_config: WebConfig | None = None
) -> WSGIServer:
    """A threading WSGI server bound to ``host:port`` (not yet serving), with the web config's
    basic auth and TLS applied. ``port`` 0 binds a free port."""
    web_config = web_config or WebConfig()
    if web_config.basic_auth_users:
        app = with_basic_auth(app, web_config.basic_auth_users)
    ctx = web_config.tls.ssl_context() if web_config.tls is not None else None
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]

    class Server(_Server):
        address_family = family
        ssl_context = ctx

    return make_server(str(sockaddr[0]), port, app, Server, handler_class=_Handler)


__all__ = [
    "MAX_CONCURRENT_REQUESTS",
    "MIN_BCRYPT_COST",
    "BasicAuth",
    "TLSServerConfig",
    "WebConfig",
    "load_web_config",
    "make_http_server",
    "parse_web_config",
    "with_basic_auth",
]
