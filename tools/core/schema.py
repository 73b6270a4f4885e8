"""What this project owns in PostgreSQL, as versioned migrations: ``edgeops db migrate``.

A migration is run by the database's owner, once per upgrade of this repository; every other command runs
with a role that has only what it needs (docs/database.md gives the ``GRANT`` statements per role) and
creates nothing. Applied migrations are recorded in ``edgeops_schema_migrations`` (id, name, checksum of
the SQL, when); a second run applies nothing; concurrent runs serialise on an advisory lock; each migration
and its record commit together, so an interrupted run leaves either the migration whole or nothing.

``model_versions`` (the model registry ``edgeops publish`` writes) is always ours. The telemetry tables
(``edge_devices``, ``predictions``) belong to the runtime backend; ``--telemetry`` creates them for a fork
whose backend does not (and for the demo and the tests, which stand in for it).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.errors

from tools.core.errors import ServiceError

__all__ = [
    "MIGRATIONS",
    "MODEL_VERSIONS_DDL",
    "TELEMETRY_DDL",
    "Migration",
    "MigrationReport",
    "migrate",
]

MODEL_VERSIONS_DDL = """\
CREATE TABLE IF NOT EXISTS model_versions (
    version      text PRIMARY KEY,
    interface    text NOT NULL,
    bundle_uri   text NOT NULL,
    dataset      text NOT NULL,
    git_commit   text,
    metrics      jsonb NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now()
);
"""

TELEMETRY_DDL = """\
CREATE TABLE IF NOT EXISTS edge_devices (
    device_id      text PRIMARY KEY,
    ring           text NOT NULL,
    registered_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS edge_devices_ring_idx ON edge_devices (ring);

CREATE TABLE IF NOT EXISTS predictions (
    id               bigserial PRIMARY KEY,
    device_id        text NOT NULL,
    model_version    text NOT NULL,
    predicted_at     timestamptz NOT NULL,
    latency_ms       real,
    predicted        text[] NOT NULL,
    validated_label  text[] NULL,
    error            text NULL
);
CREATE INDEX IF NOT EXISTS predictions_version_time_idx ON predictions (model_version, predicted_at);
CREATE INDEX IF NOT EXISTS predictions_device_time_idx ON predictions (device_id, predicted_at);
"""

_LEDGER = """\
CREATE TABLE IF NOT EXISTS edgeops_schema_migrations (
    id          integer PRIMARY KEY,
    name        text NOT NULL,
    sha256      text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
"""
_LOCK_KEY = 0x6564_6765_6F70  # "edgeop": one advisory lock for every `edgeops db migrate`


@dataclass(frozen=True)
class Migration:
    id: int
    name: str
    sql: str
    telemetry: bool = False  # the runtime backend's tables: only with --telemetry

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


# Append only: an applied migration's SQL never changes (its checksum is checked on every run).
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "model_versions", MODEL_VERSIONS_DDL),
    Migration(2, "telemetry tables (edge_devices, predictions)", TELEMETRY_DDL, telemetry=True),
)


@dataclass(frozen=True)
class MigrationReport:
    applied: list[str]
    current: list[str]  # already applied before this run
    skipped: list[str]  # telemetry migrations without --telemetry

    def summary(self) -> str:
        if not self.applied:
            return f"schema is current ({len(self.current)} migration(s) applied before)"
        return f"applied {len(self.applied)} migration(s): {', '.join(self.applied)}"


def _label(m: Migration) -> str:
    return f"{m.id:04d} {m.name}"


def migrate(conn: Any, *, telemetry: bool = False) -> MigrationReport:
    """Apply the pending migrations (each in its own transaction, recorded with it). ``conn``: an owner's."""
    applied: list[str] = []
    current: list[str] = []
    skipped: list[str] = []
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
            cur.execute(_LEDGER)
        try:
            for m in MIGRATIONS:
                if m.telemetry and not telemetry:
                    skipped.append(_label(m))
                    continue
                with conn, conn.cursor() as cur:
                    cur.execute("SELECT sha256 FROM edgeops_schema_migrations WHERE id = %s", (m.id,))
                    row = cur.fetchone()
                    if row is not None:
                        if row[0] != m.sha256:
                            raise ServiceError(
                                f"migration {_label(m)} was applied with other SQL than this checkout's "
                                "(edgeops_schema_migrations.sha256 differs): a migration must never change "
                                "once released; add a new one instead"
                            )
                        current.append(_label(m))
                        continue
                    cur.execute(m.sql)
                    cur.execute(
                        "INSERT INTO edgeops_schema_migrations (id, name, sha256) VALUES (%s, %s, %s)",
                        (m.id, m.name, m.sha256),
                    )
                    applied.append(_label(m))
        finally:
            with conn, conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    except psycopg2.errors.InsufficientPrivilege as exc:
        first = str(exc).strip().splitlines()[0]
        raise ServiceError(
            f"edgeops db migrate: {first}. Run it as the database's owner (or a role that may CREATE in "
            "its schema); the other commands then need only the grants in docs/database.md"
        ) from None
    except psycopg2.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ServiceError(f"edgeops db migrate failed: {first}") from None
    return MigrationReport(applied, current, skipped)
