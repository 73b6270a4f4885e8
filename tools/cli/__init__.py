"""The ``edgeops`` command: a small root over one module per command group.

Each module of this package declares its commands' flags next to the handlers that read them and exposes
``register(subparsers)`` (the habit of flux's ``cmd/flux/`` and torchtune's ``_cli/``). Handlers import the
code they drive when they run: the training side (``training``/``pipelines``) only inside a handler, so
``edgeops --help``, the delivery commands and the model-updater never load torch, and ``edgeops updater
run`` works where only the base dependencies are installed (tests/test_layering.py, tests/test_closure.py).
A handler needing the repository asks ``_common.project(args)``: edgeops.yaml is parsed once per command.

Exit codes: 0 success, 1 an error with a message (bad input, a service down, a failed gate), 2 usage.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from tools.cli import (
    config,
    data,
    db,
    image,
    inference,
    keys,
    kits,
    model,
    pipeline,
    promotion,
    updater,
    validate,
)
from tools.cli._common import Formatter
from tools.core.errors import ConfigError, EdgeopsError
from tools.core.log import setup_logging

__all__ = ["build_parser", "main"]

log = logging.getLogger("edgeops")

# In the order `edgeops --help` lists them: the training side, then delivery, then the kits.
COMMAND_GROUPS = (
    data,
    model,
    db,
    keys,
    validate,
    updater,
    inference,
    kits,
    config,
    promotion,
    image,
    pipeline,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeops",
        description="Train, ship, promote and roll back the ML model of an edge fleet, the GitOps way.",
        epilog="Exit codes: 0 ok, 1 error, 2 usage. See README.md and docs/.",
        formatter_class=Formatter,
    )
    parser.add_argument(
        "--config", metavar="PATH", help="edgeops.yaml to use (default: found upwards from .)"
    )
    parser.add_argument(
        "--log-json", action="store_true", help="log JSON lines instead of human-readable text"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # fleet-sim hands every flag to its own parser, so only it may leave arguments unparsed.
    args, unknown = parser.parse_known_args(argv)
    args.passthrough = unknown
    if unknown and not getattr(args, "passthrough_command", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    setup_logging(json_lines=args.log_json, verbose=args.verbose)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except EdgeopsError as exc:
        log.error(f"configuration error: {exc}" if isinstance(exc, ConfigError) else str(exc))
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
