"""Building blocks for the release-flow tests: a checkout of this repository on a bare remote, published
bundles with model cards, and pilot telemetry rows in PostgreSQL.

Nothing here is a fake: the checkout is a real git clone, bundles are signed and verified by the real code,
telemetry goes through real SQL. Only the model bytes are small stand-ins (the release tooling never runs
a model; the updater tests do).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pipelines.story import seed_release_repository
from tools.artifacts.bundle import publish_bundle
from tools.core.signing import generate_keypair, private_key_from_pem
from tools.core.store import open_store

REPO = Path(__file__).resolve().parents[1]
LABELS = ["bearing_wear", "misalignment", "overheating", "electrical_fault", "lubrication_loss"]
INTERFACE = "sha256:" + "f2c92970dc75869f86b64d5efd154246062743457c401f120957084a67c6be69"


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stderr}"
    return result.stdout.strip()


@dataclass
class Keys:
    private: Ed25519PrivateKey
    private_pem: bytes
    public_pem: bytes


def keys() -> Keys:
    private_pem, public_pem = generate_keypair()
    return Keys(private_key_from_pem(private_pem, source="test"), private_pem, public_pem)


def make_checkout(tmp: Path, remote: Path, k: Keys, *, store: str) -> Path:
    """A clone of ``remote`` holding this repository's release files, its key replaced by ``k``'s."""
    seed_release_repository(
        remote, tmp / "seed", source_root=REPO, config=REPO / "edgeops.yaml", public_key_pem=k.public_pem,
        store_uri=store, message="initial: rings with no release",
    )  # fmt: skip
    work = tmp / "checkout"
    git(tmp, "clone", "--quiet", str(remote), str(work))
    return work


def card(version: str, *, accuracy: float, fleet: tuple[str, float] | None = None) -> dict[str, Any]:
    """A model card with the structure training/card.py writes."""
    per_mode = {
        name: {"precision": accuracy, "recall": accuracy - 0.01 * i, "f1": accuracy - 0.005 * i,
               "auroc": 0.99, "support": 50 + i, "threshold": 0.5, "tp": 45, "fp": 1, "fn": 2, "tn": 400}
        for i, name in enumerate(LABELS)
    }  # fmt: skip
    metrics = {
        "n": 538, "n_healthy": 264, "n_failing": 274, "subset_accuracy": accuracy,
        "healthy_baseline_subset_accuracy": 0.49, "fp_rate": 0.02, "fn_rate": 0.03, "macro_f1": accuracy,
        "per_mode": per_mode,
    }  # fmt: skip
    fleet_block = None
    if fleet:
        fleet_metrics = {**metrics, "subset_accuracy": fleet[1], "macro_f1": fleet[1]}
        fleet_block = {
            "version": fleet[0],
            "bundle": "file:///x/models/" + fleet[0] + "/",
            "metrics": fleet_metrics,
        }
    return {
        "format": "edgeops-model/v1",
        "version": version,
        "interface": INTERFACE,
        "labels": LABELS,
        "dataset": {
            "fingerprint": "sha256:" + "d" * 64,
            "rows": 20000,
            "splits": {"train": 16000, "val": 2000, "test": 2000},
        },
        "source": {"commit": "0123abcd", "run": f"runs/{version}", "torch": "2.13.0+cpu"},
        "training": {
            "wall_seconds": 412.5,
            "device": "cuda",
            "gpu": "NVIDIA H200",
            "world_size": 1,
            "gpu_hours": 0.1146,
            "gpu_hour_usd": 2.5,
            "cost_usd": 0.2865,
            "epochs_run": 30,
            "best_epoch": 24,
        },
        "metrics": metrics,
        "fleet": fleet_block,
        "gates": [
            {
                "name": "min_subset_accuracy",
                "threshold": 0.9,
                "value": accuracy,
                "passed": True,
                "detail": "subset accuracy on the test split",
            }
        ],
        "gates_passed": True,
        "latency_cpu_onnxruntime": {
            "batch_1": {"p50_ms": 0.05, "p99_ms": 0.19},
            "batch_64": {"p50_ms": 1.07, "p99_ms": 1.85},
        },
        "engine": {"built": False, "reason": "TensorRT unavailable on this runner"},
        "history": [
            {"epoch": e, "train_loss": 0.5 / e, "val_loss": 0.55 / e + 0.01, "val_subset_accuracy": 0.9}
            for e in range(1, 31)
        ],
        "rollback": "Revert the pull request that set this version in a ring.",
    }


def publish(
    store: str, version: str, k: Keys, *, accuracy: float = 0.95, fleet: tuple[str, float] | None = None
) -> str:
    files = {
        "model.onnx": f"onnx model {version}".encode(),
        "golden.json": json.dumps({"version": version}).encode(),
        "model.json": json.dumps(card(version, accuracy=accuracy, fleet=fleet)).encode(),
    }
    return publish_bundle(open_store(store), version, files, k.private).uri


def telemetry_rows(
    version: str, devices: Sequence[str], start: datetime, *, per_device: int = 40, missed: int = 0,
    errors: int = 0, latency_ms: float = 12.0,
) -> list[Any]:  # fmt: skip
    """Predictions of ``version``: every one validated; ``missed`` failing windows called healthy."""
    from tools.gitops.telemetry import PredictionRow

    rows = []
    i = 0
    for device in devices:
        for j in range(per_device):
            at = start + timedelta(minutes=i + 1)
            failing = j % 2 == 0
            truth = ["bearing_wear"] if failing else []
            if errors > 0:
                rows.append(
                    PredictionRow(device, version, at, [], None, latency_ms, "onnxruntime: bad input")
                )
                errors -= 1
            elif failing and missed > 0:
                rows.append(PredictionRow(device, version, at, [], truth, latency_ms))
                missed -= 1
            else:
                rows.append(PredictionRow(device, version, at, truth, truth, latency_ms))
            i += 1
    return rows
