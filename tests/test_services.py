"""The real services the suite stands on: they start, answer, and speak their real protocols."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import boto3
import psycopg2

from tools.kits.devservices import S3Endpoint, find_pg_bindir


def test_postgres_is_a_real_server(pg_dsn: str) -> None:
    with psycopg2.connect(pg_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_setting('server_version_num')::int")
        (version,) = cur.fetchone()
        assert version >= 130000
        cur.execute("CREATE TABLE t (id int primary key)")
        cur.execute("INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING")
        cur.execute("SELECT count(*) FROM t")
        assert cur.fetchone() == (1,)


def test_each_test_gets_a_fresh_database(pg_dsn: str) -> None:
    with psycopg2.connect(pg_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('t')")
        assert cur.fetchone() == (None,)


def test_pg_binaries_are_found() -> None:
    bindir = find_pg_bindir()
    assert bindir is not None and (bindir / "pg_ctl").exists()


def test_s3_is_reached_over_http(s3_env: S3Endpoint, s3_bucket: str) -> None:
    assert s3_env.url.startswith("http://127.0.0.1:")
    s3 = boto3.client("s3")
    assert s3.meta.endpoint_url == s3_env.url  # boto3 took the standard AWS_ENDPOINT_URL
    s3.create_bucket(Bucket=s3_bucket)
    s3.put_object(Bucket=s3_bucket, Key="a/b.json", Body=b'{"x": 1}')
    head = s3.head_object(Bucket=s3_bucket, Key="a/b.json")
    assert (
        head["ETag"].strip('"') == hashlib.md5(b'{"x": 1}', usedforsecurity=False).hexdigest()
    )  # S3's single-part ETag
    assert s3.get_object(Bucket=s3_bucket, Key="a/b.json")["Body"].read() == b'{"x": 1}'


def test_bare_git_remote_round_trip(git_remote: Path, tmp_path: Path) -> None:
    def git(*args: str, cwd: Path) -> str:
        return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout

    work = tmp_path / "work"
    git("clone", "--quiet", str(git_remote), str(work), cwd=tmp_path)
    (work / "release.yaml").write_text("version: v1.0\n")
    git("add", "release.yaml", cwd=work)
    git("commit", "--quiet", "-m", "pilot: model v1.0", cwd=work)
    git("push", "--quiet", "origin", "HEAD:main", cwd=work)
    other = tmp_path / "other"
    git("clone", "--quiet", str(git_remote), str(other), cwd=tmp_path)
    assert (other / "release.yaml").read_text() == "version: v1.0\n"
    assert git("log", "--format=%s", cwd=other).strip() == "pilot: model v1.0"


def test_devservices_down_without_up_names_the_file(tmp_path: Path) -> None:
    import sys

    missing = tmp_path / "services.env"
    result = subprocess.run(
        [sys.executable, "-m", "tools.kits.devservices", "--down", str(missing)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert f"{missing}: no services to stop (no file written by --up there)" in result.stderr
