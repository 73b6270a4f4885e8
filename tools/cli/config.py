"""``edgeops config check|reference``: the effective edgeops.yaml, and the reference of every key."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tools.cli._common import log, project
from tools.core.log import fields


def cmd_check(args: argparse.Namespace) -> int:
    from tools.core.typedyaml import dump_model
    from training.config import load_training_config

    proj = project(args)
    load_training_config(proj.training_config_path)  # its errors surface here too
    sys.stdout.write(f"# effective configuration from {proj.config_path} (defaults filled in)\n")
    sys.stdout.write(dump_model(proj.cfg))
    rings = " -> ".join(proj.cfg.ring_order())
    log.info("config is valid", extra=fields(path=str(proj.config_path), rings=rings))
    return 0


def cmd_reference(args: argparse.Namespace) -> int:
    from tools.core.configref import render_reference

    sys.stdout.write(render_reference())
    return 0


def register(sub: Any) -> None:
    config = sub.add_parser("config", help="inspect edgeops.yaml")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = config_sub.add_parser("check", help="validate edgeops.yaml and print the effective config")
    check.set_defaults(handler=cmd_check)
    ref = config_sub.add_parser(
        "reference", help="print the reference of every edgeops.yaml key (docs/configuration.md)"
    )
    ref.set_defaults(handler=cmd_reference)
