"""The model card: ``model.json`` for machines, ``MODEL_CARD.md`` for the reviewer (jinja2 template).

Built from what the run left behind (``run.json``, ``evaluation.json``, ``export/export.json``) plus the
version and artifact digests known at publish time. The same dictionary feeds both files, so they cannot
disagree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from training.interface import interface_descriptor

__all__ = ["ROLLBACK_TEXT", "build_card", "render_card", "separation"]

_TEMPLATES = Path(__file__).parent / "templates"

ROLLBACK_TEXT = (
    "Revert the pull request that set this version in a ring (`git revert <merge commit>` and open a PR, or "
    "`edgeops rollback --ring <ring>`, which does exactly that). Once merged, Argo CD syncs the ring and "
    "each node's model-updater swaps back to the previous version from its local cache, without a download."
)


def build_card(
    *,
    version: str,
    run_dir: Path,
    artifacts: dict[str, dict[str, Any]],
    gpu_hour_usd: float,
) -> dict[str, Any]:
    run = json.loads((run_dir / "run.json").read_text())
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    export = json.loads((run_dir / "export" / "export.json").read_text())
    from training.config import TrainingConfig

    cfg = TrainingConfig.model_validate(run["config"])
    spec = cfg.data_spec()
    snapshot_meta_path = Path(run["snapshot"]["path"]) / "snapshot.json"
    splits = (
        json.loads(snapshot_meta_path.read_text())["counts"]["splits"] if snapshot_meta_path.is_file() else {}
    )
    timing = run["timing"]
    return {
        "format": "edgeops-model/v1",
        "version": version,
        "interface": run["interface"],
        "interface_descriptor": interface_descriptor(spec),
        "labels": list(spec.labels),
        "thresholds": run["thresholds"],
        "dataset": {
            "fingerprint": run["snapshot"]["fingerprint"],
            "rows": run["snapshot"]["rows"],
            "splits": {k: splits.get(k, 0) for k in ("train", "val", "test")},
        },
        "source": {"commit": run["source"]["commit"], "run": run_dir.name, "torch": run["source"]["torch"]},
        "config": run["config"],
        "training": {
            "wall_seconds": timing["wall_seconds"],
            "device": timing["device"],
            "gpu": timing["gpu"],
            "world_size": timing["world_size"],
            "gpu_hours": timing["gpu_hours"],
            "gpu_hour_usd": gpu_hour_usd,
            "cost_usd": round(timing["gpu_hours"] * gpu_hour_usd, 4),
            "epochs_run": run["epochs_run"],
            "best_epoch": run["best_epoch"],
        },
        "metrics": evaluation["candidate"],
        "separation": separation(evaluation["candidate"]),
        "thresholds_raised": run.get("thresholds_raised", {}),
        "fleet": evaluation["fleet"]
        and {
            "version": evaluation["fleet"]["version"],
            "bundle": evaluation["fleet"]["bundle"],
            "metrics": evaluation["fleet"]["metrics"],
        },
        "gates": evaluation["gates"],
        "gates_passed": evaluation["passed"],
        "latency_cpu_onnxruntime": export["latency_cpu_onnxruntime"],
        "parity": export["parity"],
        "engine": export["engine"],
        "artifacts": artifacts,
        "history": _history(run_dir / "metrics.jsonl"),
        "rollback": ROLLBACK_TEXT,
    }


def separation(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """What the model can see: each mode's AUROC on the test split, the weakest first (a mode with no
    positive window in the test split has none and comes last)."""
    rows = [{"mode": mode, "auroc": m["auroc"]} for mode, m in metrics["per_mode"].items()]
    return sorted(rows, key=lambda r: (r["auroc"] is None, r["auroc"] or 0.0))


def _history(path: Path) -> list[dict[str, float]]:
    """Per-epoch curves for the release PR's chart: epoch, train and validation loss, val subset accuracy."""
    if not path.is_file():
        return []
    keep = ("epoch", "train_loss", "val_loss", "val_subset_accuracy")
    by_epoch: dict[int, dict[str, float]] = {}  # a resumed run may log an epoch twice: the last one counts
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            by_epoch[int(row["epoch"])] = {k: row[k] for k in keep if k in row}
    return [by_epoch[e] for e in sorted(by_epoch)]


def render_card(card: dict[str, Any]) -> str:
    env = Environment(
        loader=FileSystemLoader(_TEMPLATES),
        undefined=StrictUndefined,  # a missing field is an error, not an empty cell
        autoescape=False,  # noqa: S701 (Markdown, not HTML)
        keep_trailing_newline=True,
        trim_blocks=True,
    )
    return env.get_template("model_card.md.j2").render(card=card)
