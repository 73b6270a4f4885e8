"""A node whose clock is off: S3 refuses its signed requests with 403 RequestTimeTooSkewed, and the
model-updater reports that as its own failure reason, ``clock_skew``, saying by how much the clock is off.

moto's server does not check the request time, so the store here is a fake, named as such: a stdlib HTTP
server that answers every request the way S3 answers a request signed too far from its own time (the
documented error format, https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html: 403, an XML
``<Error>`` with ``Code``, ``Message``, ``RequestTime``, ``ServerTime``, ``MaxAllowedSkewMilliseconds``;
MinIO answers the same code and status, minio/minio cmd/api-errors.go). The updater reaches it through real
boto3, configured only by the standard AWS environment, as on a node.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import generate_latest

from tests.test_updater import INTERFACE, build_golden
from tools.artifacts.bundle import publish_bundle
from tools.artifacts.release import Release, make_release
from tools.core.signing import generate_keypair, private_key_from_pem
from tools.core.store import open_store
from tools.edge.updater import CURRENT, Updater
from tools.kits.fleetsim import build_model


@dataclass
class FakeS3:
    """What the fake answers: S3's error ``code`` (403), its clock ``offset`` from ours, and whether the
    error body carries the times (``times``) or only the ``Date`` header does."""

    url: str = ""
    code: str = "RequestTimeTooSkewed"
    offset: timedelta = timedelta(hours=2)
    times: bool = True
    requests: int = 0


def _error_xml(fake: FakeS3, request_time: str) -> bytes:
    server_now = datetime.now(UTC) + fake.offset
    message = {
        "RequestTimeTooSkewed": "The difference between the request time and the current time is too large.",
        "AccessDenied": "Access Denied",
    }[fake.code]
    times = (
        f"<RequestTime>{request_time}</RequestTime>"
        f"<ServerTime>{server_now:%Y-%m-%dT%H:%M:%SZ}</ServerTime>"
        "<MaxAllowedSkewMilliseconds>900000</MaxAllowedSkewMilliseconds>"
        if fake.times and fake.code == "RequestTimeTooSkewed"
        else ""
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{fake.code}</Code><Message>{message}</Message>{times}"
        "<RequestId>FAKE0000000000</RequestId><HostId>fake-s3-clock-skew</HostId></Error>"
    ).encode()


@pytest.fixture
def fake_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeS3]:
    fake = FakeS3()

    class Handler(BaseHTTPRequestHandler):
        def _refuse(self, body: bool) -> None:
            fake.requests += 1
            data = _error_xml(fake, self.headers.get("X-Amz-Date", ""))
            self.send_response(403)  # with the Date header of date_time_string: S3's clock
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

        def date_time_string(self, timestamp: float | None = None) -> str:
            return format_datetime(datetime.now(UTC) + fake.offset, usegmt=True)

        def do_GET(self) -> None:
            self._refuse(body=True)

        def do_HEAD(self) -> None:
            self._refuse(body=False)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", fake.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "fake-node-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-node-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Node:
    updater: Updater
    model: bytes  # what it serves
    target: Release  # the next release, in the (fake) S3 store


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    """A node serving v1.0 (installed from a file:// store); v1.1 is announced from s3://."""
    private_pem, _ = generate_keypair()
    key: Ed25519PrivateKey = private_key_from_pem(private_pem, source="test")
    model = build_model(0.1)
    files = {"model.onnx": model, "golden.json": build_golden(model)}
    published = publish_bundle(open_store(f"file://{tmp_path / 'store'}"), "v1.0", files, key)
    v10 = make_release(key, version="v1.0", interface=INTERFACE, bundle=published.uri, files=published.files)
    newer = build_model(0.2)
    entries = {
        name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        for name, data in {"model.onnx": newer, "golden.json": build_golden(newer)}.items()
    }
    bundle = "s3://context-edge-models/models/v1.1/"
    v11 = make_release(key, version="v1.1", interface=INTERFACE, bundle=bundle, files=entries)
    updater = Updater(tmp_path / "models", key.public_key(), node="edge-007")
    assert updater.reconcile(v10).outcome == "installed"
    try:
        yield Node(updater, model, v11)
    finally:
        updater.close()


def failures(updater: Updater, reason: str) -> float:
    value = updater.registry.get_sample_value("edgeops_updater_failures_total", {"reason": reason})
    return value or 0.0


def test_a_request_time_too_skewed_is_reported_as_clock_skew_with_the_size_of_the_skew(
    fake_s3: FakeS3, node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("ERROR", logger="edgeops.updater"):
        result = node.updater.reconcile(node.target)
    assert (result.outcome, result.reason) == ("failed", "clock_skew"), result
    assert fake_s3.requests == 1  # botocore does not retry it: only the node's clock can fix it
    # The node's clock is two hours behind the store's: the error's RequestTime against its ServerTime.
    assert re.search(r"this node's clock is 7[12]\d\d s \(2\.0 h\) behind the store's", result.detail), result
    assert "RequestTimeTooSkewed" in result.detail and "time sync" in result.detail
    assert failures(node.updater, "clock_skew") == 1 and failures(node.updater, "download") == 0
    assert (
        'edgeops_updater_failures_total{reason="clock_skew"} 1.0'
        in generate_latest(node.updater.registry).decode()
    )
    record = caplog.records[-1]
    assert record.fields["reason"] == "clock_skew"  # type: ignore[attr-defined]
    assert "behind the store's" in record.fields["error"]  # type: ignore[attr-defined]
    # The node keeps serving its model and says why it is not on the release.
    assert node.updater.current_version() == "v1.0"
    assert (node.updater.root / CURRENT / "model.onnx").read_bytes() == node.model
    ready, why = node.updater.ready()
    assert not ready and "failed (clock_skew)" in why


def test_without_times_in_the_error_the_date_header_sizes_the_skew(fake_s3: FakeS3, node: Node) -> None:
    fake_s3.times = False
    fake_s3.offset = -timedelta(minutes=30)  # this node's clock is half an hour ahead
    result = node.updater.reconcile(node.target)
    assert result.reason == "clock_skew", result
    assert re.search(r"clock is 1[78]\d\d s \(30\.0 min\) ahead of the store's", result.detail), result


def test_another_403_stays_a_download_failure(fake_s3: FakeS3, node: Node) -> None:
    fake_s3.code = "AccessDenied"
    result = node.updater.reconcile(node.target)
    assert (result.outcome, result.reason) == ("failed", "download"), result
    assert "AccessDenied" in result.detail and "clock" not in result.detail
    assert failures(node.updater, "clock_skew") == 0 and failures(node.updater, "download") == 1
