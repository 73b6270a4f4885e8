"""What every command module shares: the project context (loaded once per command), argparse types and the
help formatter. Nothing here imports more than ``tools.core``'s base modules at import time: the CLI's
parser is built on edge nodes too, where only the base dependencies are installed."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tools.core.project import Project
    from training.config import TrainingConfig

__all__ = [
    "PG_HELP",
    "Formatter",
    "at_least",
    "non_negative_int",
    "positive_int",
    "print_gates",
    "project",
    "training_config",
]

log = logging.getLogger("edgeops")

PG_HELP = "PostgreSQL DSN of the runtime backend (default $EDGEOPS_PG_DSN)"
TRAINING_CONFIG_HELP = (
    "training config whose data interface LDOs must match (default: edgeops.yaml's training_config)"
)


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions keep their line breaks (they are written as short paragraphs)."""


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``minimum``, else a usage error naming the flag's value."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


# Every count flag (--n, --workers, --nproc, --limit, --nodes) goes through this one type.
positive_int = at_least(1)
non_negative_int = at_least(0)  # counts that may be zero (--pilot)


def project(args: argparse.Namespace) -> Project:
    """The repository and its parsed edgeops.yaml (``--config``), loaded once per command."""
    cached: Project | None = getattr(args, "_project", None)
    if cached is None:
        from tools.core.project import Project

        cached = Project.load(args.config)
        args._project = cached
    return cached


def add_overrides(parser: argparse.ArgumentParser) -> None:
    """``--set KEY=VALUE``: a training-config value over the file's, validated by the same strict model."""
    parser.add_argument(
        "--set", dest="overrides", metavar="KEY=VALUE", action="append", default=[],
        help="override one training-config key, e.g. --set epochs=5 (repeatable; a YAML value)",
    )  # fmt: skip


def training_config(args: argparse.Namespace) -> TrainingConfig:
    """The training config named by --training-config, else by edgeops.yaml (relative to that file)."""
    from training.config import load_training_config

    explicit = getattr(args, "training_config", None)
    path = Path(explicit) if explicit else project(args).training_config_path
    return load_training_config(path, overrides=getattr(args, "overrides", ()))


def print_gates(gates: Any) -> None:
    for g in gates:
        print(f"  {'PASS' if g.passed else 'FAIL'}  {g.name:<26} {g.detail}")
