"""A fleet simulator for model rollouts in waves: N simulated edge nodes, the real updater, a real store, the
real release tooling.

    python -m tools.kits.fleetsim --nodes 1000 --pilot 50 --offline 95   # a throwaway S3 API server
    python -m tools.kits.fleetsim --nodes 1000 --pilot 50 --bad-model    # guard stops it at the first wave
    python -m tools.kits.fleetsim --nodes 1000 --pilot 50 --stuck 0.3    # 30% of wave 1 cannot install
    python -m tools.kits.fleetsim --nodes 60 --pilot 6 --failed-downloads 3 --corrupt-objects 2 --json

This is a SIMULATION, and says so in its output. What is real: every node has its own model root on the
local disk and its own :class:`~tools.edge.updater.Updater` (the production class: wave placement by the
node's name, signature check, download, digests, golden health check in ONNX Runtime, prefetch with its
per-node spread, atomic swap, pruning) and its own reference inference service
(:class:`~tools.edge.inference.InferenceService`, ONNX Runtime) reading that root, so the version a node
serves is the one its service reports, not what ``current`` is assumed to hold; the bundles are signed and
published to a real store (the S3 API server by default); the rings' node selection and the DaemonSets come
from ``kustomize build environments/<ring>``; the release files change only by commits and pull requests in
a real git repository (a bare remote and a clone, with :class:`~tools.gitops.forge.LocalForge` PRs), written
by the real ``edgeops promote``, ``guard`` and ``rollback`` (:mod:`tools.gitops.promotion`) and read back at
the merged commit (the file kustomize puts verbatim into the ring's ConfigMap, which is what Argo CD syncs).

What is simulated, and how (each model of a real system errs on the side where the real one is worse):

- **Time.** One simulated clock (epoch seconds) drives the nodes (their loop, their prefetch spread) and the
  git commits (``GIT_COMMITTER_DATE``), so soak periods pass without sleeping.
- **The kubelet's refresh of the mounted ConfigMap.** Kubernetes updates a mounted ConfigMap on the kubelet's
  periodic sync, so a change reaches a pod after "the kubelet sync period + cache propagation delay"
  (kubernetes.io, "ConfigMaps: Mounted ConfigMaps are updated automatically"; 1 minute by default plus the
  cache's TTL). Each node sees a new release file :data:`KUBELET_DELAY_MAX` seconds after the sync or less
  (uniform, per node and phase) and acts on it at its next loop tick (``--interval`` 30 s).
- **Nodes.** Folders in one process; reconciles run one after another in simulated-time order. Offline nodes
  do nothing and are counted in every ring's denominators (members, wave, reporting); with ``--offline`` they
  go offline after the fleet's first release and come back during the last wave. ``--join`` nodes join the
  fleet with empty caches during the first partial wave.
- **The inference service's swap.** The service does not poll (simulated time has no 200 ms): the updater's
  reload hook is modelled as a :meth:`~tools.edge.inference.InferenceService.reload` at the simulated instant
  of each reconcile, which loads the new version before it serves it (docs/inference-contract.md). Nodes
  whose ``model.onnx`` bytes are identical share one ONNX Runtime session (``run`` is thread-safe; a node
  with other bytes, a damaged file, gets a load of its own); the service's own golden check is skipped, as
  the node's updater ran ``golden.json`` through the same bytes in the same reconcile.
- **Field telemetry** (the runtime backend's ``predictions``). Each online node's inference service runs a
  batch of windows and the rows carry the version it reports; operators validate 80% of them. A version's
  field quality is a parameter (the tiny model knows nothing of machines): the good ones miss 2% of failing
  windows, ``--bad-model``'s v1.1 45% on the fleet's machines (its golden health check
  passes: it is a valid model that is wrong in the field; and right on the pilot's lines, which lack the
  failure it misses, so it passes the pilot and must be stopped in the fleet's first wave). Stuck nodes
  (``--stuck``) serve ``previous`` and report it.
- **Agent upgrades** (a new updater image) are DaemonSet rolling updates, modelled with the upstream
  controller's rules (kubernetes/kubernetes ``pkg/controller/daemon/update.go``, ``rollingUpdate``): a pod
  that is old and not available (every pod on an offline node) is replaced and counts as unavailable; a new
  pod that is not available counts; other old pods are replaced only while the count is under
  ``maxUnavailable`` (a percentage of every node that should run the pod, offline ones included, rounded up).
  So once as many nodes are offline as the budget allows, the upgrade stalls: the simulator reports that, it
  does not hide it (kubernetes/kubernetes#117658). Model releases never go through this path: the release
  ConfigMap has a stable name, so the DaemonSet does not change.

The invariant "no node is ever without a loadable model once it had one" is checked on the node after every
reconcile, on every node after every phase, and by loading ``model.onnx`` in ONNX Runtime on a sample of nodes
per phase (:data:`LOAD_SAMPLE`); so is "the inference service serves what ``current`` names" (a node whose
service kept an older model, or never loaded one, is a violation).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import heapq
import json
import logging
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tools.artifacts.bundle import publish_bundle
from tools.artifacts.release import Release, edit_release_text, make_release, parse_release
from tools.core.config import load_config
from tools.core.errors import EdgeopsError, StoreError
from tools.core.signing import generate_keypair, private_key_from_pem, public_key_from_pem
from tools.core.store import Store, open_store
from tools.edge.inference import InferenceService, NoModelError, Prediction
from tools.edge.updater import CURRENT, FAILURE_REASONS, Updater
from tools.gitops.forge import LocalForge, PullRequest
from tools.gitops.manifests import kustomize_build, parse_objects, selects_node
from tools.gitops.telemetry import PredictionRow, RingTelemetry, telemetry_from_rows
from tools.kits.devservices import patched_environ

__all__ = [
    "LOAD_SAMPLE",
    "FaultPlan",
    "Fleet",
    "PhaseReport",
    "Ring",
    "SimClock",
    "SimReport",
    "load_rings",
    "main",
    "simulate",
]

log = logging.getLogger("edgeops.fleetsim")

RING_LABEL = "context-edge.io/ring"
# What every simulated node carries besides its name and ring: the kubelet's os/arch labels of a Jetson and
# the edge label, which both rings' node affinity requires (environments/<ring>/ring.yaml).
NODE_LABELS = {"kubernetes.io/os": "linux", "kubernetes.io/arch": "arm64", "context-edge.io/edge": "true"}
INTERFACE = "sha256:" + hashlib.sha256(b"edgeops fleet simulator interface").hexdigest()
LABELS = ["bearing_wear", "misalignment", "overheating", "electrical_fault", "lubrication_loss"]
WEIGHTS = {"v1.0": 0.1, "v1.1": 0.2}  # a different (tiny, real) model per version
NODE_FILES = ("model.onnx", "golden.json")  # what a release makes a node download (promotion._release_files)
LOAD_SAMPLE = 20  # nodes whose model.onnx is loaded in ONNX Runtime after each phase
ROLLBACK_TARGET_SECONDS = 0.050
RINGS = ("pilot", "fleet")
KUBELET_DELAY_MAX = 90.0  # s: kubelet sync period (60 s) + ConfigMap cache propagation, see the docstring
LOOP_INTERVAL = 30.0  # s: the updater's --interval default
PREFETCH_SPREAD = 300.0  # s: the updater's --prefetch-spread default
PHASE_LIMIT = 2 * 3600.0  # s of simulated time a phase may take before its stragglers are reported
FN_RATE = {"good": 0.02, "bad": 0.45}  # share of failing windows a version misses in the field
START = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)  # the simulated clock's start (a Monday morning)


# --- the tiny real model (the same graph as tests/test_updater.py) -----------------------------------------


def build_model(scale: float) -> bytes:
    """probabilities = Sigmoid(mean_T(sensors) @ W + 1e-6 * (product_id + recipe_id + asset_id))."""
    weights = (np.arange(20, dtype=np.float32).reshape(4, 5) - 10) * scale
    nodes = [
        helper.make_node("ReduceMean", ["sensors"], ["mean"], axes=[2], keepdims=0),
        helper.make_node("MatMul", ["mean", "W"], ["logits"]),
        helper.make_node("Add", ["product_id", "recipe_id"], ["ids2"]),
        helper.make_node("Add", ["ids2", "asset_id"], ["ids"]),
        helper.make_node("Cast", ["ids"], ["ids_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["ids_f", "axis1"], ["ids_col"]),
        helper.make_node("Mul", ["ids_col", "tiny"], ["id_term"]),
        helper.make_node("Add", ["logits", "id_term"], ["z"]),
        helper.make_node("Sigmoid", ["z"], ["probabilities"]),
    ]
    initializers = [
        numpy_helper.from_array(weights, "W"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        numpy_helper.from_array(np.array(1e-6, dtype=np.float32), "tiny"),
    ]
    inputs = [helper.make_tensor_value_info("sensors", TensorProto.FLOAT, ["B", 4, 128])] + [
        helper.make_tensor_value_info(name, TensorProto.INT64, ["B"])
        for name in ("product_id", "recipe_id", "asset_id")
    ]
    outputs = [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["B", 5])]
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, initializers)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgeops-fleetsim"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def _session(model: bytes | str) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def build_golden(model: bytes) -> bytes:
    """golden.json (edgeops-golden/v1) from ONNX Runtime's own outputs on fixed inputs."""
    rng = np.random.default_rng(7)
    feed: dict[str, np.ndarray[Any, Any]] = {
        "sensors": rng.normal(size=(3, 4, 128)).astype(np.float32),
        "product_id": np.array([1, 12, 2**40], dtype=np.int64),
        "recipe_id": np.array([3, 4, 5], dtype=np.int64),
        "asset_id": np.array([77, 78, 79], dtype=np.int64),
    }
    (probs,) = _session(model).run(["probabilities"], feed)
    golden = {
        "format": "edgeops-golden/v1",
        "atol": 1e-5,
        "inputs": {k: v.tolist() for k, v in feed.items()},
        "dtypes": {k: str(v.dtype) for k, v in feed.items()},
        "expected": {"probabilities": np.asarray(probs).tolist()},
    }
    return (json.dumps(golden) + "\n").encode()


class _SharedSessions:
    """The simulated nodes' inference services' loader: one ONNX Runtime session per distinct ``model.onnx``
    content, whichever node's file it was read from. Each node's service still reads its own file; only
    identical bytes share a session (ONNX Runtime's ``run`` is thread-safe), so 1,000 nodes cost one load
    per version, and a damaged file is a load of its own (and fails like one)."""

    def __init__(self) -> None:
        self._sessions: dict[str, Any] = {}

    def __call__(self, path: Path) -> Any:
        data = path.read_bytes()
        key = hashlib.sha256(data).hexdigest()
        session = self._sessions.get(key)
        if session is None:
            session = self._sessions[key] = _session(data)
        return session

    def __len__(self) -> int:
        return len(self._sessions)


@functools.cache
def _windows(batch: int) -> dict[str, np.ndarray[Any, Any]]:
    """``batch`` sensor windows in the simulator's interface (a generator of their own: the story's draws
    do not change with the batch size)."""
    rng = np.random.default_rng(batch)
    return {
        "sensors": rng.normal(size=(batch, 4, 128)).astype(np.float32),
        "product_id": rng.integers(1, 50, size=batch),
        "recipe_id": rng.integers(1, 20, size=batch),
        "asset_id": rng.integers(1, 1000, size=batch),
    }


# --- rings from the real manifests --------------------------------------------------------------------------


@dataclass(frozen=True)
class Ring:
    name: str
    daemonset: dict[str, Any]
    max_unavailable_spec: int | str  # as written in the DaemonSet (10%, 100%, 1…)

    def selects(self, labels: Mapping[str, str]) -> bool:
        return selects_node(self.daemonset, labels)

    def budget(self, ring_nodes: int) -> int:
        """maxUnavailable in pods for ``ring_nodes`` nodes that should run the pod: a percentage rounds up
        (upstream ``intstr.GetScaledValueFromIntOrPercent(..., true)``), and at least 1."""
        spec = self.max_unavailable_spec
        if isinstance(spec, str) and spec.endswith("%"):
            return max(1, math.ceil(ring_nodes * int(spec[:-1]) / 100))
        return max(1, int(spec))


def load_rings(repo_root: Path) -> dict[str, Ring]:
    """``kustomize build environments/<ring>`` once per ring; the model-updater DaemonSet of each."""
    rings: dict[str, Ring] = {}
    for name in RINGS:
        objects = parse_objects(kustomize_build(repo_root / "environments" / name, repo_root=repo_root))
        daemonsets = [o for o in objects if o.get("kind") == "DaemonSet"]
        if len(daemonsets) != 1:
            raise EdgeopsError(f"ring {name}: expected one DaemonSet, kustomize built {len(daemonsets)}")
        ds = daemonsets[0]
        strategy = ds["spec"].get("updateStrategy", {})
        spec = strategy.get("rollingUpdate", {}).get("maxUnavailable", 1)
        if strategy.get("type", "RollingUpdate") != "RollingUpdate":
            raise EdgeopsError(f"ring {name}: the DaemonSet's updateStrategy is not RollingUpdate")
        if not isinstance(spec, int | str) or isinstance(spec, bool):
            raise EdgeopsError(f"ring {name}: maxUnavailable {spec!r} is neither an integer nor a percentage")
        rings[name] = Ring(name, ds, spec)
    return rings


# --- faults -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaultPlan:
    """What goes wrong, on distinct fleet nodes chosen with ``seed`` (see the module docstring)."""

    offline: int = 0  # offline after the fleet's first release, back during the last wave
    failed_downloads: int = 0  # the store raises on the node's first read in ``phase``
    corrupt_objects: int = 0  # model.onnx arrives with a flipped byte once in ``phase``
    bad_golden: int = 0  # golden.json arrives altered once in ``phase`` (refused as a digest mismatch)
    phase: str = "fleet-v1.1@5"  # the phase whose start arms the three faults above
    stuck: float = 0.0  # share of the first wave's online nodes whose store never serves the new version
    bad_model: bool = False  # v1.1 passes its golden check but misses failures in the field
    join: int = 0  # fleet nodes that join with empty caches during the first partial wave
    seed: int = 0

    def total(self) -> int:
        return self.offline + self.failed_downloads + self.corrupt_objects + self.bad_golden


@dataclass
class _NodeFaults:
    fail_next_read: bool = False
    corrupt_next: str | None = None  # the file name whose next read is damaged
    unreadable: set[str] = field(default_factory=set)  # versions this node can never download (stuck)


class SimClock:
    """The simulated time, epoch seconds; callable, so it can be an Updater's ``clock``."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start.timestamp()

    def __call__(self) -> float:
        return self.now

    def datetime(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)

    def advance(self, seconds: float) -> None:
        self.now += seconds


class _Reads:
    """Store reads: in all, per node, and per simulated minute."""

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self.count = 0
        self.per_minute: Counter[int] = Counter()


class _NodeStore:
    """The node's view of the shared store: counts reads and applies this node's armed faults."""

    def __init__(self, inner: Store, node: _Node, reads: _Reads) -> None:
        self.inner = inner
        self.uri: str = getattr(inner, "uri", "")
        self.node = node
        self.reads = reads

    def get(self, key: str) -> bytes:
        self.reads.count += 1
        self.reads.per_minute[int(self.reads.clock.now // 60)] += 1
        self.node.reads += 1
        faults = self.node.faults
        if key.split("/")[-2:-1] and key.split("/")[-2] in faults.unreadable:
            raise StoreError(f"simulated: {key} cannot be read from this node (stuck install)")
        if faults.fail_next_read:
            faults.fail_next_read = False
            raise StoreError(f"simulated network failure reading {key}")
        data = self.inner.get(key)
        name = key.rsplit("/", 1)[-1]
        if faults.corrupt_next == name:
            faults.corrupt_next = None
            if name == "golden.json":
                return data.replace(b'"atol": 1e-05', b'"atol": 1e+09', 1) + b" "
            return data[:-1] + bytes([data[-1] ^ 0xFF])
        return data

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def list(self, prefix: str) -> list[str]:
        return self.inner.list(prefix)

    def put_immutable(self, key: str, data: bytes) -> Any:
        raise StoreError("a simulated edge node never writes to the store")

    def url(self, key: str) -> str:
        return self.inner.url(key)


# --- nodes and phases ---------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Node:
    name: str
    labels: dict[str, str]
    ring: str
    root: Path
    faults: _NodeFaults
    updater: Updater = field(init=False)
    service: InferenceService | None = None  # its inference service, from its first reconcile on
    offline: bool = False
    had_model: bool = False
    reads: int = 0
    announced: set[str] = field(default_factory=set)  # targets this node saw announced (while online)
    agent_image: int = 1  # the updater image generation its pod runs (agent upgrades)
    release: Release | None = None  # the release file its kubelet last projected


@dataclass
class PhaseReport:
    name: str
    ring: str
    version: str  # the release's target version
    percent: float | None  # rollout.percent (None: the whole ring)
    nodes: int  # the ring's members, offline ones included
    reachable: int  # members online during the phase
    in_wave: int  # members (offline ones included) whose wave runs the target
    silent: int = 0  # members offline: nothing reconciled, nothing reported
    converged: int = 0  # online members serving what they should (target in the wave, previous outside)
    stuck: int = 0  # online members not converged when the phase ended
    expected_stuck: int = 0  # of which the fault plan made unable to install (--stuck)
    served: dict[str, int] = field(default_factory=dict)  # per version: most members serving it at once
    reconciles: int = 0
    store_reads: int = 0
    store_reads_at_start: int = 0  # reads by wave nodes that had seen this release announced before
    peak_reads_per_minute: int = 0
    prefetched: int = 0  # members outside the wave holding the target in their cache at the end
    failures: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    median_seconds: float = 0.0  # per-node ReconcileResult.seconds of installs and swaps
    p95_seconds: float = 0.0
    swap_median_seconds: float = 0.0  # of swaps from the cache (a wave's swap, a rollback)
    sim_seconds: float = 0.0  # simulated time from the sync to the last reconcile
    wall_seconds: float = 0.0
    joined: int = 0
    returned: int = 0  # nodes back online in this phase
    returned_first_reconcile: int = 0  # of which converged on their first reconcile
    versions: dict[str, int] = field(default_factory=dict)  # every node of every ring, after the phase

    @property
    def ok(self) -> bool:
        return self.converged + self.expected_stuck == self.reachable


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _failures(node: _Node) -> Counter[str]:
    """The node's ``edgeops_updater_failures_total`` by reason (what its /metrics says)."""
    counts: Counter[str] = Counter()
    for reason in FAILURE_REASONS:
        value = node.updater.registry.get_sample_value("edgeops_updater_failures_total", {"reason": reason})
        if value:
            counts[reason] = int(value)
    return counts


def _version_of(node: _Node) -> str:
    """The version the node's inference service reports it serves ("none" before its first model)."""
    return (node.service.version if node.service is not None else None) or "none"


class Fleet:
    """Simulated nodes with the real updater, in the rings the real manifests select.

    ``edgeops fleet-sim`` drives one through the release story of :func:`simulate`; ``make demo`` drives one
    with the releases the demo's pull requests merge. The first ``pilot`` nodes carry the pilot label; which
    ring owns each node is decided by the rings' DaemonSets, exactly one per node.
    """

    def __init__(
        self, *, nodes: int, pilot: int, workdir: Path, rings: Mapping[str, Ring], public_key: Any,
        accept_interfaces: Sequence[str], seed: int = 0, keep: int = 3, store_opener: Any = None,
        clock: SimClock | None = None, prefetch_spread: float = PREFETCH_SPREAD,
    ) -> None:  # fmt: skip
        if nodes < 1 or not 0 <= pilot <= nodes:
            raise EdgeopsError(f"--nodes {nodes} --pilot {pilot}: need 1 ≤ nodes and 0 ≤ pilot ≤ nodes")
        self.rings = dict(rings)
        self.clock = clock or SimClock()
        self.reads = _Reads(self.clock)
        self.rng = random.Random(seed)  # noqa: S311 - picks simulated nodes and delays, not secrets
        self._opener = store_opener or functools.cache(open_store)  # one client per store, whole fleet
        self._public_key = public_key
        self._accept = tuple(accept_interfaces)
        self._keep = keep
        self._spread = prefetch_spread
        self.nodes: list[_Node] = []
        self.run_dir = Path(workdir) / f"run-{os.getpid()}-{time.time_ns()}"
        self.checks = 0
        self.loads = 0
        self.violations: list[str] = []
        self.sessions = _SharedSessions()
        for index in range(nodes):
            labels = {RING_LABEL: "pilot"} if index < pilot else {}
            self.add_node(f"node-{index:04d}", labels)

    def add_node(self, name: str, labels: Mapping[str, str]) -> _Node:
        """A node with an empty model root, owned by the one ring whose DaemonSet selects it."""
        labels = {**NODE_LABELS, "kubernetes.io/hostname": name, **labels}
        owners = [r for r in self.rings.values() if r.selects(labels)]
        if len(owners) != 1:
            raise EdgeopsError(
                f"{name} {labels} is selected by {len(owners)} rings ({[r.name for r in owners]}); "
                "each node must be owned by exactly one"
            )
        node = _Node(name, labels, owners[0].name, self.run_dir / name, _NodeFaults())
        node.updater = self._updater(node)
        self.nodes.append(node)
        return node

    def _updater(self, node: _Node) -> Updater:
        def node_opener(uri: str) -> Store:
            return _NodeStore(self._opener(uri), node, self.reads)

        return Updater(
            node.root, self._public_key, accept_interfaces=self._accept, keep=self._keep,
            store_opener=node_opener, node=node.name, lock=False, clock=self.clock,
            prefetch_spread=self._spread,
        )  # fmt: skip

    def _reload(self, node: _Node) -> None:
        """The updater's reload hook, at the simulated instant of its reconcile: the node's inference service
        looks at ``current`` and loads what changed before it serves it (docs/inference-contract.md)."""
        if node.service is None:
            node.service = InferenceService(
                node.root, poll_interval=None, loader=self.sessions, check_golden=False
            )
        node.service.reload()

    def predict(self, node: str, inputs: Mapping[str, Any]) -> Prediction:
        """Run ``inputs`` through ``node``'s inference service: the outputs, and the version that made them.

        Raises :class:`~tools.edge.inference.NoModelError` for a node that serves nothing yet."""
        found = next(n for n in self.nodes if n.name == node)
        if found.service is None:
            raise NoModelError(f"{node} has no inference service yet: it never reconciled")
        return found.service.predict(inputs)

    def members(self, ring: str) -> list[str]:
        return [n.name for n in self.nodes if n.ring == ring]

    def versions(self, ring: str | None = None) -> dict[str, int]:
        """How many nodes (of ``ring``, or all) run each version."""
        return dict(Counter(_version_of(n) for n in self.nodes if ring is None or n.ring == ring))

    def version_of(self, node: str) -> str:
        """The version ``node``'s inference service serves now ("none" before its first model)."""
        return _version_of(next(n for n in self.nodes if n.name == node))

    def model_path(self, node: str) -> Path:
        """The model a node serves now (``<root>/current/model.onnx``, resolved)."""
        found = next(n for n in self.nodes if n.name == node)
        return Path(os.path.realpath(found.root / CURRENT / "model.onnx"))

    # --- the invariant ---

    def _check_node(self, node: _Node, label: str) -> None:
        current = node.root / CURRENT
        present = current.is_symlink() and (Path(os.path.realpath(current)) / "model.onnx").is_file()
        self.checks += 1
        if present:
            node.had_model = True
        elif node.had_model:
            self.violations.append(f"{label}: {node.name} has no model at {current}")
        named, served = node.updater.current_version(), _version_of(node)
        if named is not None and served != named:
            failure = node.service.last_failure if node.service is not None else None
            self.violations.append(
                f"{label}: {node.name}'s inference service serves {served}, `current` names {named}"
                + (f" ({failure.message})" if failure else "")
            )

    def _sweep(self, touched: Sequence[_Node], label: str) -> None:
        for node in self.nodes:
            self._check_node(node, label)
        sample = [n for n in touched if n.had_model][:LOAD_SAMPLE]
        rest = [n for n in self.nodes if n.had_model and n not in sample]
        sample += self.rng.sample(rest, min(len(rest), LOAD_SAMPLE - len(sample)))
        for node in sample:
            self.loads += 1
            try:
                _session(os.path.realpath(node.root / CURRENT / "model.onnx"))
            except Exception as exc:  # noqa: BLE001 - ORT raises pybind11 types for every load failure
                self.violations.append(f"{label}: {node.name}'s model does not load ({exc})")

    # --- a release reaching a ring ---

    def _settled(self, node: _Node, release: Release) -> bool:
        want = release.for_node(node.name).version
        if _version_of(node) != want or not node.updater.ready()[0]:
            return False
        return want == release.version or release.version in node.updater.installed_versions()

    def rollout(
        self, phase: str, ring: str, release: Release, *, returning: Sequence[_Node] = (),
        joining: Sequence[_Node] = (),
    ) -> PhaseReport:  # fmt: skip
        """The ring's release file changed at the clock's now (an Argo CD sync): every online member's kubelet
        refreshes the mounted file within KUBELET_DELAY_MAX, its agent acts at its next loop tick and keeps
        looping until it serves what it should and holds the target in its cache (or PHASE_LIMIT)."""
        if ring not in self.rings:
            raise EdgeopsError(f"no ring {ring!r} in the manifests (rings: {', '.join(self.rings)})")
        started = time.perf_counter()
        t0 = self.clock.now
        reads_before = self.reads.count
        members = [n for n in self.nodes if n.ring == ring]
        online = [n for n in members if not n.offline]
        wave = [n for n in members if release.for_node(n.name) is release]
        report = PhaseReport(
            phase, ring, release.version, release.rollout_percent, len(members), len(online), len(wave),
            silent=len(members) - len(online), joined=len(joining), returned=len(returning),
        )  # fmt: skip
        failed_before = {n.name: _failures(n) for n in online}
        seen_before = {n.name for n in wave if release.version in n.announced}
        reads_at_start = {n.name: n.reads for n in wave if n.name in seen_before}
        report.expected_stuck = sum(
            1 for n in online if release.for_node(n.name).version in n.faults.unreadable
        )
        counts = Counter(_version_of(n) for n in members)
        served = dict(counts)
        failures: Counter[str] = Counter()
        outcomes: Counter[str] = Counter()
        seconds: list[float] = []
        swaps: list[float] = []
        first_try: dict[str, bool] = {}
        queue: list[tuple[float, int, _Node]] = []
        for i, node in enumerate(online):
            delay = self.rng.uniform(0, KUBELET_DELAY_MAX) + self.rng.uniform(0, LOOP_INTERVAL)
            heapq.heappush(queue, (t0 + delay, i, node))
        last = t0
        while queue:
            at, i, node = heapq.heappop(queue)
            if at - t0 > PHASE_LIMIT:
                break
            self.clock.now = last = at
            before = _version_of(node)
            node.release = release
            result = node.updater.reconcile(release)
            self._reload(node)
            node.announced.add(release.version)
            report.reconciles += 1
            outcomes[result.outcome] += 1
            if result.ok and result.outcome in ("installed", "swapped_from_cache"):
                seconds.append(result.seconds)
                if result.outcome == "swapped_from_cache":
                    swaps.append(result.seconds)
            after = _version_of(node)
            if after != before:
                counts[before] -= 1
                counts[after] += 1
                served[after] = max(served.get(after, 0), counts[after])
            self._check_node(node, f"{phase} at +{at - t0:.0f} s")
            settled = self._settled(node, release)
            first_try.setdefault(node.name, settled)
            if not settled:
                heapq.heappush(queue, (at + LOOP_INTERVAL, i, node))
        self.clock.now = max(self.clock.now, last)
        self._sweep(online[:LOAD_SAMPLE], phase)
        for node in online:
            want = release.for_node(node.name).version
            if _version_of(node) == want and node.updater.ready()[0]:
                report.converged += 1
        report.stuck = report.reachable - report.converged
        report.served = {v: c for v, c in sorted(served.items()) if c}
        for node in online:  # failed installs and failed prefetches alike, as the node's /metrics counts them
            failures.update(_failures(node) - failed_before[node.name])
        report.failures = dict(sorted(failures.items()))
        report.outcomes = dict(outcomes)
        report.store_reads = self.reads.count - reads_before
        report.store_reads_at_start = sum(
            n.reads - reads_at_start[n.name] for n in wave if n.name in reads_at_start
        )
        minutes = [c for m, c in self.reads.per_minute.items() if t0 // 60 <= m <= last // 60]
        report.peak_reads_per_minute = max(minutes, default=0)
        report.prefetched = sum(
            1 for n in members if n not in wave and release.version in n.updater.installed_versions()
        )
        report.median_seconds = statistics.median(seconds) if seconds else 0.0
        report.p95_seconds = _percentile(seconds, 0.95)
        report.swap_median_seconds = statistics.median(swaps) if swaps else 0.0
        report.returned_first_reconcile = sum(1 for n in returning if first_try.get(n.name))
        report.sim_seconds = last - t0
        report.versions = dict(Counter(_version_of(n) for n in self.nodes))
        report.wall_seconds = time.perf_counter() - started
        return report

    # --- an agent upgrade: the DaemonSet controller's rolling update ---

    def agent_upgrade(self, ring: str) -> dict[str, Any]:
        """Roll a new updater image over ``ring`` by the upstream DaemonSet controller's rules (module
        docstring): each sync replaces old pods that are not available (and counts them), counts new pods
        that are not available, and replaces other old pods only while that count is under maxUnavailable.
        A new pod on an online node restarts the agent (a new Updater on the same root) and is available once
        it is ready; on an offline node it never starts."""
        started = time.perf_counter()
        members = [n for n in self.nodes if n.ring == ring]
        budget = self.rings[ring].budget(len(members))  # desiredNumberScheduled counts offline nodes
        new = 2
        available = {n.name: not n.offline for n in members}  # an offline node's pod is not Ready
        syncs = 0
        progress: list[int] = []
        while syncs <= len(members):  # each sync replaces at least one pod, or the upgrade has stalled
            syncs += 1
            unavailable = 0
            replace: list[_Node] = []
            candidates: list[_Node] = []
            for node in self.rng.sample(members, len(members)):  # a Go map: no order
                if node.agent_image == new:
                    unavailable += 0 if available[node.name] else 1
                elif not available[node.name]:
                    replace.append(node)
                    unavailable += 1
                elif unavailable < budget:
                    candidates.append(node)
            remaining = min(max(0, budget - unavailable), len(candidates))
            batch = replace + candidates[:remaining]
            if not batch:
                break  # nothing may be replaced: stalled (or done)
            for node in batch:
                node.agent_image = new
                if node.offline:
                    available[node.name] = False  # the new pod waits for a kubelet that does not answer
                    continue
                node.updater.close()
                node.updater = self._updater(node)  # the new agent process on the same model root
                if node.release is not None:
                    node.updater.reconcile(node.release)  # its first loop: re-checks what it serves
                    self._reload(node)
                available[node.name] = node.updater.ready()[0]
            progress.append(sum(1 for n in members if n.agent_image == new and available[n.name]))
        online = [n for n in members if not n.offline]
        upgraded = sum(1 for n in online if n.agent_image == new)
        return {
            "ring": ring,
            "nodes": len(members),
            "reachable": len(online),
            "max_unavailable": budget,
            "max_unavailable_spec": self.rings[ring].max_unavailable_spec,
            "offline": len(members) - len(online),
            "syncs": syncs,
            "upgraded_online": upgraded,
            "stalled": upgraded < len(online),  # no sync could replace another pod
            "per_sync": [b - a for a, b in zip([0, *progress], progress, strict=False)][:20],
            "wall_seconds": time.perf_counter() - started,
        }


# --- the release story: a real git repository, real promote/guard/rollback ---------------------------------


@dataclass
class Decision:
    """One run of ``edgeops promote`` or ``guard`` in the story, and what came of it."""

    command: str
    at: str  # simulated time
    outcome: str  # "pr #N", "refused", "within gates", "nothing to do"
    note: str
    failed_gates: list[str] = field(default_factory=list)
    pr: int | None = None


@dataclass
class SimReport:
    nodes: int
    pilot: int
    store: str
    rings: dict[str, dict[str, Any]]
    waves: list[float]
    faults: dict[str, Any]
    fault_nodes: dict[str, list[str]]
    phases: list[PhaseReport]
    decisions: list[Decision]
    agent_upgrade: dict[str, Any]
    final_versions: dict[str, int]
    invariant_checks: int
    invariant_loads: int
    invariant_violations: int
    violations: list[str]
    wall_seconds: float
    bad_version: str | None = None
    first_wave: int = 0  # fleet members in the first wave of v1.1
    inference: dict[str, int] = field(default_factory=dict)  # the nodes' inference services, summed

    @property
    def rollback(self) -> PhaseReport | None:
        return next((p for p in self.phases if p.name.startswith("rollback")), None)

    def served_outside_first_wave(self, version: str) -> int:
        """Fleet nodes outside the first wave that ever served ``version`` (at most: served minus wave)."""
        most = max((p.served.get(version, 0) for p in self.phases if p.ring == "fleet"), default=0)
        return max(0, most - self.first_wave)

    @property
    def problems(self) -> list[str]:
        """Why the run is not OK (empty: OK)."""
        found = [
            f"{p.name}: {p.converged}/{p.reachable} online nodes converged" for p in self.phases if not p.ok
        ]
        if self.invariant_violations:
            found.append(f"{self.invariant_violations} invariant violations")
        rb = self.rollback
        if rb is None:
            found.append("no rollback phase ran")
        else:
            if rb.store_reads:
                found.append(f"the rollback read the store {rb.store_reads} times (expected 0: from cache)")
            if rb.swap_median_seconds > ROLLBACK_TARGET_SECONDS:
                found.append(f"the rollback's median swap took {rb.swap_median_seconds * 1000:.1f} ms")
        guarded = any(d.command == "guard" and d.pr for d in self.decisions)
        faulty = self.faults.get("bad_model") or self.faults.get("stuck")
        widest = max(
            (p.percent or 100 for p in self.phases if p.version == "v1.1" and p.ring == "fleet"), default=0
        )
        if not faulty and widest < 100:
            refusals = [f"{d.command} {', '.join(d.failed_gates)}" for d in self.decisions if d.failed_gates]
            found.append(
                f"v1.1 reached only {widest:g}% of the fleet ({'; '.join(refusals) or 'no refusal'})"
            )
        if faulty and not guarded:
            found.append("guard did not open the rollback PR")
        if self.bad_version and self.served_outside_first_wave(self.bad_version):
            found.append(
                f"{self.served_outside_first_wave(self.bad_version)} nodes outside the first wave served it"
            )
        return found

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "simulation": True,
            "note": "SIMULATION: simulated nodes in one process; real updater, real bundles, real store, "
            "real git with promote/guard/rollback",
            "nodes": self.nodes,
            "pilot": self.pilot,
            "store": self.store,
            "rings": self.rings,
            "waves": self.waves,
            "faults": self.faults,
            "fault_nodes": self.fault_nodes,
            "first_wave": self.first_wave,
            "phases": [{**vars(p), "ok": p.ok} for p in self.phases],
            "decisions": [vars(d) for d in self.decisions],
            "agent_upgrade": self.agent_upgrade,
            "final_versions": self.final_versions,
            "invariant": {
                "rule": "no node is ever without a loadable model once it had one",
                "checks": self.invariant_checks,
                "onnxruntime_loads": self.invariant_loads,
                "load_sample_per_phase": LOAD_SAMPLE,
                "violations": self.invariant_violations,
                "first_violations": self.violations[:20],
            },
            "inference": self.inference,
            "rollback_store_reads": self.rollback.store_reads if self.rollback else None,
            "rollback_median_seconds": self.rollback.swap_median_seconds if self.rollback else None,
            "rollback_target_seconds": ROLLBACK_TARGET_SECONDS,
            "wall_seconds": self.wall_seconds,
            "problems": self.problems,
            "ok": self.ok,
        }
        if self.bad_version:
            doc["bad_version"] = self.bad_version
            doc["bad_served_outside_first_wave"] = self.served_outside_first_wave(self.bad_version)
        return doc

    def render(self) -> str:
        fleet = self.rings["fleet"]
        share = 100 * self.first_wave / max(1, fleet["nodes"])
        lines = [
            "SIMULATION: fleet simulator — simulated nodes in one process and a simulated clock (kubelet "
            "ConfigMap refresh ≤ 90 s, 30 s agent loop); real model-updater, real signed bundles, real "
            "store, rings from kustomize build, releases moved by real promote/guard/rollback PRs in a real "
            "git repository.",
            f"nodes {self.nodes} (pilot {self.pilot}, fleet {fleet['nodes']}), store {self.store}, fleet "
            "waves "
            + ", ".join(f"{w:g}%" for w in self.waves)
            + f" (first wave: {self.first_wave} nodes, {share:.1f}%)",
        ]
        faults = {k: v for k, v in self.fault_nodes.items() if v}
        if faults or self.faults.get("bad_model") or self.faults.get("stuck"):
            extra = [f"{k} {len(v)}" for k, v in faults.items()]
            if self.faults.get("bad_model"):
                extra.append(f"bad model {self.bad_version} (passes its golden check, misses failures)")
            if self.faults.get("stuck"):
                extra.append(f"stuck {self.faults['stuck']:g} of the first wave")
            lines.append("faults: " + ", ".join(extra))
        lines.append(
            f"{'phase':<16}{'ver':<6}{'wave':>6}{'members':>8}{'online':>7}{'converged':>10}{'stuck':>6}"
            f"{'silent':>7}{'served':>7}{'reads':>7}{'@start':>7}{'peak/min':>9}{'swap ms':>8}{'sim s':>7}"
            f"{'wall s':>7}  failures"
        )
        for p in self.phases:
            failures = ", ".join(f"{k} {v}" for k, v in sorted(p.failures.items())) or "-"
            wave = "all" if p.percent is None else f"{p.percent:g}%"
            lines.append(
                f"{p.name:<16}{p.version:<6}{wave:>6}{p.nodes:>8}{p.reachable:>7}{p.converged:>10}{p.stuck:>6}"
                f"{p.silent:>7}{p.served.get(p.version, 0):>7}{p.store_reads:>7}{p.store_reads_at_start:>7}"
                f"{p.peak_reads_per_minute:>9}{p.swap_median_seconds * 1000:>8.1f}{p.sim_seconds:>7.0f}"
                f"{p.wall_seconds:>7.1f}  {failures}"
            )
            if p.returned or p.joined:
                lines.append(
                    f"{'':<16}{p.returned} nodes came back ({p.returned_first_reconcile} converged on their "
                    "first "
                    f"reconcile), {p.joined} joined with empty caches"
                )
        lines.append("decisions:")
        for d in self.decisions:
            gates = f" (failed: {', '.join(d.failed_gates)})" if d.failed_gates else ""
            lines.append(f"  {d.at}  {d.command:<8} {d.outcome}{gates}: {d.note}")
        au = self.agent_upgrade
        if au:
            lines.append(
                f"agent upgrade (DaemonSet rolling update, upstream rules): {au['upgraded_online']}/"
                f"{au['reachable']} online agents on the new image after {au['syncs']} syncs; maxUnavailable "
                f"{au['max_unavailable_spec']} = {au['max_unavailable']} of {au['nodes']} pods, "
                f"{au['offline']} "
                "offline" + (" — STALLED: pods on offline nodes hold the budget" if au["stalled"] else "")
            )
        if self.bad_version:
            lines.append(
                f"bad model {self.bad_version}: served by at most "
                f"{self.served_outside_first_wave(self.bad_version)} "
                "fleet nodes outside the first wave"
            )
        rb = self.rollback
        inf = self.inference
        lines += [
            "final versions (as the nodes' inference services report them): "
            + ", ".join(f"{v} {n}" for v, n in sorted(self.final_versions.items())),
            f"inference services (reference, ONNX Runtime): {inf.get('services', 0)} nodes, "
            f"{inf.get('swaps', 0)} swaps served, {inf.get('load_failures', 0)} failed loads, "
            f"{inf.get('sessions', 0)} sessions shared by identical model bytes",
            "invariant (no node ever without a loadable model once it had one, and its inference service "
            f"serves what `current` names): {self.invariant_violations} "
            f"violations in {self.invariant_checks} checks (after every reconcile and every phase; "
            f"{self.invariant_loads} loads in ONNX Runtime)",
        ]
        if rb is not None:
            lines.append(
                f"rollback from cache: median swap {rb.swap_median_seconds * 1000:.1f} ms per node (target ≤ "
                f"{ROLLBACK_TARGET_SECONDS * 1000:.0f} ms), {rb.store_reads} store reads"
            )
        lines.append(f"total wall time {self.wall_seconds:.1f} s; {'OK' if self.ok else 'NOT OK'}")
        lines += [f"  problem: {p}" for p in self.problems]
        lines += [f"  violation: {v}" for v in self.violations[:20]]
        return "\n".join(lines)


class _Story:
    """The repository, its forge and the fleet, moved by the real release tooling on a simulated clock."""

    def __init__(self, *, workdir: Path, repo_root: Path, fleet: Fleet, public_pem: bytes, plan: FaultPlan):
        self.fleet = fleet
        self.clock = fleet.clock
        self.plan = plan
        self.rows: list[PredictionRow] = []
        self.decisions: list[Decision] = []
        self.phases: list[PhaseReport] = []
        self.rng = np.random.default_rng(plan.seed)
        self.remote = workdir / "repo.git"
        self.work = workdir / "repo"
        self._git(workdir, "init", "--quiet", "--bare", "--initial-branch=main", str(self.remote))
        self._git(workdir, "clone", "--quiet", str(self.remote), str(self.work))
        for name in ("edgeops.yaml", "environments", "manifests"):
            src = repo_root / name
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, self.work / name)
        (self.work / "environments/release-signing/release-signing.pub").write_bytes(public_pem)
        for key, value in (("user.name", "fleet-sim"), ("user.email", "fleet-sim@edgeops.invalid")):
            self._git(self.work, "config", key, value)
        self._git(self.work, "add", "-A")
        self._git(self.work, "commit", "--quiet", "-m", "fleet-sim: rings with no release")
        self._git(self.work, "push", "--quiet", "origin", "HEAD:main")
        self.forge = LocalForge(self.remote)
        self.cfg = load_config(self.work / "edgeops.yaml")
        self.bad = {"v1.1"} if plan.bad_model else set()

    def _git(self, cwd: Path, *args: str) -> str:
        stamp = f"{int(self.clock.now)} +0000"
        env = {**os.environ, "GIT_COMMITTER_DATE": stamp, "GIT_AUTHOR_DATE": stamp}
        result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            raise EdgeopsError(f"git {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout.strip()

    def _dated(self) -> contextlib.AbstractContextManager[None]:
        """Commits made by the release tooling and the forge carry the simulated time."""
        stamp = f"{int(self.clock.now)} +0000"
        return patched_environ({"GIT_COMMITTER_DATE": stamp, "GIT_AUTHOR_DATE": stamp})

    def workspace(self) -> Any:
        from tools.gitops.promotion import Workspace

        return Workspace.open(self.work / "edgeops.yaml", forge=self.forge, now=self.clock.datetime())

    def _at(self) -> str:
        return self.clock.datetime().strftime("%m-%d %H:%M")

    # --- telemetry (the runtime backend, simulated) ---

    def _devices(self, ring: str) -> list[str]:
        return self.fleet.members(ring)

    def _reader(
        self, ring: str, version: str, since: datetime, until: datetime, members: frozenset[str] | None
    ) -> RingTelemetry:
        devices = {n.name: n.ring for n in self.fleet.nodes}
        return telemetry_from_rows(
            self.rows, devices, ring=ring, version=version, since=since, until=until, members=members
        )

    def report(self, ring: str, hours: float, *, wave_percent: float | None) -> None:
        """``hours`` of field predictions from the ring's online nodes: each node's inference service runs a
        batch of windows, and its rows carry the version the service reports for that batch. Which labels
        they predict is drawn from the version's field quality (the tiny model knows nothing of machines)."""
        members = [n for n in self.fleet.nodes if n.ring == ring and not n.offline]
        wave = [n for n in members if wave_percent is None or _in_wave(n.name, wave_percent)]
        need = self.cfg.gates.telemetry.min_validated_predictions
        per_node = max(12, math.ceil(1.5 * need / (0.8 * max(1, len(wave)))))
        windows = _windows(per_node)
        start = self.clock.now
        for node in members:
            if node.service is None or node.service.model is None:
                continue  # serves nothing yet: reports nothing
            version = node.service.predict(windows).version
            miss = FN_RATE["bad" if version in self.bad and ring != "pilot" else "good"]
            draws = self.rng.random((per_node, 4))
            for j in range(per_node):
                at = datetime.fromtimestamp(start + hours * 3600 * (j + 0.5) / per_node, UTC)
                failing = draws[j, 0] < 0.3
                true = [LABELS[int(draws[j, 1] * len(LABELS))]] if failing else []
                predicted = (
                    ([] if draws[j, 2] < miss else true)
                    if failing
                    else ([LABELS[0]] if draws[j, 2] < 0.01 else [])
                )
                validated = true if draws[j, 3] < 0.8 else None
                self.rows.append(
                    PredictionRow(node.name, version, at, predicted, validated, 8.0 + 8.0 * draws[j, 3])
                )
        self.clock.advance(hours * 3600)

    # --- git → the ring → the fleet ---

    def merge(self, pr: PullRequest) -> None:
        with self._dated():
            self.forge.merge_pr(pr.number)
        self._git(self.work, "fetch", "--quiet", "origin")
        self._git(self.work, "merge", "--quiet", "--ff-only", "origin/main")

    def commit_release(self, ring: str, release: Release, message: str) -> None:
        """A release PR merged by hand-off from the training pipeline (propose is tested elsewhere)."""
        path = self.work / self.cfg.release_path(ring)
        path.write_text(edit_release_text(path.read_text(), release, ring=ring, source=str(path)))
        self._git(self.work, "commit", "--quiet", "-am", message)
        self._git(self.work, "push", "--quiet", "origin", "HEAD:main")

    def synced(self, ring: str) -> Release:
        """Argo CD, simulated: the ring's release at the merged commit. kustomize puts release.yaml verbatim
        into the stable-name ConfigMap the agents mount (tests/test_manifests.py builds the ring at several
        releases and waves and checks exactly that), so the file at the commit is what the kubelet projects;
        reading it with git instead of a 2 s ``kustomize build`` per phase keeps 1,000 nodes under 2 minutes.
        """
        path = self.cfg.release_path(ring)
        release = parse_release(self._git(self.work, "show", f"origin/main:{path}") + "\n", source=path)
        if release is None:
            raise EdgeopsError(f"ring {ring} has no release after the merge")
        return release

    def phase(self, name: str, ring: str, **kwargs: Any) -> PhaseReport:
        report = self.fleet.rollout(name, ring, self.synced(ring), **kwargs)
        self.phases.append(report)
        return report

    def promote(self) -> Any:
        from tools.gitops.promotion import promote

        with self._dated():
            decision = promote(
                self.workspace(), from_ring="pilot", telemetry_reader=self._reader, devices=self._devices
            )
        failed = [g.name for g in decision.gates if not g.passed]
        outcome = f"pr #{decision.pr.number}" if decision.pr else ("refused" if failed else "nothing to do")
        self.decisions.append(
            Decision(
                "promote",
                self._at(),
                outcome,
                decision.note,
                failed,
                decision.pr.number if decision.pr else None,
            )
        )
        return decision

    def guard(self) -> Any:
        from tools.gitops.promotion import guard

        with self._dated():
            outcome = guard(
                self.workspace(), ring="fleet", telemetry_reader=self._reader, devices=self._devices
            )
        failed = [g.name for g in outcome.gates if not g.passed]
        pr = outcome.rollback.pr if outcome.rollback else None
        self.decisions.append(
            Decision(
                "guard",
                self._at(),
                f"pr #{pr.number}" if pr else "within gates",
                outcome.note,
                failed,
                pr.number if pr else None,
            )
        )
        return outcome

    def rollback(self, reason: str) -> PullRequest:
        from tools.gitops.promotion import rollback

        with self._dated():
            outcome = rollback(self.workspace(), ring="fleet", reason=reason)
        self.decisions.append(
            Decision("rollback", self._at(), f"pr #{outcome.pr.number}", reason, [], outcome.pr.number)
        )
        return outcome.pr


def _in_wave(node: str, percent: float) -> bool:
    from tools.artifacts.release import in_wave

    return in_wave(node, percent)


def simulate(
    *,
    nodes: int,
    pilot: int,
    workdir: Path,
    store_uri: str,
    faults: FaultPlan | None = None,
    repo_root: Path,
) -> SimReport:
    """The release story on ``nodes`` simulated nodes (the first ``pilot`` labelled pilot): v1.0 through the
    pilot to the whole fleet; v1.1 through the pilot, then the fleet in its waves, each wave promoted by
    ``edgeops promote`` when it has soaked and passes its gates, guarded by ``edgeops guard``; then a rollback
    (by guard, or by the on-call engineer at the end). An agent upgrade under the DaemonSet's rules runs while
    the first wave soaks, with the offline nodes still away."""
    if nodes < 1 or not 0 <= pilot <= nodes:
        raise EdgeopsError(f"--nodes {nodes} --pilot {pilot}: need 1 ≤ nodes and 0 ≤ pilot ≤ nodes")
    plan = faults or FaultPlan()
    if not 0 <= plan.stuck <= 1:
        raise EdgeopsError(f"--stuck {plan.stuck}: give a share of the first wave from 0 to 1")
    started = time.perf_counter()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    run = workdir / f"sim-{os.getpid()}-{time.time_ns()}"
    run.mkdir()
    rings = load_rings(repo_root)

    private_pem, public_pem = generate_keypair()
    private_key = private_key_from_pem(private_pem, source="fleet simulator (throwaway)")
    public_key = public_key_from_pem(public_pem, source="fleet simulator (throwaway)")
    shared_store = functools.cache(open_store)  # one client per store: for publishing and the whole fleet
    releases: dict[str, Release] = {}
    for version in ("v1.0", "v1.1"):
        model = build_model(WEIGHTS[version])
        files = {
            "model.onnx": model,
            "golden.json": build_golden(model),
            "model.json": json.dumps({"version": version, "interface": INTERFACE, "labels": LABELS}).encode(),
        }
        result = publish_bundle(shared_store(store_uri), version, files, private_key)
        releases[version] = make_release(
            private_key, version=version, interface=INTERFACE, bundle=result.uri,
            files={k: v for k, v in result.files.items() if k in NODE_FILES},
            metrics={"simulated": True},
        )  # fmt: skip

    fleet = Fleet(
        nodes=nodes, pilot=pilot, workdir=run, rings=rings, public_key=public_key,
        accept_interfaces=(INTERFACE,), seed=plan.seed, store_opener=shared_store,
    )  # fmt: skip
    story = _Story(workdir=run, repo_root=repo_root, fleet=fleet, public_pem=public_pem, plan=plan)
    cfg = story.cfg
    waves = [float(w) for w in cfg.rings["fleet"].waves]
    fleet_nodes = [n for n in fleet.nodes if n.ring == "fleet"]
    if plan.total() > len(fleet_nodes):
        raise EdgeopsError(f"{plan.total()} faulty nodes asked for, the fleet ring has {len(fleet_nodes)}")
    picked = fleet.rng.sample(fleet_nodes, plan.total())
    chosen: dict[str, list[_Node]] = {}
    for kind in ("offline", "failed_downloads", "corrupt_objects", "bad_golden"):
        count = int(getattr(plan, kind))
        chosen[kind], picked = picked[:count], picked[count:]
    first_wave = [n for n in fleet_nodes if _in_wave(n.name, waves[0])]
    stuck = [n for n in first_wave if n not in chosen["offline"]]
    stuck = fleet.rng.sample(stuck, round(plan.stuck * len(stuck))) if plan.stuck else []
    for node in stuck:
        node.faults.unreadable.add("v1.1")
    chosen["stuck"] = stuck
    joined: list[_Node] = []

    def arm(name: str) -> None:
        if name != plan.phase:
            return
        for node in chosen["failed_downloads"]:
            node.faults.fail_next_read = True
        for node in chosen["corrupt_objects"]:
            node.faults.corrupt_next = "model.onnx"
        for node in chosen["bad_golden"]:
            node.faults.corrupt_next = "golden.json"

    pilot_soak = cfg.rings["pilot"].soak_hours
    wave_soak = cfg.rings["fleet"].wave_soak_hours
    grace = cfg.gates.telemetry.install_grace_hours

    # v1.0: pilot, then the whole fleet (its first release: nothing to fall back to, so no waves).
    story.commit_release("pilot", releases["v1.0"], "pilot: model v1.0 (release PR merged)")
    arm("pilot-v1.0")
    story.phase("pilot-v1.0", "pilot")
    story.report("pilot", pilot_soak + 1, wave_percent=None)
    decision = story.promote()
    if decision.pr is None:
        raise EdgeopsError(f"the simulation's v1.0 was not promoted: {decision.note}")
    story.merge(decision.pr)
    arm("fleet-v1.0")
    story.phase("fleet-v1.0", "fleet")
    for node in chosen["offline"]:
        node.offline = True  # a line is down, a cabinet unplugged: until the last wave

    # v1.1: pilot, then the fleet in waves.
    story.report("fleet", 1, wave_percent=None)
    story.commit_release("pilot", releases["v1.1"], "pilot: model v1.1 (release PR merged)")
    arm("pilot-v1.1")
    story.phase("pilot-v1.1", "pilot")
    story.report("pilot", pilot_soak + 1, wave_percent=None)
    # Each wave: merged, synced, soaked; then the daily automation runs `promote` (the next wave, when this
    # one passes its gates) and, when it opens nothing, `guard` (the rollback PR, when the wave breaches).
    rolled_back = False
    upgrade: dict[str, Any] = {}
    decision = story.promote()  # v1.1 enters the fleet at its first wave
    while decision.pr is not None:
        story.merge(decision.pr)
        percent = decision.percent
        name = f"fleet-v1.1@{percent:g}" if percent is not None else "fleet-v1.1"
        last = percent is None or percent >= 100
        returning = [n for n in chosen["offline"] if n.offline] if last else []
        for node in returning:
            node.offline = False  # back after a month: an old model, an old cache
        joining: list[_Node] = []
        if plan.join and not joined and not last:
            joined = joining = [fleet.add_node(f"join-{i:03d}", {}) for i in range(plan.join)]
        arm(name)
        story.phase(name, "fleet", returning=returning, joining=joining)
        if not upgrade:
            # A new updater image, merged while the first wave soaks (and the offline nodes are still away):
            # a DaemonSet rolling update, paced by maxUnavailable.
            upgrade = fleet.agent_upgrade("fleet")
        story.report("fleet", max(wave_soak, grace) + 1, wave_percent=percent)
        decision = story.promote()
        if decision.pr is None:
            outcome = story.guard()
            if outcome.rollback is not None:
                story.merge(outcome.rollback.pr)
                story.phase("rollback-v1.0", "fleet")
                rolled_back = True
    if not rolled_back and story.synced("fleet").version == "v1.1":
        pr = story.rollback("fleet-sim: the on-call engineer rolls the fleet back")
        story.merge(pr)
        story.phase("rollback-v1.0", "fleet")
    if not upgrade:
        upgrade = fleet.agent_upgrade("fleet")

    ring_sizes = Counter(n.ring for n in fleet.nodes)
    services = [n.service for n in fleet.nodes if n.service is not None]
    return SimReport(
        nodes=nodes,
        pilot=pilot,
        store=store_uri,
        rings={
            name: {
                "nodes": ring_sizes[name],
                "max_unavailable_spec": r.max_unavailable_spec,
                "budget": r.budget(ring_sizes[name]),
                "waves": [float(w) for w in cfg.rings[name].waves],
            }
            for name, r in rings.items()
        },
        waves=waves,
        faults=vars(plan).copy(),
        fault_nodes={k: [n.name for n in v] for k, v in chosen.items()},
        phases=story.phases,
        decisions=story.decisions,
        agent_upgrade=upgrade,
        final_versions=dict(Counter(_version_of(n) for n in fleet.nodes)),
        invariant_checks=fleet.checks,
        invariant_loads=fleet.loads,
        invariant_violations=len(fleet.violations),
        violations=fleet.violations,
        wall_seconds=time.perf_counter() - started,
        bad_version="v1.1" if plan.bad_model else None,
        first_wave=len(first_wave),
        inference={
            "services": len(services),
            "swaps": sum(s.swaps for s in services),
            "load_failures": sum(s.load_failures for s in services),
            "sessions": len(fleet.sessions),
        },
    )


# --- command line -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _throwaway_s3() -> Iterator[None]:
    from tools.kits.devservices import ThrowawayS3

    # Its own process: the server's work does not compete with the simulated nodes for this one's GIL.
    server = ThrowawayS3(separate_process=True)
    endpoint = server.start()
    try:
        with patched_environ(endpoint.env(), remove=["AWS_PROFILE"]):
            yield
    finally:
        server.stop()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeops fleet-sim",
        description="SIMULATION of the release story on N nodes with the real model-updater and the real "
        "release tooling: v1.0 to the pilot and the fleet, v1.1 to the pilot and then the fleet in its waves "
        "(edgeops promote per wave, edgeops guard after each), a rollback served from cache, and an agent "
        "upgrade under the DaemonSet controller's rules.",
    )
    parser.add_argument("--nodes", type=int, default=1000, help="simulated nodes (default 1000)")
    parser.add_argument("--pilot", type=int, default=50, help="of which labelled pilot (default 50)")
    parser.add_argument(
        "--workdir", type=Path, help="where the nodes' model roots go (default: a temporary folder, deleted)"
    )
    parser.add_argument(
        "--store",
        help="store URI for the bundles (default: a throwaway S3 API server, s3://fleet-sim/bundles)",
    )
    parser.add_argument("--repo-root", type=Path, default=Path(__file__).resolve().parents[2])
    parser.add_argument(
        "--offline",
        type=int,
        default=0,
        help="fleet nodes offline from the fleet's first release to its last wave",
    )
    parser.add_argument("--failed-downloads", type=int, default=0, help="fleet nodes whose first read fails")
    parser.add_argument(
        "--corrupt-objects", type=int, default=0, help="fleet nodes served a corrupt model once"
    )
    parser.add_argument(
        "--bad-golden", type=int, default=0, help="fleet nodes served an altered golden.json once"
    )
    parser.add_argument(
        "--fault-phase",
        default="fleet-v1.1@5",
        help="phase that arms the three faults above (default fleet-v1.1@5)",
    )
    parser.add_argument(
        "--bad-model", action="store_true",
        help="v1.1 passes its golden check but misses 45%% of failures in the field: guard must stop it",
    )  # fmt: skip
    parser.add_argument(
        "--stuck", type=float, default=0.0, help="share of the first wave that cannot install v1.1 (e.g. 0.3)"
    )
    parser.add_argument(
        "--join", type=int, default=0, help="fleet nodes joining with empty caches in the first wave"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the updaters' own logs")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``edgeops fleet-sim``: 0 when the story held (SimReport.problems); 1 otherwise; 2 on a setup error."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)
    quiet = ["edgeops.updater", "edgeops.inference", "edgeops.release", "edgeops.forge"]
    saved = {name: logging.getLogger(name).level for name in quiet}
    if not args.verbose:
        for name in quiet:  # injected faults would flood stderr with refusals
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        return _main(args)
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def _main(args: argparse.Namespace) -> int:
    plan = FaultPlan(
        offline=args.offline,
        failed_downloads=args.failed_downloads,
        corrupt_objects=args.corrupt_objects,
        bad_golden=args.bad_golden,
        phase=args.fault_phase,
        stuck=args.stuck,
        bad_model=args.bad_model,
        join=args.join,
        seed=args.seed,
    )
    with contextlib.ExitStack() as stack:
        store = args.store
        if store is None:
            stack.enter_context(_throwaway_s3())
            store = "s3://fleet-sim/bundles"
        workdir = args.workdir
        if workdir is None:
            import tempfile

            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edgeops-fleetsim-")))
        try:
            report = simulate(
                nodes=args.nodes,
                pilot=args.pilot,
                workdir=workdir,
                store_uri=store,
                faults=plan,
                repo_root=args.repo_root,
            )
        except EdgeopsError as exc:
            print(f"SIMULATION: fleet simulator could not run: {exc}", file=sys.stderr)
            return 2
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, sort_keys=False))
    else:
        print(report.render())
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
