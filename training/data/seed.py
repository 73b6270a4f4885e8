"""Load a folder of LDO JSON files into PostgreSQL + S3 the way the runtime backend stores them.

    edgeops data seed --data-path data/ldos --pg postgresql://user@host/db --s3 s3://context-edge-ldos/ldos

Objects go to ``<prefix>/<yyyy>/<mm>/<dd>/<ldo_id>.json`` and the ``ldos`` index (DESIGN.md) names each
object's key and ETag. The run is idempotent and ordered so that the index never points at a missing object:

1. every file is read and validated first; one bad file stops the run before anything is written (what
   is validated is everything the later steps write: the id and date that make the S3 key, the index row's
   values, so no record can fail half-way through the uploads or the index);
2. objects whose key is missing in the bucket or whose ETag differs are uploaded, concurrently;
3. index rows that are missing or differ are upserted in a single transaction.

A run that fails in step 2 or 3 (the store or the database went away) leaves some new objects that nothing
references yet; the next run sees them, skips their upload and finishes the index. The failure says so.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2.extras import execute_values

from tools.core.errors import EdgeopsError, LdoError, ServiceError
from tools.core.log import fields
from tools.core.pg import connect, describe_dsn
from tools.core.progress import Progress
from tools.core.s3 import ensure_bucket, parse_s3_uri, s3_client, s3_errors
from training.config import DataSpec
from training.data.ldo import parse_ldo, read_ldo_file

__all__ = ["LDOS_DDL", "SeedReport", "ensure_ldos_table", "seed"]

log = logging.getLogger("edgeops.data.seed")

# The runtime backend's index (DESIGN.md, "LDO v1"), plus the index its snapshot query needs.
LDOS_DDL = """
CREATE TABLE IF NOT EXISTS ldos (
    ldo_id     text PRIMARY KEY,
    created_at timestamptz NOT NULL,
    validated  boolean NOT NULL,
    device_id  text,
    s3_key     text NOT NULL,
    etag       text
);
CREATE INDEX IF NOT EXISTS ldos_validated_created_at ON ldos (created_at DESC) WHERE validated;
"""

_MAX_LISTED_PROBLEMS = 10


@dataclass(frozen=True)
class _Entry:
    path: Path
    ldo_id: str
    created_at: datetime
    validated: bool
    device_id: str | None
    key: str
    etag: str  # md5 hex: what S3 returns as the ETag of a single-part PUT
    size: int

    def row(self) -> tuple[Any, ...]:
        return (self.ldo_id, self.created_at, self.validated, self.device_id, self.key, self.etag)


@dataclass(frozen=True)
class SeedReport:
    total: int
    new: int
    updated: int
    unchanged: int
    uploaded: int
    bucket_created: bool
    s3: str
    pg: str

    @property
    def changed(self) -> bool:
        return self.new + self.updated > 0 or self.uploaded > 0

    def summary(self) -> str:
        if not self.changed:
            return (
                f"nothing to do: all {self.total} LDOs are already in {self.s3} and the index at {self.pg} "
                "(unchanged)"
            )
        return (
            f"seeded {self.total} LDOs into {self.s3} + {self.pg}: {self.new} new, {self.updated} updated, "
            f"{self.unchanged} unchanged ({self.uploaded} objects uploaded)"
        )


def ensure_ldos_table(conn: Any) -> None:
    with conn, conn.cursor() as cur:
        cur.execute(LDOS_DDL)


def _scan(data_path: Path, spec: DataSpec, prefix_key: Callable[[str, datetime], str]) -> list[_Entry]:
    if not data_path.is_dir():
        raise EdgeopsError(f"{data_path}: no such folder of LDO files (make one with `edgeops data synth`)")
    files = sorted(data_path.glob("*.json"))
    if not files:
        raise EdgeopsError(f"{data_path}: no *.json LDO files in this folder")
    entries: list[_Entry] = []
    problems: list[str] = []
    seen: dict[str, Path] = {}
    with Progress(len(files), "validating LDO files") as progress:
        for path in files:
            try:
                raw = read_ldo_file(path, spec, root=data_path, source=path.name)
                progress.update(1, len(raw))
                ldo = parse_ldo(raw, spec, source=path.name)
            except LdoError as exc:
                progress.update(1)
                problems.append(str(exc))
                continue
            if ldo.ldo_id in seen:
                problems.append(
                    f"{path.name}: ldo_id: {ldo.ldo_id!r} is also the id in {seen[ldo.ldo_id].name}"
                )
                continue
            seen[ldo.ldo_id] = path
            entries.append(
                _Entry(
                    path=path,
                    ldo_id=ldo.ldo_id,
                    created_at=ldo.created_at,
                    validated=ldo.validated,
                    device_id=ldo.device_id,
                    key=prefix_key(ldo.ldo_id, ldo.created_at),
                    etag=hashlib.md5(raw, usedforsecurity=False).hexdigest(),
                    size=len(raw),
                )
            )
    if problems:
        shown = "\n  ".join(problems[:_MAX_LISTED_PROBLEMS])
        more = len(problems) - _MAX_LISTED_PROBLEMS
        tail = f"\n  ... and {more} more" if more > 0 else ""
        raise EdgeopsError(
            f"{len(problems)} of {len(files)} LDO files in {data_path} are invalid; nothing was written. "
            f"Fix or remove them and run again:\n  {shown}{tail}"
        )
    return entries


def seed(
    data_path: Path,
    spec: DataSpec,
    *,
    dsn: str | None,
    s3_uri: str,
    workers: int = 16,
) -> SeedReport:
    uri = parse_s3_uri(s3_uri)

    def key_for(ldo_id: str, created_at: datetime) -> str:
        return uri.key(created_at.strftime("%Y/%m/%d"), f"{ldo_id}.json")

    entries = _scan(data_path, spec, key_for)
    log.info("validated LDO files", extra=fields(count=len(entries), folder=str(data_path)))

    conn = connect(dsn)
    where_pg = describe_dsn(conn.dsn)
    step = "creating the ldos table"
    try:
        ensure_ldos_table(conn)
        step = "reading the ldos index"
        with conn.cursor() as cur:
            cur.execute(
                "SELECT ldo_id, created_at, validated, device_id, s3_key, etag FROM ldos "
                "WHERE ldo_id = ANY(%s)",
                ([e.ldo_id for e in entries],),
            )
            indexed = {row[0]: tuple(row) for row in cur.fetchall()}
        conn.commit()

        client = s3_client(max_pool_connections=workers, md5_verified=True)
        with s3_errors(f"preparing bucket {uri.bucket}"):
            created = ensure_bucket(client, uri.bucket)
        if created:
            log.info("created bucket (it did not exist)", extra=fields(bucket=uri.bucket))
        stored: dict[str, str] = {}
        with s3_errors(f"listing {uri}"):
            paginator = client.get_paginator("list_objects_v2")
            list_prefix = f"{uri.prefix}/" if uri.prefix else ""
            for page in paginator.paginate(Bucket=uri.bucket, Prefix=list_prefix):
                for obj in page.get("Contents", []):
                    stored[obj["Key"]] = obj.get("ETag", "").strip('"')

        to_upload = [e for e in entries if stored.get(e.key) != e.etag]
        if to_upload:
            _upload(client, uri.bucket, to_upload, workers, lambda p: read_ldo_file(p, spec, root=data_path))

        step = "writing the ldos index"
        to_index = [e for e in entries if indexed.get(e.ldo_id) != e.row()]
        if to_index:
            with conn, conn.cursor() as cur:
                execute_values(
                    cur,
                    "INSERT INTO ldos (ldo_id, created_at, validated, device_id, s3_key, etag) VALUES %s "
                    "ON CONFLICT (ldo_id) DO UPDATE SET created_at = EXCLUDED.created_at, "
                    "validated = EXCLUDED.validated, device_id = EXCLUDED.device_id, "
                    "s3_key = EXCLUDED.s3_key, etag = EXCLUDED.etag",
                    [e.row() for e in to_index],
                    page_size=1000,
                )
    except psycopg2.Error as exc:
        raise _pg_failed(exc, where_pg, step, lost=bool(conn.closed)) from None
    finally:
        conn.close()

    uploaded_ids = {e.ldo_id for e in to_upload}
    changed_ids = uploaded_ids | {e.ldo_id for e in to_index}
    new = sum(1 for e in entries if e.ldo_id not in indexed)
    updated = sum(1 for e in entries if e.ldo_id in indexed and e.ldo_id in changed_ids)
    return SeedReport(
        total=len(entries),
        new=new,
        updated=updated,
        unchanged=len(entries) - new - updated,
        uploaded=len(to_upload),
        bucket_created=created,
        s3=str(uri),
        pg=where_pg,
    )


def _pg_failed(exc: psycopg2.Error, where: str, step: str, *, lost: bool) -> ServiceError:
    """What to tell the user when PostgreSQL fails mid-seed: where, what, and that a rerun completes it."""
    cause: BaseException = exc
    while isinstance(cause.__context__, psycopg2.Error):  # `with conn`'s rollback fails after the real error
        cause = cause.__context__
    lines = str(cause).strip().splitlines()
    first = lines[0] if lines else type(cause).__name__
    if lost:  # psycopg2 marks the connection closed when the server or the network went away
        what = f"the connection to PostgreSQL at {where} was lost while {step}: {first}"
    else:
        what = f"PostgreSQL at {where} failed while {step}: {first}"
    return ServiceError(
        f"{what}. The index is written in one transaction after the uploads, so it names no object that is "
        "not in the bucket; objects already uploaded stay there unreferenced. Seeding is idempotent: run the "
        "same command again once the database answers; it skips those uploads and completes the index."
    )


def _upload(
    client: Any, bucket: str, entries: list[_Entry], workers: int, read: Callable[[Path], bytes]
) -> None:
    def put(entry: _Entry) -> int:
        try:
            body = read(entry.path)
        except LdoError as exc:
            raise EdgeopsError(
                f"{entry.path}: the file changed while seeding ({exc.reason}); run again"
            ) from None
        if hashlib.md5(body, usedforsecurity=False).hexdigest() != entry.etag:
            raise EdgeopsError(f"{entry.path}: the file changed while seeding; run again")
        with s3_errors(f"uploading {entry.path.name} to s3://{bucket}/{entry.key}"):
            resp = client.put_object(Bucket=bucket, Key=entry.key, Body=body, ContentType="application/json")
        etag = resp.get("ETag", "").strip('"')
        if etag and etag != entry.etag:
            raise ServiceError(
                f"s3://{bucket}/{entry.key}: the store returned ETag {etag}, expected {entry.etag}; the "
                "upload was corrupted or the store does not use MD5 ETags"
            )
        return len(body)

    with Progress(len(entries), "uploading LDOs") as progress, ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(put, e) for e in entries]
        try:
            for fut in as_completed(futures):
                progress.update(1, fut.result())
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
