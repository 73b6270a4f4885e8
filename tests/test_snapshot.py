"""`edgeops snapshot` against a real PostgreSQL index and a real S3 API server over HTTP."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import boto3
import numpy as np
import psycopg2
import pytest
from safetensors.numpy import load_file

from tests.conftest import EDGEOPS, REPO
from tests.faultproxy import FaultProxy
from tools.core.errors import EdgeopsError, ServiceError
from tools.kits.devservices import S3Endpoint
from training.config import load_training_config
from training.data.ldo import dumps
from training.data.seed import seed
from training.data.synth import generate, write_dataset
from training.snapshot import DirSource, LdoCache, PgS3Source, SnapshotOptions, build_snapshot, split_of

SPEC = load_training_config().data_spec()
N = 400


def tree_digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def index_rows(dsn: str) -> list[tuple[str, str]]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT ldo_id, etag FROM ldos WHERE validated ORDER BY ldo_id")
        return list(cur.fetchall())


@pytest.fixture
def store(tmp_path: Path, pg_dsn: str, s3_bucket: str, s3_env: S3Endpoint) -> dict[str, object]:
    data = tmp_path / "ldos"
    write_dataset(data, N, 21, SPEC)
    uri = f"s3://{s3_bucket}/ldos"
    seed(data, SPEC, dsn=pg_dsn, s3_uri=uri, workers=8)
    return {"data": data, "uri": uri, "dsn": pg_dsn, "bucket": s3_bucket, "cache": tmp_path / "cache"}


def pg_source(store: dict[str, object], workers: int = 8) -> PgS3Source:
    return PgS3Source(
        dsn=str(store["dsn"]),
        s3_uri=str(store["uri"]),
        cache=LdoCache(Path(str(store["cache"]))),
        workers=workers,
    )


OPTS = SnapshotOptions(limit=10_000)


def test_cold_then_warm_then_incremental(store: dict[str, object], tmp_path: Path) -> None:
    validated = index_rows(str(store["dsn"]))
    cold_src = pg_source(store)
    cold = build_snapshot(cold_src, tmp_path / "cold", SPEC, OPTS)
    assert cold.rows == len(validated) and cold.rejected == 0
    assert (cold.downloaded, cold.cached) == (len(validated), 0)

    # The fingerprint is sha256 over the sorted (ldo_id, etag) list, computed here independently.
    expected = hashlib.sha256("".join(f"{i}\t{e}\n" for i, e in validated).encode()).hexdigest()
    assert cold.fingerprint == f"sha256:{expected}"
    meta = json.loads((tmp_path / "cold" / "snapshot.json").read_text())
    assert meta["fingerprint"] == cold.fingerprint
    assert meta["counts"]["rows"] == len(validated)
    assert sum(meta["counts"]["splits"].values()) == len(validated)
    assert meta["source"] == {"kind": "pg+s3", "s3": store["uri"], "query": meta["source"]["query"]}

    tensors = load_file(str(tmp_path / "cold" / "tensors.safetensors"))
    assert tensors["sensors"].shape == (len(validated), 4, 128) and tensors["sensors"].dtype == np.float32
    assert tensors["labels"].shape == (len(validated), 5) and tensors["labels"].dtype == np.uint8
    assert tensors["asset_id"].dtype == np.int64
    rows = [line.split("\t") for line in (tmp_path / "cold" / "index.tsv").read_text().splitlines()[1:]]
    assert [r[0] for r in rows] == [i for i, _ in validated]  # sorted by ldo_id
    splits = {"train": 0, "val": 1, "test": 2}
    assert [splits[r[2]] for r in rows] == tensors["split"].tolist()
    assert all(split_of(r[0], 0.1, 0.1) == splits[r[2]] for r in rows)

    # The first row's tensors are exactly the stored object's values.
    obj = boto3.client("s3").get_object(Bucket=str(store["bucket"]), Key=_key(store, rows[0][0]))
    doc = json.loads(obj["Body"].read())
    np.testing.assert_array_equal(tensors["sensors"][0], np.asarray(doc["sensors"]["values"], np.float32))
    assert tensors["labels"][0].tolist() == [doc["labels"][k] for k in SPEC.labels]

    warm = build_snapshot(pg_source(store), tmp_path / "warm", SPEC, OPTS)
    assert (warm.downloaded, warm.cached) == (0, len(validated))
    assert tree_digest(tmp_path / "warm") == tree_digest(tmp_path / "cold")  # byte-identical

    # Next month: 5% more LDOs arrive; exactly the new validated ones are fetched.
    extra = list(generate(N + N // 20, 21, SPEC))[N:]
    for doc in extra:
        (Path(str(store["data"])) / f"{doc['ldo_id']}.json").write_bytes(dumps(doc))
    seed(Path(str(store["data"])), SPEC, dsn=str(store["dsn"]), s3_uri=str(store["uri"]), workers=8)
    new_validated = sum(1 for d in extra if d["validated"])
    month2 = build_snapshot(pg_source(store), tmp_path / "month2", SPEC, OPTS)
    assert (month2.downloaded, month2.cached) == (new_validated, len(validated))
    assert month2.rows == len(validated) + new_validated
    assert month2.fingerprint != cold.fingerprint
    # No LDO moved between splits from one month to the next.
    old = {r[0]: r[2] for r in rows}
    new = {
        line.split("\t")[0]: line.split("\t")[2]
        for line in (tmp_path / "month2" / "index.tsv").read_text().splitlines()[1:]
    }
    assert all(new[i] == s for i, s in old.items())


def _key(store: dict[str, object], ldo_id: str) -> str:
    with psycopg2.connect(str(store["dsn"])) as conn, conn.cursor() as cur:
        cur.execute("SELECT s3_key FROM ldos WHERE ldo_id = %s", (ldo_id,))
        return str(cur.fetchone()[0])


def test_limit_takes_the_newest_validated(store: dict[str, object], tmp_path: Path) -> None:
    with psycopg2.connect(str(store["dsn"])) as conn, conn.cursor() as cur:
        cur.execute("SELECT ldo_id FROM ldos WHERE validated ORDER BY created_at DESC, ldo_id LIMIT 50")
        newest = sorted(r[0] for r in cur.fetchall())
    report = build_snapshot(pg_source(store), tmp_path / "s", SPEC, SnapshotOptions(limit=50))
    assert report.rows == 50
    ids = [line.split("\t")[0] for line in (tmp_path / "s" / "index.tsv").read_text().splitlines()[1:]]
    assert ids == newest


def test_malformed_objects_are_rejected_with_reasons(store: dict[str, object], tmp_path: Path) -> None:
    s3 = boto3.client("s3")
    bucket = str(store["bucket"])
    victims = [i for i, _ in index_rows(str(store["dsn"]))[:4]]
    bad: dict[str, bytes] = {}
    body = s3.get_object(Bucket=bucket, Key=_key(store, victims[0]))["Body"].read()
    bad[victims[0]] = body[: len(body) // 2]  # truncated
    doc = json.loads(s3.get_object(Bucket=bucket, Key=_key(store, victims[1]))["Body"].read())
    doc["sensors"]["values"][1][7] = 123.456
    bad[victims[1]] = json.dumps(doc).replace("123.456", "NaN").encode()
    doc = json.loads(s3.get_object(Bucket=bucket, Key=_key(store, victims[2]))["Body"].read())
    doc["sensors"]["values"][3] = doc["sensors"]["values"][3][:100]
    bad[victims[2]] = json.dumps(doc).encode()
    with psycopg2.connect(str(store["dsn"])) as conn, conn.cursor() as cur:
        for ldo_id, raw in bad.items():
            key = _key(store, ldo_id)
            etag = s3.put_object(Bucket=bucket, Key=key, Body=raw)["ETag"].strip('"')
            cur.execute(
                "UPDATE ldos SET etag = %s WHERE ldo_id = %s", (etag, ldo_id)
            )  # the backend re-indexed
        s3.delete_object(Bucket=bucket, Key=_key(store, victims[3]))  # indexed, but the object is gone

    total = len(index_rows(str(store["dsn"])))
    report = build_snapshot(
        pg_source(store), tmp_path / "s", SPEC, SnapshotOptions(limit=10_000, max_reject_fraction=0.05)
    )
    assert report.rejected == 4 and report.rows == total - 4
    rejects = json.loads((tmp_path / "s" / "rejects.json").read_text())
    by_id = {r["ldo_id"]: r for r in rejects["records"]}
    assert by_id[victims[0]]["field"] == "(json)" and "truncated" in by_id[victims[0]]["reason"]
    assert by_id[victims[1]]["field"] == "sensors.values[1][7]" and "finite" in by_id[victims[1]]["reason"]
    assert by_id[victims[2]]["field"] == "sensors.values[3]" and "100 samples" in by_id[victims[2]]["reason"]
    assert by_id[victims[3]]["field"] == "(object)" and "missing in the store" in by_id[victims[3]]["reason"]
    assert rejects["by_field"] == {"(json)": 1, "(object)": 1, "sensors.values": 2}
    assert json.loads((tmp_path / "s" / "snapshot.json").read_text())["rejects"]["count"] == 4

    # Above the threshold the run fails and leaves the existing snapshot exactly as it was.
    before = tree_digest(tmp_path / "s")
    with pytest.raises(EdgeopsError, match=r"4 of \d+ LDOs were rejected .* above the limit of 0.1%"):
        build_snapshot(
            pg_source(store), tmp_path / "s", SPEC, SnapshotOptions(limit=10_000, max_reject_fraction=0.001)
        )
    assert tree_digest(tmp_path / "s") == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".s")] == []


def test_flaky_store_completes_and_dead_store_fails_cleanly(
    store: dict[str, object], tmp_path: Path, s3_env: S3Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = build_snapshot(
        PgS3Source(dsn=str(store["dsn"]), s3_uri=str(store["uri"]), cache=LdoCache(tmp_path / "ref-cache")),
        tmp_path / "ref", SPEC, OPTS,
    )  # fmt: skip
    upstream = urlparse(s3_env.url)
    proxy = FaultProxy(str(upstream.hostname), int(upstream.port or 80), drop_every=7)
    proxy.up()
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    try:
        flaky = build_snapshot(pg_source(store), tmp_path / "flaky", SPEC, OPTS)
        assert proxy.dropped >= 20  # connections really were dropped mid-run...
        assert flaky.fingerprint == reference.fingerprint  # ...and retries still got every object
        assert tree_digest(tmp_path / "flaky") == tree_digest(tmp_path / "ref")

        # The store goes away for good mid-run: a clean failure, nothing in --out, no bad cache entries.
        cache = LdoCache(tmp_path / "cache2")
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
        proxy.drop_every = 0
        src = PgS3Source(dsn=str(store["dsn"]), s3_uri=str(store["uri"]), cache=cache, workers=4)
        original = src._download
        calls = {"n": 0}

        def download_then_die(client: object, key: str, etag: str | None, spec: object) -> object:
            calls["n"] += 1
            if calls["n"] == 120:
                proxy.down()
            return original(client, key, etag, spec)  # type: ignore[arg-type]

        monkeypatch.setattr(src, "_download", download_then_die)
        with pytest.raises(ServiceError, match=r"cannot reach the S3 API|S3 at .* failed"):
            build_snapshot(src, tmp_path / "dead", SPEC, OPTS)
        assert not (tmp_path / "dead").exists()
        assert [p.name for p in tmp_path.iterdir() if ".partial" in p.name] == []
        entries = list((tmp_path / "cache2").rglob("*.json"))  # raw objects; *.rec are derived from them
        assert not list((tmp_path / "cache2").rglob(".*.tmp"))
        assert 50 <= len(entries) < reference.rows
        assert all(hashlib.md5(p.read_bytes()).hexdigest() == p.stem for p in entries)  # noqa: S324

        # Back up: the rerun completes, fetching only what the failed run did not cache.
        proxy.up()
        rerun = build_snapshot(
            pg_source({**store, "cache": tmp_path / "cache2"}), tmp_path / "dead", SPEC, OPTS
        )
        assert rerun.cached == len(entries) and rerun.downloaded == reference.rows - len(entries)
        assert tree_digest(tmp_path / "dead") == tree_digest(tmp_path / "ref")
    finally:
        proxy.down()


def test_throttled_store_is_retried_with_backoff(
    store: dict[str, object], tmp_path: Path, s3_env: S3Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = build_snapshot(DirSource(Path(str(store["data"]))), tmp_path / "ref", SPEC, OPTS)
    upstream = urlparse(s3_env.url)
    proxy = FaultProxy(str(upstream.hostname), int(upstream.port or 80), throttle_every=5)
    proxy.up()
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    try:
        throttled = build_snapshot(pg_source(store), tmp_path / "t", SPEC, OPTS)
    finally:
        proxy.down()
    assert proxy.throttled >= 40  # every 5th request answered 503 SlowDown...
    assert throttled.fingerprint == reference.fingerprint  # ...and botocore's retries still got them all
    assert throttled.downloaded == reference.rows


def test_corrupt_cache_entry_is_fetched_again(store: dict[str, object], tmp_path: Path) -> None:
    first = build_snapshot(pg_source(store), tmp_path / "a", SPEC, OPTS)
    entries = sorted(Path(str(store["cache"])).rglob("*.json"))
    # A corrupt raw object and its parsed record: fetched again.
    entries[0].write_bytes(entries[0].read_bytes()[:-10] + b"0000000000")
    next(entries[0].parent.glob(f"{entries[0].stem}.*.rec")).unlink()
    # A parsed record torn or flipped: rebuilt from the raw object, no download.
    rec = next(entries[1].parent.glob(f"{entries[1].stem}.*.rec"))
    rec.write_bytes(rec.read_bytes()[:-3])
    rec2 = next(entries[2].parent.glob(f"{entries[2].stem}.*.rec"))
    blob = bytearray(rec2.read_bytes())
    blob[-5] ^= 0xFF
    rec2.write_bytes(bytes(blob))
    again = build_snapshot(pg_source(store), tmp_path / "b", SPEC, OPTS)
    assert (again.downloaded, again.cached) == (1, first.rows - 1)
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")
    assert len(list(Path(str(store["cache"])).rglob("*.rec"))) == first.rows


def test_stale_cache_listing_still_fetches(
    store: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The producer lists the cache once (`LdoCache.contents`) instead of probing two paths per row; an entry
    that vanished after the listing is read as a miss and downloaded, not trusted."""
    first = build_snapshot(pg_source(store), tmp_path / "a", SPEC, OPTS)
    cache = LdoCache(Path(str(store["cache"])))
    raw, parsed = cache.contents(SPEC)
    assert len(raw) == len(parsed) == first.rows
    assert cache.contents(load_training_config().data_spec()) == (raw, parsed)
    other = cache.contents(dataclasses.replace(SPEC, window=SPEC.window * 2))
    assert other == (raw, set())  # records parsed for another data interface are not this spec's
    gone = sorted(parsed)[0]
    cache.path(gone).unlink()
    next(cache.path(gone).parent.glob(f"{gone}.*.rec")).unlink()
    monkeypatch.setattr(LdoCache, "contents", lambda self, spec: (set(raw), set(parsed)))  # stale
    again = build_snapshot(pg_source(store), tmp_path / "b", SPEC, OPTS)
    assert (again.downloaded, again.cached) == (1, first.rows - 1)
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")


def test_checksums_where_no_md5_etag_checks_the_bytes(
    store: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The snapshot's client skips botocore's own CRC32 (every MD5 ETag is checked by hashing the body) but
    asks the store for its checksum of an object whose ETag is no MD5 (a multipart upload here; SSE-KMS on
    AWS), and botocore then verifies it."""
    import training.snapshot as snapshot_module

    s3 = boto3.client("s3")
    bucket = str(store["bucket"])
    victim = index_rows(str(store["dsn"]))[0][0]
    key = _key(store, victim)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="CRC32")
    part = s3.upload_part(
        Bucket=bucket,
        Key=key,
        UploadId=upload["UploadId"],
        PartNumber=1,
        Body=body,
        ChecksumAlgorithm="CRC32",
    )
    done = s3.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=upload["UploadId"],
        MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": part["ETag"], "ChecksumCRC32": part["ChecksumCRC32"]}]
        },
    )
    etag = done["ETag"].strip('"')
    assert etag.endswith("-1")
    with psycopg2.connect(str(store["dsn"])) as conn, conn.cursor() as cur:
        cur.execute("UPDATE ldos SET etag = %s WHERE ldo_id = %s", (etag, victim))

    asked: dict[str, object] = {}
    made: list[object] = []
    real_client = snapshot_module.s3_client

    def spying_client(**kwargs: object) -> object:
        client = real_client(**kwargs)  # type: ignore[arg-type]
        made.append(client)
        client.meta.events.register(
            "provide-client-params.s3.GetObject",
            lambda params, **_: asked.__setitem__(params["Key"], params.get("ChecksumMode")),
        )
        return client

    monkeypatch.setattr(snapshot_module, "s3_client", spying_client)
    report = build_snapshot(pg_source(store), tmp_path / "s", SPEC, OPTS)
    assert report.rejected == 0 and report.downloaded == len(index_rows(str(store["dsn"])))
    config = made[0].meta.config  # type: ignore[attr-defined]
    assert (config.request_checksum_calculation, config.response_checksum_validation) == (
        "when_required",
        "when_required",
    )
    assert asked.pop(key) == "ENABLED"
    assert set(asked.values()) == {None}  # MD5 ETags: the body's MD5 is the check


def test_postgres_down_fails_cleanly(store: dict[str, object], tmp_path: Path) -> None:
    src = PgS3Source(
        dsn="postgresql://edgeops@127.0.0.1:9/ldos", s3_uri=str(store["uri"]), cache=LdoCache(tmp_path)
    )
    with pytest.raises(ServiceError, match=r"cannot connect to PostgreSQL at 127\.0\.0\.1:9/ldos"):
        build_snapshot(src, tmp_path / "out", SPEC, OPTS)
    assert not (tmp_path / "out").exists()


def test_dir_source_matches_the_indexed_store(store: dict[str, object], tmp_path: Path) -> None:
    """A folder and the store it was seeded into give the same fingerprint and the same tensors."""
    from_store = build_snapshot(pg_source(store), tmp_path / "a", SPEC, OPTS)
    from_dir = build_snapshot(DirSource(Path(str(store["data"]))), tmp_path / "b", SPEC, OPTS)
    assert from_dir.fingerprint == from_store.fingerprint
    assert (tmp_path / "a" / "tensors.safetensors").read_bytes() == (
        tmp_path / "b" / "tensors.safetensors"
    ).read_bytes()


def test_refuses_to_overwrite_a_folder_that_is_not_a_snapshot(
    store: dict[str, object], tmp_path: Path
) -> None:
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(EdgeopsError, match="is not a snapshot folder"):
        build_snapshot(DirSource(Path(str(store["data"]))), out, SPEC, OPTS)
    assert (out / "notes.txt").read_text() == "mine"


def test_split_fractions_and_stability() -> None:
    ids = [f"ldo-{i}" for i in range(20_000)]
    splits = np.array([split_of(i, 0.1, 0.1) for i in ids])
    assert abs((splits == 0).mean() - 0.8) < 0.015
    assert abs((splits == 1).mean() - 0.1) < 0.01
    assert abs((splits == 2).mean() - 0.1) < 0.01
    assert split_of("ldo-7", 0.1, 0.1) == split_of("ldo-7", 0.1, 0.1)


def test_cli_snapshot_pg_s3(store: dict[str, object], tmp_path: Path) -> None:
    args = ["snapshot", "--source", "pg+s3", "--pg", str(store["dsn"]), "--s3", str(store["uri"]),
            "--limit", "100", "--cache", str(tmp_path / "c"), "--out", str(tmp_path / "snap")]  # fmt: skip
    result = subprocess.run(
        [EDGEOPS, *args], cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "100 LDOs" in result.stderr and "100 fetched" in result.stderr
    again = subprocess.run(
        [EDGEOPS, *args], cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    assert "0 fetched (0.0 MB), 100 from cache" in again.stderr
    down = subprocess.run(
        [EDGEOPS, "snapshot", "--source", "pg+s3", "--pg", "postgresql://x@127.0.0.1:9/db",
         "--s3", str(store["uri"]), "--out", str(tmp_path / "never")],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert (
        down.returncode == 1
        and "cannot connect to PostgreSQL" in down.stderr
        and "Traceback" not in down.stderr
    )
    assert not (tmp_path / "never").exists()
