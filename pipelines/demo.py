"""``make demo`` / ``edgeops demo``: the main job end to end on embedded defaults, as far as it is built.

It runs in a fresh workspace folder (default ``.edgeops/demo``, ignored by git) and never touches the
user's checkout or remotes. Each stage says what it did; stages that are not built yet are listed as such
at the end, never faked. Later issues extend the story (snapshot, train, release PRs, rollout, rollback).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from tools.errors import EdgeopsError, ServiceError

__all__ = ["run_demo"]

log = logging.getLogger("edgeops.demo")
_MARKER = ".edgeops-demo-workspace"


def _say(text: str = "") -> None:
    print(text, flush=True)


@contextmanager
def _step(title: str) -> Iterator[None]:
    _say(f"\n== {title}")
    start = time.monotonic()
    yield
    _say(f"   done in {time.monotonic() - start:.1f}s")


def _fresh_workspace(path: Path) -> Path:
    if path.exists():
        if not (path / _MARKER).exists() and any(path.iterdir()):
            raise EdgeopsError(
                f"{path} exists and is not a demo workspace; pass --workspace with a new or empty folder"
            )
        shutil.rmtree(path)
    path.mkdir(parents=True)
    (path / _MARKER).write_text("created by `edgeops demo`; deleted and recreated on the next run\n")
    return path


def run_demo(*, workspace: Path, n: int, seed: int, config_path: str | None) -> int:
    from tools.config import find_config, load_config
    from tools.devservices import ThrowawayPostgres, ThrowawayS3
    from training.config import load_training_config
    from training.data.ldo import parse_ldo
    from training.data.seed import seed as seed_ldos
    from training.data.synth import write_dataset
    from training.snapshot import DirSource, LdoCache, PgS3Source, SnapshotOptions, build_snapshot

    if n < 1:
        raise EdgeopsError(f"--n must be at least 1, got {n}")
    total_start = time.monotonic()
    cfg_path = find_config(config_path)
    cfg = load_config(cfg_path)
    tcfg = load_training_config(cfg_path.parent / cfg.training_config)
    spec = tcfg.data_spec()
    ws = _fresh_workspace(workspace)
    _say(f"edgeops demo: workspace {ws} (config {cfg_path}; rings {' -> '.join(cfg.ring_order())})")
    done: list[str] = []

    data_dir = ws / "ldos"
    options = SnapshotOptions(
        limit=cfg.data.snapshot_limit,
        val_fraction=cfg.data.val_fraction,
        test_fraction=cfg.data.test_fraction,
        max_reject_fraction=cfg.data.max_reject_fraction,
        vocab_sizes={
            "product_id": tcfg.product_vocab,
            "recipe_id": tcfg.recipe_vocab,
            "asset_id": tcfg.asset_vocab,
        },
    )
    snapshot_done = False
    with _step(f"1. Synthesise {n} LDO records (seed {seed})"):
        summary = write_dataset(data_dir, n, seed, spec)
        _say(f"   {summary.n} files in {data_dir}; {summary.healthy} healthy ({summary.healthy / n:.0%})")
        for mode, count in summary.label_counts.items():
            _say(f"   {mode:<18} {count:>6}  ({count / n:.1%})")
        done.append(f"synthesised {n} LDOs")

    with _step("2. Validate every record against LDO v1 and the training config"):
        files = sorted(data_dir.glob("*.json"))
        for path in files:
            parse_ldo(path.read_bytes(), spec, source=path.name)
        _say(f"   {len(files)} of {len(files)} records valid")
        done.append("validated them")

    with _step("3. Load them into PostgreSQL + S3 the way the runtime backend stores them"):
        try:
            with ExitStack() as stack:
                pg = stack.enter_context(ThrowawayPostgres())
                s3 = stack.enter_context(ThrowawayS3())
                assert s3.endpoint is not None
                saved = {k: os.environ.get(k) for k in s3.endpoint.env()}
                os.environ.update(s3.endpoint.env())
                try:
                    _say(
                        f"   throwaway PostgreSQL {pg.version} on 127.0.0.1:{pg.port}, "
                        f"S3 API at {s3.endpoint.url}"
                    )
                    first = seed_ldos(data_dir, spec, dsn=pg.dsn, s3_uri=cfg.data.ldo_store)
                    _say(f"   first load:  {first.summary()}")
                    again = seed_ldos(data_dir, spec, dsn=pg.dsn, s3_uri=cfg.data.ldo_store)
                    _say(f"   second load: {again.summary()}")
                    _say("\n== 4. Snapshot the newest validated LDOs from PostgreSQL + S3, cold then warm")
                    cache = LdoCache(ws / "cache")
                    for run in ("cold", "warm"):
                        start = time.monotonic()
                        source = PgS3Source(dsn=pg.dsn, s3_uri=cfg.data.ldo_store, cache=cache)
                        snap = build_snapshot(source, ws / "snapshot", spec, options)
                        _say(f"   {run}: {snap.summary()} ({time.monotonic() - start:.1f}s)")
                    snapshot_done = True
                finally:
                    for key, value in saved.items():
                        if value is None:
                            os.environ.pop(key, None)
                        else:
                            os.environ[key] = value
            done.append("loaded them into PostgreSQL + S3 (idempotent on rerun)")
            done.append("snapshotted them from PostgreSQL + S3 (the warm run downloads nothing)")
        except ServiceError as exc:
            _say(f"   skipped: the throwaway services could not start ({exc})")
    if not snapshot_done:
        with _step("4. Snapshot the newest validated LDOs from the folder (no PostgreSQL + S3 here)"):
            snap = build_snapshot(DirSource(data_dir), ws / "snapshot", spec, options)
            _say(f"   {snap.summary()}")
            done.append("snapshotted them from the folder")

    with _step("5. Train the failure-mode model on the snapshot (CPU, training/configs/demo.yaml)"):
        from training.config import DEMO_CONFIG
        from training.train import train

        result = train(ws / "snapshot", load_training_config(DEMO_CONFIG), ws / "run")
        test = result["metrics"].get("test", result["metrics"]["val"])
        seconds, params = result["timing"]["wall_seconds"], result["model"]["parameters"]
        epochs = f"{result['epochs_run']} epochs (best {result['best_epoch']})"
        _say(f"   {epochs} in {seconds:.1f}s, {params} parameters")
        _say(
            f"   test split ({test['n']} windows): subset accuracy {test['subset_accuracy']:.3f} vs "
            f"{test['healthy_baseline_subset_accuracy']:.3f} for always-healthy; "
            f"FP rate {test['fp_rate']:.3f}, FN rate {test['fn_rate']:.3f}"
        )
        for mode, m in test["per_mode"].items():
            line = f"   {mode:<18} precision {m['precision']:.3f}  recall {m['recall']:.3f}"
            _say(f"{line}  threshold {m['threshold']:.2f}")
        _say(f"   run folder: {ws / 'run'} (weights, metrics.jsonl, run.json, plots/)")
        done.append(f"trained a model (test subset accuracy {test['subset_accuracy']:.3f})")

    with _step("6. Evaluate against the fleet model, export to ONNX, publish a signed bundle"):
        from tools.bundle import verify_bundle_uri
        from tools.signing import generate_keypair, key_id, load_private_key, load_public_key
        from training.evaluate import evaluate_run
        from training.export import export_run
        from training.publish import publish_run

        report = evaluate_run(ws / "snapshot", ws / "run", cfg.gates.evaluation, None)
        for g in report["gates"]:
            value = "n/a" if g["value"] is None else g["value"]
            mark = "PASS" if g["passed"] else "FAIL"
            _say(f"   {mark} {g['name']:<28} {value!s:<9} (threshold {g['threshold']})")
        export = export_run(ws / "run")
        lat, engine = export["latency_cpu_onnxruntime"]["batch_1"], export["engine"]
        parity = export["parity"]["max_abs_diff"]
        _say(f"   ONNX parity max |diff| {parity:.1e}; CPU latency p50 {lat['p50_ms']:.3f} ms at batch 1")
        engine_text = "built" if engine.get("built") else f"not built ({engine['reason']})"
        _say(f"   TensorRT engine: {engine_text}")
        if report["passed"]:
            # A throwaway signing key for the demo only; a fork makes its own with `edgeops keygen`.
            private_pem, public_pem = generate_keypair()
            (ws / "demo-signing.pub").write_bytes(public_pem)
            signing_key = load_private_key({"EDGEOPS_SIGNING_KEY": private_pem.decode()})
            store = f"file://{(ws / 'store').resolve()}"
            outcome = publish_run(
                ws / "run", store, private_key=signing_key, gpu_hour_usd=cfg.cost.gpu_hour_usd
            )
            verified = verify_bundle_uri(outcome.uri, load_public_key(ws / "demo-signing.pub"))
            signer = key_id(signing_key.public_key())
            _say(f"   published {outcome.version} at {outcome.uri}")
            _say(f"   verified: {len(verified.files)} files match SHA256SUMS, signed by key {signer}")
            _say(f"   model card: {ws / 'run' / 'MODEL_CARD.md'}")
            done.append(f"published it as {outcome.version}, signed and verified")
        else:
            _say("   not published: the candidate failed its gates (see above)")
            done.append("evaluated it (gates failed: not published)")

    _say(f"\nedgeops demo: finished in {time.monotonic() - total_start:.1f}s. Done: {'; '.join(done)}.")
    _say(
        "Built, but not yet part of this story (issue #9 joins them): the release PRs (`edgeops propose`,\n"
        "`promote`, `rollback`; docs/promotion.md), the resumable pipeline (`edgeops pipeline run`;\n"
        "docs/pipeline.md) and the rollout to the rings (try `edgeops fleet-sim --nodes 100 --pilot 10`)."
    )
    return 0
