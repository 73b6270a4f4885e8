"""Publish a run as an immutable, signed model bundle, and register the version.

    EDGEOPS_SIGNING_KEY_FILE=release.key edgeops publish --run runs/2026-11 --store s3://context-edge-models

The bundle (``<store>/models/<version>/``) holds ``model.onnx``, ``weights.safetensors``, ``golden.json``,
``model.json`` and ``MODEL_CARD.md`` (the card), any ``engine-<target>.plan``, then ``SHA256SUMS`` and its
Ed25519 signature ``SHA256SUMS.sig``, written last. Only candidates whose evaluation passed its gates are
published. The version is the next free one (MINOR up; MAJOR up when the interface changed). With a
PostgreSQL DSN the version is upserted into ``model_versions`` (made by ``edgeops db migrate``; the publish
role needs only SELECT, INSERT, UPDATE on it), so the runtime backend sees it; ``published.json`` in the run
folder is written last. Publishing is idempotent end to end: run again after any failure (an upload cut
short, the signature missing, the registry down) it finishes what is missing in the version that already
holds this model, and names that version; the same model published whole is a no-op that says so.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors

from tools.artifacts.bundle import (
    SIGNATURE_FILE,
    SUMS_FILE,
    bundle_prefix,
    list_versions,
    next_version,
    parse_sha256sums,
    publish_bundle,
)
from tools.core.errors import EdgeopsError, ServiceError
from tools.core.fsutil import write_atomic
from tools.core.pg import connect, describe_dsn
from tools.core.store import open_store
from training.card import build_card, render_card

__all__ = ["PublishOutcome", "publish_run"]

log = logging.getLogger("edgeops.publish")


@dataclass(frozen=True)
class PublishOutcome:
    version: str
    uri: str
    outcome: str  # "published" | "identical" (the same model was already published as this version)
    registered: bool


def _digest(data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def _register(dsn: str | None, card: dict[str, Any], uri: str) -> bool:
    """Upsert the version into ``model_versions`` (idempotent). The table is made by ``edgeops db migrate``;
    the publish role needs only SELECT, INSERT, UPDATE on it (docs/database.md)."""
    conn = connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO model_versions (version, interface, bundle_uri, dataset, git_commit, metrics) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (version) DO UPDATE SET "
                "interface = EXCLUDED.interface, bundle_uri = EXCLUDED.bundle_uri, "
                "dataset = EXCLUDED.dataset, git_commit = EXCLUDED.git_commit, metrics = EXCLUDED.metrics",
                (card["version"], card["interface"], uri, card["dataset"]["fingerprint"],
                 card["source"]["commit"], json.dumps(card["metrics"])),
            )  # fmt: skip
    except psycopg2.errors.UndefinedTable:
        raise ServiceError(
            f"registering {card['version']}: model_versions does not exist in {describe_dsn(conn.dsn)}. The "
            "database's owner creates it once with `edgeops db migrate --pg DSN`; the bundle is published, "
            "and running publish again registers it"
        ) from None
    except psycopg2.errors.InsufficientPrivilege as exc:
        first = str(exc).strip().splitlines()[0]
        raise ServiceError(
            f"registering {card['version']} in {describe_dsn(conn.dsn)}: {first}. The publish role needs "
            "GRANT SELECT, INSERT, UPDATE ON model_versions (docs/database.md); the bundle is published, and "
            "running publish again registers it"
        ) from None
    except psycopg2.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ServiceError(
            f"registering {card['version']} in {describe_dsn(conn.dsn)} failed: {first}; the bundle is "
            "published, and running publish again registers it"
        ) from None
    finally:
        conn.close()
    return True


def _with_card(
    files: dict[str, bytes], version: str, run_dir: Path, gpu_hour_usd: float
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The bundle's files for ``version``: the content plus the card (model.json, MODEL_CARD.md)."""
    artifacts = {name: _digest(data) for name, data in files.items()}
    card = build_card(version=version, run_dir=run_dir, artifacts=artifacts, gpu_hour_usd=gpu_hour_usd)
    full = dict(files)
    full["model.json"] = (json.dumps(card, indent=2) + "\n").encode()
    full["MODEL_CARD.md"] = render_card(card).encode()
    return full, card


def _resumable(
    store: Any, versions: list[str], files: dict[str, bytes], run_dir: Path, gpu_hour_usd: float
) -> tuple[str, dict[str, bytes], dict[str, Any]] | None:
    """A version that already holds this model, finished or not: (version, its files, its card).

    A finished one (SHA256SUMS written) holds it when its sums match our content files; its own card is kept
    (bytes as stored), and a missing signature is added. An unfinished one (a publish interrupted before
    SHA256SUMS) holds it when every file it has is what this publish would write as that version.
    """
    ours = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    for existing in reversed(versions):
        prefix = bundle_prefix(existing)
        present = {key[len(prefix) + 1 :] for key in store.list(prefix)}
        if SUMS_FILE in present:
            sums = parse_sha256sums(store.get(f"{prefix}/{SUMS_FILE}"))
            if all(sums.get(name) == digest for name, digest in ours.items()) and set(sums) >= set(ours):
                stored = {name: store.get(f"{prefix}/{name}") for name in sums if name not in files}
                card = json.loads(stored["model.json"]) if "model.json" in stored else {}
                return existing, {**files, **stored}, card
            continue
        planned, card = _with_card(files, existing, run_dir, gpu_hour_usd)
        content = present - {SIGNATURE_FILE}
        if (
            content
            and content <= planned.keys()
            and all(store.get(f"{prefix}/{name}") == planned[name] for name in content)
        ):
            return existing, planned, card
    return None


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
    # A re-run after any failure (upload interrupted, registry down, nothing done) ends in the same state:
    # the bundle whole and signed, the registry row, published.json.
    resumed = _resumable(store, versions, files, run_dir, gpu_hour_usd)
    if resumed is not None:
        version, full, card = resumed
    else:
        # The newest version with a card (one left without, by another model's interrupted publish, says
        # nothing about the interface; its number stays taken).
        latest_interface = None
        for existing in reversed(versions):
            if store.exists(f"models/{existing}/model.json"):
                latest_interface = json.loads(store.get(f"models/{existing}/model.json"))["interface"]
                break
        version = next_version(versions, interface=run["interface"], latest_interface=latest_interface)
        full, card = _with_card(files, version, run_dir, gpu_hour_usd)
    if "MODEL_CARD.md" in full:
        write_atomic(run_dir / "MODEL_CARD.md", full["MODEL_CARD.md"], durable=False)
    if "model.json" in full:
        write_atomic(run_dir / "model.json", full["model.json"], durable=False)

    result = publish_bundle(store, version, full, private_key)
    if resumed is not None:
        done = "nothing to do" if result.outcome == "identical" else "finished what an earlier run left out"
        log.info(
            f"this model is already published as {version}: {done}", extra={"fields": {"uri": result.uri}}
        )
    registered = False
    if dsn is not None:
        registered = _register(dsn, card or json.loads(full["model.json"]), result.uri)
    published = {"version": version, "bundle": result.uri, "interface": run["interface"]}
    write_atomic(run_dir / "published.json", json.dumps(published, indent=2) + "\n")
    outcome = "identical" if resumed is not None and result.outcome == "identical" else result.outcome
    return PublishOutcome(version, result.uri, outcome, registered)
