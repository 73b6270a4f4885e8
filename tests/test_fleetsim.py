"""The fleet simulator (tools/kits/fleetsim.py): real updaters on simulated nodes, bundles in the S3 API
server, rings from ``kustomize build`` of the real overlays, releases moved by the real promote/guard/rollback
in a real git repository, on a simulated clock."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.conftest import REPO
from tools.artifacts.release import in_wave
from tools.kits.devservices import S3Endpoint
from tools.kits.fleetsim import FaultPlan, SimReport, main, simulate

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
