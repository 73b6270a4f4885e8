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

It finishes only what it can prove and never changes a stored object: a missing file whose bytes
``SHA256SUMS`` lists, a missing ``SHA256SUMS`` or signature. A version that holds this model but is damaged
(a file that no longer matches ``SHA256SUMS``, a signature that verifies under none of the trusted keys, an
unreadable ``SHA256SUMS``) is never called identical: publish refuses, names what is wrong and what to do.
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
    BundleError,
    bundle_prefix,
    list_versions,
    next_version,
    parse_sha256sums,
    publish_bundle,
    sha256sums,
)
from tools.core.errors import EdgeopsError, ServiceError, StoreError
from tools.core.fsutil import write_atomic
from tools.core.pg import connect, describe_dsn
from tools.core.signing import SignatureError, TrustedKeys, describe_keys, key_id, verify
from tools.core.store import Store, open_store
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
    try:
        conn = connect(dsn)
    except ServiceError as exc:
        raise ServiceError(
            f"registering {card['version']}: {exc}. The bundle is published; once PostgreSQL answers, run "
            "publish again: it registers the version and writes published.json"
        ) from None
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


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _damaged(folder: str, version: str, problems: list[str]) -> BundleError:
    return BundleError(
        f"{folder} holds this model but is damaged: {'; '.join(problems)}. Publish adds only what it can "
        f"prove (a missing file whose bytes {SUMS_FILE} lists, a missing signature) and never changes a "
        f"stored object, so it cannot finish {version}; `edgeops verify` refuses it, and no node installs "
        "it. Find out how it changed (an edit in the store, a key that is not trusted), then delete "
        f"{folder} from the store and run publish again: it writes {version} whole"
    )


def _signature_problem(store: Store, prefix: str, sums: bytes, keys: TrustedKeys) -> str | None:
    """Why the stored signature does not sign ``sums`` under ``keys`` (None: it does)."""
    raw = store.get(f"{prefix}/{SIGNATURE_FILE}")
    try:
        verify(keys, sums, raw.decode("ascii").strip())
    except UnicodeDecodeError:
        return f"{SIGNATURE_FILE} is not ASCII text"
    except SignatureError as exc:
        return f"{SIGNATURE_FILE} does not sign {SUMS_FILE} under the trusted {describe_keys(keys)} ({exc})"
    return None


def _resumable(
    store: Store,
    versions: list[str],
    files: dict[str, bytes],
    run_dir: Path,
    gpu_hour_usd: float,
    *,
    keys: TrustedKeys,
) -> tuple[str, dict[str, bytes], dict[str, Any]] | None:
    """A version that already holds this model, finished or not: (version, its files, its card); None when
    no version does. :class:`BundleError` when one does but is damaged (it cannot be finished).

    A finished one (SHA256SUMS written) holds it when its sums list our content files; its own card is kept
    (bytes as stored). It may lack a file SHA256SUMS lists (we have its bytes: ours, or a card this run
    rebuilds byte for byte) and the signature; every stored file must match SHA256SUMS, and a stored
    signature must verify under ``keys``. An unfinished one (a publish interrupted before SHA256SUMS) holds
    it when every file it has is what this publish would write as that version.
    """
    ours = {name: _sha(data) for name, data in files.items()}
    for existing in reversed(versions):
        prefix = bundle_prefix(existing)
        folder = store.url(prefix) + "/"
        present = {key[len(prefix) + 1 :] for key in store.list(prefix)}

        def same(names: Any, expected: dict[str, bytes], prefix: str = prefix) -> bool:
            """Every stored file of ``names`` holds ``expected``'s bytes (read lazily: the first
            difference ends it, so another model's version costs one read)."""
            return all(store.get(f"{prefix}/{name}") == expected[name] for name in sorted(names))

        if SUMS_FILE in present:
            raw_sums = store.get(f"{prefix}/{SUMS_FILE}")
            try:
                sums = parse_sha256sums(raw_sums)
            except BundleError as exc:
                if files.keys() <= present and same(files, files):
                    raise _damaged(folder, existing, [str(exc)]) from None
                continue  # another model's damaged version: its number stays taken
            if not all(sums.get(name) == digest for name, digest in ours.items()):
                continue
            full = dict(files)
            problems: list[str] = []
            rebuilt: dict[str, bytes] | None = None
            for name in sorted(sums.keys() - files.keys()):
                if name in present:
                    full[name] = store.get(f"{prefix}/{name}")
                    continue
                if rebuilt is None:
                    rebuilt = _with_card(files, existing, run_dir, gpu_hour_usd)[0]
                if name in rebuilt and _sha(rebuilt[name]) == sums[name]:
                    full[name] = rebuilt[name]  # this run makes the same bytes: provably the missing file
                else:
                    problems.append(
                        f"{name} is missing, and this run makes other bytes than {SUMS_FILE} lists"
                    )
            extra = sorted(present - sums.keys() - {SUMS_FILE, SIGNATURE_FILE})
            if extra:
                problems.append(f"it has files {SUMS_FILE} does not list ({', '.join(extra)})")
            for name in sorted(present & sums.keys()):
                data = full[name] if name not in files else store.get(f"{prefix}/{name}")
                if _sha(data) != sums[name]:
                    problems.append(f"{name} does not match {SUMS_FILE} (changed in the store)")
            if not problems and sha256sums(full) != raw_sums:
                problems.append(f"{SUMS_FILE} is not the list publish writes for these files")
            if not problems and SIGNATURE_FILE in present:
                why = _signature_problem(store, prefix, raw_sums, keys)
                if why is not None:
                    problems.append(why)
            if problems:
                raise _damaged(folder, existing, problems)
            card = json.loads(full["model.json"]) if "model.json" in full else {}
            return existing, full, card
        planned, card = _with_card(files, existing, run_dir, gpu_hour_usd)
        content = present - {SIGNATURE_FILE}
        if content and content <= planned.keys() and same(content, planned):
            if SIGNATURE_FILE in present:  # a signature without SHA256SUMS: it must sign what we will write
                why = _signature_problem(store, prefix, sha256sums(planned), keys)
                if why is not None:
                    raise _damaged(folder, existing, [why])
            return existing, planned, card
    return None


def publish_run(
    run_dir: Path,
    store_uri: str,
    *,
    private_key: Any,
    gpu_hour_usd: float,
    dsn: str | None = None,
    trusted_keys: TrustedKeys | None = None,
) -> PublishOutcome:
    """Publish ``run_dir``'s model to ``store_uri`` (see the module docstring). ``trusted_keys``: the
    project's release-signing keys (``signing.public_key``); a signature already in the store is kept when
    one of them (or ``private_key``'s own) made it, as after a key rotation."""
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

    public = private_key.public_key()
    keys = {key_id(public): public, **(trusted_keys or {})}
    store = open_store(store_uri)
    versions = list_versions(store)
    # A re-run after any failure (upload interrupted, registry down, nothing done) ends in the same state:
    # the bundle whole and signed, the registry row, published.json.
    resumed = _resumable(store, versions, files, run_dir, gpu_hour_usd, keys=keys)
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

    prefix = bundle_prefix(version)
    uri = store.url(prefix) + "/"
    present = {key[len(prefix) + 1 :] for key in store.list(prefix)} if resumed is not None else set()
    if resumed is not None and present == full.keys() | {SUMS_FILE, SIGNATURE_FILE}:
        outcome = "identical"  # _resumable checked every stored file and the signature
    else:
        try:
            outcome = publish_bundle(store, version, full, private_key).outcome
        except (ServiceError, StoreError) as exc:
            raise type(exc)(
                f"{exc}. The bundle {uri} is incomplete, so no node installs it; once that is fixed, run the "
                f"same publish again: it finishes {version}"
            ) from None
    if resumed is not None:
        done = "nothing to do" if outcome == "identical" else "finished what an earlier run left out"
        log.info(f"this model is already published as {version}: {done}", extra={"fields": {"uri": uri}})
    registered = False
    if dsn is not None:
        registered = _register(dsn, card or json.loads(full["model.json"]), uri)
    published = {"version": version, "bundle": uri, "interface": run["interface"]}
    write_atomic(run_dir / "published.json", json.dumps(published, indent=2) + "\n")
    return PublishOutcome(version, uri, outcome, registered)
