"""``edgeops data synth|seed|validate`` and ``edgeops snapshot``: LDO records in, a training snapshot out."""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tools.cli._common import (
    TRAINING_CONFIG_HELP,
    Formatter,
    at_least,
    log,
    non_negative_int,
    project,
    training_config,
)
from tools.core.errors import EdgeopsError
from tools.core.log import fields

# Upper bounds of the numeric flags: beyond them a run cannot work, so they are usage errors, not crashes.
_MAX_LIMIT = 2**63 - 1  # --limit is PostgreSQL's LIMIT, a bigint
_MAX_WORKERS = 256  # one thread and one connection each; more only queue on the store and the GIL
# Synthetic records are 37-67 s apart from 2026 on; far fewer than the ~3.7e9 that would pass year 9999.
_MAX_SYNTH = 1_000_000_000


def _between(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high]."""
    parse_low = at_least(low)

    def parse(text: str) -> int:
        value = parse_low(text)
        if value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}, got {value}")
        return value

    return parse


def _fraction(text: str) -> float:
    """An argparse type: a finite number in [0, 1] (``float`` alone takes nan, which disables a limit)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise argparse.ArgumentTypeError(f"must be a finite number between 0 and 1, got {text!r}")
    return value


def _printable(text: str) -> str:
    """``text`` as stdout can always write it: a file name that is not UTF-8 holds lone surrogates."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _data_path(args: argparse.Namespace) -> Path:
    return Path(args.data_path) if args.data_path else project(args).path(project(args).cfg.data.local_path)


def cmd_synth(args: argparse.Namespace) -> int:
    from tools.core.fsutil import output_folder
    from tools.core.progress import Progress
    from training.data.synth import write_dataset

    spec = training_config(args).data_spec()

    out = (
        output_folder(args.out, "--out")
        if args.out
        else project(args).path(project(args).cfg.data.local_path)
    )
    start = time.monotonic()
    with Progress(args.n, "writing synthetic LDOs") as progress:
        last = 0

        def advance(done: int) -> None:
            nonlocal last
            progress.update(done - last)
            last = done

        summary = write_dataset(out, args.n, args.seed, spec, progress=advance, plant=args.plant)
    modes = ", ".join(f"{k}={v}" for k, v in summary.label_counts.items())
    log.info(
        f"wrote {summary.n} synthetic LDOs to {out} in {time.monotonic() - start:.1f}s "
        f"({summary.healthy} healthy; {modes})",
        extra=fields(seed=args.seed, plant=args.plant),
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
    """Every file checked as a snapshot would: the same refusals, and ids that two files claim."""
    from training.data.ldo import parse_ldo, read_ldo_file

    spec = training_config(args).data_spec()
    files: list[tuple[Path, Path]] = []  # (file, the data folder its links must stay in)
    for name in args.paths:
        p = Path(name)
        if p.is_dir():
            files.extend((f, p) for f in sorted(p.glob("*.json")))
        elif p.is_symlink() or p.exists():  # a FIFO or a device too: refused below, with the reason
            files.append((p, p.parent))
        else:
            raise EdgeopsError(f"{p}: no such file or folder")
    bad = 0
    claims: dict[str, list[str]] = {}  # ldo_id -> the valid files that carry it
    for path, root in files:
        try:
            ldo = parse_ldo(read_ldo_file(path, spec, root=root), spec, source=str(path))
        except EdgeopsError as exc:
            bad += 1
            print(_printable(f"INVALID {exc}"))
            continue
        claims.setdefault(ldo.ldo_id, []).append(str(path))
    for ldo_id, paths in claims.items():
        if len(paths) > 1:  # a snapshot rejects every copy: their contents may disagree
            for where in paths:
                bad += 1
                others = ", ".join(q for q in paths if q != where)
                print(_printable(f"INVALID {where}: ldo_id: duplicate id {ldo_id!r}: also in {others}"))
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
    from tools.core.fsutil import output_folder

    report = build_snapshot(source, output_folder(args.out, "--out"), tcfg.data_spec(), options)
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
    synth.add_argument("--n", type=_between(1, _MAX_SYNTH), required=True, help="number of records")
    synth.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default 0)")
    synth.add_argument(
        "--plant", choices=("default", "impulsive", "dropout"), default="default",
        help="which plant's physics: the same five failure modes with other signatures, baselines that "
        "move with product, recipe and asset, and 1%% label noise (training/data/plants.py; default: the "
        "default plant)",
    )  # fmt: skip
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
    seed.add_argument(
        "--workers", type=_between(1, _MAX_WORKERS), default=16, help="concurrent uploads (default 16)"
    )
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
        "--limit", type=_between(1, _MAX_LIMIT), help="newest N validated LDOs (default: data.snapshot_limit)"
    )
    snap.add_argument("--pg", metavar="DSN", help="pg+s3: PostgreSQL DSN (default: $EDGEOPS_PG_DSN)")
    snap.add_argument("--s3", metavar="URI", help="pg+s3: s3://bucket/prefix (default: data.ldo_store)")
    snap.add_argument("--cache", metavar="DIR", help="pg+s3: local object cache (default: data.cache_path)")
    snap.add_argument(
        "--workers",
        type=_between(1, _MAX_WORKERS),
        default=32,
        help="pg+s3: concurrent downloads (default 32)",
    )
    snap.add_argument(
        "--data-path", metavar="DIR", help="dir: folder of LDO files (default: data.local_path)"
    )
    snap.add_argument(
        "--max-reject-fraction",
        type=_fraction,
        help="fail above this share (0-1) of malformed LDOs (default: config)",
    )
    snap.add_argument("--training-config", metavar="PATH", help=TRAINING_CONFIG_HELP)
    snap.set_defaults(handler=cmd_snapshot)
