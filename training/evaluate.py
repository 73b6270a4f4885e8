"""Evaluate a trained candidate against the model the fleet runs now, on the same test split.

    edgeops evaluate --snapshot snap/ --run runs/2026-11

The fleet model is the bundle named in the fleet ring's ``release.yaml`` (``environments/fleet/`` by
default); before the first release there is none and the comparison says so. Both models are scored on the
test split of the same snapshot; the fleet model runs from its published ``model.onnx`` with ONNX Runtime,
exactly as deployed, with its own decision thresholds. The gates of ``edgeops.yaml``
(``gates.evaluation``) turn the numbers into a verdict; ``evaluation.json`` in the run folder records every
gate with its threshold, its value and pass/fail.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from tools.core.config import EvaluationGates
from tools.core.errors import EdgeopsError
from training.config import TrainingConfig
from training.metrics import evaluate
from training.model import FailureModeModel, in_batches
from training.train import TrainingTensors, load_snapshot

__all__ = ["FleetModel", "evaluate_run", "load_fleet_model", "load_run", "predict_onnx", "predict_torch"]

log = logging.getLogger("edgeops.evaluate")


def load_run(run_dir: Path) -> tuple[FailureModeModel, TrainingConfig, dict[str, Any]]:
    """Rebuild a trained model from its run folder (``run.json`` + ``weights.safetensors``)."""
    run_json = run_dir / "run.json"
    if not run_json.is_file():
        raise EdgeopsError(f"{run_dir}: no run.json: train first (`edgeops train --out {run_dir}`)")
    run = json.loads(run_json.read_text())
    cfg = TrainingConfig.model_validate(run["config"])
    weights = load_file(str(run_dir / "weights.safetensors"))
    model = FailureModeModel(cfg, run["model"]["vocabularies"])
    model.load_state_dict(weights)  # the buffers (normalisation) come from the file too
    return model.eval(), cfg, run


@torch.inference_mode()
def predict_torch(
    model: FailureModeModel, snap: TrainingTensors, idx: torch.Tensor, batch: int = 4096
) -> np.ndarray:
    out = in_batches(lambda rows: torch.sigmoid(model(*snap.take(rows))).numpy(), idx, batch)
    return np.concatenate(out) if out else np.zeros((0, snap.labels.shape[1]), np.float32)


def predict_onnx(
    onnx: bytes | Any, snap: TrainingTensors, idx: torch.Tensor, batch: int = 4096
) -> np.ndarray:
    """Probabilities for rows ``idx`` from an ONNX model: its bytes, or an open ``InferenceSession``."""
    if isinstance(onnx, bytes):
        import onnxruntime as ort

        onnx = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    session = onnx
    out = in_batches(lambda rows: session.run(["probabilities"], snap.feed(rows))[0], idx, batch)
    return np.concatenate(out) if out else np.zeros((0, snap.labels.shape[1]), np.float32)


@dataclass(frozen=True)
class FleetModel:
    version: str
    bundle: str
    onnx: bytes
    thresholds: list[float]
    labels: list[str]
    interface: str


def load_fleet_model(release_path: Path, public_key_path: Path) -> FleetModel | None:
    """The model the fleet runs now, or None before the first release.

    The release file is read, not trusted: the bundle it names is verified (digests + signature) against
    the committed public key before its model is used.
    """
    from tools.artifacts.bundle import verify_bundle_uri
    from tools.artifacts.release import load_release, verify_release
    from tools.core.signing import load_public_keys
    from tools.core.store import open_store

    if not release_path.is_file():
        return None
    release = load_release(release_path)  # the same parser and checks as the nodes
    if release is None:
        return None  # the documented "no release yet" form
    public_key = load_public_keys(public_key_path)  # the trusted set: two keys while one rotates
    verify_release(release, public_key)
    bundle = release.bundle
    verify_bundle_uri(bundle, public_key)
    root, _, rest = bundle.rstrip("/").rpartition("/models/")
    store = open_store(root)
    card = json.loads(store.get(f"models/{rest}/model.json"))
    try:
        thresholds = [float(card["thresholds"][name]) for name in card["labels"]]
        labels, interface = list(card["labels"]), str(card["interface"])
    except (KeyError, TypeError, ValueError) as exc:
        raise EdgeopsError(
            f"{bundle}model.json: the fleet model's card has no usable {exc} (it needs labels, interface and "
            f"a threshold per label), so the candidate cannot be compared with it; republish the fleet "
            f"model with `edgeops publish`"
        ) from None
    return FleetModel(
        version=release.version,
        bundle=bundle,
        onnx=store.get(f"models/{rest}/model.onnx"),
        thresholds=thresholds,
        labels=labels,
        interface=interface,
    )


def _gate(name: str, threshold: float, value: float | None, passed: bool, detail: str) -> dict[str, Any]:
    return {"name": name, "threshold": threshold, "value": value, "passed": passed, "detail": detail}


def evaluate_run(
    snapshot_dir: Path, run_dir: Path, gates: EvaluationGates, fleet: FleetModel | None
) -> dict[str, Any]:
    """Score candidate and fleet model on the test split, apply the gates, write ``evaluation.json``."""
    model, cfg, run = load_run(run_dir)
    spec = cfg.data_spec()
    snap = load_snapshot(snapshot_dir, spec, torch.device("cpu"))
    if snap.meta["fingerprint"] != run["snapshot"]["fingerprint"]:
        log.warning(
            "evaluating on another snapshot than the one the model was trained on",
            extra={
                "fields": {
                    "trained_on": run["snapshot"]["fingerprint"],
                    "evaluated_on": snap.meta["fingerprint"],
                }
            },
        )
    test_idx = snap.index(2)
    if len(test_idx) == 0:
        raise EdgeopsError(f"{snapshot_dir}: the snapshot has no test rows to evaluate on")
    labels = list(spec.labels)
    truth = snap.labels[test_idx].numpy().astype(np.uint8)
    thresholds = np.array([run["thresholds"][name] for name in labels])
    candidate = evaluate(truth, predict_torch(model, snap, test_idx), thresholds, labels)

    fleet_metrics = None
    if fleet is not None:
        if fleet.labels != labels:
            raise EdgeopsError(
                f"the fleet model {fleet.version} predicts {fleet.labels}, the candidate {labels}: "
                "not comparable on the same test split"
            )
        fleet_metrics = evaluate(
            truth, predict_onnx(fleet.onnx, snap, test_idx), np.array(fleet.thresholds), labels
        )

    results = [
        _gate("min_subset_accuracy", gates.min_subset_accuracy, candidate["subset_accuracy"],
              candidate["subset_accuracy"] >= gates.min_subset_accuracy, "subset accuracy on the test split"),
    ]  # fmt: skip
    if fleet_metrics is None:
        results.append(_gate("max_regression_vs_fleet", gates.max_regression_vs_fleet, None, True,
                             "no fleet model yet: nothing to regress against"))  # fmt: skip
    else:
        drop = round(fleet_metrics["subset_accuracy"] - candidate["subset_accuracy"], 6)
        results.append(_gate("max_regression_vs_fleet", gates.max_regression_vs_fleet, drop,
                             drop <= gates.max_regression_vs_fleet,
                             f"subset accuracy {candidate['subset_accuracy']:.4f} vs fleet {fleet.version} "  # type: ignore[union-attr]
                             f"{fleet_metrics['subset_accuracy']:.4f}"))  # fmt: skip
    for name in labels:
        floor = gates.min_recall.get(name)
        if floor is not None:
            recall = candidate["per_mode"][name]["recall"]
            results.append(_gate(f"min_recall.{name}", floor, recall, recall >= floor, f"recall of {name}"))
    results.append(_gate("max_fp_rate", gates.max_fp_rate, candidate["fp_rate"],
                         candidate["fp_rate"] <= gates.max_fp_rate, "healthy windows flagged"))  # fmt: skip
    results.append(_gate("max_fn_rate", gates.max_fn_rate, candidate["fn_rate"],
                         candidate["fn_rate"] <= gates.max_fn_rate, "failing windows missed"))  # fmt: skip
    unknown = sorted(set(gates.min_recall) - set(labels))
    if unknown:
        raise EdgeopsError(
            f"gates.evaluation.min_recall names unknown failure modes {unknown}; known: {labels}"
        )

    passed = all(g["passed"] for g in results)
    report = {
        "format": "edgeops-evaluation/v1",
        "passed": passed,
        "snapshot": snap.meta["fingerprint"],
        "split": "test",
        "n": candidate["n"],
        "candidate": candidate,
        "fleet": None
        if fleet is None
        else {"version": fleet.version, "bundle": fleet.bundle, "metrics": fleet_metrics},
        "gates": results,
    }
    (run_dir / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
