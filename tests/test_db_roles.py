"""Least privilege on real PostgreSQL: the schema is `edgeops db migrate`'s, run by the database's owner, and
each command runs as a role holding exactly the grants docs/database.md gives it (the statements are read
from the doc, as a fork's DBA would copy them)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psycopg2
import psycopg2.errors
import pytest

from tests.conftest import EDGEOPS, REPO, Roles
from tools.kits.devservices import S3Endpoint
from training.config import load_training_config
from training.data.seed import ensure_ldos_table, seed
from training.data.synth import write_dataset

SPEC = load_training_config().data_spec()


def edgeops(*args: str, dsn: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **(env or {}), "EDGEOPS_PG_DSN": dsn}
    return subprocess.run(
        [EDGEOPS, *args], cwd=REPO, env=full, capture_output=True, text=True, timeout=300, check=False
    )


def test_migrate_is_the_owners_and_idempotent(pg_roles: Roles) -> None:
    roles = pg_roles
    # The backend's table exists (the runtime backend made it); nothing of ours yet.
    conn = psycopg2.connect(roles.dsn("owner"))
    try:
        ensure_ldos_table(conn)
    finally:
        conn.close()
    first = edgeops("db", "migrate", "--telemetry", dsn=roles.dsn("owner"))
    assert first.returncode == 0, first.stderr
    assert "applied migration 0001 model_versions" in first.stderr
    assert "applied migration 0002 telemetry tables" in first.stderr
    again = edgeops("db", "migrate", "--telemetry", dsn=roles.dsn("owner"))
    assert again.returncode == 0 and "schema is current (2 migration(s) applied before)" in again.stderr
    with psycopg2.connect(roles.dsn("owner")) as conn, conn.cursor() as cur:
        cur.execute("SELECT id, name FROM edgeops_schema_migrations ORDER BY id")
        assert [r[0] for r in cur.fetchall()] == [1, 2]
        cur.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'model_versions'")
        assert cur.fetchone() == (roles.names["owner"],)

    roles.grant()
    # A least-privilege role may not migrate: a clear refusal that says who may, no traceback.
    refused = edgeops("db", "migrate", dsn=roles.dsn("publish"))
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "permission denied" in refused.stderr and "as the database's owner" in refused.stderr

    # An applied migration whose SQL changed is refused, not re-run.
    with psycopg2.connect(roles.dsn("owner")) as conn, conn.cursor() as cur:
        cur.execute("UPDATE edgeops_schema_migrations SET sha256 = 'x' WHERE id = 1")
    changed = edgeops("db", "migrate", dsn=roles.dsn("owner"))
    assert changed.returncode == 1 and "0001 model_versions was applied with other SQL" in changed.stderr


def test_snapshot_runs_as_the_snapshot_role(
    pg_roles: Roles, tmp_path: Path, s3_env: S3Endpoint, s3_bucket: str
) -> None:
    roles = pg_roles
    data = tmp_path / "ldos"
    write_dataset(data, 60, 3, SPEC)
    uri = f"s3://{s3_bucket}/ldos"
    seed(data, SPEC, dsn=roles.dsn("owner"), s3_uri=uri, workers=4)  # the backend's table and objects
    assert edgeops("db", "migrate", "--telemetry", dsn=roles.dsn("owner")).returncode == 0
    roles.grant()
    env = s3_env.env()
    snap = edgeops(
        "snapshot", "--source", "pg+s3", "--s3", uri, "--out", str(tmp_path / "snap"),
        "--cache", str(tmp_path / "cache"), dsn=roles.dsn("snapshot"), env=env,
    )  # fmt: skip
    assert snap.returncode == 0, snap.stderr
    assert (tmp_path / "snap" / "snapshot.json").is_file()
    # The role reads the index and nothing else.
    conn = psycopg2.connect(roles.dsn("snapshot"))
    try:
        with conn.cursor() as cur, pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("SELECT 1 FROM model_versions")
    finally:
        conn.close()
