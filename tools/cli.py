"""The ``edgeops`` command: a thin adapter from argv to the typed core.

Training-side handlers import ``training``/``pipelines`` inside the function that runs them, so
``edgeops --help``, the delivery-side commands and the model-updater never load torch
(tests/test_layering.py checks it). Subcommands that the design names but that are not built yet say so
and exit 3; they never pretend.

Exit codes: 0 success, 1 an error with a message (bad input, a service down, a failed gate), 2 usage,
3 not available yet.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tools.errors import ConfigError, EdgeopsError, NotAvailableError
from tools.log import fields, setup_logging

if TYPE_CHECKING:
    from tools.config import EdgeopsConfig
    from training.config import TrainingConfig

__all__ = ["build_parser", "main"]

log = logging.getLogger("edgeops")

# Subcommands of ../shared/DESIGN.md that later issues build; the CLI is honest about them meanwhile.
PLANNED: dict[str, tuple[str, int]] = {}


def _config(args: argparse.Namespace) -> EdgeopsConfig:
    from tools.config import load_config

    return load_config(args.config)


def _training_config(args: argparse.Namespace) -> TrainingConfig:
    """The training config named by --training-config, else by edgeops.yaml (relative to that file)."""
    from tools.config import find_config, load_config
    from training.config import load_training_config

    if getattr(args, "training_config", None):
        return load_training_config(Path(args.training_config))
    path = find_config(args.config)
    cfg = load_config(path)
    return load_training_config(path.parent / cfg.training_config)


def _default_data_path(args: argparse.Namespace) -> Path:
    from tools.config import find_config

    path = find_config(args.config)
    return path.parent / _config(args).data.local_path


# --- handlers ---------------------------------------------------------------------------------------------


def cmd_config_check(args: argparse.Namespace) -> int:
    from tools.config import find_config, load_config
    from tools.typedyaml import dump_model
    from training.config import load_training_config

    path = find_config(args.config)
    cfg = load_config(path)
    load_training_config(path.parent / cfg.training_config)  # its errors surface here too
    sys.stdout.write(f"# effective configuration from {path} (defaults filled in)\n")
    sys.stdout.write(dump_model(cfg))
    log.info("config is valid", extra=fields(path=str(path), rings=" -> ".join(cfg.ring_order())))
    return 0


def cmd_config_reference(args: argparse.Namespace) -> int:
    from tools.configref import render_reference

    sys.stdout.write(render_reference())
    return 0


def cmd_data_synth(args: argparse.Namespace) -> int:
    from tools.progress import Progress
    from training.data.synth import write_dataset

    if args.n < 1:
        raise EdgeopsError(f"--n must be at least 1, got {args.n}")
    spec = _training_config(args).data_spec()
    out = Path(args.out) if args.out else _default_data_path(args)
    start = time.monotonic()
    with Progress(args.n, "writing synthetic LDOs") as progress:
        last = 0

        def advance(done: int) -> None:
            nonlocal last
            progress.update(done - last)
            last = done

        summary = write_dataset(out, args.n, args.seed, spec, progress=advance)
    modes = ", ".join(f"{k}={v}" for k, v in summary.label_counts.items())
    log.info(
        f"wrote {summary.n} synthetic LDOs to {out} in {time.monotonic() - start:.1f}s "
        f"({summary.healthy} healthy; {modes})",
        extra=fields(seed=args.seed),
    )
    return 0


def cmd_data_seed(args: argparse.Namespace) -> int:
    from training.data.seed import seed

    spec = _training_config(args).data_spec()
    s3 = args.s3 or _config(args).data.ldo_store
    data_path = Path(args.data_path) if args.data_path else _default_data_path(args)
    if args.workers < 1:
        raise EdgeopsError(f"--workers must be at least 1, got {args.workers}")
    start = time.monotonic()
    report = seed(data_path, spec, dsn=args.pg, s3_uri=s3, workers=args.workers)
    log.info(
        f"{report.summary()} in {time.monotonic() - start:.1f}s",
        extra=fields(new=report.new, updated=report.updated, unchanged=report.unchanged),
    )
    return 0


def cmd_data_validate(args: argparse.Namespace) -> int:
    from training.data.ldo import parse_ldo

    spec = _training_config(args).data_spec()
    files: list[Path] = []
    for name in args.paths:
        p = Path(name)
        if p.is_dir():
            files.extend(sorted(p.glob("*.json")))
        elif p.is_file():
            files.append(p)
        else:
            raise EdgeopsError(f"{p}: no such file or folder")
    bad = 0
    for path in files:
        try:
            parse_ldo(path.read_bytes(), spec, source=str(path))
        except EdgeopsError as exc:
            bad += 1
            print(f"INVALID {exc}")
    print(f"{len(files) - bad} valid, {bad} invalid of {len(files)} LDO files")
    return 1 if bad else 0


def cmd_snapshot(args: argparse.Namespace) -> int:
    from tools.config import find_config
    from training.snapshot import DirSource, LdoCache, PgS3Source, SnapshotOptions, build_snapshot

    cfg_path = find_config(args.config)
    cfg = _config(args)
    tcfg = _training_config(args)
    root = cfg_path.parent
    source: DirSource | PgS3Source
    if args.source == "dir":
        source = DirSource(Path(args.data_path) if args.data_path else root / cfg.data.local_path)
    else:
        if args.workers < 1:
            raise EdgeopsError(f"--workers must be at least 1, got {args.workers}")
        cache = LdoCache(Path(args.cache) if args.cache else root / cfg.data.cache_path)
        source = PgS3Source(
            dsn=args.pg, s3_uri=args.s3 or cfg.data.ldo_store, cache=cache, workers=args.workers
        )
    options = SnapshotOptions(
        limit=args.limit if args.limit is not None else cfg.data.snapshot_limit,
        val_fraction=cfg.data.val_fraction,
        test_fraction=cfg.data.test_fraction,
        max_reject_fraction=(
            args.max_reject_fraction if args.max_reject_fraction is not None else cfg.data.max_reject_fraction
        ),
        vocab_sizes={
            "product_id": tcfg.product_vocab,
            "recipe_id": tcfg.recipe_vocab,
            "asset_id": tcfg.asset_vocab,
        },
    )
    start = time.monotonic()
    report = build_snapshot(source, Path(args.out), tcfg.data_spec(), options)
    log.info(
        f"{report.summary()} in {time.monotonic() - start:.1f}s", extra=fields(fingerprint=report.fingerprint)
    )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import subprocess

    from training.config import DEFAULT_CONFIG, load_training_config

    config = Path(args.training_config) if args.training_config else DEFAULT_CONFIG
    load_training_config(config)  # fail here, with the line, rather than inside N workers
    if args.nproc < 1:
        raise EdgeopsError(f"--nproc must be at least 1, got {args.nproc}")
    if args.nproc == 1:
        from training.train import EXIT_PREEMPTED, train

        try:
            train(Path(args.snapshot), load_training_config(config), Path(args.out), resume=args.resume)
        except SystemExit as stop:
            if stop.code == EXIT_PREEMPTED:
                return EXIT_PREEMPTED
            raise
        return 0
    # DDP: one process per device through torchrun, which forwards SIGTERM to every worker.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}",
           "-m", "training.train", "--snapshot", args.snapshot, "--out", args.out,
           "--config", str(config)]  # fmt: skip
    if args.resume:
        cmd.append("--resume")
    if args.log_json:
        cmd.append("--log-json")
    log.info(f"starting {args.nproc} training processes with torchrun")
    return subprocess.run(cmd, check=False).returncode


def _repo_root(args: argparse.Namespace) -> Path:
    from tools.config import find_config

    return find_config(args.config).parent


def cmd_evaluate(args: argparse.Namespace) -> int:
    from training.evaluate import evaluate_run, load_fleet_model

    cfg = _config(args)
    fleet_ring = cfg.rings[cfg.ring_order()[-1]]
    release = (
        Path(args.fleet_release)
        if args.fleet_release
        else _repo_root(args) / fleet_ring.path / "release.yaml"
    )
    fleet = load_fleet_model(release, _repo_root(args) / cfg.signing.public_key)
    if fleet is None:
        log.info(f"no fleet model yet ({release} names no release): the candidate is judged on its own")
    report = evaluate_run(Path(args.snapshot), Path(args.run), cfg.gates.evaluation, fleet)
    for g in report["gates"]:
        value = "n/a" if g["value"] is None else g["value"]
        mark = "PASS" if g["passed"] else "FAIL"
        print(f"{mark}  {g['name']:<28} value {value!s:<10} threshold {g['threshold']}  ({g['detail']})")
    verdict = "passed" if report["passed"] else "FAILED"
    log.info(f"evaluation {verdict}; details in {Path(args.run) / 'evaluation.json'}")
    return 0 if report["passed"] else 1


def cmd_export(args: argparse.Namespace) -> int:
    from training.export import export_run

    report = export_run(Path(args.run), Path(args.snapshot) if args.snapshot else None)
    engine = report["engine"]
    if not engine.get("built"):
        print(f"engine: not built ({engine['reason']})")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    import os

    from tools.signing import load_private_key
    from training.publish import publish_run

    cfg = _config(args)
    store = args.store or cfg.store.bundles
    if store.startswith("file://") and not store.startswith("file:///"):
        store = f"file://{_repo_root(args) / store[len('file://') :]}"
    dsn = args.pg or os.environ.get("EDGEOPS_PG_DSN")
    outcome = publish_run(
        Path(args.run), store, private_key=load_private_key(), gpu_hour_usd=cfg.cost.gpu_hour_usd, dsn=dsn
    )
    registry = "registered in model_versions" if outcome.registered else "no registry DSN: not registered"
    log.info(f"{outcome.outcome} {outcome.version} at {outcome.uri} ({registry})")
    print(outcome.uri)
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    import os

    from tools.signing import generate_keypair

    private_pem, public_pem = generate_keypair()
    priv, pub = Path(args.private_key), Path(args.public_key)
    for path in (priv, pub):
        if path.exists() and not args.force:
            raise EdgeopsError(
                f"{path} exists; pass --force to replace it (old signatures stay valid for the old key)"
            )
    priv.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(
        priv, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600
    )  # private: owner-only from the first byte
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem)
    pub.parent.mkdir(parents=True, exist_ok=True)
    pub.write_bytes(public_pem)
    log.info(
        f"wrote the private key to {priv} (keep it out of git: store it as the EDGEOPS_SIGNING_KEY secret) "
        f"and the public key to {pub} (commit it)"
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from tools.bundle import verify_bundle_uri
    from tools.signing import key_id, load_public_key

    key_path = (
        Path(args.public_key) if args.public_key else _repo_root(args) / _config(args).signing.public_key
    )
    public = load_public_key(key_path)
    report = verify_bundle_uri(args.bundle, public)
    print(f"OK {report.version}: {len(report.files)} files match SHA256SUMS, signed by key {key_id(public)}")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from tools.manifests import kustomize_build

    cfg = _config(args)
    if args.ring not in cfg.rings:
        raise EdgeopsError(
            f"no ring named {args.ring!r} in edgeops.yaml; rings: {', '.join(cfg.ring_order())}"
        )
    root = _repo_root(args)
    sys.stdout.write(kustomize_build(root / cfg.rings[args.ring].path, repo_root=root))
    return 0


def cmd_validate_manifests(args: argparse.Namespace) -> int:
    from tools.manifests import KUBERNETES_VERSION, validate_manifests

    cfg = _config(args)
    report = validate_manifests(
        _repo_root(args), {ring: cfg.rings[ring].path for ring in cfg.ring_order()}, ["manifests/argocd"]
    )
    for problem in report.problems:
        print(f"INVALID {problem}")
    built = ", ".join(f"{label} ({n} objects)" for label, n in report.built.items())
    print(f"built {built}; checked against Kubernetes {KUBERNETES_VERSION} and the Argo CRDs (strict)")
    if not report.ok:
        raise EdgeopsError(f"{len(report.problems)} problem(s) in the manifests (listed above)")
    print("all manifests valid")
    return 0


def cmd_updater_run(args: argparse.Namespace) -> int:
    from tools.updater import run_from_args

    return run_from_args(args)


def cmd_fleet_sim(args: argparse.Namespace) -> int:
    try:
        from tools.fleetsim import main as fleetsim_main
    except ImportError as exc:  # it builds tiny ONNX models, so it needs onnx (the `training` extra)
        raise EdgeopsError(
            f"fleet-sim needs the onnx package ({exc}); install with `pip install '.[training]'`"
        ) from None

    return fleetsim_main(args.passthrough)


def cmd_demo(args: argparse.Namespace) -> int:
    from pipelines.demo import run_demo

    return run_demo(
        workspace=Path(args.workspace),
        n=args.n,
        seed=args.seed,
        config_path=args.config,
        nodes=args.nodes,
        pilot=args.pilot,
    )


def cmd_pipeline_run(args: argparse.Namespace) -> int:
    from pipelines.runner import RunOptions, run_pipeline

    return run_pipeline(
        RunOptions(
            run_dir=Path(args.run_dir), config=args.config, training_config=args.training_config,
            source=args.source, data_path=args.data_path, limit=args.limit, store=args.store, ring=args.ring,
            nproc=args.nproc, until=args.until, only=args.only, force=tuple(args.force),
            skip_propose=args.skip_propose, echo=args.stream, log_json=args.log_json,
        )
    )  # fmt: skip


def cmd_pipeline_render(args: argparse.Namespace) -> int:
    from pipelines.argo import render_files

    out = Path(args.out) if args.out else _repo_root(args) / "pipelines" / "argo"
    changed = render_files(out, check=args.check)
    if args.check:
        for path in changed:
            print(f"OUT OF DATE {path}")
        if changed:
            raise EdgeopsError(
                f"{len(changed)} rendered file(s) differ: run `edgeops pipeline render` and commit"
            )
        print(f"{out}: up to date")
        return 0
    print(f"{out}: {len(changed)} file(s) written" + "".join(f"\n  {p}" for p in changed))
    return 0


def cmd_pipeline_submit(args: argparse.Namespace) -> int:
    from pipelines.submit import submit

    result = submit(
        server=args.server, namespace=args.namespace, cron=args.cron, run=args.run, parameters=args.param,
        verify_tls=not args.insecure_skip_verify,
    )  # fmt: skip
    for line in result.lines:
        print(line)
    return 0


# --- release PRs (tools.releaseflow, tools.policy) ---------------------------------------------------------


def _workspace(args: argparse.Namespace) -> Any:
    from tools.releaseflow import Workspace

    return Workspace.open(args.config)


def cmd_propose(args: argparse.Namespace) -> int:
    from tools.releaseflow import propose
    from tools.signing import load_private_key

    key = load_private_key()
    outcome = propose(_workspace(args), ring=args.ring, bundle_uri=args.bundle, private_key=key)
    for number in outcome.superseded:
        log.info(f"closed PR #{number}: superseded by #{outcome.pr.number}")
    state = "pushed" if outcome.pushed else "already up to date"
    print(
        f"PR #{outcome.pr.number} {outcome.pr.url}\n  {outcome.pr.title}\n  branch {outcome.branch} ({state})"
    )
    return 0


def _print_gates(gates: Any) -> None:
    for g in gates:
        print(f"  {'PASS' if g.passed else 'FAIL'}  {g.name:<26} {g.detail}")


def cmd_promote(args: argparse.Namespace) -> int:
    import json

    from tools.releaseflow import promote

    decision = promote(
        _workspace(args), from_ring=args.from_ring, to_ring=args.to_ring, dsn=args.pg, dry_run=args.dry_run
    )
    if args.json:
        print(json.dumps(decision.to_dict(), indent=2, default=str))
    else:
        verdict = "ALLOWED" if decision.allowed else "REFUSED"
        if not decision.gates:
            verdict = "NOTHING TO DO"
        print(f"promote {decision.version} {decision.from_ring} → {decision.to_ring}: {verdict}")
        _print_gates(decision.gates)
        if decision.pr:
            print(f"PR #{decision.pr.number} {decision.pr.url}\n  {decision.pr.title}")
        if decision.note:
            print(decision.note)
    return 0 if decision.allowed or not decision.gates else 1


def cmd_rollback(args: argparse.Namespace) -> int:
    from tools.releaseflow import rollback

    outcome = rollback(_workspace(args), ring=args.ring, to=args.to, reason=args.reason)
    how = (
        f"git revert of {outcome.reverted[:12]}"
        if outcome.reverted
        else f"release of {outcome.target} restored"
    )
    print(f"PR #{outcome.pr.number} {outcome.pr.url}\n  {outcome.pr.title}\n  {how}")
    return 0


def cmd_guard(args: argparse.Namespace) -> int:
    from tools.releaseflow import guard

    outcome = guard(_workspace(args), ring=args.ring, dsn=args.pg, dry_run=args.dry_run)
    verdict = "BREACHED" if outcome.breached else "ok"
    print(f"guard {outcome.ring} {outcome.version or '(no release)'}: {verdict}")
    _print_gates(outcome.gates)
    if outcome.rollback:
        print(f"PR #{outcome.rollback.pr.number} {outcome.rollback.pr.url}\n  {outcome.rollback.pr.title}")
    if outcome.note:
        print(outcome.note)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    import json

    from tools.releaseflow import render_status, status

    dsn = args.pg or os.environ.get("EDGEOPS_PG_DSN")
    report = status(_workspace(args), dsn=dsn)
    print(json.dumps(report, indent=2) if args.json else render_status(report))
    return 0


def cmd_validate_pr(args: argparse.Namespace) -> int:
    import json
    from datetime import UTC, datetime

    from tools.config import find_config, load_config
    from tools.gitrepo import must_be_repo
    from tools.policy import validate_pr

    path = find_config(args.config)
    report = validate_pr(
        must_be_repo(path.parent.resolve()), load_config(path), base=args.base, head=args.head,
        now=datetime.now(UTC),
    )  # fmt: skip
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.render())
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as f:
            f.write(f"### edgeops validate pr\n\n```\n{report.render()}\n```\n")
    return 0 if report.ok else 1


def _not_available(name: str) -> Callable[[argparse.Namespace], int]:
    what, issue = PLANNED[name]
    return _not_available_text(name, what, issue)


def _not_available_text(name: str, what: str, issue: int) -> Callable[[argparse.Namespace], int]:

    def handler(_args: argparse.Namespace) -> int:
        raise NotAvailableError(
            f"edgeops {name}: not available yet ({what}; tracked in issue #{issue}). Nothing was done."
        )

    return handler


# --- parser -----------------------------------------------------------------------------------------------


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeops",
        description="Train, ship, promote and roll back the ML model of an edge fleet, the GitOps way.",
        epilog="Exit codes: 0 ok, 1 error, 2 usage, 3 not available yet. See README.md and docs/.",
        formatter_class=_Formatter,
    )
    parser.add_argument(
        "--config", metavar="PATH", help="edgeops.yaml to use (default: found upwards from .)"
    )
    parser.add_argument(
        "--log-json", action="store_true", help="log JSON lines instead of human-readable text"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    # data
    data = sub.add_parser("data", help="synthesise, validate and load LDO records")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    tc_help = "training config whose data interface LDOs must match (default: edgeops.yaml's training_config)"

    synth = data_sub.add_parser(
        "synth",
        help="write N synthetic LDOs whose failure modes are learnable from their signals",
        description="Write N synthetic LDO v1 files (one <ldo_id>.json each). Deterministic for a seed.",
    )
    synth.add_argument("--n", type=int, required=True, help="number of records")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument("--out", metavar="DIR", help="output folder (default: edgeops.yaml data.local_path)")
    synth.add_argument("--training-config", metavar="PATH", help=tc_help)
    synth.set_defaults(handler=cmd_data_synth)

    seed = data_sub.add_parser(
        "seed",
        help="load a folder of LDOs into the PostgreSQL index and S3, as the runtime backend does",
        description=(
            "Validate every LDO file, upload new or changed objects to S3 and upsert the PostgreSQL `ldos`\n"
            "index (created if missing). Idempotent: a rerun with the same data changes nothing.\n"
            "S3 endpoint and credentials come from the standard AWS_* environment variables."
        ),
        formatter_class=_Formatter,
    )
    seed.add_argument(
        "--data-path", metavar="DIR", help="folder of LDO JSON files (default: data.local_path)"
    )
    seed.add_argument("--pg", metavar="DSN", help="PostgreSQL DSN (default: $EDGEOPS_PG_DSN)")
    seed.add_argument(
        "--s3", metavar="URI", help="s3://bucket/prefix for the objects (default: data.ldo_store)"
    )
    seed.add_argument("--workers", type=int, default=16, help="concurrent uploads (default 16)")
    seed.add_argument("--training-config", metavar="PATH", help=tc_help)
    seed.set_defaults(handler=cmd_data_seed)

    validate = data_sub.add_parser("validate", help="check LDO files against LDO v1 and the training config")
    validate.add_argument("paths", nargs="+", metavar="PATH", help="LDO files or folders of them")
    validate.add_argument("--training-config", metavar="PATH", help=tc_help)
    validate.set_defaults(handler=cmd_data_validate)

    # snapshot
    snap = sub.add_parser(
        "snapshot",
        help="turn the newest validated LDOs into a reproducible training snapshot",
        description=(
            "Select the newest N validated LDOs (PostgreSQL index + S3 objects, or a folder of LDO files),\n"
            "fetch them concurrently through a local cache keyed by ETag, validate them, and write a\n"
            "byte-reproducible snapshot folder (tensors.safetensors, index.tsv, snapshot.json,\n"
            "rejects.json). --out is replaced only when the new snapshot is complete."
        ),
        formatter_class=_Formatter,
    )
    snap.add_argument(
        "--source", choices=["pg+s3", "dir"], default="dir", help="where LDOs come from (default dir)"
    )
    snap.add_argument("--out", metavar="DIR", required=True, help="snapshot folder to write")
    snap.add_argument("--limit", type=int, help="newest N validated LDOs (default: data.snapshot_limit)")
    snap.add_argument("--pg", metavar="DSN", help="pg+s3: PostgreSQL DSN (default: $EDGEOPS_PG_DSN)")
    snap.add_argument("--s3", metavar="URI", help="pg+s3: s3://bucket/prefix (default: data.ldo_store)")
    snap.add_argument("--cache", metavar="DIR", help="pg+s3: local object cache (default: data.cache_path)")
    snap.add_argument("--workers", type=int, default=32, help="pg+s3: concurrent downloads (default 32)")
    snap.add_argument(
        "--data-path", metavar="DIR", help="dir: folder of LDO files (default: data.local_path)"
    )
    snap.add_argument(
        "--max-reject-fraction", type=float, help="fail above this share of malformed LDOs (default: config)"
    )
    snap.add_argument("--training-config", metavar="PATH", help=tc_help)
    snap.set_defaults(handler=cmd_snapshot)

    # train
    train = sub.add_parser(
        "train",
        help="train the failure-mode model on a snapshot",
        description=(
            "Train on a snapshot folder into a run folder (checkpoint/, metrics.jsonl, weights.safetensors,\n"
            "run.json, plots/). SIGTERM saves a checkpoint and exits 143; --resume continues from it."
        ),
        formatter_class=_Formatter,
    )
    train.add_argument("--snapshot", metavar="DIR", required=True, help="snapshot folder (edgeops snapshot)")
    train.add_argument("--out", metavar="RUN_DIR", required=True, help="run folder to write")
    train.add_argument(
        "--config", dest="training_config", metavar="PATH",
        help="training config (default training/configs/default.yaml)",
    )  # fmt: skip
    train.add_argument("--resume", action="store_true", help="continue from the last checkpoint in RUN_DIR")
    train.add_argument("--nproc", type=int, default=1, help="DDP processes via torchrun (default 1)")
    train.set_defaults(handler=cmd_train)

    # evaluate / export / publish / keygen / verify
    ev = sub.add_parser(
        "evaluate",
        help="evaluate a candidate against the model the fleet runs now; apply the gates",
        description="Score the run's model and the fleet's on the snapshot's test split; write\n"
        "evaluation.json. "
        "Exit 0 when every gate of edgeops.yaml (gates.evaluation) passes, 1 otherwise.",
        formatter_class=_Formatter,
    )
    ev.add_argument("--snapshot", metavar="DIR", required=True, help="snapshot folder (its test split)")
    ev.add_argument("--run", metavar="RUN_DIR", required=True, help="the candidate's run folder")
    ev.add_argument(
        "--fleet-release", metavar="PATH", help="release file of the fleet (default: last ring's)"
    )
    ev.set_defaults(handler=cmd_evaluate)

    ex = sub.add_parser(
        "export", help="export a run to ONNX (and TensorRT where available), with parity and latency"
    )
    ex.add_argument("--run", metavar="RUN_DIR", required=True, help="the run folder; writes RUN_DIR/export/")
    ex.add_argument("--snapshot", metavar="DIR", help="snapshot for parity checks (default: the run's)")
    ex.set_defaults(handler=cmd_export)

    pub = sub.add_parser(
        "publish",
        help="publish a signed, immutable model bundle to the store",
        description="Needs the signing key in EDGEOPS_SIGNING_KEY (PEM text) or EDGEOPS_SIGNING_KEY_FILE.",
    )
    pub.add_argument("--run", metavar="RUN_DIR", required=True, help="an evaluated and exported run folder")
    pub.add_argument(
        "--store", metavar="URI", help="s3://bucket/prefix or file:///path (default: store.bundles)"
    )
    pub.add_argument(
        "--pg", metavar="DSN", help="register the version there (default: $EDGEOPS_PG_DSN, if set)"
    )
    pub.set_defaults(handler=cmd_publish)

    kg = sub.add_parser("keygen", help="make an Ed25519 release-signing key pair")
    kg.add_argument(
        "--private-key", metavar="PATH", required=True, help="where to write the private key (0600)"
    )
    kg.add_argument(
        "--public-key",
        metavar="PATH",
        default="environments/release-signing/release-signing.pub",
        help="public key",
    )
    kg.add_argument("--force", action="store_true", help="replace existing key files")
    kg.set_defaults(handler=cmd_keygen)

    ver = sub.add_parser("verify", help="verify a published bundle's digests and signature")
    ver.add_argument("bundle", metavar="BUNDLE_URI", help="e.g. s3://bucket/prefix/models/v1.2/")
    ver.add_argument("--public-key", metavar="FILE", help="default: signing.public_key of edgeops.yaml")
    ver.set_defaults(handler=cmd_verify)

    # render / validate
    render = sub.add_parser("render", help="build a ring's manifests with the pinned kustomize (to stdout)")
    render.add_argument("ring", help="a ring of edgeops.yaml, e.g. pilot")
    render.set_defaults(handler=cmd_render)
    validate = sub.add_parser("validate", help="validate manifests and pull requests before they merge")
    validate_sub = validate.add_subparsers(dest="validate_command", metavar="WHAT", required=True)
    vm = validate_sub.add_parser("manifests", help="every ring builds; every object passes strict validation")
    vm.set_defaults(handler=cmd_validate_manifests)
    vpr = validate_sub.add_parser(
        "pr",
        help="the required CI check of a PR: release rules (signature, one ring, soak, no skipping)",
        description=(
            "Check the PR from --head into --base: changed release files parse and verify under the key on\n"
            "base; at most one ring changes; a release PR changes nothing else; a ring promoted from\n"
            "another gets only versions that soaked there, unless it returns to a version it ran before\n"
            "(a rollback is never blocked); versions never go backwards otherwise.\n"
            "Exit 0 accepted, 1 rejected."
        ),
        formatter_class=_Formatter,
    )
    vpr.add_argument("--base", required=True, help="the PR's base (e.g. origin/main)")
    vpr.add_argument("--head", required=True, help="the PR's head (e.g. HEAD)")
    vpr.add_argument("--json", action="store_true", help="print the report as JSON")
    vpr.set_defaults(handler=cmd_validate_pr)

    # updater
    updater = sub.add_parser("updater", help="the edge model-updater agent (one per node)")
    updater_sub = updater.add_subparsers(dest="updater_command", metavar="ACTION", required=True)
    updater_run = updater_sub.add_parser(
        "run",
        help="reconcile this node's model to the mounted release file, and keep doing so",
        description=(
            "Download, verify (sha256 + Ed25519 signature + accepted interface), health-check on the golden\n"
            "inputs, then swap <root>/current atomically; keep the last --keep versions so a rollback needs\n"
            "no download. Serves /ready, /healthz and /metrics with --listen."
        ),
        formatter_class=_Formatter,
    )
    from tools.updater import add_run_arguments

    add_run_arguments(updater_run)
    updater_run.set_defaults(handler=cmd_updater_run)

    # fleet-sim: its own parser (python -m tools.fleetsim) takes every flag, --help included.
    fleet_sim = sub.add_parser(
        "fleet-sim", help="simulate N nodes rolling out, promoting and rolling back releases", add_help=False
    )
    fleet_sim.set_defaults(handler=cmd_fleet_sim, passthrough_command=True)

    # config
    config = sub.add_parser("config", help="inspect edgeops.yaml")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = config_sub.add_parser("check", help="validate edgeops.yaml and print the effective config")
    check.set_defaults(handler=cmd_config_check)
    ref = config_sub.add_parser(
        "reference", help="print the reference of every edgeops.yaml key (docs/configuration.md)"
    )
    ref.set_defaults(handler=cmd_config_reference)

    # demo
    demo = sub.add_parser(
        "demo",
        help="run the main job end to end on embedded defaults (what exists so far)",
        description="Run every stage built so far in a fresh workspace; say what was and was not done.",
    )
    demo.add_argument("--workspace", default=".edgeops/demo", help="workspace folder (default .edgeops/demo)")
    demo.add_argument(
        "--n",
        type=int,
        default=4000,
        help="synthetic LDOs per month, for two months (default 4000)",
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--nodes", type=int, default=24, help="simulated edge nodes (default 24)")
    demo.add_argument("--pilot", type=int, default=4, help="of which pilot nodes (default 4)")
    demo.set_defaults(handler=cmd_demo)

    # release PRs
    pg_help = "PostgreSQL DSN of the runtime backend (default $EDGEOPS_PG_DSN)"
    prop = sub.add_parser(
        "propose",
        help="open (or update) the PR that pins a published bundle in the first ring",
        description=(
            "Verify the bundle (digests + signature), sign its release block with\n"
            "$EDGEOPS_SIGNING_KEY(_FILE), edit environments/<ring>/release.yaml in place (comments\n"
            "survive), "
            "commit on release/<ring>/<version> in a scratch worktree, push, and open the PR with the model\n"
            "card as its body. Run twice: one PR.\n"
            "A newer proposal closes the older open one, pointing to its successor."
        ),
        formatter_class=_Formatter,
    )
    prop.add_argument("--ring", default="pilot", help="the first ring (default pilot)")
    prop.add_argument(
        "--bundle", required=True, metavar="URI", help="the bundle, e.g. s3://bucket/models/v2.1/"
    )
    prop.set_defaults(handler=cmd_propose)

    prom = sub.add_parser(
        "promote",
        help="open the PR copying a soaked ring's release into the next ring (soak + telemetry gates)",
        description=(
            "Refuse unless the source ring's release was merged at least soak_hours ago (git history of its\n"
            "release file) and its telemetry (the backend's `predictions` table) passes gates.telemetry.\n"
            "Exit 0 when promoted (or nothing to do), 1 when refused. --dry-run prints every gate and\n"
            "pushes nothing."
        ),
        formatter_class=_Formatter,
    )
    prom.add_argument(
        "--from", dest="from_ring", default="pilot", help="ring to promote from (default pilot)"
    )
    prom.add_argument("--to", dest="to_ring", help="ring to promote to (default: the ring after --from)")
    prom.add_argument("--pg", metavar="DSN", help=pg_help)
    prom.add_argument(
        "--dry-run", action="store_true", help="print the decision and every gate; push nothing"
    )
    prom.add_argument("--json", action="store_true", help="print the decision as JSON")
    prom.set_defaults(handler=cmd_promote)

    rb = sub.add_parser(
        "rollback",
        help="open the PR that reverts a ring's release commit (exactly a `git revert` + PR)",
        description=(
            "Find the commit on the base branch that set the ring's current release and `git revert` it\n"
            "(-m 1 for a merge commit) on rollback/<ring>/<version>, then open a PR labelled `rollback`.\n"
            "With --to VERSION, write the release block the ring last ran for VERSION instead."
        ),
        formatter_class=_Formatter,
    )
    rb.add_argument("--ring", required=True, help="ring to roll back (pilot, fleet)")
    rb.add_argument(
        "--to", metavar="VERSION", help="a version this ring ran before (default: the previous one)"
    )
    rb.add_argument("--reason", help="why, for the PR body")
    rb.set_defaults(handler=cmd_rollback)

    gd = sub.add_parser(
        "guard",
        help="check a running release against the telemetry gates; open the rollback PR on a breach",
    )
    gd.add_argument("--ring", required=True, help="ring to guard (pilot, fleet)")
    gd.add_argument("--pg", metavar="DSN", help=pg_help)
    gd.add_argument("--dry-run", action="store_true", help="report; open no PR")
    gd.set_defaults(handler=cmd_guard)

    st = sub.add_parser("status", help="per ring: version, since when, soak clock, open PRs, telemetry")
    st.add_argument("--pg", metavar="DSN", help=pg_help + "; without one, no telemetry")
    st.add_argument("--json", action="store_true", help="JSON for scripts")
    st.set_defaults(handler=cmd_status)

    # pipeline
    pipe = sub.add_parser("pipeline", help="run, render or submit the release pipeline")
    pipe_sub = pipe.add_subparsers(dest="pipeline_command", metavar="ACTION", required=True)
    steps = "snapshot, train, evaluate, export, publish, propose"  # pipelines/dag.py (checked by the runner)
    prun = pipe_sub.add_parser(
        "run",
        help="run the pipeline here, resuming where it stopped",
        description=(
            f"Run the steps ({steps}) as edgeops subcommands on a run directory. The state file\n"
            "(RUN_DIR/pipeline-state.json) records each step's input and output hashes; run the same\n"
            "command again and steps whose inputs and outputs are unchanged are skipped, so a failed run\n"
            "resumes at the failed step. Each step's output is in RUN_DIR/logs/<step>.log.\n"
            "publish and propose need EDGEOPS_SIGNING_KEY (or _FILE); without it, stop with --until export."
        ),
        formatter_class=_Formatter,
    )
    prun.add_argument(
        "--run-dir", metavar="DIR", required=True, help="the run directory (created if missing)"
    )
    prun.add_argument(
        "--source", choices=["dir", "pg+s3"], default="dir", help="where LDOs come from (default dir)"
    )
    prun.add_argument(
        "--data-path", metavar="DIR", help="dir: folder of LDO files (default: data.local_path)"
    )
    prun.add_argument("--limit", type=int, help="newest N validated LDOs (default: data.snapshot_limit)")
    prun.add_argument(
        "--config", dest="training_config", metavar="PATH",
        help="training config (default: edgeops.yaml's training_config)",
    )  # fmt: skip
    prun.add_argument("--nproc", type=int, default=1, help="train: DDP processes (default 1)")
    prun.add_argument("--store", metavar="URI", help="publish: bundle store (default: store.bundles)")
    prun.add_argument("--ring", help="propose: the ring to propose to (default: the first ring)")
    prun.add_argument("--until", metavar="STEP", help=f"stop after STEP ({steps})")
    prun.add_argument("--only", metavar="STEP", help="run just STEP (what each Argo task does)")
    prun.add_argument(
        "--force", metavar="STEP", action="append", default=[], help="run STEP even if unchanged (repeatable)"
    )
    prun.add_argument("--skip-propose", action="store_true", help="stop after publishing; open no PR")
    prun.add_argument("--stream", action="store_true", help="copy each step's output to stderr as it runs")
    prun.set_defaults(handler=cmd_pipeline_run)
    prender = pipe_sub.add_parser(
        "render", help="write the Argo WorkflowTemplate and CronWorkflow YAML (hera) to pipelines/argo/"
    )
    prender.add_argument("--out", metavar="DIR", help="folder to write (default pipelines/argo)")
    prender.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 when the files differ from a fresh render"
    )
    prender.set_defaults(handler=cmd_pipeline_render)
    psub = pipe_sub.add_parser(
        "submit",
        help="send the WorkflowTemplate (and the CronWorkflow, or a run) to an Argo Server",
        description=(
            "Create the WorkflowTemplate, or update it when it exists (409 AlreadyExists -> PUT at the\n"
            "current resourceVersion); --cron does the same for the monthly CronWorkflow; --run submits a\n"
            "Workflow from the template now. The token comes from ARGO_TOKEN and is never logged."
        ),
        formatter_class=_Formatter,
    )
    psub.add_argument("--server", metavar="URL", help="Argo Server (default: $ARGO_SERVER)")
    psub.add_argument("--namespace", metavar="NS", help="namespace (default: $ARGO_NAMESPACE, else argo)")
    psub.add_argument(
        "--template", action="store_true", help="send the WorkflowTemplate (always done; the default)"
    )
    psub.add_argument("--cron", action="store_true", help="also send the monthly CronWorkflow")
    psub.add_argument("--run", action="store_true", help="also submit a Workflow from the template now")
    psub.add_argument(
        "--param", metavar="NAME=VALUE", action="append", default=[], help="--run: a workflow parameter"
    )
    psub.add_argument("--insecure-skip-verify", action="store_true", help="do not verify the server's TLS")
    psub.set_defaults(handler=cmd_pipeline_submit)

    for name, (what, issue) in PLANNED.items():
        planned = sub.add_parser(name, help=f"{what} [not available yet: issue #{issue}]")
        planned.set_defaults(handler=_not_available(name), planned=True)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # Commands that are not built yet accept any arguments, so that they answer "not available yet"
    # rather than a usage error about flags they will have.
    args, unknown = parser.parse_known_args(argv)
    args.passthrough = unknown
    if unknown and not (getattr(args, "planned", False) or getattr(args, "passthrough_command", False)):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    setup_logging(json_lines=args.log_json, verbose=args.verbose)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except NotAvailableError as exc:
        log.error(str(exc))
        return exc.exit_code
    except ConfigError as exc:
        log.error(f"configuration error: {exc}")
        return exc.exit_code
    except EdgeopsError as exc:
        log.error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    except BrokenPipeError:
        # `edgeops config check | head`: the reader went away; not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
