"""The fleet simulator (tools/kits/fleetsim.py): real updaters on simulated nodes, bundles in the S3 API
server, rings from ``kustomize build`` of the real overlays, releases moved by the real promote/guard/rollback
in a real git repository, on a simulated clock."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from tests.conftest import REPO
from tools.artifacts.bundle import publish_bundle
from tools.artifacts.release import in_wave, make_release
from tools.core.signing import generate_keypair, private_key_from_pem, public_key_from_pem
from tools.core.store import open_store
from tools.kits.devservices import S3Endpoint
from tools.kits.fleetsim import (
    INTERFACE,
    WEIGHTS,
    FaultPlan,
    Fleet,
    SimReport,
    build_golden,
    build_model,
    load_rings,
    main,
    simulate,
)

# 120 nodes, 10 pilot: the fleet's 5% wave holds 2 nodes, its 25% wave 27 (by the hash of their names).
NODES, PILOT = 120, 10
FLEET = NODES - PILOT
WAVE_5 = sum(in_wave(f"node-{i:04d}", 5) for i in range(PILOT, NODES))
WAVES = ["fleet-v1.1@5", "fleet-v1.1@25", "fleet-v1.1@100"]


def run(tmp_path: Path, bucket: str, **faults: object) -> SimReport:
    return simulate(
        nodes=NODES, pilot=PILOT, workdir=tmp_path, store_uri=f"s3://{bucket}/bundles",
        faults=FaultPlan(**faults), repo_root=REPO,  # type: ignore[arg-type]
    )  # fmt: skip


def check_common(report: SimReport) -> None:
    assert report.invariant_violations == 0
    assert report.invariant_checks > 0 and report.invariant_loads > 0
    assert report.rings["fleet"]["nodes"] == FLEET + report.faults["join"]
    assert report.rings["fleet"]["waves"] == [5.0, 25.0, 100.0]
    assert report.first_wave == WAVE_5
    rb = report.rollback
    assert rb is not None and rb.store_reads == 0  # every node had v1.0 in its cache
    assert rb.swap_median_seconds <= 0.05
    text = report.render()
    assert text.startswith("SIMULATION:")
    doc = json.loads(json.dumps(report.to_dict()))
    assert doc["simulation"] is True and doc["invariant"]["violations"] == 0
    for phase in doc["phases"]:
        assert {"nodes", "reachable", "converged", "served", "store_reads_at_start"} <= set(phase)
    # Every node ran the reference inference service from its first reconcile; the versions counted are the
    # ones the services report, every swap loaded, and 2 versions cost 2 ONNX Runtime sessions, not 2 a node.
    inference = doc["inference"]
    assert inference["services"] == report.nodes + report.faults["join"]
    assert inference["load_failures"] == 0 and inference["sessions"] == 2
    widest = max(p.served.get("v1.1", 0) for p in report.phases if p.ring == "fleet")
    assert inference["swaps"] >= 2 * widest > 0  # each of those went to v1.1 and back to v1.0
    assert "inference services (reference, ONNX Runtime)" in text


def test_waves_with_offline_and_joining_nodes(tmp_path: Path, s3_env: S3Endpoint, s3_bucket: str) -> None:
    report = run(tmp_path, s3_bucket, offline=11, join=2, seed=1)
    check_common(report)
    names = [p.name for p in report.phases]
    assert names == ["pilot-v1.0", "fleet-v1.0", "pilot-v1.1", *WAVES, "rollback-v1.0"]
    assert report.ok, report.problems
    phases = {p.name: p for p in report.phases}
    for p in report.phases:
        assert p.converged == p.reachable, p  # every online node, every phase
    for name in [*WAVES, "rollback-v1.0"]:
        p = phases[name]
        assert p.nodes == FLEET + 2  # the joiners are members; offline nodes are members too
        assert p.silent == (0 if name in ("fleet-v1.1@100", "rollback-v1.0") else 11)
        assert p.reachable == p.nodes - p.silent
    w5, w25, w100 = (phases[n] for n in WAVES)
    assert w5.percent == 5 and w25.percent == 25 and w100.percent == 100
    # Outside the first wave nobody served v1.1 while it was at 5%; the joiners got v1.0, not nothing.
    assert w5.served["v1.1"] <= w5.in_wave and w5.joined == 2
    assert w5.prefetched >= w5.reachable - w5.in_wave  # everyone online outside the wave has it cached
    # A wave's start costs the store nothing for the nodes that were online when it was announced...
    assert w25.store_reads_at_start == 0 and w100.store_reads_at_start == 0
    assert w25.swap_median_seconds <= 0.05
    # ...and the nodes that were offline for a month converge on their first reconcile.
    assert w100.returned == 11 and w100.returned_first_reconcile == 11
    promotions = [d for d in report.decisions if d.command == "promote" and d.pr]
    assert len(promotions) == 4  # v1.0 into the fleet, then v1.1 at 5, 25 and 100
    assert not [d for d in report.decisions if d.command == "guard" and d.pr]
    # The agent upgrade: 11 of 112 offline, maxUnavailable 10% = 12 pods: it gets through, slowly.
    upgrade = report.agent_upgrade
    assert upgrade["max_unavailable"] == math.ceil(0.1 * (FLEET + 2))
    # 11 offline pods take 11 of the 12 slots: the upgrade crawls one pod per sync, but it finishes.
    assert upgrade["offline"] == 11 and not upgrade["stalled"]
    assert upgrade["upgraded_online"] == upgrade["reachable"] == FLEET + 2 - 11
    assert upgrade["per_sync"][1:4] == [1, 1, 1]


def test_an_agent_upgrade_stalls_once_offline_nodes_hold_the_budget(
    tmp_path: Path, s3_env: S3Endpoint, s3_bucket: str
) -> None:
    """The upstream DaemonSet controller counts pods on offline nodes as unavailable: with as many offline
    as maxUnavailable allows (3 of 30 at 10%), no online agent is ever replaced. Model rollouts converge."""
    report = simulate(
        nodes=33, pilot=3, workdir=tmp_path, store_uri=f"s3://{s3_bucket}/bundles",
        faults=FaultPlan(offline=3, seed=5), repo_root=REPO,
    )  # fmt: skip
    upgrade = report.agent_upgrade
    assert upgrade["max_unavailable"] == 3 and upgrade["offline"] == 3
    assert upgrade["stalled"] and upgrade["upgraded_online"] == 0
    assert all(p.converged == p.reachable for p in report.phases)
    assert "STALLED" in report.render()


def test_a_bad_model_stops_at_the_first_wave(tmp_path: Path, s3_env: S3Endpoint, s3_bucket: str) -> None:
    report = run(tmp_path, s3_bucket, bad_model=True, seed=2)
    check_common(report)
    assert report.ok, report.problems
    names = [p.name for p in report.phases]
    assert names == ["pilot-v1.0", "fleet-v1.0", "pilot-v1.1", "fleet-v1.1@5", "rollback-v1.0"]
    assert report.bad_version == "v1.1"
    assert report.served_outside_first_wave("v1.1") == 0
    (guarded,) = [d for d in report.decisions if d.command == "guard" and d.pr]
    assert "fn_rate" in guarded.failed_gates
    assert report.to_dict()["bad_version"] == "v1.1"
    assert report.final_versions.get("v1.1", 0) == PILOT  # the pilot keeps it; the fleet is back on v1.0


def test_stuck_installs_refuse_the_next_wave_and_roll_back(
    tmp_path: Path, s3_env: S3Endpoint, s3_bucket: str
) -> None:
    report = run(tmp_path, s3_bucket, stuck=0.5, seed=3)
    check_common(report)
    assert report.ok, report.problems
    names = [p.name for p in report.phases]
    assert names == ["pilot-v1.0", "fleet-v1.0", "pilot-v1.1", "fleet-v1.1@5", "rollback-v1.0"]
    w5 = report.phases[3]
    assert w5.expected_stuck == 1 and w5.stuck == 1 and w5.ok
    refused = [d for d in report.decisions if d.command == "promote" and d.outcome == "refused"]
    assert refused and "on_target_fraction" in refused[0].failed_gates
    assert [d for d in report.decisions if d.command == "guard" and d.pr]


def test_faults_reachable_nodes_converge(tmp_path: Path, s3_env: S3Endpoint, s3_bucket: str) -> None:
    report = run(tmp_path, s3_bucket, failed_downloads=3, corrupt_objects=2, bad_golden=1, seed=4)
    check_common(report)
    assert report.ok, report.problems
    faulty = {n for names in report.fault_nodes.values() for n in names}
    assert len(faulty) == 6
    w5 = next(p for p in report.phases if p.name == "fleet-v1.1@5")
    # The faults hit prefetches (outside the wave) and installs (inside it); each was retried and converged.
    assert w5.failures.get("download", 0) >= 3 and w5.failures.get("digest", 0) >= 3
    assert w5.converged == w5.reachable


def test_main_prints_a_simulation_report(
    tmp_path: Path, s3_env: S3Endpoint, s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--nodes", "30", "--pilot", "3", "--workdir", str(tmp_path), "--store", f"s3://{s3_bucket}/b"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("SIMULATION:")
    assert "0 violations" in out and "agent upgrade" in out
    assert main([*argv, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["simulation"] is True and doc["ok"] is True
    assert doc["final_versions"] == {"v1.0": 27, "v1.1": 3}


def test_a_node_counts_as_serving_what_its_inference_service_reports(tmp_path: Path) -> None:
    """The fleet does not assume a node serves what `current` names: it asks the node's inference service.
    A service that cannot load the swapped-in version (here: its loader runs out of memory on one node) keeps
    serving the old one; the node is counted on it, is not converged, and the invariant names it."""
    private_pem, public_pem = generate_keypair()
    private = private_key_from_pem(private_pem, source="test")
    store = open_store(f"file://{tmp_path / 'store'}")
    releases = {}
    for version in ("v1.0", "v1.1"):
        model = build_model(WEIGHTS[version])
        result = publish_bundle(
            store, version, {"model.onnx": model, "golden.json": build_golden(model)}, private
        )
        releases[version] = make_release(
            private, version=version, interface=INTERFACE, bundle=result.uri, files=result.files
        )
    fleet = Fleet(
        nodes=3, pilot=3, workdir=tmp_path / "fleet", rings=load_rings(REPO),
        public_key=public_key_from_pem(public_pem, source="test"), accept_interfaces=(INTERFACE,),
        prefetch_spread=0,
    )  # fmt: skip
    shared = fleet.sessions

    def loader(path: Path) -> Any:
        if "node-0001" in str(path) and "v1.1" in str(path):
            raise MemoryError("simulated: no memory for a second session")
        return shared(path)

    fleet.sessions = loader  # type: ignore[assignment]  # every service is created with it, lazily

    first = fleet.rollout("pilot-v1.0", "pilot", releases["v1.0"])
    assert first.converged == 3 and fleet.versions() == {"v1.0": 3} and not fleet.violations
    assert len(shared) == 1  # three nodes, identical bytes: one session
    feed = {
        "sensors": np.ones((2, 4, 128), dtype=np.float32),
        "product_id": np.array([1, 2]),
        "recipe_id": np.array([3, 4]),
        "asset_id": np.array([5, 6]),
    }
    prediction = fleet.predict("node-0002", feed)
    reference = ort.InferenceSession(str(fleet.model_path("node-0002")), providers=["CPUExecutionProvider"])
    assert prediction.version == "v1.0"
    np.testing.assert_allclose(prediction.outputs["probabilities"], reference.run(None, feed)[0], atol=1e-6)

    second = fleet.rollout("pilot-v1.1", "pilot", releases["v1.1"])
    assert fleet.versions() == {"v1.1": 2, "v1.0": 1}  # every updater swapped; one service did not follow
    assert second.converged == 2 and second.stuck == 1 and not second.ok
    assert fleet.version_of("node-0001") == "v1.0" and fleet.predict("node-0001", feed).version == "v1.0"
    assert fleet.predict("node-0000", feed).version == "v1.1"
    assert fleet.violations and all("node-0001" in v for v in fleet.violations)
    assert "serves v1.0, `current` names v1.1" in fleet.violations[0]
    assert "no memory" in fleet.violations[0]
