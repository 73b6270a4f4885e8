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
import traceback
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
from tools.core.errors import ConfigError, EdgeopsError, ServiceError
from tools.core.log import setup_logging
from tools.core.redact import known_secrets, scrub

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
        message = scrub(str(exc))  # ours already say nothing secret; a DSN or URL pasted in still never shows
        log.error(f"configuration error: {message}" if isinstance(exc, ConfigError) else message)
        return exc.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    except BrokenPipeError:
        # `edgeops config check | head`: the reader went away; not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        failure = _library_failure(exc, args)
        if failure is None:
            raise  # a bug of ours: the traceback is what a report needs
        if args.verbose:  # where it escaped from, for the fix at the source; scrubbed like the message
            trace = "".join(traceback.format_exception(exc)).rstrip()
            log.debug("traceback:\n%s", scrub(trace, *known_secrets(getattr(args, "pg", None))))
        log.error(failure)
        return ServiceError.exit_code


def _library_failure(exc: Exception, args: argparse.Namespace) -> str | None:
    """The last-resort message for a service or OS failure that escaped as a library's exception, scrubbed of
    every secret this process knows; None for anything else.

    A net, not the handling: each of these means a call site that should turn the failure into an
    EdgeopsError saying what failed and what to do (as tools.core.pg and tools.core.s3 do); this only keeps
    a traceback, and any DSN or key in the library's message, from reaching the user meanwhile.
    """
    # By module name, not by class: psycopg2 is not installed on the edge, and importing it or botocore
    # here would load them for every command.
    modules = {cls.__module__.split(".", 1)[0] for cls in type(exc).__mro__}
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if "psycopg2" in modules:
        text = f"PostgreSQL failed: {first}; check the server is up and reachable, and re-run"
    elif modules & {"botocore", "boto3", "s3transfer"}:
        text = f"S3 failed ({type(exc).__name__}): {first}; check the store is up and AWS_* is set right"
    elif isinstance(exc, OSError):
        where = ": ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
        text = f"{exc.strerror or first}: {where}" if where else (exc.strerror or first)
    else:
        return None
    return scrub(text, *known_secrets(getattr(args, "pg", None)))


if __name__ == "__main__":
    raise SystemExit(main())
