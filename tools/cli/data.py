"""``edgeops data synth|seed|validate`` and ``edgeops snapshot``: LDO records in, a training snapshot out."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from tools.cli._common import TRAINING_CONFIG_HELP, Formatter, log, positive_int, project, training_config
from tools.core.errors import EdgeopsError
from tools.core.log import fields


def _data_path(args: argparse.Namespace) -> Path:
    return Path(args.data_path) if args.data_path else project(args).path(project(args).cfg.data.local_path)


def cmd_synth(args: argparse.Namespace) -> int:
    from tools.core.progress import Progress
    from training.data.synth import write_dataset

    spec = training_config(args).data_spec()
    out = Path(args.out) if args.out else project(args).path(project(args).cfg.data.local_path)
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


def cmd_seed(args: argparse.Namespace) -> int:
    from training.data.seed import seed

    spec = training_config(args).data_spec()
    s3 = args.s3 or project(args).cfg.data.ldo_store
    start = time.monotonic()
    report = seed(_data_path(args), spec, dsn=args.pg, s3_uri=s3, workers=args.workers)
    log.info(
        f"{report.summary()} in {time.monotonic() - start:.1f}s",
        extra=fields(new=report.new, updated=report.updated, unchanged=report.unchanged),
    )
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from training.data.ldo import parse_ldo

    spec = training_config(args).data_spec()
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
    from training.snapshot import DirSource, LdoCache, PgS3Source, SnapshotOptions, build_snapshot

    proj = project(args)
    data = proj.cfg.data
    tcfg = training_config(args)
    source: DirSource | PgS3Source
    if args.source == "dir":
        source = DirSource(_data_path(args))
    else:
        cache = LdoCache(Path(args.cache) if args.cache else proj.path(data.cache_path))
        source = PgS3Source(dsn=args.pg, s3_uri=args.s3 or data.ldo_store, cache=cache, workers=args.workers)
    options = SnapshotOptions(
        limit=args.limit if args.limit is not None else data.snapshot_limit,
        val_fraction=data.val_fraction,
        test_fraction=data.test_fraction,
        max_reject_fraction=(
            args.max_reject_fraction if args.max_reject_fraction is not None else data.max_reject_fraction
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


def register(sub: Any) -> None:
    data = sub.add_parser("data", help="synthesise, validate and load LDO records")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    synth = data_sub.add_parser(
        "synth",
        help="write N synthetic LDOs whose failure modes are learnable from their signals",
        description="Write N synthetic LDO v1 files (one <ldo_id>.json each). Deterministic for a seed.",
    )
    synth.add_argument("--n", type=positive_int, required=True, help="number of records")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument("--out", metavar="DIR", help="output folder (default: edgeops.yaml data.local_path)")
    synth.add_argument("--training-config", metavar="PATH", help=TRAINING_CONFIG_HELP)
    synth.set_defaults(handler=cmd_synth)

    seed = data_sub.add_parser(
        "seed",
        help="load a folder of LDOs into the PostgreSQL index and S3, as the runtime backend does",
        description=(
            "Validate every LDO file, upload new or changed objects to S3 and upsert the PostgreSQL `ldos`\n"
            "index (created if missing). Idempotent: a rerun with the same data changes nothing.\n"
            "S3 endpoint and credentials come from the standard AWS_* environment variables."
        ),
        formatter_class=Formatter,
    )
    seed.add_argument(
        "--data-path", metavar="DIR", help="folder of LDO JSON files (default: data.local_path)"
    )
    seed.add_argument("--pg", metavar="DSN", help="PostgreSQL DSN (default: $EDGEOPS_PG_DSN)")
    seed.add_argument(
        "--s3", metavar="URI", help="s3://bucket/prefix for the objects (default: data.ldo_store)"
    )
    seed.add_argument("--workers", type=positive_int, default=16, help="concurrent uploads (default 16)")
    seed.add_argument("--training-config", metavar="PATH", help=TRAINING_CONFIG_HELP)
    seed.set_defaults(handler=cmd_seed)

    validate = data_sub.add_parser("validate", help="check LDO files against LDO v1 and the training config")
    validate.add_argument("paths", nargs="+", metavar="PATH", help="LDO files or folders of them")
    validate.add_argument("--training-config", metavar="PATH", help=TRAINING_CONFIG_HELP)
    validate.set_defaults(handler=cmd_validate)

    snap = sub.add_parser(
        "snapshot",
        help="turn the newest validated LDOs into a reproducible training snapshot",
        description=(
            "Select the newest N validated LDOs (PostgreSQL index + S3 objects, or a folder of LDO files),\n"
            "fetch them concurrently through a local cache keyed by ETag, validate them, and write a\n"
            "byte-reproducible snapshot folder (tensors.safetensors, index.tsv, snapshot.json,\n"
            "rejects.json). --out is replaced only when the new snapshot is complete."
        ),
        formatter_class=Formatter,
    )
    snap.add_argument(
        "--source", choices=["pg+s3", "dir"], default="dir", help="where LDOs come from (default dir)"
    )
    snap.add_argument("--out", metavar="DIR", required=True, help="snapshot folder to write")
    snap.add_argument(
        "--limit", type=positive_int, help="newest N validated LDOs (default: data.snapshot_limit)"
    )
    snap.add_argument("--pg", metavar="DSN", help="pg+s3: PostgreSQL DSN (default: $EDGEOPS_PG_DSN)")
    snap.add_argument("--s3", metavar="URI", help="pg+s3: s3://bucket/prefix (default: data.ldo_store)")
    snap.add_argument("--cache", metavar="DIR", help="pg+s3: local object cache (default: data.cache_path)")
    snap.add_argument(
        "--workers", type=positive_int, default=32, help="pg+s3: concurrent downloads (default 32)"
    )
    snap.add_argument(
        "--data-path", metavar="DIR", help="dir: folder of LDO files (default: data.local_path)"
    )
    snap.add_argument(
        "--max-reject-fraction", type=float, help="fail above this share of malformed LDOs (default: config)"
    )
    snap.add_argument("--training-config", metavar="PATH", help=TRAINING_CONFIG_HELP)
    snap.set_defaults(handler=cmd_snapshot)
