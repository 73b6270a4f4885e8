"""PostgreSQL connections from a DSN (``--pg`` or ``$EDGEOPS_PG_DSN``), with errors that never leak it.

A DSN is checked before libpq sees it, and an error about it says what is wrong in our words, never with
the text: libpq echoes the offending part (``invalid percent-encoded token: "Pa55%zz"``), and when a
password holds an unencoded ``@`` or ``/`` the part it echoes (a "host", a "port") is a piece of the
password that no redaction could recognise. Whatever libpq says after that goes through
:func:`tools.core.redact.scrub` with every string the DSN could hide as its password.
"""

from __future__ import annotations

import os
from typing import Any

import psycopg2
import psycopg2.extensions

from tools.core.errors import ConfigError, ServiceError
from tools.core.redact import dsn_secrets, scrub

__all__ = ["connect", "describe_dsn", "resolve_dsn"]

DSN_ENV = "EDGEOPS_PG_DSN"

# libpq's words for a DSN it cannot parse, by the start of its message (which goes on to quote the text).
_PARSE_REASONS = (
    ("invalid percent-encoded token", "a '%' is not followed by two hex digits (write a literal '%' as %25)"),
    ("forbidden value %00", "it holds %00, which libpq refuses"),
    ("end of string reached when looking for matching", "an IPv6 host lacks its closing ']'"),
    ("IPv6 host address may not be empty", "an IPv6 host is empty ('[]')"),
    ("unexpected character", "an unexpected character after the host (percent-encode '@', '/', ':')"),
    ("invalid URI query parameter", "the URI has a query parameter libpq does not know"),
    ("extra key/value separator", "a URI query parameter has two '='"),
    ("missing key/value separator", "a URI query parameter has no '='"),
    ("invalid connection option", "it names a keyword libpq does not know"),
    ('missing "=" after', "a word has no '=' (put a value that has spaces in single quotes)"),
    ("unterminated quoted string", "a quoted value is not closed"),
    ("invalid URI propagated", "it is not a postgresql:// URI"),
)


def resolve_dsn(dsn: str | None) -> str:
    value = dsn or os.environ.get(DSN_ENV)
    if not value:
        raise ConfigError(
            f"no PostgreSQL DSN: pass --pg DSN or set {DSN_ENV} (e.g. postgresql://user@host/db)"
        )
    return value


def _origin(dsn: str | None) -> str:
    # Some commands pass the environment's DSN on as if it were --pg: the same text is the variable's.
    return "from --pg" if dsn and dsn != os.environ.get(DSN_ENV) else f"from ${DSN_ENV}"


def _parse_reason(exc: BaseException) -> str:
    """Why libpq refused to parse a DSN, in words that quote nothing of it."""
    text = str(exc).strip().removeprefix("invalid dsn:").strip()
    for start, reason in _PARSE_REASONS:
        if text.startswith(start):
            return reason
    words = text.split('"', 1)[0].rstrip(": ")  # libpq quotes what it echoes: keep only what precedes
    return f"libpq cannot parse it ({words})" if words else "libpq cannot parse it"


def _problem(dsn: str, parts: dict[str, str]) -> str | None:
    """What makes ``dsn`` parse into something other than what was meant (libpq would then echo a piece of
    the password as a host or a port), or None."""
    for scheme in ("postgresql://", "postgres://"):
        if dsn.startswith(scheme):
            authority = dsn[len(scheme) :].split("?", 1)[0]
            at = authority.find("@")
            if authority.count("@") > 1 or (at >= 0 and "/" in authority[:at]):
                return (
                    "the user name or password holds an '@' or '/': percent-encode them (%40, %2F), or use "
                    "the key=value form with the password in single quotes"
                )
    for port in parts.get("port", "").split(","):
        if port and not port.isdigit():
            return "the port is not a number"
    return None


def _parse(dsn: str, origin: str) -> dict[str, str]:
    def malformed(reason: str) -> ConfigError:
        return ConfigError(
            f"malformed PostgreSQL DSN ({origin}): {reason}. Write it as a postgresql://user@host:port/"
            "dbname URI with the password percent-encoded after the user and a ':', or as libpq's key=value "
            "pairs (the DSN is not shown: it may hold a password)"
        )

    try:
        parts: dict[str, str] = psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.ProgrammingError as exc:
        raise malformed(_parse_reason(exc)) from None
    except (UnicodeError, ValueError):  # not UTF-8 ($EDGEOPS_PG_DSN from a file), a NUL character
        raise malformed("it is not UTF-8 text, or holds a NUL character") from None
    problem = _problem(dsn, parts)
    if problem:
        raise malformed(problem)
    return parts


def describe_dsn(dsn: str) -> str:
    """``host:port/dbname as user``: enough to say where, never the password (even for a malformed DSN)."""
    try:
        parts = _parse(dsn, "")
    except ConfigError:
        return "<malformed DSN>"
    host = parts.get("host", "localhost")
    port = parts.get("port", "5432")
    where = f"{host}:{port}/{parts.get('dbname', '?')}"
    described = f"{where} as {parts['user']}" if "user" in parts else where
    return scrub(described, *dsn_secrets(dsn))


def _first_line(exc: BaseException, dsn: str) -> str:
    text = str(exc).strip().splitlines()
    # libpq can echo the connection string or a part of it back.
    return scrub(text[0], *dsn_secrets(dsn)) if text else type(exc).__name__


def connect(dsn: str | None, *, connect_timeout: int = 10) -> Any:
    """Open a connection; a clear :class:`ServiceError` naming host, port and database when it fails, a
    :class:`ConfigError` that never quotes the DSN when it is malformed."""
    value = resolve_dsn(dsn)
    _parse(value, _origin(dsn))
    try:
        return psycopg2.connect(value, connect_timeout=connect_timeout)
    except psycopg2.ProgrammingError as exc:
        raise ConfigError(
            f"malformed PostgreSQL DSN ({_origin(dsn)}): {_parse_reason(exc)} (the DSN is not shown)"
        ) from None
    except psycopg2.OperationalError as exc:
        raise ServiceError(
            f"cannot connect to PostgreSQL at {describe_dsn(value)}: {_first_line(exc, value)}"
        ) from None
