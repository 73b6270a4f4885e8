"""`edgeops data seed` against a real PostgreSQL server and a real S3 API server over HTTP."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import boto3
import psycopg2
import pytest

from tests.conftest import EDGEOPS, REPO
from tools.core.errors import EdgeopsError, ServiceError
from tools.kits.devservices import S3Endpoint
from training.config import load_training_config
from training.data.ldo import dumps, parse_ldo
from training.data.seed import seed
from training.data.synth import generate, write_dataset

SPEC = load_training_config().data_spec()


def edgeops(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EDGEOPS, *args], cwd=REPO, capture_output=True, text=True, timeout=600, check=False
    )


def rows(dsn: str) -> dict[str, tuple[object, ...]]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT ldo_id, created_at, validated, device_id, s3_key, etag FROM ldos")
        return {r[0]: r for r in cur.fetchall()}


def test_cli_synth_then_seed_2000(tmp_path: Path, pg_dsn: str, s3_bucket: str, s3_env: S3Endpoint) -> None:
    """Acceptance: 2000 synthetic LDOs land in the index and every s3_key resolves to a valid LDO v1."""
    data = tmp_path / "ldos"
    synth = edgeops("data", "synth", "--n", "2000", "--seed", "7", "--out", str(data))
    assert synth.returncode == 0, synth.stderr
    assert len(list(data.glob("*.json"))) == 2000

    seeded = edgeops(
        "data", "seed", "--data-path", str(data), "--pg", pg_dsn, "--s3", f"s3://{s3_bucket}/ldos"
    )
    assert seeded.returncode == 0, seeded.stderr
    assert "2000 new, 0 updated, 0 unchanged" in seeded.stderr

    with psycopg2.connect(pg_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM ldos")
        assert cur.fetchone() == (2000,)
        cur.execute("SELECT ldo_id, s3_key, etag, validated FROM ldos")
        index = cur.fetchall()
    s3 = boto3.client("s3")
    for ldo_id, key, etag, validated in index:
        obj = s3.get_object(Bucket=s3_bucket, Key=key)
        assert obj["ETag"].strip('"') == etag
        ldo = parse_ldo(obj["Body"].read(), SPEC, source=key)
        assert ldo.ldo_id == ldo_id and ldo.validated == validated
        assert key.startswith("ldos/") and key.endswith(f"/{ldo_id}.json")

    again = edgeops(
        "data", "seed", "--data-path", str(data), "--pg", pg_dsn, "--s3", f"s3://{s3_bucket}/ldos"
    )
    assert again.returncode == 0, again.stderr
    assert "nothing to do: all 2000 LDOs are already" in again.stderr


def test_seed_is_idempotent_and_picks_up_exactly_the_changes(
    tmp_path: Path, pg_dsn: str, s3_bucket: str, s3_env: S3Endpoint
) -> None:
    data = tmp_path / "ldos"
    write_dataset(data, 60, 1, SPEC)
    uri = f"s3://{s3_bucket}/ldos"
    first = seed(data, SPEC, dsn=pg_dsn, s3_uri=uri, workers=4)
    assert (first.new, first.updated, first.unchanged, first.uploaded) == (60, 0, 0, 60)
    assert first.bucket_created
    before = rows(pg_dsn)
    s3 = boto3.client("s3")
    stamps = {o["Key"]: o["LastModified"] for o in s3.list_objects_v2(Bucket=s3_bucket)["Contents"]}

    second = seed(data, SPEC, dsn=pg_dsn, s3_uri=uri, workers=4)
    assert (second.new, second.updated, second.unchanged, second.uploaded) == (0, 0, 60, 0)
    assert not second.changed and "nothing to do" in second.summary()
    assert rows(pg_dsn) == before
    assert {o["Key"]: o["LastModified"] for o in s3.list_objects_v2(Bucket=s3_bucket)["Contents"]} == stamps

    # One record relabelled by the backend, two new ones: exactly those are written.
    docs = list(generate(62, 1, SPEC))
    changed = docs[5]
    changed["labels"]["overheating"] = 1 - changed["labels"]["overheating"]
    (data / f"{changed['ldo_id']}.json").write_bytes(dumps(changed))
    for doc in docs[60:]:
        (data / f"{doc['ldo_id']}.json").write_bytes(dumps(doc))
    third = seed(data, SPEC, dsn=pg_dsn, s3_uri=uri, workers=4)
    assert (third.new, third.updated, third.unchanged, third.uploaded) == (2, 1, 59, 3)
    after = rows(pg_dsn)
    assert len(after) == 62
    assert after[changed["ldo_id"]][5] != before[changed["ldo_id"]][5]  # the etag moved with the bytes


def test_invalid_file_stops_the_run_before_anything_is_written(
    tmp_path: Path, pg_dsn: str, s3_bucket: str, s3_env: S3Endpoint
) -> None:
    data = tmp_path / "ldos"
    write_dataset(data, 20, 2, SPEC)
    victim = sorted(data.glob("*.json"))[3]
    victim.write_bytes(victim.read_bytes()[:500])  # truncated upload
    with pytest.raises(EdgeopsError) as info:
        seed(data, SPEC, dsn=pg_dsn, s3_uri=f"s3://{s3_bucket}/ldos")
    message = str(info.value)
    assert "1 of 20 LDO files" in message and "nothing was written" in message
    assert f"{victim.name}: (json): not valid JSON" in message
    s3 = boto3.client("s3")
    assert s3_bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    with psycopg2.connect(pg_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('ldos')")
        assert cur.fetchone() == (None,)


def test_duplicate_ids_across_files_are_rejected(
    tmp_path: Path, pg_dsn: str, s3_bucket: str, s3_env: S3Endpoint
) -> None:
    data = tmp_path / "ldos"
    write_dataset(data, 3, 3, SPEC)
    first = sorted(data.glob("*.json"))[0]
    (data / "copy-of-first.json").write_bytes(first.read_bytes())
    with pytest.raises(EdgeopsError, match="is also the id in"):
        seed(data, SPEC, dsn=pg_dsn, s3_uri=f"s3://{s3_bucket}/ldos")


def test_postgres_down_is_a_clear_error(tmp_path: Path, s3_bucket: str, s3_env: S3Endpoint) -> None:
    data = tmp_path / "ldos"
    write_dataset(data, 3, 4, SPEC)
    with pytest.raises(ServiceError) as info:
        seed(data, SPEC, dsn="postgresql://nobody:s3cret@127.0.0.1:9/ldos", s3_uri=f"s3://{s3_bucket}/x")
    message = str(info.value)
    assert "cannot connect to PostgreSQL at 127.0.0.1:9/ldos" in message
    assert "s3cret" not in message


def test_s3_down_is_a_clear_error_and_the_index_is_untouched(
    tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch, s3_env: S3Endpoint
) -> None:
    data = tmp_path / "ldos"
    write_dataset(data, 3, 5, SPEC)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(ServiceError) as info:
        seed(data, SPEC, dsn=pg_dsn, s3_uri="s3://context-edge-ldos/ldos")
    assert "cannot reach the S3 API at http://127.0.0.1:9" in str(info.value)
    assert rows(pg_dsn) == {}


def test_cli_reports_errors_without_traceback(tmp_path: Path) -> None:
    result = edgeops(
        "data", "seed", "--data-path", str(tmp_path / "missing"), "--pg", "postgresql://x@127.0.0.1:9/db"
    )
    assert result.returncode == 1
    assert "no such folder of LDO files" in result.stderr
    assert "Traceback" not in result.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": "ldo/v1"}))
    result = edgeops("data", "validate", str(bad))
    assert result.returncode == 1
    assert "ldo_id: required field is missing" in result.stdout
    assert "0 valid, 1 invalid of 1" in result.stdout
