"""Hostile LDOs (issue #19, "One record, one run"): a bad record is one reject among many, never a crash.

Every finding of the adversarial run is a regression test here, through the command where it was found
(`edgeops data validate`, `data seed`, `snapshot` from a folder and from PostgreSQL + S3): a number of 5,000
digits, an id of 10^30, a year-1 timestamp at +14:00, an id ending in a newline, an id two files claim, a key
given twice, a FIFO, a link to /dev/zero, a NaN threshold, PostgreSQL going away mid-run. Each must end as a
reject naming the field and the reason (or a usage error, or a ServiceError saying what to do), with no
traceback. The property-based tests then throw mutated records at the parser: it returns an LDO whose values
a snapshot can store (finite float32 samples, int64 ids, an aware timestamp UTC can represent) or raises
LdoError, and nothing else.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import psycopg2
import psycopg2.extensions
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

import training.data.seed as seed_module
from tests.conftest import EDGEOPS, REPO
from tests.test_ldo import good_doc
from tools.core.config import DataConfig
from tools.core.errors import EdgeopsError, LdoError, ServiceError
from tools.kits.devservices import S3Endpoint
from training.config import load_training_config
from training.data.ldo import (
    INT64_MAX,
    LDO_ID_PATTERN,
    Ldo,
    dumps,
    max_ldo_bytes,
    parse_ldo,
    read_ldo_file,
)
from training.data.seed import seed
from training.data.synth import write_dataset
from training.snapshot import DirSource, LdoCache, PgS3Source, SnapshotOptions, build_snapshot

SPEC = load_training_config().data_spec()
N_GOOD = 300
HUGE = "9" * 5000  # more digits than Python converts (4300): json.loads raises a plain ValueError
LIMIT = max_ldo_bytes(SPEC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def edgeops(*args: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it; the timeout turns a hang (a FIFO read) into a failure, not a stuck suite."""
    return subprocess.run(
        [EDGEOPS, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr


def raw_with(replace: str, by: str, doc: dict[str, Any] | None = None) -> bytes:
    """A valid LDO's bytes with one piece of text replaced (how a broken backend writes what json cannot)."""
    text = dumps(doc or good_doc()).decode()
    assert replace in text, replace
    return text.replace(replace, by, 1).encode()


def sample_doc(marker: float = 424242.0) -> dict[str, Any]:
    doc = good_doc()
    doc["sensors"]["values"][1][3] = marker
    return doc


def rejected(raw: bytes | str) -> LdoError:
    with pytest.raises(LdoError) as info:
        parse_ldo(raw, SPEC, source="case.json")
    return info.value


@contextlib.contextmanager
def within(seconds: float) -> Iterator[None]:
    """Fail instead of hanging: SIGALRM interrupts a blocking open() or read() of this (main) thread."""

    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def bounded(seconds: float = 5.0, megabytes: float = 64.0) -> Iterator[None]:
    """The acceptance bound of every hostile case: answered in under 5 s, and with bounded memory."""
    tracemalloc.start()
    start = time.monotonic()
    try:
        yield
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert time.monotonic() - start < seconds
    assert peak < megabytes * 2**20, f"peak {peak / 2**20:.1f} MiB"


# --- the parser: values a snapshot cannot store -------------------------------------------------------------


@pytest.mark.parametrize(
    ("replace", "by", "field", "words"),
    [
        ("424242.0", HUGE, "sensors.values[1][3]", "not a finite float32 (an integer of 5000 digits)"),
        ("424242.0", "-" + HUGE, "sensors.values[1][3]", "not a finite float32"),
        ('"asset_id":77', f'"asset_id":{HUGE}', "context.asset_id", "5000 digits is out of int64 range"),
        ('"sample_rate_hz":100.0', f'"sample_rate_hz":{HUGE}', "sensors.sample_rate_hz", "5000 digits"),
        ('"overheating":0', f'"overheating":{HUGE}', "labels.overheating", "expected 0 or 1"),
        ('"validated":true', f'"validated":{HUGE}', "validated", "expected true or false"),
    ],
    ids=["sample", "negative-sample", "context-id", "sample-rate", "label", "validated"],
)
def test_a_5000_digit_number_is_a_reject_naming_its_field(
    replace: str, by: str, field: str, words: str
) -> None:
    with bounded():
        err = rejected(raw_with(replace, by, sample_doc()))
    assert err.field == field
    assert words in err.reason


def test_a_5000_digit_number_in_backend_metadata_is_ignored_like_the_key() -> None:
    doc = good_doc()
    doc["backend_meta"] = 12345
    ldo = parse_ldo(raw_with("12345", HUGE, doc), SPEC)  # unknown top-level keys are not read
    assert ldo.ldo_id == doc["ldo_id"]


@pytest.mark.parametrize("value", [10**30, 2**63, -1])
@pytest.mark.parametrize("key", ["product_id", "recipe_id", "asset_id"])
def test_context_ids_outside_int64_are_rejects(key: str, value: int) -> None:
    doc = good_doc()
    doc["context"][key] = value
    err = rejected(dumps(doc))
    assert err.field == f"context.{key}"
    assert ("int64" if value > 0 else "non-negative") in err.reason


def test_the_largest_int64_id_is_accepted() -> None:
    doc = good_doc()
    doc["context"]["product_id"] = INT64_MAX
    assert parse_ldo(dumps(doc), SPEC).product_id == INT64_MAX


@pytest.mark.parametrize(
    ("literal", "words"),
    [
        ("1e39", "not a finite float32 (1e+39 is out of its range)"),
        ("-1e39", "not a finite float32 (-1e+39 is out of its range)"),
        ("3.5e38", "not a finite float32"),
        ("1" + "0" * 39, "not a finite float32"),  # an integer literal beyond float32
        ("1" + "0" * 400, "not a finite float32"),  # an integer literal beyond float64 (OverflowError)
        ("1e999", "not a finite number (inf)"),
        ("NaN", "not a finite number (nan)"),
        ("-Infinity", "not a finite number (-inf)"),
    ],
)
def test_samples_that_are_not_a_finite_float32_are_rejects(literal: str, words: str) -> None:
    err = rejected(raw_with("424242.0", literal, sample_doc()))
    assert err.field == "sensors.values[1][3]"
    assert words in err.reason


def test_the_largest_float32_is_accepted() -> None:
    top = float(np.finfo(np.float32).max)
    ldo = parse_ldo(dumps(sample_doc(top)), SPEC)
    assert ldo.sensors[1, 3] == np.float32(top)


@pytest.mark.parametrize(
    ("stamp", "words"),
    [
        ("0001-01-01T00:00:00+14:00", "out of range"),  # in UTC: 31 Dec of year 0
        ("9999-12-31T23:00:00-14:00", "out of range"),  # in UTC: year 10000
        ("2026-11-01T08:00:00", "no timezone"),
        ("2026-13-01T08:00:00Z", "not an ISO 8601 timestamp"),
        ("10000-01-01T00:00:00Z", "not an ISO 8601 timestamp"),
        ("2026-11-01T08:00:00+24:00", "not an ISO 8601 timestamp"),
        ("", "not an ISO 8601 timestamp"),
    ],
)
def test_timestamps_that_are_not_real_instants_are_rejects(stamp: str, words: str) -> None:
    doc = good_doc()
    doc["created_at"] = stamp
    err = rejected(dumps(doc))
    assert err.field == "created_at"
    assert words in err.reason


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00-14:00", "9999-12-31T23:59:59.999999+14:00"])
def test_extreme_timestamps_utc_can_hold_are_accepted_and_stored(stamp: str, tmp_path: Path) -> None:
    """The edges of the range go through a whole snapshot (µs since the epoch, min/max in UTC)."""
    doc = good_doc()
    doc["created_at"] = stamp
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "one.json").write_bytes(dumps(doc))
    report = build_snapshot(DirSource(tmp_path / "d"), tmp_path / "s", SPEC, SnapshotOptions(limit=10))
    assert report.rows == 1 and report.rejected == 0
    meta = json.loads((tmp_path / "s" / "snapshot.json").read_text())
    assert meta["created_at"]["min"] == parse_ldo(dumps(doc), SPEC).created_at.astimezone(UTC).isoformat()


@pytest.mark.parametrize("ldo_id", ["x\n", "ldo-1\n", "x\r", "x\x00", "x\u2028", "x\t1", "x\ny"])
def test_ids_must_match_the_pattern_in_full(ldo_id: str) -> None:
    doc = good_doc()
    doc["ldo_id"] = ldo_id
    err = rejected(dumps(doc))
    assert err.field == "ldo_id" and "not a valid id" in err.reason
    assert LDO_ID_PATTERN.match(ldo_id) is None  # also for a caller that uses match, not fullmatch


@pytest.mark.parametrize(
    ("replace", "by", "field"),
    [
        ('"validated":true', '"validated":true,"validated":false', "validated"),
        ('"misalignment":1', '"misalignment":1,"misalignment":0', "labels.misalignment"),
        ('"asset_id":77', '"asset_id":77,"asset_id":78', "context.asset_id"),
        ('"sample_rate_hz":100.0', '"sample_rate_hz":100.0,"sample_rate_hz":100.0', "sensors.sample_rate_hz"),
        ('"schema":"ldo/v1"', '"schema":"ldo/v1","meta":{"a b":1,"a b":2}', 'meta["a b"]'),
        ('"validated":true', f'"validated":true,"validated":{HUGE}', "validated"),
    ],
)
def test_duplicate_keys_are_rejects_naming_the_path(replace: str, by: str, field: str) -> None:
    err = rejected(raw_with(replace, by))
    assert err.field == field
    assert "duplicate key" in err.reason


@pytest.mark.parametrize("device_id", ["edge\u0000001", "edge-\ud800"])
def test_device_ids_postgresql_cannot_store_are_rejects(device_id: str) -> None:
    doc = good_doc()
    doc["device_id"] = device_id
    err = rejected(json.dumps(doc))  # ASCII escapes: \u0000 and a lone \ud800, as JSON can spell them
    assert err.field == "device_id" and "not storable text" in err.reason


def test_a_document_above_the_size_limit_is_refused_before_decoding() -> None:
    raw = b"[" + b"0," * (LIMIT // 2) + b"0]"
    with bounded(megabytes=1):  # refused by its length: not a single element decoded
        err = rejected(raw)
    assert err.field == "(json)" and "above the limit" in err.reason


def test_unknown_label_keys_with_control_characters_are_named_printably() -> None:
    doc = good_doc()
    doc["labels"]["x\n\ud800"] = 1
    err = rejected(json.dumps(doc))
    assert err.field == 'labels["x\\n\\ud800"]'
    str(err).encode("utf-8")  # no lone surrogate in the message: a terminal can print it


# --- files in the data folder -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def good_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("good") / "ldos"
    write_dataset(folder, N_GOOD, 19, SPEC)
    return folder


@pytest.fixture
def folder(good_folder: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "ldos"
    shutil.copytree(good_folder, copy)
    return copy


def _fifo(folder: Path) -> str:
    os.mkfifo(folder / "fifo.json")
    return "fifo.json"


def _dev_zero(folder: Path) -> str:
    (folder / "zero.json").symlink_to("/dev/zero")
    return "zero.json"


def _outside(folder: Path) -> str:
    secret = folder.parent / "outside.json"
    secret.write_bytes(dumps(good_doc()))
    (folder / "outside.json").symlink_to(secret)
    return "outside.json"


def _loop(folder: Path) -> str:
    (folder / "loop.json").symlink_to(folder / "loop.json")
    return "loop.json"


def _oversized(folder: Path) -> str:
    with open(folder / "big.json", "wb") as f:
        f.truncate(LIMIT + 1)  # sparse: the size alone refuses it
    return "big.json"


def _subfolder(folder: Path) -> str:
    (folder / "sub.json").mkdir()
    return "sub.json"


def _unreadable(folder: Path) -> str:
    (folder / "locked.json").write_bytes(dumps(good_doc()))
    (folder / "locked.json").chmod(0)
    return "locked.json"


FILE_CASES: dict[str, tuple[Callable[[Path], str], str]] = {
    "fifo": (_fifo, "a FIFO, not a regular file: refused"),
    "dev-zero-link": (_dev_zero, "outside the data folder"),
    "link-outside": (_outside, "outside the data folder"),
    "link-loop": (_loop, "cannot read it"),
    "oversized": (_oversized, f"{LIMIT + 1} bytes, above the limit of {LIMIT}"),
    "subfolder": (_subfolder, "a folder, not a regular file"),
}


@pytest.mark.parametrize("case", list(FILE_CASES))
def test_read_ldo_file_refuses_special_files_and_escaping_links(case: str, tmp_path: Path) -> None:
    make, words = FILE_CASES[case]
    name = make(tmp_path)
    with within(5), bounded(megabytes=1), pytest.raises(LdoError) as info:
        read_ldo_file(tmp_path / name, SPEC, root=tmp_path)
    assert info.value.field == "(file)" and words in info.value.reason


def test_read_ldo_file_refuses_what_it_may_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = _unreadable(tmp_path)
    if os.access(tmp_path / name, os.R_OK):  # root reads a 0o000 file: have the kernel's answer said so
        real_open = os.open

        def refusing(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
            if Path(path) == tmp_path / name:
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", refusing)
    with pytest.raises(LdoError, match=r"cannot read it: Permission denied"):
        read_ldo_file(tmp_path / name, SPEC, root=tmp_path)


def test_links_inside_the_data_folder_are_read(tmp_path: Path) -> None:
    data = tmp_path / "real" / "ldos"
    data.mkdir(parents=True)
    (data / "a.json").write_bytes(dumps(good_doc()))
    (data / "b.json").symlink_to("a.json")
    (tmp_path / "alias").symlink_to(tmp_path / "real")  # the folder itself reached through a link
    root = tmp_path / "alias" / "ldos"
    assert read_ldo_file(root / "b.json", SPEC, root=root) == dumps(good_doc())


# --- the commands, on a folder of 300 good LDOs and one hostile one -----------------------------------------


def _write(name: str, raw: bytes) -> Callable[[Path], str]:
    def make(folder: Path) -> str:
        (folder / name).write_bytes(raw)
        return name

    return make


def _ldo_id_newline(folder: Path) -> str:
    doc = good_doc()
    doc["ldo_id"] = "x\n"
    (folder / "newline.json").write_bytes(dumps(doc))
    return "newline.json"


# (make the hostile file, field, words of the reason; run `data seed` on it too)
CLI_CASES: dict[str, tuple[Callable[[Path], str], str, str, bool]] = {
    "5000-digits": (
        _write("digits.json", raw_with("424242.0", HUGE, sample_doc())),
        "sensors.values[1][3]", "not a finite float32", False,
    ),
    "id-1e30": (
        _write("id.json", raw_with('"asset_id":77', f'"asset_id":{10**30}')),
        "context.asset_id", "int64", False,
    ),
    "year-1-plus-14": (
        _write("year1.json", raw_with("2026-11-01T08:00:00Z", "0001-01-01T00:00:00+14:00")),
        "created_at", "out of range", False,
    ),
    "ldo-id-newline": (_ldo_id_newline, "ldo_id", "not a valid id", True),
    "duplicate-key": (
        _write("dupkey.json", raw_with('"misalignment":1', '"misalignment":1,"misalignment":0')),
        "labels.misalignment", "duplicate key", False,
    ),
    "fifo": (_fifo, "(file)", "a FIFO", True),
    "dev-zero-link": (_dev_zero, "(file)", "outside the data folder", True),
    "link-outside": (_outside, "(file)", "outside the data folder", False),
    "oversized": (_oversized, "(file)", "above the limit", False),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_one_hostile_file_is_one_reject_in_validate_snapshot_and_seed(case: str, folder: Path) -> None:
    make, field, words, run_seed = CLI_CASES[case]
    name = make(folder)

    checked = edgeops("data", "validate", str(folder))
    no_traceback(checked)
    assert checked.returncode == 1
    assert f"{N_GOOD} valid, 1 invalid of {N_GOOD + 1} LDO files" in checked.stdout
    (line,) = [x for x in checked.stdout.splitlines() if x.startswith("INVALID")]
    assert f"{name}: {field}: " in line and words in line

    out = folder.parent / "snap"
    snap = edgeops("snapshot", "--source", "dir", "--data-path", str(folder), "--out", str(out))
    no_traceback(snap)
    assert snap.returncode == 0, snap.stderr
    assert "1 rejected" in snap.stderr
    rejects = json.loads((out / "rejects.json").read_text())
    (record,) = rejects["records"]
    assert record["where"].endswith(name) and record["field"] == field and words in record["reason"]
    index = (out / "index.tsv").read_text().splitlines()
    assert all(len(row.split("\t")) == 3 for row in index)  # an id with a newline would split a row
    assert len(index) - 1 == json.loads((out / "snapshot.json").read_text())["counts"]["rows"]

    if run_seed:  # validation comes first, so no server is needed to see that nothing is written
        seeded = edgeops("data", "seed", "--data-path", str(folder), "--pg", "postgresql://x@127.0.0.1:9/db",
                         "--s3", "s3://never-created/ldos")  # fmt: skip
        no_traceback(seeded)
        assert seeded.returncode == 1
        assert f"1 of {N_GOOD + 1} LDO files in {folder} are invalid; nothing was written" in seeded.stderr
        assert f"{name}: {field}: " in seeded.stderr


def test_a_special_file_named_on_the_command_line_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    checked = edgeops("data", "validate", str(tmp_path / "pipe"), timeout=60)
    no_traceback(checked)
    assert checked.returncode == 1 and "(file): a FIFO" in checked.stdout


def test_a_file_name_that_is_not_utf8_is_reported_not_a_crash(folder: Path) -> None:
    (folder / os.fsdecode(b"bad-\xff.json")).write_bytes(b"{")
    checked = edgeops("data", "validate", str(folder))
    no_traceback(checked)
    assert checked.returncode == 1 and "bad-\\udcff.json: (json): not valid JSON" in checked.stdout


def test_two_files_with_one_id_are_both_rejected_naming_each_other(folder: Path) -> None:
    """Labels may contradict: keeping either copy would let a file name decide what the model learns."""
    first = sorted(folder.glob("*.json"))[7]
    doc = json.loads(first.read_bytes())
    doc["labels"] = {k: 1 - v for k, v in doc["labels"].items()}
    doc["validated"] = True
    second = folder / "zz-copy.json"
    second.write_bytes(dumps(doc))

    checked = edgeops("data", "validate", str(folder))
    no_traceback(checked)
    assert checked.returncode == 1
    assert f"{N_GOOD - 1} valid, 2 invalid of {N_GOOD + 1}" in checked.stdout
    assert f"INVALID {first}: ldo_id: duplicate id {doc['ldo_id']!r}: also in {second}" in checked.stdout
    assert f"INVALID {second}: ldo_id: duplicate id {doc['ldo_id']!r}: also in {first}" in checked.stdout

    out = folder.parent / "snap"
    report = build_snapshot(DirSource(folder), out, SPEC, SnapshotOptions(limit=10_000))
    rejects = json.loads((out / "rejects.json").read_text())["records"]
    assert report.rejected == 2
    assert {(r["where"], r["field"]) for r in rejects} == {(str(first), "ldo_id"), (str(second), "ldo_id")}
    assert all("duplicate id" in r["reason"] for r in rejects)
    assert str(second) in rejects[0]["reason"] + rejects[1]["reason"]
    assert doc["ldo_id"] not in (out / "index.tsv").read_text()


def test_seed_refuses_the_folder_before_writing_anything(
    folder: Path, pg_dsn: str, s3_bucket: str, s3_env: S3Endpoint
) -> None:
    """The finding: an id ending in a newline passed, and the seed failed half-way with objects unindexed."""
    _ldo_id_newline(folder)
    seeded = edgeops(
        "data", "seed", "--data-path", str(folder), "--pg", pg_dsn, "--s3", f"s3://{s3_bucket}/ldos"
    )
    no_traceback(seeded)
    assert seeded.returncode == 1 and "nothing was written" in seeded.stderr
    assert s3_bucket not in [b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]]
    with psycopg2.connect(pg_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('ldos')")
        assert cur.fetchone() == (None,)


# --- PostgreSQL + S3 ----------------------------------------------------------------------------------------


def test_hostile_objects_in_the_store_are_rejects_of_a_pg_s3_snapshot(
    tmp_path: Path, pg_dsn: str, s3_bucket: str, s3_env: S3Endpoint
) -> None:
    data = tmp_path / "ldos"
    write_dataset(data, N_GOOD, 23, SPEC)
    uri = f"s3://{s3_bucket}/ldos"
    seed(data, SPEC, dsn=pg_dsn, s3_uri=uri, workers=8)
    hostile = {
        "hostile-digits": (raw_with("424242.0", HUGE, sample_doc()), "sensors.values[1][3]"),
        "hostile-id": (raw_with('"asset_id":77', f'"asset_id":{10**30}'), "context.asset_id"),
        "hostile-year1": (raw_with("2026-11-01T08:00:00Z", "0001-01-01T00:00:00+14:00"), "created_at"),
        "hostile-big": (b" " * (LIMIT + 1), "(object)"),
    }
    s3 = boto3.client("s3")
    with psycopg2.connect(pg_dsn) as conn, conn.cursor() as cur:
        for ldo_id, (raw, _) in hostile.items():
            body = raw.replace(b'"ldo-20261101-000123"', json.dumps(ldo_id).encode())
            key = f"ldos/2026/11/01/{ldo_id}.json"
            etag = s3.put_object(Bucket=s3_bucket, Key=key, Body=body)["ETag"].strip('"')
            cur.execute(
                "INSERT INTO ldos VALUES (%s, '2027-01-01T00:00:00Z', true, 'edge-001', %s, %s)",
                (ldo_id, key, etag),
            )  # what a broken backend indexes

    out = tmp_path / "snap"
    argv = ["snapshot", "--source", "pg+s3", "--pg", pg_dsn, "--s3", uri, "--cache", str(tmp_path / "c"),
            "--out", str(out), "--max-reject-fraction", "0.02"]  # fmt: skip
    snap = edgeops(*argv)
    no_traceback(snap)
    assert snap.returncode == 0, snap.stderr
    records = {r["ldo_id"]: r for r in json.loads((out / "rejects.json").read_text())["records"]}
    assert {i: r["field"] for i, r in records.items()} == {i: f for i, (_, f) in hostile.items()}
    assert "above the limit" in records["hostile-big"]["reason"]
    # A second run reads the same rejects from the cache: nothing hostile was cached as parsed.
    again = edgeops(*argv)
    no_traceback(again)
    assert again.returncode == 0 and "4 rejected" in again.stderr


def _terminate_other_backends(dsn: str) -> None:
    """What a database restart or a failover does to every open session."""
    admin = psycopg2.connect(dsn)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    admin.close()


def test_postgres_dying_mid_seed_is_a_service_error_and_a_rerun_completes(
    tmp_path: Path, pg_dsn: str, s3_bucket: str, s3_env: S3Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "ldos"
    write_dataset(data, 40, 8, SPEC)
    uri = f"s3://{s3_bucket}/ldos"
    dsn = psycopg2.extensions.make_dsn(pg_dsn, password="Hostile-S3cr3t")  # trust auth: ignored, never shown
    upload = seed_module._upload

    def upload_then_die(*args: Any) -> None:
        upload(*args)
        _terminate_other_backends(pg_dsn)  # between the uploads and the index

    monkeypatch.setattr(seed_module, "_upload", upload_then_die)
    with pytest.raises(ServiceError) as info:
        seed(data, SPEC, dsn=dsn, s3_uri=uri, workers=4)
    message = str(info.value)
    where = psycopg2.extensions.parse_dsn(pg_dsn)
    assert f"PostgreSQL at {where['host']}:{where['port']}/{where['dbname']}" in message
    assert "connection" in message and "lost while writing the ldos index" in message
    assert "run the same command again" in message and "S3cr3t" not in message
    with psycopg2.connect(pg_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM ldos")
        assert cur.fetchone() == (0,)  # the index names nothing yet; the objects wait in the bucket

    monkeypatch.setattr(seed_module, "_upload", upload)  # (undo() would drop s3_env's variables too)
    again = seed(data, SPEC, dsn=dsn, s3_uri=uri, workers=4)  # what the message promises
    assert (again.new, again.uploaded) == (40, 0)


def test_postgres_dying_mid_snapshot_is_a_service_error_and_a_rerun_uses_the_cache(
    tmp_path: Path, pg_dsn: str, s3_bucket: str, s3_env: S3Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "ldos"
    write_dataset(data, 120, 9, SPEC)
    uri = f"s3://{s3_bucket}/ldos"
    seed(data, SPEC, dsn=pg_dsn, s3_uri=uri, workers=8)
    dsn = psycopg2.extensions.make_dsn(pg_dsn, password="Hostile-S3cr3t")
    cache = LdoCache(tmp_path / "cache")
    source = PgS3Source(dsn=dsn, s3_uri=uri, cache=cache, workers=2)
    source.itersize = 20  # the stream needs the server again after 20 rows
    download = source._download
    died = threading.Event()

    def die_then_download(*args: Any) -> Any:
        if not died.is_set():
            died.set()
            _terminate_other_backends(pg_dsn)
        return download(*args)

    monkeypatch.setattr(source, "_download", die_then_download)
    out = tmp_path / "snap"
    with pytest.raises(ServiceError) as info:
        build_snapshot(source, out, SPEC, SnapshotOptions(limit=10_000))
    message = str(info.value)
    where = psycopg2.extensions.parse_dsn(pg_dsn)
    assert f"PostgreSQL at {where['host']}:{where['port']}/{where['dbname']}" in message
    assert "connection was lost mid-stream" in message and "Run the same command again" in message
    assert "S3cr3t" not in message
    assert not out.exists()

    again = PgS3Source(dsn=dsn, s3_uri=uri, cache=cache, workers=4)
    report = build_snapshot(again, out, SPEC, SnapshotOptions(limit=10_000))
    assert report.cached >= 1 and report.cached + report.downloaded == again.stats.indexed


# --- numeric options ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["snapshot", "--out", "x", "--max-reject-fraction", "nan"], "finite number between 0 and 1"),
        (["snapshot", "--out", "x", "--max-reject-fraction", "inf"], "finite number between 0 and 1"),
        (["snapshot", "--out", "x", "--max-reject-fraction", "-0.1"], "finite number between 0 and 1"),
        (["snapshot", "--out", "x", "--max-reject-fraction", "1.5"], "finite number between 0 and 1"),
        (["snapshot", "--out", "x", "--max-reject-fraction", "lots"], "expected a number between 0 and 1"),
        (["snapshot", "--out", "x", "--limit", "-5"], "must be at least 1"),
        (["snapshot", "--out", "x", "--limit", str(2**63)], f"must be at most {2**63 - 1}"),
        (["snapshot", "--out", "x", "--workers", "100000"], "must be at most 256"),
        (["data", "seed", "--workers", "0"], "must be at least 1"),
        (["data", "seed", "--workers", "1000"], "must be at most 256"),
        (["data", "synth", "--n", "5", "--seed", "-1"], "must be at least 0"),
        (["data", "synth", "--n", str(10**12)], "must be at most"),
        (["data", "synth", "--n", HUGE], "expected an integer"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_numeric_options_are_validated(argv: list[str], words: str) -> None:
    result = edgeops(*argv)
    no_traceback(result)
    assert result.returncode == 2 and words in result.stderr, result.stderr


@pytest.mark.parametrize("value", [math.nan, math.inf, -0.5, 2.0])
def test_a_snapshot_refuses_a_threshold_that_would_disable_it(value: float, tmp_path: Path) -> None:
    with pytest.raises(EdgeopsError, match="max_reject_fraction must be a finite number between 0 and 1"):
        build_snapshot(DirSource(tmp_path), tmp_path / "s", SPEC, SnapshotOptions(max_reject_fraction=value))
    with pytest.raises(ValidationError):
        DataConfig(max_reject_fraction=value)


# --- property-based: whatever the record holds, parse_ldo answers an Ldo or an LdoError ---------------------


def assert_storable(ldo: Ldo) -> None:
    """What a snapshot writes from an accepted record: none of it may fail or be lost."""
    assert ldo.sensors.dtype == np.float32 and ldo.sensors.shape == (len(SPEC.channels), SPEC.window)
    assert np.isfinite(ldo.sensors).all()
    for value in (ldo.product_id, ldo.recipe_id, ldo.asset_id):
        assert type(value) is int and 0 <= value <= INT64_MAX
    assert ldo.created_at.utcoffset() is not None
    micros = (ldo.created_at.astimezone(UTC) - EPOCH) // timedelta(microseconds=1)
    assert -(2**63) <= micros < 2**63
    assert LDO_ID_PATTERN.fullmatch(ldo.ldo_id)
    assert ldo.device_id is None or "\x00" not in ldo.device_id
    if ldo.device_id is not None:
        ldo.device_id.encode("utf-8")
    assert len(ldo.labels) == len(SPEC.labels) and set(ldo.labels) <= {0, 1}
    assert type(ldo.validated) is bool


def check(raw: bytes | str) -> None:
    """The property: an Ldo a snapshot can store, or an LdoError that names a field and prints."""
    try:
        ldo = parse_ldo(raw, SPEC, source="prop.json")
    except LdoError as exc:
        assert exc.field and exc.reason
        str(exc).encode("utf-8", "backslashreplace")
        return
    assert_storable(ldo)


class Raw:
    """A literal to splice into the JSON text as is (what json.dumps cannot write: 5,000 digits)."""

    def __init__(self, text: str) -> None:
        self.text = text


def serialise(doc: Any) -> str:
    raws: list[str] = []

    def mark(value: Any) -> Any:
        if isinstance(value, Raw):
            raws.append(value.text)
            return f"\x00RAW{len(raws) - 1}\x00"
        raise TypeError(type(value).__name__)

    text = json.dumps(doc, default=mark)  # allow_nan: NaN and Infinity tokens, as a broken writer emits
    for i, literal in enumerate(raws):
        text = text.replace(f'"\\u0000RAW{i}\\u0000"', literal)
    return text


# Strategies weighted toward where a snapshot breaks (an unweighted draw almost never writes 10^30 or year 1
# at +14:00 in 60 examples): integer literals Python will not convert, ids at and beyond int64, samples at
# and beyond float32, timestamps at the edges of UTC, ids with a newline, text PostgreSQL cannot store.
ends = st.one_of(st.just(""), st.just(""), st.sampled_from([".5", ".0000001", "." + "3" * 500]))
exponents = st.one_of(
    st.just(""), st.just(""), st.sampled_from(["e38", "E39", "e-46", "e308", "e309", "e-400", "e+99999"])
)
numeric_literals = st.builds(
    lambda sign, digits, frac, exp: f"{sign}{digits}{frac}{exp}",
    st.sampled_from(["", "-"]),
    st.one_of(
        st.sampled_from(["9" * 39, "1" + "0" * 30, "1" + "0" * 308, "1" + "0" * 400, "7" * 4301, HUGE]),
        st.sampled_from(
            [str(2**63 - 1), str(2**63), str(2**64), "0", "1", "340282356779733661637539395458142568448"]
        ),
        st.integers(0, 10**20).map(str),
    ),
    ends,
    exponents,
)
edge_instants = st.builds(
    lambda when, offset: when.replace(tzinfo=timezone(timedelta(seconds=offset))).isoformat(),
    st.one_of(
        st.datetimes(max_value=datetime(1, 1, 2)),
        st.datetimes(min_value=datetime(9999, 12, 30)),
        st.datetimes(),
    ),
    st.one_of(st.sampled_from([50400, -50400, 86399, -86399, 0]), st.integers(-86399, 86399)),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([2**63 - 1, 2**63, 10**30, -1, 0, 1, 2]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([3.4028234663852886e38, 3.5e38, 1e39, -1e39, 1e-46, 5e-324, 1e308]),
    st.text(max_size=20),
    st.text(alphabet="ab09._-/\n\r\x00\u2028\ud800", max_size=8),
    edge_instants,
    st.sampled_from(["2026-11-01T08:00:00", "2026-11-01T08:00:00Z", "x\n", "edge\x00", "\ud800", ""]),
    numeric_literals.map(Raw),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=8,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list) and prefix[-1] == "values":
        for c in range(len(node)):
            out += [(*prefix, c), (*prefix, c, 0), (*prefix, c, SPEC.window - 1)]
    return out


PATHS = [*_paths(good_doc()), ("extra",), ("context", "extra"), ("labels", "extra")]


def _put(doc: Any, path: tuple[Any, ...], value: Any, delete: bool) -> None:
    target = doc
    for step in path[:-1]:
        found = (isinstance(target, dict) and step in target) or (
            isinstance(target, list) and isinstance(step, int) and step < len(target)
        )
        if not found:
            return  # an earlier edit replaced a parent: nothing to put here
        target = target[step]
    last = path[-1]
    if isinstance(target, dict) or (
        isinstance(target, list) and isinstance(last, int) and last < len(target)
    ):
        if delete and isinstance(target, dict):
            target.pop(last, None)
        else:
            target[last] = value


@given(edits=st.lists(st.tuples(st.sampled_from(PATHS), json_values, st.booleans()), min_size=1, max_size=4))
def test_property_any_value_anywhere(edits: list[tuple[tuple[Any, ...], Any, bool]]) -> None:
    doc = good_doc()
    for path, value, delete in edits:
        _put(doc, path, value, delete and not isinstance(value, Raw))
    with bounded():
        check(serialise(doc))


FIELDS = [
    ("ldo_id",),
    ("created_at",),
    ("device_id",),
    ("context", "asset_id"),
    ("sensors", "sample_rate_hz"),
    ("sensors", "values", 2, 0),
    ("labels", "overheating"),
    ("validated",),
]


@pytest.mark.parametrize("path", FIELDS, ids=lambda p: ".".join(map(str, p)))
@given(value=json_scalars)
def test_property_any_value_in_each_field(path: tuple[Any, ...], value: Any) -> None:
    doc = good_doc()
    _put(doc, path, value, delete=False)
    with bounded():
        check(serialise(doc))


@given(literal=numeric_literals, path=st.sampled_from([p for p in PATHS if p[0] in ("context", "sensors")]))
def test_property_any_numeric_literal_in_a_numeric_field(literal: str, path: tuple[Any, ...]) -> None:
    doc = good_doc()
    _put(doc, path, Raw(literal), delete=False)
    with bounded():
        check(serialise(doc))


@given(stamp=edge_instants, naive=st.booleans())
def test_property_any_timestamp(stamp: str, naive: bool) -> None:
    doc = good_doc()
    doc["created_at"] = stamp[: len("0001-01-01T00:00:00")] if naive else stamp
    check(dumps(doc))


@given(
    position=st.integers(0, 10_000),
    cut=st.integers(0, 40),
    insert=st.text(alphabet='{}[]",:0123456789eE.-+ \\ntrufalsNI\x00\ud800', max_size=30),
)
def test_property_spliced_json_text(position: int, cut: int, insert: str) -> None:
    text = dumps(sample_doc()).decode()
    position %= len(text) + 1
    with bounded():
        check(text[:position] + insert + text[position + cut :])


@given(raw=st.binary(max_size=4096))
def test_property_random_bytes(raw: bytes) -> None:
    with bounded():
        check(raw)


@given(
    path=st.sampled_from([p for p in PATHS if isinstance(p[-1], str) and p[-1] != "extra"]), value=json_values
)
def test_property_a_repeated_key_is_always_a_reject(path: tuple[str, ...], value: Any) -> None:
    doc = good_doc()
    text = serialise(doc)
    key = json.dumps(path[-1])
    # The key again, right after its first occurrence in its own object (the first match is that object's).
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    anchor = f"{key}: {serialise(parent[path[-1]])}"
    assert anchor in text
    text = text.replace(anchor, f"{anchor}, {key}: {serialise(value)}", 1)
    with bounded():
        err = rejected(text)
    assert err.field == ".".join(path) and "duplicate key" in err.reason
