"""The reference inference service (tools/edge/inference.py) and the contract it follows
(docs/inference-contract.md): it serves the model ``<root>/current`` names, follows the updater's swaps
without a failed request, and reports every prediction with the version that produced it.

Everything here is real: three tiny ONNX models whose outputs differ by a per-version bias (so an output
says which model produced it), signed bundles in a ``file://`` store, the real :class:`Updater` installing
them and swapping ``current`` from its cache (temp link + rename + fsync), ONNX Runtime sessions, HTTP.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tools.artifacts.bundle import publish_bundle
from tools.artifacts.release import Release, make_release
from tools.cli import build_parser
from tools.core.errors import ConfigError
from tools.core.signing import generate_keypair, private_key_from_pem, public_key_from_pem
from tools.core.store import open_store
from tools.edge.inference import (
    InferenceInputError,
    InferenceService,
    NoModelError,
    Prediction,
    load_session,
    serve,
    serve_http,
)
from tools.edge.updater import CURRENT, Updater

VERSIONS = ("v1.0", "v1.1", "v1.2")
BIAS = {"v1.0": -2.0, "v1.1": 0.0, "v1.2": 2.0}  # the constant that makes each version's outputs its own
W = (np.arange(20, dtype=np.float32).reshape(4, 5) - 10) * 0.05
RNG = np.random.default_rng(11)
FEED: dict[str, np.ndarray[Any, Any]] = {
    "sensors": RNG.normal(size=(2, 4, 128)).astype(np.float32),
    "product_id": np.array([1, 2**40], dtype=np.int64),
    "recipe_id": np.array([3, 4], dtype=np.int64),
    "asset_id": np.array([77, 78], dtype=np.int64),
}


def build_model(bias: float) -> bytes:
    """probabilities = Sigmoid(mean_T(sensors) @ W + bias); the ids are inputs of the interface, unused."""
    nodes = [
        helper.make_node("ReduceMean", ["sensors"], ["mean"], axes=[2], keepdims=0),
        helper.make_node("MatMul", ["mean", "W"], ["logits"]),
        helper.make_node("Add", ["logits", "bias"], ["z"]),
        helper.make_node("Sigmoid", ["z"], ["probabilities"]),
    ]
    initializers = [
        numpy_helper.from_array(W, "W"),
        numpy_helper.from_array(np.array(bias, dtype=np.float32), "bias"),
    ]
    inputs = [helper.make_tensor_value_info("sensors", TensorProto.FLOAT, ["B", 4, 128])] + [
        helper.make_tensor_value_info(name, TensorProto.INT64, ["B"])
        for name in ("product_id", "recipe_id", "asset_id")
    ]
    outputs = [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["B", 5])]
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="test")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def expected(version: str, feed: dict[str, np.ndarray[Any, Any]] = FEED) -> np.ndarray[Any, Any]:
    """The version's outputs computed in numpy, not by ONNX Runtime."""
    z = feed["sensors"].astype(np.float64).mean(axis=2) @ W.astype(np.float64) + BIAS[version]
    return 1.0 / (1.0 + np.exp(-z))


EXPECTED = {v: expected(v) for v in VERSIONS}
# The biases are 2.0 apart, so no output is within 1e-5 of two versions': an output names its model.
assert min(np.abs(EXPECTED[a] - EXPECTED[b]).min() for a in VERSIONS for b in VERSIONS if a < b) > 0.01


def which(outputs: Any) -> str:
    """The version whose model produced ``outputs`` (for FEED); AssertionError when none did."""
    got = np.asarray(outputs, dtype=np.float64)
    (match,) = [v for v in VERSIONS if got.shape == (2, 5) and np.allclose(got, EXPECTED[v], atol=1e-5)]
    return match


def produced_by(answers: list[tuple[str, Any]]) -> None:
    """Each (version, outputs) pair's outputs are that version's model's, checked all at once."""
    got = np.stack([np.asarray(outputs, dtype=np.float64) for _, outputs in answers])  # (N, 2, 5)
    want = np.stack([EXPECTED[version] for version, _ in answers])
    assert got.shape == want.shape and float(np.abs(got - want).max()) < 1e-5


def golden(version: str) -> bytes:
    doc = {
        "format": "edgeops-golden/v1",
        "atol": 1e-5,
        "inputs": {k: v.tolist() for k, v in FEED.items()},
        "dtypes": {k: str(v.dtype) for k, v in FEED.items()},
        "expected": {"probabilities": expected(version).tolist()},
    }
    return json.dumps(doc).encode()


@dataclass
class Node:
    root: Path
    public_key: Any
    releases: dict[str, Release]

    def updater(self, **kwargs: Any) -> Updater:
        return Updater(self.root, self.public_key, keep=len(VERSIONS), **kwargs)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Release]]:
    """Three signed bundles in a file:// store and their releases (what a release file would pin)."""
    private_pem, public_pem = generate_keypair()
    private = private_key_from_pem(private_pem, source="test")
    store = open_store(f"file://{tmp_path_factory.mktemp('store')}")
    releases = {}
    for version in VERSIONS:
        files = {"model.onnx": build_model(BIAS[version]), "golden.json": golden(version)}
        result = publish_bundle(store, version, files, private)
        releases[version] = make_release(
            private, version=version, interface="sha256:" + "0" * 64, bundle=result.uri, files=result.files
        )
    return public_key_from_pem(public_pem, source="test"), releases


@pytest.fixture
def node(tmp_path: Path, bundles: tuple[Any, dict[str, Release]]) -> Node:
    """A node whose updater installed v1.0, v1.1 and v1.2 (in that order: `current` is v1.2)."""
    public_key, releases = bundles
    node = Node(tmp_path / "models", public_key, releases)
    with node.updater() as updater:
        for version in VERSIONS:
            assert updater.reconcile(releases[version]).outcome == "installed"
    return node


@pytest.fixture
def http_service(node: Node) -> Iterator[tuple[InferenceService, str]]:
    service = InferenceService(node.root, poll_interval=0.05).start()
    server = serve_http(service, "127.0.0.1", 0)
    try:
        yield service, f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        service.close()


def request(address: str, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection(address, timeout=10)
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body).encode())
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def point_current(root: Path, target: str) -> None:
    """What the updater's swap does (temp link, rename onto `current`), for folders it would never swap to."""
    tmp = root / "current.tmp-test"
    os.symlink(target, tmp)
    os.replace(tmp, root / CURRENT)


def one_thread(path: Path) -> Any:
    """Sessions without an intra-op pool: 1,000 loads on 2 shared cores must not spawn 1,000 pools."""
    return load_session(path, threads=1)


JSON_FEED = {"inputs": {k: v.tolist() for k, v in FEED.items()}}


# --- serving through 1,000 swaps ----------------------------------------------------------------------------


def test_serves_through_1000_swaps_with_no_failed_request(node: Node) -> None:
    """The updater swaps `current` 1,000 times between its three installed versions while three threads
    call predict() in-process (~1,000 requests a second each) and two over HTTP. Each swap is the updater's
    own last two steps of a reconcile, ``_swap`` (temp link, rename onto `current`, fsync of the root) and
    ``_reload`` (the --reload-url POST): the checks a reconcile runs before them (digests, golden check:
    ~10 ms) would make 1,000 swaps take minutes on 2 shared cores and test nothing of the service; the
    tests below swap through whole reconciles. The service learns of each swap through the hook (POST
    /reload loads before it answers) and also polls `current` every 20 ms: both paths run, and race,
    through every swap."""
    reports: list[Prediction] = []
    service = InferenceService(
        node.root, poll_interval=0.02, loader=one_thread, on_prediction=reports.append
    ).start()
    server = serve_http(service, "127.0.0.1", 0)
    address = f"127.0.0.1:{server.server_address[1]}"
    assert service.version == "v1.2" and service.model is not None and service.model.generation == 1
    swapped_in = ["v1.2"]  # generation g serves swapped_in[g - 1]
    stop = threading.Event()
    failures: list[str] = []
    seen: dict[str, list[tuple[int, str, Any]]] = defaultdict(list)  # client → (generation, version, outputs)

    def in_process(name: str) -> None:
        while not stop.is_set():
            try:
                version, outputs, generation = service.predict(FEED)
                seen[name].append((generation, version, outputs["probabilities"]))  # checked afterwards
            except Exception as exc:  # noqa: BLE001 - any exception is a failed request, counted
                failures.append(f"{name}: {exc!r}")
            time.sleep(0.001)  # ~1,000 requests a second each, leaving the swapping thread the GIL

    def over_http(name: str) -> None:
        conn = http.client.HTTPConnection(address, timeout=10)
        while not stop.is_set():
            try:
                conn.request("POST", "/predict", body=json.dumps(JSON_FEED).encode())
                response = conn.getresponse()
                doc = json.loads(response.read())
                conn.close()  # the server speaks HTTP/1.0: one request per connection
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}: {doc}")
                seen[name].append((doc["generation"], doc["model_version"], doc["outputs"]["probabilities"]))
            except Exception as exc:  # noqa: BLE001 - as above
                failures.append(f"{name}: {exc!r}")
            time.sleep(0.005)  # a request costs ~2 ms of CPU in JSON on both ends: 2 cores are shared

    clients = [threading.Thread(target=in_process, args=(f"local-{i}",)) for i in range(3)]
    clients += [threading.Thread(target=over_http, args=(f"http-{i}",)) for i in range(2)]
    started = time.perf_counter()
    try:
        with node.updater(reload_url=f"http://{address}/reload") as updater:
            for client in clients:
                client.start()
            for i in range(1000):
                version = VERSIONS[i % 3]  # v1.0, v1.1, v1.2, v1.0, …: each differs from `current`
                updater._swap(version)
                updater._reload(version)
                swapped_in.append(version)
                # The hook answered only after the service loaded the new version.
                assert service.version == version
            reload_failures = updater.registry.get_sample_value(
                "edgeops_updater_failures_total", {"reason": "reload"}
            )
    finally:
        stop.set()
        for client in clients:
            client.join(10)
        server.shutdown()
        server.server_close()
        service.close()
    seconds = time.perf_counter() - started
    per_client = {name: len(answers) for name, answers in sorted(seen.items())}
    generations_seen = len({g for a in seen.values() for g, _, _ in a})
    print(
        f"1000 swaps in {seconds:.1f} s; {len(reports)} predictions {per_client} answered by "
        f"{generations_seen} of the 1,001 models served; {len(failures)} failed"
    )

    assert failures == []
    assert not reload_failures  # every nudge got a 200: the service had loaded the swapped-in model
    assert service.swaps == 1000 and service.load_failures == 0
    assert service.registry.get_sample_value("edgeops_inference_swaps_total") == 1000
    # Every answer was produced by the model of the version it reports, which is the one swapped in for
    # the generation it reports; each client saw generations in order (never an older model after a newer).
    for name, answers in seen.items():
        assert len(answers) > 50, name
        generations = [g for g, _, _ in answers]
        assert generations == sorted(generations), name
        assert all(version == swapped_in[g - 1] for g, version, _ in answers), name
        produced_by([(version, outputs) for _, version, outputs in answers])
    # The callback saw every in-process and HTTP prediction, each with its version.
    assert len(reports) == sum(len(a) for a in seen.values())
    produced_by([(r.version, r.outputs["probabilities"]) for r in reports])
    counted = sum(
        service.registry.get_sample_value("edgeops_inference_predictions_total", {"version": v}) or 0
        for v in VERSIONS
    )
    assert counted == len(reports)
    # The clients ran across the swaps, not only before or after them.
    assert generations_seen > 100


def test_polling_alone_follows_the_swaps(node: Node) -> None:
    """Without a reload hook (the contract needs none) the watcher picks each swap up within a poll."""
    service = InferenceService(node.root, poll_interval=0.01).start()
    lags = []
    try:
        with node.updater() as updater:
            for i in range(30):
                version = VERSIONS[i % 3]
                updater.reconcile(node.releases[version])
                swapped = time.perf_counter()
                while service.version != version and time.perf_counter() - swapped < 5:
                    time.sleep(0.001)
                lags.append(time.perf_counter() - swapped)
                assert service.version == version
                assert which(service.predict(FEED).outputs["probabilities"]) == version
    finally:
        service.close()
    assert service.swaps == 30 and service.load_failures == 0
    assert float(np.median(lags)) < 1.0


# --- a version that does not load ---------------------------------------------------------------------------


def test_a_corrupt_or_missing_model_keeps_the_old_one_serving_and_is_reported(
    node: Node, http_service: tuple[InferenceService, str]
) -> None:
    service, address = http_service
    root = node.root
    assert service.version == "v1.2"
    (root / "v2.0").mkdir()  # a folder damaged on disk after its install, and one that lost its model
    (root / "v2.0" / "model.onnx").write_bytes(b"not an onnx model")
    (root / "v2.0" / "golden.json").write_bytes((root / "v1.2" / "golden.json").read_bytes())
    (root / "v2.1").mkdir()
    (root / "v2.1" / "golden.json").write_bytes((root / "v1.2" / "golden.json").read_bytes())
    # A valid model whose golden.json it does not reproduce: refused before it serves a request.
    (root / "v2.2").mkdir()
    (root / "v2.2" / "model.onnx").write_bytes((root / "v1.0" / "model.onnx").read_bytes())
    (root / "v2.2" / "golden.json").write_bytes((root / "v1.2" / "golden.json").read_bytes())

    for k, (bad, why) in enumerate(
        [("v2.0", "does not load"), ("v2.1", "does not load"), ("v2.2", "differs from golden.json")]
    ):
        count = 2 * k + 1  # each bad version: found by the watcher, then once more by /reload
        point_current(root, bad)
        deadline = time.monotonic() + 5
        while service.load_failures < count and time.monotonic() < deadline:
            time.sleep(0.01)  # the watcher finds it
        assert service.load_failures == count
        failure = service.last_failure
        assert failure is not None and failure.version == bad and why in failure.message
        assert "keeping v1.2" in failure.message
        # The old model still answers, and says so.
        prediction = service.predict(FEED)
        assert prediction.version == "v1.2" and which(prediction.outputs["probabilities"]) == "v1.2"
        status, doc = request(address, "POST", "/predict", JSON_FEED)
        assert status == 200 and doc["model_version"] == "v1.2"
        status, doc = request(address, "GET", "/healthz")
        assert status == 200 and doc["model_version"] == "v1.2"
        assert doc["last_failure"]["version"] == bad
        # The watcher does not retry a version that failed (it would fail again)...
        time.sleep(0.2)
        assert service.load_failures == count
        # ...a reload (the updater's hook) does, and answers 503 with the reason.
        status, doc = request(address, "POST", "/reload", {"version": bad, "path": "ignored"})
        assert status == 503 and doc["last_failure"]["version"] == bad
        assert service.load_failures == count + 1
    metrics = service.registry.get_sample_value("edgeops_inference_load_failures_total")
    assert metrics == 6  # three found by the watcher, three by /reload

    # Back to a good version (a rollback): served, and the failure is no longer reported.
    point_current(root, "v1.1")
    assert service.reload() and service.version == "v1.1" and service.last_failure is None
    assert request(address, "GET", "/healthz")[1]["last_failure"] is None


def test_a_deleted_version_folder_does_not_stop_the_loaded_session(
    node: Node, http_service: tuple[InferenceService, str]
) -> None:
    """ONNX Runtime holds the model in memory: pruning the folder the service loaded (possible only when
    the updater keeps fewer versions than the service lags behind) costs no request."""
    import shutil

    service, _ = http_service
    point_current(node.root, "v1.0")
    assert service.reload() and service.version == "v1.0"
    point_current(node.root, "v9.9")  # dangling: the folder is not there
    shutil.rmtree(node.root / "v1.0")
    assert not service.reload()
    assert service.version == "v1.0" and which(service.predict(FEED).outputs["probabilities"]) == "v1.0"
    assert "missing or dangling" in (service.last_failure.message if service.last_failure else "")


# --- before the first model; bad requests -------------------------------------------------------------------


def test_nothing_to_serve_before_the_first_install_then_the_first_model(
    tmp_path: Path, bundles: tuple[Any, dict[str, Release]]
) -> None:
    public_key, releases = bundles
    node = Node(tmp_path / "models", public_key, releases)
    node.root.mkdir()
    service = InferenceService(node.root, poll_interval=0.01).start()
    server = serve_http(service, "127.0.0.1", 0)
    address = f"127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(NoModelError, match="no model to serve yet"):
            service.predict(FEED)
        assert request(address, "POST", "/predict", JSON_FEED)[0] == 503
        assert request(address, "GET", "/healthz")[0] == 503
        assert service.last_failure is None  # nothing installed is not a failure
        with node.updater(reload_url=f"http://{address}/reload") as updater:
            assert updater.reconcile(releases["v1.1"]).outcome == "installed"
        assert service.version == "v1.1"
        status, doc = request(address, "GET", "/healthz")
        assert status == 200 and doc["model_version"] == "v1.1" and doc["generation"] == 1
        assert doc["interface"] == releases["v1.1"].interface  # from the updater's completion marker
    finally:
        server.shutdown()
        server.server_close()
        service.close()


def test_inputs_that_do_not_fit_are_refused_with_a_reason(http_service: tuple[InferenceService, str]) -> None:
    service, address = http_service
    with pytest.raises(InferenceInputError, match="takes inputs"):
        service.predict({"sensors": FEED["sensors"]})
    with pytest.raises(InferenceInputError, match="could not run"):
        service.predict({**FEED, "sensors": np.zeros((2, 3), dtype=np.float32)})
    assert request(address, "POST", "/predict", {"inputs": {"sensors": [[1.0]]}})[0] == 400
    assert request(address, "POST", "/predict", ["not", "an", "object"])[0] == 400
    assert request(address, "GET", "/nowhere")[0] == 404
    metrics = http.client.HTTPConnection(address, timeout=10)
    metrics.request("GET", "/metrics")
    assert b"edgeops_inference_model_info" in metrics.getresponse().read()
    metrics.close()


# --- the command ------------------------------------------------------------------------------------------


def test_edgeops_inference_serve(node: Node) -> None:
    args = build_parser().parse_args(
        ["inference", "serve", "--root", str(node.root), "--listen", "127.0.0.1:0", "--poll-interval", "0.5"]
    )
    assert args.root == node.root and args.listen == ("127.0.0.1", 0) and args.poll_interval == 0.5
    with pytest.raises(ConfigError, match="--poll-interval"):
        args.poll_interval = 0.0
        args.handler(args)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    stop = threading.Event()
    codes: list[int] = []
    thread = threading.Thread(
        target=lambda: codes.append(serve(root=node.root, listen=("127.0.0.1", port), stop=stop))
    )
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                status, doc = request(f"127.0.0.1:{port}", "GET", "/healthz")
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert status == 200 and doc["model_version"] == "v1.2"
    finally:
        stop.set()
        thread.join(10)
    assert codes == [0]
