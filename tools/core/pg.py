"""PostgreSQL connections from a DSN (``--pg`` or ``$EDGEOPS_PG_DSN``), with errors that never leak it."""

from __future__ import annotations

import os
import re
from typing import Any

import psycopg2
import psycopg2.extensions

from tools.core.errors import ConfigError, ServiceError

__all__ = ["connect", "describe_dsn", "resolve_dsn"]

DSN_ENV = "EDGEOPS_PG_DSN"


def resolve_dsn(dsn: str | None) -> str:
    value = dsn or os.environ.get(DSN_ENV)
    if not value:
        raise ConfigError(
            f"no PostgreSQL DSN: pass --pg DSN or set {DSN_ENV} (e.g. postgresql://user@host/db)"
        )
    return value


def describe_dsn(dsn: str) -> str:
    """``host:port/dbname as user``: enough to say where, never the password."""
    try:
        parts = psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.ProgrammingError:
        return "<unparseable DSN>"
    host = parts.get("host", "localhost")
    port = parts.get("port", "5432")
    where = f"{host}:{port}/{parts.get('dbname', '?')}"
    return f"{where} as {parts['user']}" if "user" in parts else where


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    # libpq can echo the connection string back; strip anything that looks like a password.
    return re.sub(r"password=\S+", "password=***", text[0]) if text else type(exc).__name__


def connect(dsn: str | None, *, connect_timeout: int = 10) -> Any:
    """Open a connection; a clear :class:`ServiceError` naming host, port and database when it fails."""
    value = resolve_dsn(dsn)
    try:
        return psycopg2.connect(value, connect_timeout=connect_timeout)
    except psycopg2.ProgrammingError as exc:
        raise ConfigError(f"malformed PostgreSQL DSN: {_first_line(exc)}") from None
    except psycopg2.OperationalError as exc:
        raise ServiceError(
            f"cannot connect to PostgreSQL at {describe_dsn(value)}: {_first_line(exc)}"
        ) from None
