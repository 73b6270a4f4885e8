"""``edgeops updater run``: the edge model-updater (one pod per node). Its flags live beside the agent in
``tools.edge.updater`` (``python -m tools.edge.updater run`` is the same command); this module mounts them.
It imports only the edge closure, so it runs where only the base dependencies are installed."""

from __future__ import annotations

import argparse
from typing import Any

from tools.cli._common import Formatter
from tools.edge.updater import add_run_arguments, run_from_args


def cmd_run(args: argparse.Namespace) -> int:
    return run_from_args(args)


def register(sub: Any) -> None:
    updater = sub.add_parser("updater", help="the edge model-updater agent (one per node)")
    updater_sub = updater.add_subparsers(dest="updater_command", metavar="ACTION", required=True)
    run = updater_sub.add_parser(
        "run",
        help="reconcile this node's model to the mounted release file, and keep doing so",
        description=(
            "Download, verify (sha256 + Ed25519 signature + accepted interface), health-check on the golden\n"
            "inputs, then swap <root>/current atomically; keep the last --keep versions so a rollback needs\n"
            "no download. Serves /ready, /healthz and /metrics with --listen."
        ),
        formatter_class=Formatter,
    )
    add_run_arguments(run)
    run.set_defaults(handler=cmd_run)
