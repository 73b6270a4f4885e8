"""``edgeops train|evaluate|export|publish``: a snapshot becomes a trained, gated, exported and signed
candidate bundle in the store. Each handler imports the training side when it runs, never before."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tools.cli._common import Formatter, add_overrides, log, positive_int, project


def cmd_train(args: argparse.Namespace) -> int:
    from tools.core.fsutil import output_folder
    from training.config import DEFAULT_CONFIG, load_training_config

    output_folder(args.out, "--out")  # here, not inside N workers
    config = Path(args.training_config) if args.training_config else DEFAULT_CONFIG
    cfg = load_training_config(config, overrides=args.overrides)  # fail here, not inside N workers
    if args.nproc == 1:
        from training.train import EXIT_PREEMPTED, train

        try:
            train(Path(args.snapshot), cfg, Path(args.out), resume=args.resume)
        except SystemExit as stop:
            if stop.code == EXIT_PREEMPTED:
                return EXIT_PREEMPTED
            raise
        return 0
    # DDP: one process per device through torchrun, which forwards SIGTERM to every worker.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}",
           "-m", "training.train", "--snapshot", args.snapshot, "--out", args.out,
           "--config", str(config)]  # fmt: skip
    for override in args.overrides:
        cmd += ["--set", override]
    if args.resume:
        cmd.append("--resume")
    if args.log_json:
        cmd.append("--log-json")
    log.info(f"starting {args.nproc} training processes with torchrun")
    return subprocess.run(cmd, check=False).returncode


def cmd_evaluate(args: argparse.Namespace) -> int:
    from training.evaluate import evaluate_run, load_fleet_model

    proj = project(args)
    release = Path(args.fleet_release) if args.fleet_release else proj.release_file(proj.last_ring)
    fleet = load_fleet_model(release, proj.public_key_path)
    if fleet is None:
        log.info(f"no fleet model yet ({release} names no release): the candidate is judged on its own")
    report = evaluate_run(Path(args.snapshot), Path(args.run), proj.cfg.gates.evaluation, fleet)
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
    from tools.core.signing import load_private_key, load_public_keys
    from training.publish import publish_run

    proj = project(args)
    dsn = args.pg or os.environ.get("EDGEOPS_PG_DSN")
    # The trusted set (two keys while one rotates): a bundle signed by the outgoing key is kept as it is.
    trusted = load_public_keys(proj.public_key_path) if proj.public_key_path.is_file() else None
    outcome = publish_run(
        Path(args.run),
        proj.store_uri(args.store),
        private_key=load_private_key(),
        gpu_hour_usd=proj.cfg.cost.gpu_hour_usd,
        dsn=dsn,
        trusted_keys=trusted,
    )
    registry = "registered in model_versions" if outcome.registered else "no registry DSN: not registered"
    log.info(f"{outcome.outcome} {outcome.version} at {outcome.uri} ({registry})")
    print(outcome.uri)
    return 0


def register(sub: Any) -> None:
    train = sub.add_parser(
        "train",
        help="train the failure-mode model on a snapshot",
        description=(
            "Train on a snapshot folder into a run folder (checkpoint/, metrics.jsonl, weights.safetensors,\n"
            "run.json, plots/). SIGTERM saves a checkpoint and exits 143; --resume continues from it."
        ),
        formatter_class=Formatter,
    )
    train.add_argument("--snapshot", metavar="DIR", required=True, help="snapshot folder (edgeops snapshot)")
    train.add_argument("--out", metavar="RUN_DIR", required=True, help="run folder to write")
    train.add_argument(
        "--config", dest="training_config", metavar="PATH",
        help="training config (default training/configs/default.yaml)",
    )  # fmt: skip
    add_overrides(train)
    train.add_argument("--resume", action="store_true", help="continue from the last checkpoint in RUN_DIR")
    train.add_argument("--nproc", type=positive_int, default=1, help="DDP processes via torchrun (default 1)")
    train.set_defaults(handler=cmd_train)

    ev = sub.add_parser(
        "evaluate",
        help="evaluate a candidate against the model the fleet runs now; apply the gates",
        description="Score the run's model and the fleet's on the snapshot's test split; write\n"
        "evaluation.json. "
        "Exit 0 when every gate of edgeops.yaml (gates.evaluation) passes, 1 otherwise.",
        formatter_class=Formatter,
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
