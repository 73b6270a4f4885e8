"""A fleet simulator for the model-updater: N simulated edge nodes, real updater logic, a real store.

    python -m tools.kits.fleetsim --nodes 1000 --pilot 50            # throwaway S3 API server, s3://fleet-sim/bundles
    python -m tools.kits.fleetsim --nodes 60 --pilot 6 --offline 2 --failed-downloads 3 \\
        --corrupt-objects 2 --json

This is a SIMULATION, and says so in its output. What is real: every node has its own model root on the
local disk and its own :class:`~tools.edge.updater.Updater` (the production class: signature check, download,
digests, golden health check in ONNX Runtime, atomic swap, pruning), the bundles are signed and published
to a real store (the S3 API server by default), and the rings' rollout budgets and node selection come
from ``kustomize build environments/<ring>``. What is simulated: nodes are folders in one process, there
is no kubelet, a DaemonSet rollout is a loop of *steps* (each step restarts up to ``maxUnavailable``
not-ready pods of the ring, and a pod is ready when its updater is ready on the desired version), and
reconciles inside a step run one after another (wall time is therefore an upper bound of what a step
takes on a real fleet, where the nodes work in parallel).

Phases: (1) pilot release v1.0 → pilot ring; (2) fleet rollout of v1.0; (3) pilot release v1.1; (4) fleet
rollout of v1.1; (5) rollback of the fleet to v1.0, served from each node's cache (no store reads).

Faults (:class:`FaultPlan`), all on fleet nodes and, except offline nodes, during one phase (default the
v1.1 fleet rollout): *offline* nodes go offline after phase 2 (never reconciled again, keep v1.0, and are
not counted in the ring's budget); a *failed download* makes the node's store raise on its first read; a
*corrupt object* returns model.onnx with a flipped byte once (refused: digest); a *bad golden* returns an
altered golden.json once. The last one emulates a failing health check, but the updater refuses it earlier,
as a digest mismatch (reason ``digest``), because golden.json is covered by the signed release: a genuine
``golden`` refusal needs a signed bundle whose own golden.json is wrong, which tests/test_updater.py covers.

The invariant "no node is ever without a loadable model once it had one" is checked after every step on
every node: ``<root>/current`` resolves and ``model.onnx`` exists there; in addition ``model.onnx`` is
loaded in ONNX Runtime on a sample of nodes per step (:data:`LOAD_SAMPLE`, the nodes reconciled in the
step first), not on all of them, for speed.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import logging
import math
import os
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tools.artifacts.bundle import publish_bundle
from tools.artifacts.release import Release, make_release
from tools.core.errors import EdgeopsError, StoreError
from tools.core.signing import generate_keypair, private_key_from_pem, public_key_from_pem
from tools.core.store import Store, open_store
from tools.edge.updater import CURRENT, ReconcileResult, Updater
from tools.gitops.manifests import kustomize_build, parse_objects, selects_node

__all__ = [
    "LOAD_SAMPLE",
    "FaultPlan",
    "Fleet",
    "PhaseReport",
    "Ring",
    "SimReport",
    "load_rings",
    "main",
    "simulate",
]

log = logging.getLogger("edgeops.fleetsim")

RING_LABEL = "context-edge.io/ring"
INTERFACE = "sha256:" + hashlib.sha256(b"edgeops fleet simulator interface").hexdigest()
LABELS = ["bearing_wear", "misalignment", "overheating", "electrical_fault", "lubrication_loss"]
WEIGHTS = {"v1.0": 0.1, "v1.1": 0.2}  # a different (tiny, real) model per version
LOAD_SAMPLE = 20  # nodes whose model.onnx is loaded in ONNX Runtime after each step
ROLLBACK_TARGET_SECONDS = 0.050
RINGS = ("pilot", "fleet")


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


# --- rings from the real manifests --------------------------------------------------------------------------


@dataclass(frozen=True)
class Ring:
    name: str
    daemonset: dict[str, Any]
    max_unavailable_spec: int | str  # as written in the DaemonSet (10%, 100%, 1…)

    def selects(self, labels: Mapping[str, str]) -> bool:
        return selects_node(self.daemonset, labels)

    def budget(self, ring_nodes: int) -> int:
        """maxUnavailable in pods for a ring of ``ring_nodes`` nodes (percentages round up, at least 1)."""
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
    """Faults injected on distinct fleet nodes (chosen with ``seed``), see the module docstring."""

    offline: int = 0  # go offline after phase 2 and stay there (keep v1.0)
    failed_downloads: int = 0  # the store raises on the node's first read in ``phase``
    corrupt_objects: int = 0  # model.onnx arrives with a flipped byte once in ``phase``
    bad_golden: int = 0  # golden.json arrives altered once in ``phase`` (refused as a digest mismatch)
    phase: str = "fleet-v1.1"
    seed: int = 0

    def total(self) -> int:
        return self.offline + self.failed_downloads + self.corrupt_objects + self.bad_golden


@dataclass
class _NodeFaults:
    fail_next_read: bool = False
    corrupt_next: str | None = None  # the file name whose next read is damaged


class _Reads:
    def __init__(self) -> None:
        self.count = 0


class _NodeStore:
    """The node's view of the shared store: counts reads and applies this node's armed faults once."""

    def __init__(self, inner: Store, faults: _NodeFaults, reads: _Reads) -> None:
        self.inner = inner
        self.uri: str = getattr(inner, "uri", "")
        self.faults = faults
        self.reads = reads

    def get(self, key: str) -> bytes:
        self.reads.count += 1
        if self.faults.fail_next_read:
            self.faults.fail_next_read = False
            raise StoreError(f"simulated network failure reading {key}")
        data = self.inner.get(key)
        name = key.rsplit("/", 1)[-1]
        if self.faults.corrupt_next == name:
            self.faults.corrupt_next = None
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


# --- the simulation -----------------------------------------------------------------------------------------


@dataclass
class _Node:
    name: str
    labels: dict[str, str]
    ring: str
    root: Path
    updater: Updater
    faults: _NodeFaults
    offline: bool = False
    had_model: bool = False


@dataclass
class PhaseReport:
    name: str
    ring: str
    version: str
    nodes: int  # in the ring
    reachable: int  # in the ring and online
    max_unavailable: int
    steps: int = 0
    converged: int = 0
    max_per_step: int = 0
    reconciles: int = 0
    store_reads: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    wall_seconds: float = 0.0
    median_seconds: float = 0.0  # per-node ReconcileResult.seconds of successful reconciles
    p95_seconds: float = 0.0
    versions: dict[str, int] = field(default_factory=dict)  # every node of the fleet, after the phase

    @property
    def ok(self) -> bool:
        return self.converged == self.reachable


@dataclass
class SimReport:
    nodes: int
    pilot: int
    store: str
    rings: dict[str, dict[str, Any]]
    faults: dict[str, Any]
    fault_nodes: dict[str, list[str]]
    phases: list[PhaseReport]
    final_versions: dict[str, int]
    invariant_checks: int
    invariant_loads: int
    invariant_violations: int
    violations: list[str]
    wall_seconds: float

    @property
    def rollback(self) -> PhaseReport:
        return self.phases[-1]

    @property
    def ok(self) -> bool:
        return (
            self.invariant_violations == 0
            and all(p.ok for p in self.phases)
            and self.rollback.store_reads == 0
            and self.rollback.median_seconds <= ROLLBACK_TARGET_SECONDS
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "simulation": True,
            "note": "SIMULATION: simulated nodes in one process; real updater, real bundles, real store",
            "nodes": self.nodes,
            "pilot": self.pilot,
            "store": self.store,
            "rings": self.rings,
            "faults": self.faults,
            "fault_nodes": self.fault_nodes,
            "phases": [{**vars(p), "ok": p.ok} for p in self.phases],
            "final_versions": self.final_versions,
            "invariant": {
                "rule": "no node is ever without a loadable model once it had one",
                "checks": self.invariant_checks,
                "onnxruntime_loads": self.invariant_loads,
                "load_sample_per_step": LOAD_SAMPLE,
                "violations": self.invariant_violations,
                "first_violations": self.violations[:20],
            },
            "rollback_median_seconds": self.rollback.median_seconds,
            "rollback_target_seconds": ROLLBACK_TARGET_SECONDS,
            "wall_seconds": self.wall_seconds,
            "ok": self.ok,
        }

    def render(self) -> str:
        lines = [
            "SIMULATION: fleet simulator — simulated nodes in one process (no kubelet, no network between "
            "nodes); real model-updater logic, real signed bundles, real store, rings from kustomize build.",
            f"nodes {self.nodes} (pilot {self.pilot}), store {self.store}",
            "rings: "
            + ", ".join(
                f"{name} {r['nodes']} nodes, maxUnavailable {r['max_unavailable_spec']} = {r['budget']}"
                for name, r in self.rings.items()
            ),
        ]
        if any(self.faults.get(k) for k in ("offline", "failed_downloads", "corrupt_objects", "bad_golden")):
            lines.append(
                "faults: "
                + ", ".join(f"{k} {len(v)}" for k, v in self.fault_nodes.items())
                + f" (in phase {self.faults['phase']}; offline from phase 3 on)"
            )
        lines.append(
            f"{'phase':<14}{'ring':<7}{'ver':<6}{'steps':>6}{'max/step':>9}{'budget':>7}"
            f"{'converged':>14}{'reads':>7}{'median s':>10}{'p95 s':>8}{'wall s':>8}  failures"
        )
        for p in self.phases:
            failures = ", ".join(f"{k} {v}" for k, v in sorted(p.failures.items())) or "-"
            lines.append(
                f"{p.name:<14}{p.ring:<7}{p.version:<6}{p.steps:>6}{p.max_per_step:>9}{p.max_unavailable:>7}"
                f"{f'{p.converged}/{p.reachable}':>14}{p.store_reads:>7}{p.median_seconds:>10.4f}"
                f"{p.p95_seconds:>8.4f}{p.wall_seconds:>8.2f}  {failures}"
            )
        rb = self.rollback
        lines += [
            "final versions: " + ", ".join(f"{v} {n}" for v, n in sorted(self.final_versions.items())),
            f"invariant (no node ever without a loadable model once it had one): {self.invariant_violations} "
            f"violations in {self.invariant_checks} checks (current/model.onnx exists on every node after "
            f"every step; loaded in ONNX Runtime on {self.invariant_loads} samples, up to {LOAD_SAMPLE} "
            "per step)",
            f"cached rollback: median {rb.median_seconds * 1000:.1f} ms per node, p95 "
            f"{rb.p95_seconds * 1000:.1f} ms (target ≤ {ROLLBACK_TARGET_SECONDS * 1000:.0f} ms), "
            f"{rb.store_reads} store reads",
            f"total wall time {self.wall_seconds:.1f} s; {'OK' if self.ok else 'NOT OK'}",
        ]
        lines += [f"  violation: {v}" for v in self.violations[:20]]
        return "\n".join(lines)


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _version_of(node: _Node) -> str:
    return node.updater.current_version() or "none"


class _Sim:
    def __init__(
        self,
        nodes: list[_Node],
        rings: Mapping[str, Ring],
        reads: _Reads,
        rng: random.Random,
    ) -> None:
        self.nodes = nodes
        self.rings = rings
        self.reads = reads
        self.rng = rng
        self.checks = 0
        self.loads = 0
        self.violations: list[str] = []

    def check_invariant(self, touched: Sequence[_Node], label: str) -> None:
        for node in self.nodes:
            current = node.root / CURRENT
            model = Path(os.path.realpath(current)) / "model.onnx"
            present = current.is_symlink() and model.is_file()
            self.checks += 1
            if present:
                node.had_model = True
            elif node.had_model:
                self.violations.append(f"{label}: {node.name} has no model at {current}")
        sample = [n for n in touched if n.had_model][:LOAD_SAMPLE]
        rest = [n for n in self.nodes if n.had_model and n not in sample]
        sample += self.rng.sample(rest, min(len(rest), LOAD_SAMPLE - len(sample)))
        for node in sample:
            self.loads += 1
            try:
                _session(os.path.realpath(node.root / CURRENT / "model.onnx"))
            except Exception as exc:  # noqa: BLE001 - ORT raises pybind11 types for every load failure
                self.violations.append(f"{label}: {node.name}'s model does not load ({exc})")

    def rollout(self, name: str, ring_name: str, release: Release) -> PhaseReport:
        start = time.perf_counter()
        reads_before = self.reads.count
        members = [n for n in self.nodes if n.ring == ring_name]
        reachable = [n for n in members if not n.offline]
        budget = self.rings[ring_name].budget(len(members))
        report = PhaseReport(name, ring_name, release.version, len(members), len(reachable), budget)
        # The release changed, so every pod of the ring is replaced: none counts as updated yet.
        updated: set[str] = set()
        failures: Counter[str] = Counter()
        outcomes: Counter[str] = Counter()
        seconds: list[float] = []
        step_limit = 3 * math.ceil(max(1, len(reachable)) / budget) + 10
        while len(updated) < len(reachable) and report.steps < step_limit:
            # Nodes that failed before are unavailable already: they are retried first, within the budget.
            pending = [n for n in reachable if n.name not in updated]
            batch = pending[:budget]
            report.steps += 1
            report.max_per_step = max(report.max_per_step, len(batch))
            for node in batch:
                result: ReconcileResult = node.updater.reconcile(release)
                report.reconciles += 1
                outcomes[result.outcome] += 1
                ready, _ = node.updater.ready()
                if result.ok and ready and node.updater.current_version() == release.version:
                    updated.add(node.name)
                    seconds.append(result.seconds)
                else:
                    failures[result.reason or "not-ready"] += 1
            self.check_invariant(batch, f"{name} step {report.steps}")
        report.converged = sum(
            1 for n in reachable if n.updater.current_version() == release.version and n.updater.ready()[0]
        )
        report.failures = dict(failures)
        report.outcomes = dict(outcomes)
        report.store_reads = self.reads.count - reads_before
        report.median_seconds = statistics.median(seconds) if seconds else 0.0
        report.p95_seconds = _percentile(seconds, 0.95)
        report.versions = dict(Counter(_version_of(n) for n in self.nodes))
        report.wall_seconds = time.perf_counter() - start
        return report


def _arm(nodes: Sequence[_Node], plan: FaultPlan, chosen: Mapping[str, list[_Node]], phase: str) -> None:
    if phase != plan.phase:
        return
    for node in chosen["failed_downloads"]:
        node.faults.fail_next_read = True
    for node in chosen["corrupt_objects"]:
        node.faults.corrupt_next = "model.onnx"
    for node in chosen["bad_golden"]:
        node.faults.corrupt_next = "golden.json"


class Fleet:
    """Simulated nodes with the real updater, in the rings the real manifests select; rolled out by ring.

    ``edgeops fleet-sim`` drives one through its five phases; ``make demo`` drives one with the releases
    the demo's pull requests merge (what Argo CD would sync). The first ``pilot`` nodes carry the pilot
    label; which ring owns each node is decided by the rings' DaemonSets, exactly one per node.
    """

    def __init__(
        self, *, nodes: int, pilot: int, workdir: Path, rings: Mapping[str, Ring], public_key: Any,
        accept_interfaces: Sequence[str], seed: int = 0, keep: int = 3,
        store_opener: Any = None,
    ) -> None:  # fmt: skip
        if nodes < 1 or not 0 <= pilot <= nodes:
            raise EdgeopsError(f"--nodes {nodes} --pilot {pilot}: need 1 ≤ nodes and 0 ≤ pilot ≤ nodes")
        self.rings = dict(rings)
        self.reads = _Reads()
        self.rng = random.Random(seed)  # noqa: S311 - picks simulated nodes, not secrets
        opener = store_opener or functools.cache(open_store)  # one client per store for the whole fleet
        self.nodes: list[_Node] = []
        run_dir = Path(workdir) / f"run-{os.getpid()}-{time.time_ns()}"
        for index in range(nodes):
            name = f"node-{index:04d}"
            labels = {"kubernetes.io/hostname": name}
            if index < pilot:
                labels[RING_LABEL] = "pilot"
            owners = [r for r in self.rings.values() if r.selects(labels)]
            if len(owners) != 1:
                raise EdgeopsError(
                    f"{name} {labels} is selected by {len(owners)} rings ({[r.name for r in owners]}); "
                    "each node must be owned by exactly one"
                )
            node_faults = _NodeFaults()

            def node_opener(uri: str, node_faults: _NodeFaults = node_faults) -> Store:
                return _NodeStore(opener(uri), node_faults, self.reads)

            root = run_dir / name
            updater = Updater(
                root, public_key, accept_interfaces=tuple(accept_interfaces), keep=keep,
                store_opener=node_opener, node=name, lock=False,
            )  # fmt: skip
            self.nodes.append(_Node(name, labels, owners[0].name, root, updater, node_faults))
        self.sim = _Sim(self.nodes, self.rings, self.reads, self.rng)

    def rollout(self, phase: str, ring: str, release: Release) -> PhaseReport:
        """Roll ``ring`` out to ``release`` under its budget; every node checked after every step."""
        if ring not in self.rings:
            raise EdgeopsError(f"no ring {ring!r} in the manifests (rings: {', '.join(self.rings)})")
        return self.sim.rollout(phase, ring, release)

    def members(self, ring: str) -> list[str]:
        return [n.name for n in self.nodes if n.ring == ring]

    def versions(self, ring: str | None = None) -> dict[str, int]:
        """How many nodes (of ``ring``, or all) run each version."""
        return dict(Counter(_version_of(n) for n in self.nodes if ring is None or n.ring == ring))

    def model_path(self, node: str) -> Path:
        """The model a node serves now (``<root>/current/model.onnx``, resolved)."""
        found = next(n for n in self.nodes if n.name == node)
        return Path(os.path.realpath(found.root / CURRENT / "model.onnx"))

    @property
    def violations(self) -> list[str]:
        return self.sim.violations


def simulate(
    *,
    nodes: int,
    pilot: int,
    workdir: Path,
    store_uri: str,
    faults: FaultPlan | None = None,
    repo_root: Path,
) -> SimReport:
    """Run the five phases on ``nodes`` simulated nodes (the first ``pilot`` labelled pilot)."""
    if nodes < 1 or not 0 <= pilot <= nodes:
        raise EdgeopsError(f"--nodes {nodes} --pilot {pilot}: need 1 ≤ nodes and 0 ≤ pilot ≤ nodes")
    plan = faults or FaultPlan()
    started = time.perf_counter()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    rings = load_rings(repo_root)

    # A throwaway signing key and the two bundles, published to the store.
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
            private_key,
            version=version,
            interface=INTERFACE,
            bundle=result.uri,
            files=result.files,
            metrics={"simulated": True},
        )

    sim_fleet = Fleet(
        nodes=nodes, pilot=pilot, workdir=workdir, rings=rings, public_key=public_key,
        accept_interfaces=(INTERFACE,), seed=plan.seed, store_opener=shared_store,
    )  # fmt: skip
    fleet = sim_fleet.nodes
    fleet_nodes = [n for n in fleet if n.ring == "fleet"]
    if plan.total() > len(fleet_nodes):
        raise EdgeopsError(f"{plan.total()} faulty nodes asked for, the fleet ring has {len(fleet_nodes)}")
    rng = sim_fleet.rng
    picked = rng.sample(fleet_nodes, plan.total())
    chosen: dict[str, list[_Node]] = {}
    for kind in ("offline", "failed_downloads", "corrupt_objects", "bad_golden"):
        count = int(getattr(plan, kind))
        chosen[kind], picked = picked[:count], picked[count:]

    sim = sim_fleet.sim
    phases: list[PhaseReport] = []
    plan_phases = [
        ("pilot-v1.0", "pilot", "v1.0"),
        ("fleet-v1.0", "fleet", "v1.0"),
        ("pilot-v1.1", "pilot", "v1.1"),
        ("fleet-v1.1", "fleet", "v1.1"),
        ("rollback-v1.0", "fleet", "v1.0"),
    ]
    for number, (phase, ring, version) in enumerate(plan_phases, start=1):
        if number == 3:
            for node in chosen["offline"]:
                node.offline = True
        _arm(fleet, plan, chosen, phase)
        phases.append(sim.rollout(phase, ring, releases[version]))

    ring_sizes = Counter(n.ring for n in fleet)
    return SimReport(
        nodes=nodes,
        pilot=pilot,
        store=store_uri,
        rings={
            name: {
                "nodes": ring_sizes[name],
                "max_unavailable_spec": r.max_unavailable_spec,
                "budget": r.budget(ring_sizes[name]),
            }
            for name, r in rings.items()
        },
        faults=vars(plan).copy(),
        fault_nodes={k: [n.name for n in v] for k, v in chosen.items()},
        phases=phases,
        final_versions=dict(Counter(_version_of(n) for n in fleet)),
        invariant_checks=sim.checks,
        invariant_loads=sim.loads,
        invariant_violations=len(sim.violations),
        violations=sim.violations,
        wall_seconds=time.perf_counter() - started,
    )


# --- command line -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _throwaway_s3() -> Iterator[None]:
    from tools.kits.devservices import ThrowawayS3

    # Its own process: the server's work does not compete with the simulated nodes for this one's GIL.
    server = ThrowawayS3(separate_process=True)
    endpoint = server.start()
    saved = {k: os.environ.get(k) for k in endpoint.env()}
    os.environ.update(endpoint.env())
    os.environ.pop("AWS_PROFILE", None)
    try:
        yield
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeops fleet-sim",
        description="SIMULATION of a fleet rollout with the real model-updater: pilot release, fleet "
        "rollout under the ring's budget, then a rollback served from cache.",
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
    parser.add_argument("--offline", type=int, default=0, help="fleet nodes offline from phase 3")
    parser.add_argument("--failed-downloads", type=int, default=0, help="fleet nodes whose download fails")
    parser.add_argument("--corrupt-objects", type=int, default=0, help="fleet nodes served a corrupt model")
    parser.add_argument("--bad-golden", type=int, default=0, help="fleet nodes served an altered golden.json")
    parser.add_argument(
        "--fault-phase", default="fleet-v1.1", help="phase of the faults (default fleet-v1.1)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the updaters' own logs")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``edgeops fleet-sim``: 0 when every phase converged, the invariant held and the rollback met its
    target; 1 otherwise; 2 on a setup error."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)
    updater_log = logging.getLogger("edgeops.updater")
    saved_level = updater_log.level
    if not args.verbose:
        updater_log.setLevel(logging.CRITICAL)  # injected faults would flood stderr with refusals
    try:
        return _main(args)
    finally:
        updater_log.setLevel(saved_level)


def _main(args: argparse.Namespace) -> int:
    plan = FaultPlan(
        offline=args.offline,
        failed_downloads=args.failed_downloads,
        corrupt_objects=args.corrupt_objects,
        bad_golden=args.bad_golden,
        phase=args.fault_phase,
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
