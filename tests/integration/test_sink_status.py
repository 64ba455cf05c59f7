"""Both InfluxDB sinks read an HTTP status the same way (one classifier, collector/sinks.py).

A real HTTP server on loopback answers every write with a chosen status and body; the v1
sink (urllib3) and the v2 sink (influxdb-client) must raise the same kind of error for it:
a refusal (the batch is moved aside) only when the batch itself is at fault, an outage
(the batch is kept and retried) for everything else.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from greendc._errors import SinkError, SinkUnavailable
from greendc.collector.sinks import (
    InfluxV1Sink,
    InfluxV2Sink,
    WriteStatus,
    classify_status,
)
from greendc.config import InfluxV1Settings, InfluxV2Settings
from greendc.model import Reading

pytestmark = pytest.mark.integration


class _Answer:
    status = 204
    body = b""


class _Handler(BaseHTTPRequestHandler):
    answer = _Answer()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(self.answer.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.answer.body)))
        self.end_headers()
        self.wfile.write(self.answer.body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # the test output stays quiet


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, _Answer]]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, name="status-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler.answer
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


BATCH = [Reading("sg1", "m1", "it", 1_764_374_400_000, {"power_w": 1.5})]

CASES = [
    (400, b'{"error":"unable to parse line"}', SinkError),
    (413, b'{"error":"request entity too large"}', SinkError),
    (422, b'{"code":"unprocessable entity"}', SinkError),
    (401, b'{"error":"authorization failed"}', SinkUnavailable),
    (403, b'{"error":"forbidden"}', SinkUnavailable),
    (404, b'{"error":"database not found: \\"x\\""}', SinkUnavailable),
    (404, b"404 page not found", SinkUnavailable),  # a wrong path: keep the batch
    (405, b"method not allowed", SinkUnavailable),
    (429, b'{"error":"too many requests"}', SinkUnavailable),
    (500, b'{"error":"timeout"}', SinkUnavailable),
    (503, b"service unavailable", SinkUnavailable),
]


@pytest.mark.parametrize(("status", "body", "kind"), CASES)
def test_v1_and_v2_sinks_classify_a_status_alike(
    server: tuple[str, _Answer], status: int, body: bytes, kind: type[Exception]
) -> None:
    url, answer = server
    answer.status, answer.body = status, body
    v1 = InfluxV1Sink(InfluxV1Settings(url=url, db="x"))
    v2 = InfluxV2Sink(
        InfluxV2Settings.model_validate({"url": url, "org": "o", "bucket": "b", "token": "t"})
    )
    try:
        for sink in (v1, v2):
            with pytest.raises((SinkError, SinkUnavailable)) as info:
                sink.write(BATCH)
            # SinkUnavailable subclasses SinkError: the exact type is what the pipeline acts on.
            assert type(info.value) is kind, (sink.name, status, info.value)
            assert str(status) in str(info.value) or "does not exist" in str(info.value)
    finally:
        v1.close()
        v2.close()
    answer.status, answer.body = 204, b""


def test_both_sinks_store_on_204(server: tuple[str, _Answer]) -> None:
    url, answer = server
    answer.status, answer.body = 204, b""
    v1 = InfluxV1Sink(InfluxV1Settings(url=url, db="x"))
    v2 = InfluxV2Sink(
        InfluxV2Settings.model_validate({"url": url, "org": "o", "bucket": "b", "token": "t"})
    )
    try:
        v1.write(BATCH)
        v2.write(BATCH)
    finally:
        v1.close()
        v2.close()


def test_the_classification_table() -> None:
    assert classify_status(204) is WriteStatus.STORED
    assert classify_status(400) is WriteStatus.REFUSED
    assert classify_status(404, "database not found: x") is WriteStatus.NO_DATABASE
    assert classify_status(404, "page not found") is WriteStatus.UNAVAILABLE
    assert classify_status(401) is WriteStatus.CREDENTIALS
    assert classify_status(0) is WriteStatus.UNAVAILABLE  # no status at all
