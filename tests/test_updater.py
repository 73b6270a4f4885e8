"""The model-updater (tools/edge/updater.py) against real bundles: a tiny real ONNX model, real ONNX Runtime,
signed bundles in a ``file://`` store (and once in the S3 API server), crashes by real SIGKILL."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from prometheus_client import generate_latest

from tests.conftest import REPO
from tools.artifacts.bundle import publish_bundle
from tools.artifacts.release import Release, in_wave, make_release, render_no_release, render_release
from tools.core.errors import ConfigError
from tools.core.signing import generate_keypair, private_key_from_pem, public_key_from_pem
from tools.core.store import Store, open_store
from tools.edge.updater import (
    CRASH_ENV,
    CRASH_STEPS,
    CURRENT,
    MARKER,
    Updater,
    UpdaterError,
    build_parser,
    golden_check,
    prefetch_delay,
    run,
    run_from_args,
    serve_http,
)
from tools.kits.devservices import S3Endpoint
from tools.kits.fleetsim import build_model  # the tiny real ONNX model, shared with the simulator

INTERFACE = "sha256:" + hashlib.sha256(b"edgeops tiny test interface").hexdigest()
OTHER_INTERFACE = "sha256:" + hashlib.sha256(b"another interface").hexdigest()
LABELS = ["bearing_wear", "misalignment", "overheating", "electrical_fault", "lubrication_loss"]
WEIGHTS = {"v1.0": 0.1, "v1.1": 0.2, "v1.2": 0.3, "v1.3": 0.4}  # a different model per version


# --- a tiny real model and its bundle -----------------------------------------------------------------------


def build_golden(model: bytes, *, offset: float = 0.0) -> bytes:
    """golden.json (edgeops-golden/v1) from ONNX Runtime's own outputs; ``offset`` spoils the expectations."""
    rng = np.random.default_rng(7)
    feed = {
        "sensors": rng.normal(size=(3, 4, 128)).astype(np.float32),
        "product_id": np.array([1, 12, 2**40], dtype=np.int64),
        "recipe_id": np.array([3, 4, 5], dtype=np.int64),
        "asset_id": np.array([77, 78, 79], dtype=np.int64),
    }
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    (probs,) = session.run(["probabilities"], feed)
    golden = {
        "format": "edgeops-golden/v1",
        "atol": 1e-5,
        "inputs": {k: v.tolist() for k, v in feed.items()},
        "dtypes": {k: str(v.dtype) for k, v in feed.items()},
        "expected": {"probabilities": (probs + offset).tolist()},
    }
    return (json.dumps(golden) + "\n").encode()


@dataclass
class World:
    tmp: Path
    store_uri: str
    private_key: Ed25519PrivateKey
    public_key: Ed25519PublicKey
    public_key_path: Path
    models: dict[str, bytes] = field(default_factory=dict)
    releases: dict[str, Release] = field(default_factory=dict)

    @property
    def store(self) -> Store:
        return open_store(self.store_uri)

    def publish(
        self,
        version: str,
        *,
        golden_offset: float = 0.0,
        card_interface: str = INTERFACE,
        interface: str = INTERFACE,
        key: Ed25519PrivateKey | None = None,
    ) -> Release:
        model = build_model(WEIGHTS.get(version, 0.5))
        files = {
            "model.onnx": model,
            "golden.json": build_golden(model, offset=golden_offset),
            "model.json": json.dumps(
                {"version": version, "interface": card_interface, "labels": LABELS}
            ).encode(),
        }
        result = publish_bundle(self.store, version, files, self.private_key)
        release = make_release(
            key or self.private_key,
            version=version,
            interface=interface,
            bundle=result.uri,
            files=result.files,
            metrics={"accuracy": 0.9},
        )
        self.models[version] = model
        self.releases[version] = release
        return release

    def write_release(self, release: Release | None, path: Path | None = None) -> Path:
        path = path or self.tmp / "release.yaml"
        text = render_no_release("pilot") if release is None else render_release(release, ring="pilot")
        path.write_text(text)
        return path

    def updater(self, root: Path | None = None, **kwargs: Any) -> Updater:
        return Updater(root or self.tmp / "models", self.public_key, **kwargs)


@pytest.fixture(scope="module")
def keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Ed25519PrivateKey, Ed25519PublicKey, Path]:
    private, public = generate_keypair()
    path = tmp_path_factory.mktemp("keys") / "release-signing.pub"
    path.write_bytes(public)
    return private_key_from_pem(private, source="test"), public_key_from_pem(public, source="test"), path


@pytest.fixture
def world(tmp_path: Path, keypair: tuple[Ed25519PrivateKey, Ed25519PublicKey, Path]) -> World:
    w = World(tmp_path, f"file://{tmp_path / 'store'}", *keypair)
    for version in ("v1.0", "v1.1"):
        w.publish(version)
    return w


class CountingStore:
    """Wraps a store and counts reads, to prove a rollback downloads nothing."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.uri = inner.uri
        self.gets: list[str] = []

    def get(self, key: str) -> bytes:
        self.gets.append(key)
        return self.inner.get(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def counting_opener() -> tuple[Callable[[str], Store], list[CountingStore]]:
    opened: list[CountingStore] = []

    def opener(uri: str) -> Store:
        store = CountingStore(open_store(uri))
        opened.append(store)
        return store  # type: ignore[return-value]

    return opener, opened


def metrics_text(updater: Updater) -> str:
    return generate_latest(updater.registry).decode()


def served(root: Path) -> bytes:
    return (root / CURRENT / "model.onnx").read_bytes()


def leftovers(root: Path) -> list[str]:
    return sorted(
        e.name
        for e in root.iterdir()
        if e.name.endswith(".partial") or e.name.startswith((".trash-", "current.tmp-"))
    )


# --- installs, upgrades, pruning, rollback ------------------------------------------------------------------


def test_install_then_upgrade_switches_current(world: World) -> None:
    root = world.tmp / "models"
    with world.updater() as updater:
        assert updater.current_version() is None
        assert updater.ready() == (False, "not reconciled yet")
        first = updater.reconcile(world.releases["v1.0"])
        assert (first.outcome, first.version, first.reason) == ("installed", "v1.0", "")
        assert os.readlink(root / CURRENT) == "v1.0"  # relative: valid wherever the root is mounted
        assert served(root) == world.models["v1.0"]
        assert (root / "v1.0" / MARKER).is_file()
        assert updater.ready() == (True, "serving v1.0")

        assert updater.reconcile(world.releases["v1.0"]).outcome == "unchanged"
        second = updater.reconcile(world.releases["v1.1"])
        assert second.outcome == "installed"
        assert updater.current_version() == "v1.1"
        assert served(root) == world.models["v1.1"]
        assert updater.installed_versions() == ["v1.1", "v1.0"]
        text = metrics_text(updater)
        assert "edgeops_updater_installs_total 2.0" in text
        assert 'edgeops_updater_current_version_info{version="v1.1"} 1.0' in text
        assert 'edgeops_updater_desired_version_info{version="v1.1"} 1.0' in text
        assert "edgeops_updater_swap_seconds_count 2.0" in text
        assert "edgeops_updater_ready 1.0" in text
        assert leftovers(root) == []


def test_pruning_keeps_the_newest_k_versions(world: World) -> None:
    world.publish("v1.2")
    world.publish("v1.3")
    root = world.tmp / "models"
    with world.updater(keep=2) as updater:
        for version in ("v1.0", "v1.1", "v1.2", "v1.3"):
            assert updater.reconcile(world.releases[version]).outcome == "installed"
        assert updater.installed_versions() == ["v1.3", "v1.2"]
        assert sorted(p.name for p in root.iterdir() if p.name.startswith("v")) == ["v1.2", "v1.3"]
        # A rollback target counts as recent: back to v1.2, then forward to v1.0 (re-downloaded).
        assert updater.reconcile(world.releases["v1.2"]).outcome == "swapped_from_cache"
        assert updater.reconcile(world.releases["v1.0"]).outcome == "installed"
        assert updater.installed_versions() == ["v1.0", "v1.2"]


def test_rollback_is_a_swap_from_cache_with_zero_store_reads(world: World) -> None:
    opener, opened = counting_opener()
    root = world.tmp / "models"
    with world.updater(store_opener=opener) as updater:
        updater.reconcile(world.releases["v1.0"])
        updater.reconcile(world.releases["v1.1"])
        reads = sum(len(s.gets) for s in opened)
        assert reads == 6  # three files per version, nothing else (no listing, no SHA256SUMS)
        back = updater.reconcile(world.releases["v1.0"])
        assert back.outcome == "swapped_from_cache"
        assert sum(len(s.gets) for s in opened) == reads  # zero reads for the rollback
        assert served(root) == world.models["v1.0"]
        assert "edgeops_updater_cache_swaps_total 1.0" in metrics_text(updater)
        assert updater.ready() == (True, "serving v1.0")


def test_a_damaged_cached_copy_is_downloaded_again(world: World) -> None:
    root = world.tmp / "models"
    with world.updater() as updater:
        updater.reconcile(world.releases["v1.0"])
        updater.reconcile(world.releases["v1.1"])
        (root / "v1.0" / "model.onnx").write_bytes(b"bit rot")
        result = updater.reconcile(world.releases["v1.0"])
        assert result.outcome == "installed"
        assert served(root) == world.models["v1.0"]
        assert 'edgeops_updater_failures_total{reason="cache"} 1.0' in metrics_text(updater)


def test_a_damaged_current_model_is_repaired_after_a_restart(world: World) -> None:
    root = world.tmp / "models"
    with world.updater() as updater:
        updater.reconcile(world.releases["v1.0"])
    (root / "v1.0" / "golden.json").write_bytes(b"{}")
    with world.updater() as restarted:
        result = restarted.reconcile(world.releases["v1.0"])
        assert result.outcome == "installed"
        assert restarted.ready() == (True, "serving v1.0")
        assert json.loads((root / "v1.0" / "golden.json").read_bytes())["format"] == "edgeops-golden/v1"
        assert leftovers(root) == []


# --- refusals: the node keeps its model and says why --------------------------------------------------------


def assert_refused(
    updater: Updater, release: Release, reason: str, kept: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    root = updater.root
    with caplog.at_level(logging.ERROR, logger="edgeops.updater"):
        result = updater.reconcile(release)
    assert (result.outcome, result.reason) == ("refused", reason), result.detail
    assert updater.current_version() == "v1.0"
    assert served(root) == kept
    assert not (root / release.version).exists()
    assert leftovers(root) == []
    assert f'edgeops_updater_failures_total{{reason="{reason}"}} 1.0' in metrics_text(updater)
    assert "edgeops_updater_ready 0.0" in metrics_text(updater)
    ready, why = updater.ready()
    assert not ready and f"refused ({reason})" in why
    record = caplog.records[-1]
    assert record.fields["reason"] == reason  # type: ignore[attr-defined]
    assert record.fields["current"] == "v1.0"  # type: ignore[attr-defined]


def test_tampered_object_in_the_store_is_refused(world: World, caplog: pytest.LogCaptureFixture) -> None:
    stored = world.tmp / "store" / "models" / "v1.1" / "model.onnx"
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01
    stored.write_bytes(bytes(data))
    with world.updater() as updater:
        updater.reconcile(world.releases["v1.0"])
        assert_refused(updater, world.releases["v1.1"], "digest", world.models["v1.0"], caplog)
        assert "changed or damaged in the store" in caplog.records[-1].fields["error"]  # type: ignore[attr-defined]


def test_release_signed_by_another_key_is_refused_before_any_download(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    stranger = private_key_from_pem(generate_keypair()[0], source="stranger")
    forged = world.publish("v1.2", key=stranger)
    opener, opened = counting_opener()
    with world.updater(store_opener=opener) as updater:
        updater.reconcile(world.releases["v1.0"])
        before = sum(len(s.gets) for s in opened)
        assert_refused(updater, forged, "signature", world.models["v1.0"], caplog)
        assert sum(len(s.gets) for s in opened) == before


def test_unaccepted_interface_is_refused(world: World, caplog: pytest.LogCaptureFixture) -> None:
    other = world.publish("v2.0", interface=OTHER_INTERFACE, card_interface=OTHER_INTERFACE)
    with world.updater(accept_interfaces=[INTERFACE]) as updater:
        updater.reconcile(world.releases["v1.0"])
        assert_refused(updater, other, "interface", world.models["v1.0"], caplog)


def test_a_release_whose_bundle_has_another_interface_is_refused(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    # The release claims the accepted interface, but the model card in the bundle says otherwise.
    mislabelled = world.publish("v1.2", card_interface=OTHER_INTERFACE)
    with world.updater(accept_interfaces=[INTERFACE]) as updater:
        updater.reconcile(world.releases["v1.0"])
        assert_refused(updater, mislabelled, "interface", world.models["v1.0"], caplog)


def test_golden_mismatch_is_refused(world: World, caplog: pytest.LogCaptureFixture) -> None:
    # Digests and signature are right (the release is made from the published bundle): only the health
    # check can notice that the model does not reproduce its expected outputs.
    spoiled = world.publish("v1.2", golden_offset=0.01)
    with world.updater() as updater:
        updater.reconcile(world.releases["v1.0"])
        assert_refused(updater, spoiled, "golden", world.models["v1.0"], caplog)
        assert "differs from golden.json" in caplog.records[-1].fields["error"]  # type: ignore[attr-defined]


def test_golden_check_reports_a_model_that_does_not_load(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"not a model")
    (tmp_path / "golden.json").write_bytes(build_golden(build_model(0.1)))
    with pytest.raises(UpdaterError, match="does not load") as info:
        golden_check(tmp_path)
    assert info.value.reason == "golden"


def test_no_release_idles_ready_and_keeps_the_model(world: World) -> None:
    root = world.tmp / "models"
    with world.updater() as updater:
        result = updater.reconcile(None)
        assert (result.outcome, result.version) == ("idle", None)
        assert updater.ready() == (True, "no release: idling (current: no model)")
        updater.reconcile(world.releases["v1.0"])
        assert updater.reconcile(None).outcome == "idle"
        assert updater.ready() == (True, "no release: idling (current: v1.0)")
        assert served(root) == world.models["v1.0"]
        assert 'edgeops_updater_desired_version_info{version="none"} 1.0' in metrics_text(updater)


def test_restart_deletes_partial_and_unmarked_folders(world: World) -> None:
    root = world.tmp / "models"
    with world.updater() as updater:
        updater.reconcile(world.releases["v1.0"])
    (root / "v1.1.partial").mkdir()
    (root / "v1.1.partial" / "model.onnx").write_bytes(world.models["v1.1"])
    (root / "v1.2").mkdir()  # renamed but never marked: cannot happen by our hand, must not be trusted
    (root / "v1.2" / "model.onnx").write_bytes(b"x")
    (root / ".trash-v0.9-abcd").mkdir()
    os.symlink("v1.1", root / "current.tmp-12345")
    (root / "lost+found").mkdir()  # not ours: left alone
    with world.updater() as restarted:
        assert sorted(p.name for p in root.iterdir()) == [".updater.lock", "current", "lost+found", "v1.0"]
        assert restarted.reconcile(world.releases["v1.0"]).outcome == "unchanged"


def test_only_one_updater_per_root(world: World) -> None:
    with world.updater(), pytest.raises(UpdaterError, match="another model-updater holds"):
        world.updater(lock_timeout=0.2)


# --- readers never see a missing model ----------------------------------------------------------------------


def test_a_reader_sees_no_failure_during_1000_swaps(world: World) -> None:
    root = world.tmp / "models"
    models = {world.models["v1.0"], world.models["v1.1"]}
    stop = threading.Event()
    counts = {"reads": 0, "failures": 0}
    errors: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                with open(root / CURRENT / "model.onnx", "rb") as handle:
                    data = handle.read()
                if data not in models:
                    raise ValueError("read a model that is neither version")
                counts["reads"] += 1
            except (OSError, ValueError) as exc:
                counts["failures"] += 1
                errors.append(repr(exc))

    with world.updater() as updater:
        updater.reconcile(world.releases["v1.0"])
        updater.reconcile(world.releases["v1.1"])
        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        outcomes = set()
        swap_times = []
        try:
            for i in range(1000):
                result = updater.reconcile(world.releases["v1.0" if i % 2 == 0 else "v1.1"])
                outcomes.add(result.outcome)
                swap_times.append(result.seconds)
        finally:
            stop.set()
            thread.join(10)
        assert outcomes == {"swapped_from_cache"}
        assert "edgeops_updater_cache_swaps_total 1000.0" in metrics_text(updater)
    assert counts["failures"] == 0, errors[:5]
    assert counts["reads"] > 1000
    assert float(np.median(swap_times)) < 0.05  # a cached rollback, health check included


# --- crash matrix: SIGKILL at every step, then restart ------------------------------------------------------

BEFORE_SWAP = {"during_download", "after_partial_download", "after_verify", "after_golden", "after_rename",
               "after_swap_link"}  # fmt: skip
CASES = [
    (step, had_model)
    for step in CRASH_STEPS
    for had_model in (True, False)
    if not (step == "during_prune" and not had_model)
]  # fmt: skip  (a first install prunes nothing)


def run_updater(
    world: World, release_file: Path, root: Path, crash_at: str | None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if crash_at:
        env[CRASH_ENV] = crash_at
    command = [sys.executable, "-m", "tools.edge.updater", "run", "--once", "--log-json", "--keep", "1",
               "--release", str(release_file), "--root", str(root),
               "--public-key", str(world.public_key_path), "--accept-interface", INTERFACE]  # fmt: skip
    return subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def assert_consistent(world: World, root: Path, allowed: set[str | None]) -> str | None:
    """`current` resolves to a complete version in ``allowed`` whose model is intact (or is absent)."""
    if not os.path.lexists(root / CURRENT):
        assert None in allowed, "the node lost its model"
        return None
    target = os.readlink(root / CURRENT)
    assert target in allowed
    assert (root / target / MARKER).is_file(), f"current points at an incomplete version {target}"
    assert served(root) == world.models[target]
    return target


@pytest.mark.parametrize(("step", "had_model"), CASES)
def test_sigkill_at_every_step_leaves_a_consistent_node(world: World, step: str, had_model: bool) -> None:
    root = world.tmp / "models"
    old = "v1.0" if had_model else None
    if had_model:
        with world.updater() as updater:
            updater.reconcile(world.releases["v1.0"])
    release_file = world.write_release(world.releases["v1.1"])

    crashed = run_updater(world, release_file, root, step)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert f'"step": "{step}"' in crashed.stderr
    expected = old if step in BEFORE_SWAP else "v1.1"
    assert assert_consistent(world, root, {old, "v1.1"}) == expected

    rerun = run_updater(world, release_file, root, None)
    assert rerun.returncode == 0, rerun.stderr
    assert assert_consistent(world, root, {"v1.1"}) == "v1.1"
    assert leftovers(root) == []
    assert sorted(p.name for p in root.iterdir() if p.name.startswith("v")) == ["v1.1"]  # keep 1


def test_sigkill_leftovers_are_never_taken_for_a_version(world: World) -> None:
    # Killed after the health check, before the marker: the files are all there, and still not a version.
    release_file = world.write_release(world.releases["v1.0"])
    root = world.tmp / "models"
    assert run_updater(world, release_file, root, "after_golden").returncode == -signal.SIGKILL
    assert (root / "v1.0.partial" / "model.onnx").read_bytes() == world.models["v1.0"]
    with world.updater() as updater:
        assert updater.installed_versions() == []
        assert not (root / "v1.0.partial").exists()


# --- the real S3 API, HTTP endpoints, the reload hook, the loop ---------------------------------------------


def test_install_from_the_s3_api_server(world: World, s3_env: S3Endpoint, s3_bucket: str) -> None:
    world.store_uri = f"s3://{s3_bucket}/edge"
    release = world.publish("v1.0")
    assert release.bundle == f"s3://{s3_bucket}/edge/models/v1.0/"
    root = world.tmp / "s3-node"
    with world.updater(root) as updater:
        assert updater.reconcile(release).outcome == "installed"
        assert served(root) == world.models["v1.0"]


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - http://127.0.0.1 only
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_ready_and_metrics_over_http(world: World) -> None:
    stored = world.tmp / "store" / "models" / "v1.1" / "golden.json"
    stored.write_bytes(stored.read_bytes().replace(b"edgeops-golden/v1", b"edgeops-golden/v0"))
    with world.updater() as updater:
        server = serve_http(updater, "127.0.0.1", 0)
        base = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            assert http_get(f"{base}/ready") == (503, "not reconciled yet\n")
            updater.reconcile(world.releases["v1.0"])
            assert http_get(f"{base}/ready") == (200, "serving v1.0\n")
            updater.reconcile(world.releases["v1.1"])
            status, body = http_get(f"{base}/ready")
            assert status == 503
            assert body.startswith("current is v1.0, desired v1.1: refused (digest)")
            status, text = http_get(f"{base}/metrics")
            assert status == 200
            assert 'edgeops_updater_failures_total{reason="digest"} 1.0' in text
            assert 'edgeops_updater_current_version_info{version="v1.0"} 1.0' in text
            assert 'edgeops_updater_desired_version_info{version="v1.1"} 1.0' in text
            assert "edgeops_updater_last_reconcile_timestamp_seconds" in text
            assert http_get(f"{base}/healthz") == (200, "alive\n")
            assert http_get(f"{base}/nope")[0] == 404
        finally:
            server.shutdown()
            server.server_close()


@pytest.fixture
def reload_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/reload", received
    server.shutdown()
    server.server_close()


def test_reload_hook_is_posted_after_a_swap(
    world: World, reload_server: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = reload_server
    root = world.tmp / "models"
    with world.updater(reload_url=url) as updater:
        updater.reconcile(world.releases["v1.0"])
        updater.reconcile(world.releases["v1.0"])  # unchanged: no reload
        updater.reconcile(world.releases["v1.1"])
    assert received == [
        {"version": "v1.0", "path": str(root / CURRENT)},
        {"version": "v1.1", "path": str(root / CURRENT)},
    ]


def test_a_failing_reload_hook_is_counted_and_the_swap_stays(world: World) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with world.updater(reload_url=f"http://user:secret@127.0.0.1:{port}/reload", reload_timeout=2) as updater:
        assert updater.reconcile(world.releases["v1.0"]).outcome == "installed"
        assert updater.current_version() == "v1.0"
        assert 'edgeops_updater_failures_total{reason="reload"} 1.0' in metrics_text(updater)
    with pytest.raises(ConfigError, match="not http"):
        world.updater(reload_url="file:///etc/passwd")
    with pytest.raises(ConfigError, match="accepted interface"):
        world.updater(accept_interfaces=["sha256:nope"])


def test_run_once_exit_codes(world: World) -> None:
    root = world.tmp / "models"
    common: dict[str, Any] = {"root": root, "public_key_path": world.public_key_path, "once": True}
    assert run(release_path=world.write_release(None), **common) == 0
    assert not os.path.lexists(root / CURRENT)
    assert run(release_path=world.write_release(world.releases["v1.0"]), **common) == 0
    assert served(root) == world.models["v1.0"]
    bad = world.tmp / "bad.yaml"
    bad.write_text("version: v1.1\n")
    assert run(release_path=bad, **common) == 1
    assert (
        run(
            release_path=world.write_release(world.releases["v1.1"]),
            accept_interfaces=[OTHER_INTERFACE],
            **common,
        )
        == 1
    )
    assert served(root) == world.models["v1.0"]


def test_the_loop_follows_the_release_file(world: World) -> None:
    root = world.tmp / "models"
    release_file = world.write_release(None)
    stop = threading.Event()
    codes: list[int] = []
    thread = threading.Thread(
        target=lambda: codes.append(
            run(
                release_path=release_file,
                root=root,
                public_key_path=world.public_key_path,
                interval=0.02,
                stop=stop,
            )
        ),
        daemon=True,
    )
    thread.start()

    def wait_for(version: str) -> None:
        deadline = time.monotonic() + 30
        while not (os.path.lexists(root / CURRENT) and os.readlink(root / CURRENT) == version):
            assert time.monotonic() < deadline, f"never reached {version}"
            time.sleep(0.02)

    try:
        world.write_release(world.releases["v1.0"])
        wait_for("v1.0")
        world.write_release(world.releases["v1.1"])
        wait_for("v1.1")
    finally:
        stop.set()
        thread.join(30)
    assert codes == [0]


def test_the_agent_process_serves_http_and_stops_on_sigterm(world: World) -> None:
    release_file = world.write_release(world.releases["v1.0"])
    root = world.tmp / "models"
    command = [sys.executable, "-m", "tools.edge.updater", "run", "--log-json", "--interval", "0.05",
               "--listen", "127.0.0.1:0", "--release", str(release_file), "--root", str(root),
               "--public-key", str(world.public_key_path)]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV} | {"NODE_NAME": "edge-001"}
    with subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True) as process:
        try:
            assert process.stderr is not None
            address = None
            lines = []
            while address is None:
                line = process.stderr.readline()
                assert line, "".join(lines)
                lines.append(line)
                record = json.loads(line)
                address = record.get("address")
            deadline = time.monotonic() + 30
            while http_get(f"http://{address}/ready") != (200, "serving v1.0\n"):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert "edgeops_updater_installs_total 1.0" in http_get(f"http://{address}/metrics")[1]
            process.send_signal(signal.SIGTERM)
            assert process.wait(30) == 0
            rest = [json.loads(line) for line in process.stderr.read().splitlines()]
            records = [json.loads(line) for line in lines] + rest
            assert any(r["msg"] == "reconcile: installed" and r["node"] == "edge-001" for r in records)
            assert records[-1]["msg"] == "stopping"
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


# --- waves: the node decides its own wave; prefetch, then swap from cache ---------------------------------


def wave_of(world: World, target: str, previous: str, percent: float) -> Release:
    return dataclasses.replace(
        world.releases[target], previous=world.releases[previous], rollout_percent=percent
    )


def node_names(percent: float) -> tuple[str, str]:
    """A node name inside a wave of ``percent`` and one outside it (by the release file's own hash rule)."""
    names = [f"edge-{i:04d}" for i in range(1000)]
    return next(n for n in names if in_wave(n, percent)), next(n for n in names if not in_wave(n, percent))


def test_outside_the_wave_a_node_runs_previous_and_prefetches_the_target(world: World) -> None:
    inside, outside = node_names(5)
    announced = wave_of(world, "v1.1", "v1.0", 5)
    opener, stores = counting_opener()
    with world.updater(world.tmp / "out", node=outside, store_opener=opener) as updater:
        result = updater.reconcile(announced)  # an empty cache: it installs previous, not nothing
        assert (result.outcome, result.version) == ("installed", "v1.0")
        assert served(world.tmp / "out") == world.models["v1.0"]
        assert updater.ready() == (True, "serving v1.0")
        assert "v1.1" in updater.installed_versions()  # downloaded, verified, health-checked, not swapped
        assert "edgeops_updater_prefetches_total 1.0" in metrics_text(updater)
        reads = sum(len(s.gets) for s in stores)
        assert updater.reconcile(announced).outcome == "unchanged"  # nothing new: no more reads
        assert sum(len(s.gets) for s in stores) == reads

        # Its wave comes (the next wave's PR): a swap from the cache, with no store read, like a rollback.
        result = updater.reconcile(wave_of(world, "v1.1", "v1.0", 100))
        assert (result.outcome, result.version) == ("swapped_from_cache", "v1.1")
        assert sum(len(s.gets) for s in stores) == reads
        assert result.seconds < 0.05
        assert served(world.tmp / "out") == world.models["v1.1"]

    with world.updater(world.tmp / "in", node=inside, store_opener=opener) as updater:
        result = updater.reconcile(announced)
        assert (result.outcome, result.version) == ("installed", "v1.1")
        assert updater.installed_versions() == ["v1.1"]  # inside the wave nothing fetches previous


def test_a_target_that_fails_its_prefetch_costs_the_node_outside_the_wave_nothing(world: World) -> None:
    _, outside = node_names(5)
    bad = world.publish("v1.2", golden_offset=0.5)
    announced = dataclasses.replace(bad, previous=world.releases["v1.0"], rollout_percent=5.0)
    with world.updater(node=outside) as updater:
        result = updater.reconcile(announced)
        assert (result.outcome, result.version) == ("installed", "v1.0")
        assert updater.ready() == (True, "serving v1.0")
        assert updater.installed_versions() == ["v1.0"]
        assert 'edgeops_updater_failures_total{reason="golden"} 1.0' in metrics_text(updater)


def test_the_agent_reads_its_wave_from_node_name(world: World) -> None:
    _, outside = node_names(50)
    release_file = world.write_release(wave_of(world, "v1.1", "v1.0", 50))
    root = world.tmp / "agent"
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV} | {"NODE_NAME": outside}
    command = [sys.executable, "-m", "tools.edge.updater", "run", "--once", "--release", str(release_file),
               "--root", str(root), "--public-key", str(world.public_key_path)]  # fmt: skip
    # The default spread (300 s) holds the prefetch back: a one-shot run ends before its delay.
    done = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert os.readlink(root / CURRENT) == "v1.0" and not (root / "v1.1").exists()
    done = subprocess.run(
        [*command, "--prefetch-spread", "0"], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert os.readlink(root / CURRENT) == "v1.0" and (root / "v1.1" / "model.onnx").is_file()


# --- swap windows: a forward swap waits for the ring's window, a rollback never does -----------------------

WED = datetime(2026, 6, 10)  # a Wednesday, far from any daylight-saving change
NIGHT = "22:00-04:00"


class Clock:
    """The updater's clock (epoch seconds), set in this process's local time as a node reads its windows."""

    def __init__(self, at: datetime) -> None:
        self.now = at.timestamp()

    def __call__(self) -> float:
        return self.now

    def set(self, at: datetime) -> None:
        self.now = at.timestamp()


def windowed(release: Release, *windows: str) -> Release:
    """``release`` for the whole ring, with swap windows (as `edgeops promote` writes them)."""
    return dataclasses.replace(release, rollout_percent=100.0, swap_windows=windows)


def reads_of(stores: list[CountingStore], version: str) -> int:
    return sum(key.startswith(f"models/{version}/") for store in stores for key in store.gets)


def test_a_newer_release_waits_for_the_window_then_swaps_from_the_cache(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(WED.replace(hour=14))
    opener, stores = counting_opener()
    root = world.tmp / "models"
    with world.updater(clock=clock, store_opener=opener) as updater:
        # A node that serves nothing has nothing to disturb: it installs at once, window or not.
        assert updater.reconcile(windowed(world.releases["v1.0"], NIGHT)).outcome == "installed"
        with caplog.at_level(logging.INFO, logger="edgeops.updater"):
            first = updater.reconcile(windowed(world.releases["v1.1"], NIGHT))
            clock.set(WED.replace(hour=21, minute=59))
            again = updater.reconcile(windowed(world.releases["v1.1"], NIGHT))
        assert (first.outcome, first.version, first.reason, first.ok) == ("waiting", "v1.1", "", True)
        assert first.detail == "v1.1 waits for a swap window (22:00-04:00); serving v1.0"
        assert again.outcome == "waiting"
        assert served(root) == world.models["v1.0"]
        assert updater.waiting_for_window == "v1.1"
        # Ready: it serves what it should until the window opens, and says what waits.
        assert updater.ready() == (True, "serving v1.0; v1.1 waits for a swap window (22:00-04:00)")
        server = serve_http(updater, "127.0.0.1", 0)
        try:
            status = http_get(f"http://127.0.0.1:{server.server_address[1]}/ready")
        finally:
            server.shutdown()
            server.server_close()
        assert status == (200, "serving v1.0; v1.1 waits for a swap window (22:00-04:00)\n")
        assert updater.prefetched("v1.1") and reads_of(stores, "v1.1") == 3  # cached, verified, not swapped
        text = metrics_text(updater)
        assert "edgeops_updater_waiting_for_window 1.0" in text
        assert "edgeops_updater_ready 1.0" in text
        assert 'edgeops_updater_desired_version_info{version="v1.1"} 1.0' in text
        waits = [r for r in caplog.records if r.getMessage().startswith("newer release waits")]
        assert len(waits) == 1  # said once, not every loop
        assert waits[0].fields == {"version": "v1.1", "current": "v1.0", "windows": NIGHT}  # type: ignore[attr-defined]

        clock.set(WED.replace(hour=22))  # the window opens: a swap from the cache, no download
        opened = updater.reconcile(windowed(world.releases["v1.1"], NIGHT))
        assert (opened.outcome, opened.version) == ("swapped_from_cache", "v1.1")
        assert reads_of(stores, "v1.1") == 3
        assert served(root) == world.models["v1.1"]
        assert updater.ready() == (True, "serving v1.1")
        assert updater.waiting_for_window is None
        assert "edgeops_updater_waiting_for_window 0.0" in metrics_text(updater)


def test_a_rollback_is_never_held_by_a_window(world: World) -> None:
    world.publish("v1.2")
    clock = Clock(WED.replace(hour=14))  # every window below is closed
    with world.updater(clock=clock, keep=2) as updater:
        for version in ("v1.0", "v1.1", "v1.2"):
            updater.reconcile(world.releases[version])
        assert updater.installed_versions() == ["v1.2", "v1.1"]
        back = updater.reconcile(windowed(world.releases["v1.1"], NIGHT))
        assert (back.outcome, updater.current_version()) == ("swapped_from_cache", "v1.1")
        further = updater.reconcile(windowed(world.releases["v1.0"], NIGHT, "Sat,Sun 00:00-24:00"))
        assert (further.outcome, updater.current_version()) == ("installed", "v1.0")  # older, not cached
        assert updater.ready() == (True, "serving v1.0")
        forward = updater.reconcile(windowed(world.releases["v1.1"], NIGHT))
        assert (forward.outcome, updater.current_version()) == ("waiting", "v1.0")


def test_a_node_outside_its_window_keeps_previous_when_its_wave_comes(world: World) -> None:
    _, outside = node_names(5)
    clock = Clock(WED.replace(hour=12, minute=30))
    wave = dataclasses.replace(wave_of(world, "v1.1", "v1.0", 5), swap_windows=("Mon-Fri 12:00-13:00",))
    with world.updater(node=outside, clock=clock) as updater:
        assert updater.reconcile(wave).outcome == "installed"  # previous: older than nothing, not held
        assert updater.prefetched("v1.1") and updater.current_version() == "v1.0"
        clock.set(WED.replace(hour=13))
        next_wave = dataclasses.replace(wave, rollout_percent=100.0)
        assert updater.reconcile(next_wave).outcome == "waiting"
        assert updater.ready() == (True, "serving v1.0; v1.1 waits for a swap window (Mon-Fri 12:00-13:00)")
        clock.set(WED.replace(hour=14) + timedelta(days=1))  # Thursday, 14:00: closed
        assert updater.reconcile(next_wave).outcome == "waiting"
        clock.set(WED.replace(hour=12) + timedelta(days=1))
        assert updater.reconcile(next_wave).outcome == "swapped_from_cache"


def test_after_a_restart_a_waiting_node_checks_its_model_and_a_broken_one_does_not_wait(
    world: World,
) -> None:
    clock = Clock(WED.replace(hour=14))
    root = world.tmp / "models"
    plain = windowed(world.releases["v1.1"], NIGHT)  # the node's model is not in the file: its marker
    wave = dataclasses.replace(plain, previous=world.releases["v1.0"])  # checks it; here the signed previous
    with world.updater(clock=clock) as updater:
        updater.reconcile(world.releases["v1.0"])
    for release in (plain, wave):
        with world.updater(clock=clock) as restarted:
            assert restarted.ready() == (False, "not reconciled yet")
            assert restarted.reconcile(release).outcome == "waiting"
            assert restarted.ready() == (True, "serving v1.0; v1.1 waits for a swap window (22:00-04:00)")
    (root / "v1.0" / "model.onnx").write_bytes(b"bit rot")
    with world.updater(clock=clock) as restarted:
        result = restarted.reconcile(plain)  # a broken model is no reason to wait: nothing to disturb
        assert (result.outcome, restarted.current_version()) == ("swapped_from_cache", "v1.1")
        assert 'edgeops_updater_failures_total{reason="digest"} 1.0' in metrics_text(restarted)
        assert restarted.ready() == (True, "serving v1.1")


def test_the_agent_reads_windows_in_the_pods_time_zone(world: World) -> None:
    now = datetime.now(UTC)
    window = f"{now - timedelta(hours=1):%H:%M}-{now + timedelta(hours=1):%H:%M}"  # open now, in UTC
    root = world.tmp / "agent"
    with world.updater(root) as updater:
        updater.reconcile(world.releases["v1.0"])
    release_file = world.write_release(windowed(world.releases["v1.1"], window))
    command = [sys.executable, "-m", "tools.edge.updater", "run", "--once", "--log-json",
               "--prefetch-spread", "0", "--release", str(release_file), "--root", str(root),
               "--public-key", str(world.public_key_path)]  # fmt: skip

    def agent(tz: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != CRASH_ENV} | {"TZ": tz}
        return subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False
        )

    east = agent("EAST-12")  # POSIX TZ, no time zone database needed: twelve hours ahead of UTC
    assert east.returncode == 0, east.stderr
    assert os.readlink(root / CURRENT) == "v1.0" and (root / "v1.1" / MARKER).is_file()
    messages = [json.loads(line)["msg"] for line in east.stderr.splitlines()]
    assert "newer release waits for a swap window; keeping the current model" in messages
    utc = agent("UTC0")
    assert utc.returncode == 0, utc.stderr
    assert os.readlink(root / CURRENT) == "v1.1"


# --- the prefetch spread: a fleet does not hit the store at once -------------------------------------------


def test_prefetch_delay_is_stable_and_uniform_over_the_spread() -> None:
    names = [f"edge-{i:04d}" for i in range(2000)]
    delays = [prefetch_delay(name, "v1.1", 300.0) for name in names]
    assert delays == [prefetch_delay(name, "v1.1", 300.0) for name in names]  # the same on every restart
    assert all(0 <= d < 300 for d in delays)
    assert abs(float(np.mean(delays)) - 150) < 15  # within 10 % of spread / 2
    counts, _ = np.histogram(delays, bins=10, range=(0, 300))
    assert counts.min() > 150 and counts.max() < 250, counts  # 200 expected in each tenth
    # Each release reshuffles the order: no node is always the last to be ready.
    other = [prefetch_delay(name, "v1.2", 300.0) for name in names]
    assert abs(float(np.corrcoef(delays, other)[0, 1])) < 0.1
    assert prefetch_delay("edge-0001", "v1.1", 600.0) == 2 * prefetch_delay("edge-0001", "v1.1", 300.0)
    assert prefetch_delay("edge-0001", "v1.1", 0) == 0.0
    assert 0 <= prefetch_delay("edge-0001", "v1.1", 1e-300) < 1e-300
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="prefetch spread"):
            prefetch_delay("edge-0001", "v1.1", bad)


def test_outside_the_wave_the_store_is_read_only_after_the_nodes_delay(world: World) -> None:
    names = [f"edge-{i:04d}" for i in range(1000)]
    outside = next(n for n in names if not in_wave(n, 5) and 60 < prefetch_delay(n, "v1.1", 600.0) < 540)
    delay = prefetch_delay(outside, "v1.1", 600.0)
    inside, _ = node_names(5)
    announced = wave_of(world, "v1.1", "v1.0", 5)
    clock = Clock(WED.replace(hour=9))
    seen = clock.now
    opener, stores = counting_opener()
    spread: dict[str, Any] = {"clock": clock, "prefetch_spread": 600.0, "store_opener": opener}
    with world.updater(world.tmp / "out", node=outside, **spread) as updater:
        assert updater.reconcile(announced).outcome == "installed"  # previous: the node's own, at once
        assert (reads_of(stores, "v1.0"), reads_of(stores, "v1.1")) == (3, 0)
        clock.now = seen + delay - 1
        assert updater.reconcile(announced).outcome == "unchanged"
        assert reads_of(stores, "v1.1") == 0 and not updater.prefetched("v1.1")
        clock.now = seen + delay
        assert updater.reconcile(announced).outcome == "unchanged"
        assert reads_of(stores, "v1.1") == 3 and updater.prefetched("v1.1")
        assert "edgeops_updater_prefetches_total 1.0" in metrics_text(updater)
    # Inside the wave the release is the node's own: a swap never waits for the spread.
    with world.updater(world.tmp / "in", node=inside, **spread) as updater:
        assert updater.reconcile(announced).outcome == "installed"
        assert updater.current_version() == "v1.1"


def test_a_node_waiting_for_a_window_spreads_its_prefetch_and_installs_when_the_window_opens_first(
    world: World,
) -> None:
    names = [f"edge-{i:04d}" for i in range(1000)]
    node = next(n for n in names if 400 < prefetch_delay(n, "v1.1", 600.0) < 590)
    clock = Clock(WED.replace(hour=21, minute=55))
    opener, stores = counting_opener()
    with world.updater(node=node, clock=clock, prefetch_spread=600.0, store_opener=opener) as updater:
        updater.reconcile(world.releases["v1.0"])
        assert updater.reconcile(windowed(world.releases["v1.1"], NIGHT)).outcome == "waiting"
        assert reads_of(stores, "v1.1") == 0
        clock.set(WED.replace(hour=22))  # 300 s later: the window opens before the node's delay is up
        assert updater.reconcile(windowed(world.releases["v1.1"], NIGHT)).outcome == "installed"
        assert reads_of(stores, "v1.1") == 3


def test_the_prefetch_spread_flag_and_argument(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    required = ["run", "--release", "r.yaml", "--root", "models", "--public-key", "k.pub"]
    assert build_parser().parse_args(required).prefetch_spread == 300.0
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    assert "--prefetch-spread SECONDS" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="--prefetch-spread -1"):
        run_from_args(build_parser().parse_args([*required, "--prefetch-spread", "-1"]))
    for bad in (-1.0, float("inf"), True):
        with pytest.raises(ConfigError, match="prefetch spread"):
            world.updater(prefetch_spread=bad)
