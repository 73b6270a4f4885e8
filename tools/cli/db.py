"""``edgeops db migrate``: create what this project owns in PostgreSQL, as its owner, once per upgrade
(tools/core/schema.py; the grants every other command needs are in docs/database.md)."""

from __future__ import annotations

import argparse
from typing import Any

from tools.cli._common import Formatter, log


def cmd_db_migrate(args: argparse.Namespace) -> int:
    from tools.core.pg import connect
    from tools.core.schema import migrate

    conn = connect(args.pg)
    try:
        report = migrate(conn, telemetry=args.telemetry)
    finally:
        conn.close()
    for name in report.applied:
        log.info(f"applied migration {name}")
    if report.skipped:
        log.info(
            f"not applied (the runtime backend's tables; pass --telemetry to create them): "
            f"{', '.join(report.skipped)}"
        )
    log.info(report.summary())
    return 0


def register(sub: Any) -> None:
    db = sub.add_parser(
        "db",
        help="the database schema this project owns (run by the database owner)",
        formatter_class=Formatter,
    )
    db_sub = db.add_subparsers(dest="db_command", metavar="SUBCOMMAND", required=True)
    mig = db_sub.add_parser(
        "migrate",
        help="apply pending schema migrations (idempotent; as the database owner)",
        description="Create or upgrade what edgeops owns in PostgreSQL (model_versions; with --telemetry "
        "also the runtime backend's telemetry tables). Run it as the database's owner once per upgrade of "
        "this repository; every other command then runs with a least-privilege role (docs/database.md).",
        formatter_class=Formatter,
    )
    mig.add_argument("--pg", metavar="DSN", help="the owner's PostgreSQL DSN (default: $EDGEOPS_PG_DSN)")
    mig.add_argument(
        "--telemetry",
        action="store_true",
        help="also create edge_devices and predictions, for a runtime backend that does not own them",
    )
    mig.set_defaults(handler=cmd_db_migrate)
