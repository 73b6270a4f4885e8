"""The fleet simulator (tools/kits/fleetsim.py): real updaters on simulated nodes, bundles in the S3 API
server,
rings and budgets from ``kustomize build`` of the real overlays."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.conftest import REPO
from tools.kits.devservices import S3Endpoint
from tools.kits.fleetsim import FaultPlan, SimReport, main, simulate

NODES, PILOT = 60, 6
FLEET = NODES - PILOT


def check_common(report: SimReport) -> None:
    names = [p.name for p in report.phases]
    assert names == ["pilot-v1.0", "fleet-v1.0", "pilot-v1.1", "fleet-v1.1", "rollback-v1.0"]
    assert report.rings["pilot"]["nodes"] == PILOT
    assert report.rings["fleet"]["nodes"] == FLEET
    assert report.rings["fleet"]["max_unavailable_spec"] == "10%"
    budget = report.rings["fleet"]["budget"]
    assert budget == math.ceil(FLEET * 0.10)
    for phase in report.phases:
        assert phase.ok, phase
        assert phase.converged == phase.reachable
        assert phase.max_per_step <= phase.max_unavailable  # the budget was honoured in every step
        if phase.ring == "fleet":
            assert phase.max_unavailable == budget
            assert phase.steps >= math.ceil(phase.reachable / budget)
    rollback = report.rollback
    assert rollback.store_reads == 0  # served from each node's cache
    assert rollback.outcomes.get("swapped_from_cache") == rollback.reachable
    assert rollback.median_seconds <= 0.05
    assert report.invariant_violations == 0
    assert report.invariant_checks > 0 and report.invariant_loads > 0
    text = report.render()
    assert text.startswith("SIMULATION:")
    as_json = json.loads(json.dumps(report.to_dict()))
    assert as_json["simulation"] is True and as_json["invariant"]["violations"] == 0


def test_rollout_and_cached_rollback(tmp_path: Path, s3_env: S3Endpoint, s3_bucket: str) -> None:
    report = simulate(
        nodes=NODES,
        pilot=PILOT,
        workdir=tmp_path,
        store_uri=f"s3://{s3_bucket}/bundles",
        repo_root=REPO,
    )
    check_common(report)
    fleet_v10, fleet_v11 = report.phases[1], report.phases[3]
    assert fleet_v10.steps == math.ceil(FLEET / fleet_v10.max_unavailable)  # no failures: minimal steps
    assert fleet_v10.failures == {} and fleet_v11.failures == {}
    assert report.phases[0].steps == 1  # pilot: 100%, all at once
    assert fleet_v11.versions == {"v1.1": NODES}
    assert report.final_versions == {"v1.0": FLEET, "v1.1": PILOT}
    assert report.ok


def test_faults_reachable_nodes_converge(tmp_path: Path, s3_env: S3Endpoint, s3_bucket: str) -> None:
    plan = FaultPlan(offline=2, failed_downloads=3, corrupt_objects=2, bad_golden=1, seed=3)
    report = simulate(
        nodes=NODES,
        pilot=PILOT,
        workdir=tmp_path,
        store_uri=f"s3://{s3_bucket}/bundles",
        faults=plan,
        repo_root=REPO,
    )
    check_common(report)
    offline = set(report.fault_nodes["offline"])
    assert len(offline) == 2
    faulty = {n for kind, names in report.fault_nodes.items() if kind != "offline" for n in names}
    assert len(faulty) == 6 and not faulty & offline
    fleet_v11 = report.phases[3]
    assert fleet_v11.reachable == FLEET - 2
    assert fleet_v11.failures == {"download": 3, "digest": 3}  # 2 corrupt model.onnx + 1 altered golden
    # Each failed node was retried in a later step and converged; offline nodes kept v1.0.
    assert fleet_v11.versions == {"v1.1": NODES - 2, "v1.0": 2}
    assert report.final_versions == {"v1.0": FLEET, "v1.1": PILOT}
    assert report.ok


def test_main_prints_a_simulation_report(
    tmp_path: Path, s3_env: S3Endpoint, s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--nodes", "12", "--pilot", "2", "--workdir", str(tmp_path), "--store", f"s3://{s3_bucket}/b"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("SIMULATION:")
    assert "0 violations" in out
    assert main([*argv, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["simulation"] is True and doc["ok"] is True
    assert doc["final_versions"] == {"v1.0": 10, "v1.1": 2}
