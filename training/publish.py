"""Publish a run as an immutable, signed model bundle, and register the version.

    EDGEOPS_SIGNING_KEY_FILE=release.key edgeops publish --run runs/2026-11 --store s3://context-edge-models

The bundle (``<store>/models/<version>/``) holds ``model.onnx``, ``weights.safetensors``, ``golden.json``,
``model.json`` and ``MODEL_CARD.md`` (the card), any ``engine-<target>.plan``, then ``SHA256SUMS`` and its
Ed25519 signature ``SHA256SUMS.sig``, written last. Only candidates whose evaluation passed its gates are
published. The version is the next free one (MINOR up; MAJOR up when the interface changed). Publishing the
same model again is a no-op that names the version it already has. With a PostgreSQL DSN the version is
upserted into ``model_versions``, so the runtime backend sees it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.artifacts.bundle import list_versions, next_version, parse_sha256sums, publish_bundle
from tools.core.errors import EdgeopsError
from tools.core.pg import connect
from tools.core.store import open_store
from training.card import build_card, render_card

__all__ = ["MODEL_VERSIONS_DDL", "PublishOutcome", "publish_run"]

log = logging.getLogger("edgeops.publish")

MODEL_VERSIONS_DDL = """
CREATE TABLE IF NOT EXISTS model_versions (
    version      text PRIMARY KEY,
    interface    text NOT NULL,
    bundle_uri   text NOT NULL,
    dataset      text NOT NULL,
    git_commit   text,
    metrics      jsonb NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now()
);
"""


@dataclass(frozen=True)
class PublishOutcome:
    version: str
    uri: str
    outcome: str  # "published" | "identical" (the same model was already published as this version)
    registered: bool


def _digest(data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def _register(dsn: str | None, card: dict[str, Any], uri: str) -> bool:
    conn = connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(MODEL_VERSIONS_DDL)
            cur.execute(
                "INSERT INTO model_versions (version, interface, bundle_uri, dataset, git_commit, metrics) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (version) DO UPDATE SET "
                "interface = EXCLUDED.interface, bundle_uri = EXCLUDED.bundle_uri, "
                "dataset = EXCLUDED.dataset, git_commit = EXCLUDED.git_commit, metrics = EXCLUDED.metrics",
                (card["version"], card["interface"], uri, card["dataset"]["fingerprint"],
                 card["source"]["commit"], json.dumps(card["metrics"])),
            )  # fmt: skip
    finally:
        conn.close()
    return True


def publish_run(
    run_dir: Path,
    store_uri: str,
    *,
    private_key: Any,
    gpu_hour_usd: float,
    dsn: str | None = None,
) -> PublishOutcome:
    evaluation_path = run_dir / "evaluation.json"
    export_dir = run_dir / "export"
    if not evaluation_path.is_file():
        raise EdgeopsError(f"{run_dir}: not evaluated yet; run `edgeops evaluate --run {run_dir}` first")
    evaluation = json.loads(evaluation_path.read_text())
    if not evaluation["passed"]:
        failed = ", ".join(g["name"] for g in evaluation["gates"] if not g["passed"])
        raise EdgeopsError(
            f"{run_dir}: the candidate failed its gates ({failed}); it is not a release candidate"
        )
    if not (export_dir / "export.json").is_file():
        raise EdgeopsError(f"{run_dir}: not exported yet; run `edgeops export --run {run_dir}` first")

    files: dict[str, bytes] = {
        "model.onnx": (export_dir / "model.onnx").read_bytes(),
        "weights.safetensors": (run_dir / "weights.safetensors").read_bytes(),
        "golden.json": (export_dir / "golden.json").read_bytes(),
    }
    for plan in sorted(export_dir.glob("engine-*.plan")):
        files[plan.name] = plan.read_bytes()
    run = json.loads((run_dir / "run.json").read_text())

    store = open_store(store_uri)
    versions = list_versions(store)
    ours = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    for existing in reversed(versions):
        if not store.exists(f"models/{existing}/SHA256SUMS"):
            continue  # an interrupted publish: its version stays taken, but it holds no finished bundle
        sums = parse_sha256sums(store.get(f"models/{existing}/SHA256SUMS"))
        if all(sums.get(name) == digest for name, digest in ours.items()):
            uri = store.url(f"models/{existing}") + "/"
            log.info(
                f"this model is already published as {existing}: nothing to do",
                extra={"fields": {"uri": uri}},
            )
            return PublishOutcome(existing, uri, "identical", registered=False)

    latest_interface = None
    if versions:
        latest_interface = json.loads(store.get(f"models/{versions[-1]}/model.json"))["interface"]
    version = next_version(versions, interface=run["interface"], latest_interface=latest_interface)

    artifacts = {name: _digest(data) for name, data in files.items()}
    card = build_card(version=version, run_dir=run_dir, artifacts=artifacts, gpu_hour_usd=gpu_hour_usd)
    files["model.json"] = (json.dumps(card, indent=2) + "\n").encode()
    markdown = render_card(card)
    files["MODEL_CARD.md"] = markdown.encode()
    (run_dir / "MODEL_CARD.md").write_text(markdown)
    (run_dir / "model.json").write_bytes(files["model.json"])

    result = publish_bundle(store, version, files, private_key)
    registered = False
    if dsn is not None:
        registered = _register(dsn, card, result.uri)
    (run_dir / "published.json").write_text(
        json.dumps({"version": version, "bundle": result.uri, "interface": run["interface"]}, indent=2) + "\n"
    )
    return PublishOutcome(version, result.uri, result.outcome, registered)
