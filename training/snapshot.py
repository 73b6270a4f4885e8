"""Dataset snapshots: "the newest N validated LDOs" as a reproducible, training-ready folder.

    edgeops snapshot --source pg+s3 --pg DSN --s3 s3://context-edge-ldos/ldos --limit 100000 --out snap/
    edgeops snapshot --source dir --data-path .edgeops/data/ldos --out snap/

What a snapshot folder holds:

- ``tensors.safetensors``: ``sensors`` float32 (N, C, T), ``product_id`` / ``recipe_id`` / ``asset_id`` int64
  (N,) raw ids, ``labels`` uint8 (N, L), ``split`` uint8 (N,) (0 train, 1 val, 2 test), ``created_at`` int64
  (N,) microseconds since the epoch. Rows are sorted by ``ldo_id``. No pickle anywhere.
- ``index.tsv``: ``ldo_id``, ``etag``, ``split`` per row, in row order.
- ``snapshot.json``: the fingerprint (sha256 over the sorted ``(ldo_id, etag)`` list of the rows), counts,
  reject summary, vocabularies, source, config and the tensor file's digest.
- ``rejects.json``: every rejected record with the field and reason, and counts by field.

Same inputs give a byte-identical folder: nothing in it depends on time, order of arrival or the cache.

How the pg+s3 source stays fast: the index query is streamed through a server-side cursor; objects are
fetched by a bounded thread pool (botocore's connection pool sized to match) into a content-addressed local
cache keyed by ETag, so a second month downloads only what is new or changed. A cache entry is written to a
temp file, fsynced and renamed, so an interrupted download never becomes an entry, and its MD5 is checked on
every read. Throttling and transient errors are retried by botocore's standard retry mode; a store or
database that stays down fails the run with a clear error and leaves ``--out`` untouched (the folder is
built beside it and renamed into place only when complete).

Hostile input is a reject of one record, never the end of the run: whatever :func:`parse_ldo` refuses, an
object above :func:`max_ldo_bytes`, and in a folder special files, symbolic links leading out of it, and
ids that more than one file claims (every copy is rejected: their labels may disagree, and picking one
would make the snapshot depend on file names).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import queue
import re
import shutil
import struct
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg2
from botocore.exceptions import ClientError

from tools.core.errors import EdgeopsError, LdoError, ServiceError
from tools.core.fsutil import fsync_path, replace_folder, sha256_file, write_atomic
from tools.core.log import fields
from tools.core.pg import connect, describe_dsn
from tools.core.progress import Progress
from tools.core.s3 import parse_s3_uri, s3_client, s3_errors
from training.config import DataSpec
from training.data.ldo import INT64_MAX, Ldo, max_ldo_bytes, parse_ldo, read_ldo_file

__all__ = [
    "INDEX_QUERY",
    "DirSource",
    "LdoCache",
    "PgS3Source",
    "SnapshotOptions",
    "SnapshotReport",
    "build_snapshot",
    "split_of",
]

log = logging.getLogger("edgeops.snapshot")

FORMAT = "edgeops-snapshot/v1"
SPLITS = ("train", "val", "test")
# DESIGN.md's seed query, with ldo_id as a tie-break so equal timestamps cannot reorder the selection.
INDEX_QUERY = (
    "SELECT ldo_id, s3_key, etag, created_at FROM ldos WHERE validated "
    "ORDER BY created_at DESC, ldo_id LIMIT %s"
)
_MD5_ETAG = re.compile(r"^[0-9a-f]{32}$")  # single-part uploads; multipart ETags carry a "-N" suffix
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- splits -----------------------------------------------------------------------------------------------


def split_of(ldo_id: str, val_fraction: float, test_fraction: float) -> int:
    """0 train, 1 val, 2 test, from a hash of the id alone: an LDO never changes split between months."""
    h = int.from_bytes(hashlib.sha256(ldo_id.encode("utf-8")).digest()[:8], "big") / 2.0**64
    if h < test_fraction:
        return 2
    if h < test_fraction + val_fraction:
        return 1
    return 0


# --- the cache --------------------------------------------------------------------------------------------


class LdoCache:
    """Content-addressed store of LDO objects, keyed by ETag.

    ``<root>/<etag[:2]>/<etag>.json`` holds the raw object, renamed into place whole. Under an MD5 ETag (a
    single-part upload) every read checks the bytes against it, so a file a power cut left torn is found and
    fetched again: those are written without fsync (two fsyncs per object were a fifth of a cold snapshot's
    time). Under any other ETag nothing can check the bytes, so they are fsynced before the rename.
    ``<etag>.<spec>.rec`` holds the same record already parsed and validated against a
    data interface (``spec``: a digest of channels, window, rate and labels), so that a warm run skips JSON
    parsing. It is derived data: written without fsync, checked by length and CRC-32 on every read, and
    rebuilt from the raw object when anything is off.
    """

    # Version 2: records are validated by stricter rules (int64 ids, UTC-representable timestamps, no
    # duplicate keys); a record parsed by the older ones is parsed again from the raw object.
    _MAGIC = b"LDOREC2\n"
    _HEAD = struct.Struct("<4sqqqqB")  # crc-placeholder, product, recipe, asset, created_at µs, validated

    def __init__(self, root: Path) -> None:
        self.root = root
        self._made: set[Path] = set()  # shard folders known to exist (one mkdir per folder, not per object)

    def contents(self, spec: DataSpec) -> tuple[set[str], set[str]]:
        """The ETags the cache holds (raw objects, records parsed for ``spec``), from one listing.

        The snapshot's producer thread asks this once instead of probing two paths per row: a failed
        ``open`` releases and retakes the GIL, and with 32 download threads running each retake waits its
        turn, which held a cold snapshot to one object per ~7 ms. The listing may go stale (a file removed
        or torn since); ``get`` and ``get_parsed`` still check what they read and answer None then.
        """
        raw: set[str] = set()
        parsed: set[str] = set()
        rec_suffix = f".{self.spec_key(spec)}.rec"
        try:
            shards = [e for e in os.scandir(self.root) if e.is_dir(follow_symlinks=False)]
        except FileNotFoundError:
            return raw, parsed
        for shard in shards:
            self._made.add(Path(shard.path))
            for entry in os.scandir(shard.path):
                name = entry.name
                if name.endswith(".json"):
                    raw.add(name[: -len(".json")])
                elif name.endswith(rec_suffix):
                    parsed.add(name[: -len(rec_suffix)])
        return raw, parsed

    def path(self, etag: str) -> Path:
        if not re.fullmatch(r"[0-9A-Za-z-]{8,80}", etag):
            raise ValueError(f"not a usable cache key: {etag!r}")
        return self.root / etag[:2] / f"{etag}.json"

    def get(self, etag: str) -> bytes | None:
        try:
            data = self.path(etag).read_bytes()
        except FileNotFoundError:
            return None
        if _MD5_ETAG.match(etag) and hashlib.md5(data, usedforsecurity=False).hexdigest() != etag:
            log.warning("cache entry is corrupt; fetching again", extra=fields(etag=etag))
            self.path(etag).unlink(missing_ok=True)
            return None
        return data

    @staticmethod
    @functools.cache
    def spec_key(spec: DataSpec) -> str:
        text = json.dumps([list(spec.channels), spec.window, spec.sample_rate_hz, list(spec.labels)])
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def _rec_path(self, etag: str, spec: DataSpec) -> Path:
        return self.path(etag).with_suffix(f".{self.spec_key(spec)}.rec")

    def get_parsed(self, etag: str, spec: DataSpec) -> Ldo | None:
        try:
            blob = self._rec_path(etag, spec).read_bytes()
        except FileNotFoundError:
            return None
        try:
            return self._decode(blob, spec)
        except (ValueError, struct.error, UnicodeDecodeError):
            self._rec_path(etag, spec).unlink(missing_ok=True)
            return None

    def put_parsed(self, etag: str, spec: DataSpec, ldo: Ldo) -> None:
        write_atomic(self._rec_path(etag, spec), self._encode(ldo), durable=False)  # derived: no fsync

    def _encode(self, ldo: Ldo) -> bytes:
        text = json.dumps([ldo.ldo_id, ldo.created_at.isoformat(), ldo.device_id]).encode()
        body = (
            self._HEAD.pack(b"\0\0\0\0", ldo.product_id, ldo.recipe_id, ldo.asset_id,
                            _micros(ldo.created_at), ldo.validated)
            + bytes(ldo.labels)
            + struct.pack("<I", len(text))
            + text
            + np.ascontiguousarray(ldo.sensors, dtype="<f4").tobytes()
        )  # fmt: skip
        return self._MAGIC + struct.pack("<I", zlib.crc32(body)) + body

    def _decode(self, blob: bytes, spec: DataSpec) -> Ldo:
        magic_len = len(self._MAGIC)
        if blob[:magic_len] != self._MAGIC:
            raise ValueError("bad magic")
        (crc,) = struct.unpack_from("<I", blob, magic_len)
        body = memoryview(blob)[magic_len + 4 :]
        if zlib.crc32(body) != crc:
            raise ValueError("crc mismatch")
        _, product, recipe, asset, _micro, validated = self._HEAD.unpack_from(body, 0)
        off = self._HEAD.size
        n_labels = len(spec.labels)
        labels = tuple(body[off : off + n_labels])
        off += n_labels
        (text_len,) = struct.unpack_from("<I", body, off)
        off += 4
        ldo_id, created, device_id = json.loads(bytes(body[off : off + text_len]))
        off += text_len
        n_values = len(spec.channels) * spec.window
        if len(body) - off != 4 * n_values:
            raise ValueError("wrong length")
        sensors = np.frombuffer(body, dtype="<f4", count=n_values, offset=off).reshape(
            len(spec.channels), spec.window
        )
        return Ldo(ldo_id=ldo_id, created_at=datetime.fromisoformat(created), device_id=device_id,
                   product_id=product, recipe_id=recipe, asset_id=asset, sensors=sensors,
                   labels=labels, validated=bool(validated))  # fmt: skip

    def put(self, etag: str, data: bytes) -> None:
        final = self.path(etag)
        if final.parent not in self._made:
            final.parent.mkdir(parents=True, exist_ok=True)
            self._made.add(final.parent)
        write_atomic(final, data, durable=_MD5_ETAG.match(etag) is None)


# --- sources ----------------------------------------------------------------------------------------------


@dataclass
class FetchStats:
    indexed: int = 0
    downloaded: int = 0
    downloaded_bytes: int = 0
    cached: int = 0


@dataclass(frozen=True)
class _Fetched:
    ldo_id: str  # what the index (or file) says
    etag: str
    where: str  # s3 URI or file path, for messages
    data: bytes | None  # None when the object could not be had; ``problem`` says why
    problem: tuple[str, str] | None = None  # (field, reason)
    parsed: Ldo | None = None  # a record the cache already holds parsed and validated for this spec


# What a download worker hands back: the object's bytes, or why there are none, and the record parsed.
_Downloaded = tuple[bytes | None, tuple[str, str] | None, Ldo | None]


class PgS3Source:
    """The runtime backend's store: the PostgreSQL ``ldos`` index + the S3 objects it names."""

    kind = "pg+s3"
    itersize = 2000  # index rows per round trip of the server-side cursor

    def __init__(self, *, dsn: str | None, s3_uri: str, cache: LdoCache, workers: int = 32) -> None:
        self.dsn = dsn
        self.uri = parse_s3_uri(s3_uri)
        self.cache = cache
        self.workers = workers
        self.stats = FetchStats()

    def describe(self, limit: int) -> dict[str, Any]:
        # Where the data came from, not how it was reached: host names and ports stay out of the snapshot.
        return {"kind": self.kind, "s3": str(self.uri), "query": INDEX_QUERY.replace("%s", str(limit))}

    def _rows(self, conn: Any, limit: int) -> Iterator[tuple[str, str, str | None, datetime]]:
        # A named cursor streams rows from the server in batches instead of loading the whole result.
        with conn.cursor(name="edgeops_snapshot") as cur:
            cur.itersize = self.itersize
            cur.execute(INDEX_QUERY, (limit,))
            yield from cur

    def _parsed(self, body: bytes, etag: str | None, spec: DataSpec, where: str) -> Ldo | None:
        """Parse and cache the record in the worker: the consuming thread then only collects results
        (parsing there competed with 32 workers for the GIL on every object). None when the record is
        invalid: the consumer parses it again and rejects it with the reason."""
        try:
            ldo = parse_ldo(body, spec, source=where)
        except LdoError:
            return None
        if etag:
            self.cache.put_parsed(etag, spec, ldo)
        return ldo

    def _download(
        self, client: Any, key: str, etag: str | None, spec: DataSpec
    ) -> tuple[bytes | None, tuple[str, str] | None, Ldo | None]:
        where = f"s3://{self.uri.bucket}/{key}"
        for attempt in range(3):
            with s3_errors(f"downloading {where}"):
                try:
                    # The client computes no checksum of its own (md5_verified): an MD5 ETag is checked
                    # below; for any other ETag (multipart, SSE-KMS) the store's checksum is asked for.
                    ask = {} if etag and _MD5_ETAG.match(etag) else {"ChecksumMode": "ENABLED"}
                    resp = client.get_object(Bucket=self.uri.bucket, Key=key, **ask)
                except ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                        return None, ("(object)", f"missing in the store: {where}"), None
                    raise
                size, limit = int(resp.get("ContentLength") or 0), max_ldo_bytes(spec)
                if size > limit:  # not read: one such object per thread would hold gigabytes
                    resp["Body"].close()
                    return None, ("(object)", f"{size} bytes, above the limit of {limit} for one LDO"), None
                body: bytes = resp["Body"].read()
            got = str(resp.get("ETag", "")).strip('"')
            if etag is not None and got and got != etag:
                return (
                    None,
                    ("(object)", f"ETag {got} differs from the index's {etag}: changed after indexing"),
                    None,
                )
            corrupt = (
                etag is not None
                and _MD5_ETAG.match(etag) is not None
                and hashlib.md5(body, usedforsecurity=False).hexdigest() != etag
            )
            if corrupt:
                log.warning("download corrupted in transit; retrying", extra=fields(key=key, attempt=attempt))
                continue
            if etag:
                # In the worker, beside the download: the consuming thread only collects results, and the
                # fsyncs of 32 workers overlap instead of queueing behind one another.
                self.cache.put(etag, body)
            return body, None, self._parsed(body, etag, spec, where)
        raise ServiceError(f"downloading {where}: the body never matched its ETag {etag} after 3 attempts")

    def fetch(self, limit: int, spec: DataSpec, progress: Callable[[int, int], None]) -> Iterator[_Fetched]:
        conn = connect(self.dsn)
        try:
            with conn.cursor() as cur:
                try:
                    # INDEX_QUERY is a constant of this module; only `limit` is a parameter.
                    cur.execute(f"SELECT count(*) FROM ({INDEX_QUERY}) AS selected", (limit,))  # noqa: S608
                except psycopg2.Error as exc:
                    first = str(exc).strip().splitlines()[0]
                    raise ServiceError(
                        f"querying the ldos index at {describe_dsn(conn.dsn)}: {first}"
                    ) from None
                self.stats.indexed = int(cur.fetchone()[0])
            conn.rollback()
            try:
                yield from self._fetch_rows(conn, limit, spec, progress)
            except psycopg2.Error as exc:
                cause: BaseException = exc
                while isinstance(cause.__context__, psycopg2.Error):  # a cursor's close failing after it
                    cause = cause.__context__
                first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
                what = "the connection was lost" if conn.closed else "it failed"
                raise ServiceError(
                    f"reading the ldos index from PostgreSQL at {describe_dsn(conn.dsn)}: {what} "
                    f"mid-stream: {first}. Nothing was written to the snapshot folder. Run the same command "
                    "again once the database answers: objects fetched so far are in the local cache and are "
                    "not downloaded again."
                ) from None
        finally:
            conn.close()

    def _fetch_rows(
        self, conn: Any, limit: int, spec: DataSpec, progress: Callable[[int, int], None]
    ) -> Iterator[_Fetched]:
        client = s3_client(max_pool_connections=self.workers, md5_verified=True)
        max_in_flight = self.workers * 4
        pending: dict[Future[_Downloaded], tuple[str, str, str]] = {}
        # Finished downloads, in the order they finish: O(1) per object. (concurrent.futures.wait over all
        # in-flight futures re-registers a waiter on each of them per call, O(in flight) lock round trips
        # per object, and held the cold snapshot to ~110 objects/s against a local server.)
        finished_q: queue.SimpleQueue[Future[_Downloaded]] = queue.SimpleQueue()

        def finished(fut: Future[_Downloaded]) -> _Fetched:
            ldo_id, key, etag = pending.pop(fut)
            data, problem, parsed = fut.result()
            if data is not None:
                self.stats.downloaded += 1
                self.stats.downloaded_bytes += len(data)
            progress(1, len(data or b""))
            return _Fetched(ldo_id, etag, f"s3://{self.uri.bucket}/{key}", data, problem, parsed)

        cached_raw, cached_parsed = self.cache.contents(spec)
        with ThreadPoolExecutor(self.workers, thread_name_prefix="fetch") as pool:
            try:
                for ldo_id, key, etag, _created in self._rows(conn, limit):
                    where = f"s3://{self.uri.bucket}/{key}"
                    if etag in cached_parsed and (parsed := self.cache.get_parsed(etag, spec)) is not None:
                        self.stats.cached += 1
                        progress(1, 0)
                        yield _Fetched(ldo_id, etag, where, None, parsed=parsed)
                        continue
                    if etag in cached_raw and (cached := self.cache.get(etag)) is not None:
                        self.stats.cached += 1
                        progress(1, len(cached))
                        yield _Fetched(ldo_id, etag, where, cached)
                        continue
                    fut = pool.submit(self._download, client, key, etag, spec)
                    pending[fut] = (ldo_id, key, etag or "")
                    fut.add_done_callback(finished_q.put)
                    if len(pending) >= max_in_flight:
                        yield finished(finished_q.get())
                while pending:
                    yield finished(finished_q.get())
            except BaseException:
                for fut in pending:
                    fut.cancel()
                raise


class DirSource:
    """A folder of LDO JSON files (the embedded default). The ETag of a file is its MD5, as S3 would say."""

    kind = "dir"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stats = FetchStats()

    def describe(self, limit: int) -> dict[str, Any]:
        return {"kind": self.kind, "path": str(self.path), "limit": limit}

    def fetch(self, limit: int, spec: DataSpec, progress: Callable[[int, int], None]) -> Iterator[_Fetched]:
        if not self.path.is_dir():
            raise EdgeopsError(
                f"{self.path}: no such folder of LDO files (make one with `edgeops data synth`)"
            )
        files = sorted(self.path.glob("*.json"))
        self.stats.indexed = len(files)
        for path in files:
            try:
                data = read_ldo_file(path, spec, root=self.path)
            except LdoError as exc:
                progress(1, 0)
                yield _Fetched(path.stem, "", str(path), None, problem=(exc.field, exc.reason))
                continue
            progress(1, len(data))
            yield _Fetched(path.stem, hashlib.md5(data, usedforsecurity=False).hexdigest(), str(path), data)


# --- building ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotOptions:
    limit: int = 100_000
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    max_reject_fraction: float = 0.01
    vocab_sizes: dict[str, int] = field(
        default_factory=lambda: {"product_id": 100, "recipe_id": 50, "asset_id": 200}
    )


@dataclass(frozen=True)
class SnapshotReport:
    out: Path
    fingerprint: str
    rows: int
    rejected: int
    splits: dict[str, int]
    downloaded: int
    downloaded_bytes: int
    cached: int

    def summary(self) -> str:
        s = self.splits
        return (
            f"snapshot {self.fingerprint[:19]}… in {self.out}: {self.rows} LDOs "
            f"({s['train']} train / {s['val']} val / {s['test']} test), {self.rejected} rejected; "
            f"{self.downloaded} fetched ({self.downloaded_bytes / 1e6:.1f} MB), {self.cached} from cache"
        )


@dataclass
class _Collected:
    ldos: list[tuple[str, str, Ldo]] = field(default_factory=list)  # (ldo_id, etag, record)
    rejects: list[dict[str, str]] = field(default_factory=list)
    skipped_unvalidated: int = 0


def _strip_indices(name: str) -> str:
    return re.sub(r"\[\d+\]", "", name)


def _collect(source: PgS3Source | DirSource, spec: DataSpec, limit: int) -> _Collected:
    got = _Collected()
    progress: Progress | None = None

    def advance(n: int, nbytes: int) -> None:
        nonlocal progress
        if progress is None:
            progress = Progress(max(source.stats.indexed, 1), "snapshot: fetching LDOs")
        progress.update(n, nbytes)

    where_of: dict[str, list[str]] = {}  # dir: the files that claim each id
    try:
        cache = source.cache if isinstance(source, PgS3Source) else None
        for item in source.fetch(limit, spec, advance):

            def reject(field: str, reason: str, item: _Fetched = item) -> None:
                got.rejects.append(
                    {"ldo_id": item.ldo_id, "where": item.where, "field": field, "reason": reason}
                )

            if item.parsed is not None:
                ldo = item.parsed
            elif item.data is None:
                assert item.problem is not None
                reject(*item.problem)
                continue
            else:
                try:
                    ldo = parse_ldo(item.data, spec, source=item.where)
                except LdoError as exc:
                    reject(exc.field, exc.reason)
                    continue
                if cache is not None and item.etag:
                    cache.put_parsed(item.etag, spec, ldo)
            if isinstance(source, PgS3Source) and ldo.ldo_id != item.ldo_id:
                reject("ldo_id", f"the index says {item.ldo_id!r}, the object says {ldo.ldo_id!r}")
                continue
            if isinstance(source, DirSource):
                where_of.setdefault(ldo.ldo_id, []).append(item.where)
            got.ldos.append((ldo.ldo_id, item.etag, ldo))
    finally:
        if progress is not None:
            progress.close()

    if isinstance(source, DirSource):
        # The index's primary key keeps ids unique in the store; a folder can hold two files with one id.
        # Every copy is rejected, each naming the others: their contents may disagree (labels), and keeping
        # one would let a file name decide what the model learns.
        duplicated = {i: w for i, w in where_of.items() if len(w) > 1}
        for ldo_id, wheres in duplicated.items():
            for where in wheres:
                others = [w for w in wheres if w != where]
                shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
                got.rejects.append({
                    "ldo_id": ldo_id, "where": where, "field": "ldo_id",
                    "reason": f"duplicate id: {shown} has it too (every copy is rejected)",
                })  # fmt: skip
        if duplicated:
            got.ldos = [t for t in got.ldos if t[0] not in duplicated]
        # A folder has no index: apply the index query's rule here (validated, newest first, at most N).
        validated = [t for t in got.ldos if t[2].validated]
        got.skipped_unvalidated = len(got.ldos) - len(validated)
        validated.sort(key=lambda t: (-_micros(t[2].created_at), t[0]))
        got.ldos = validated[:limit]
    return got


def _micros(ts: datetime) -> int:
    delta = ts - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _vocabulary(values: np.ndarray, capacity: int) -> list[int]:
    """The ids that get their own embedding row: most frequent first (ties by id), ``capacity - 1`` of them;
    row 0 is the reserved "unknown" slot."""
    ids, counts = np.unique(values, return_counts=True)
    order = sorted(zip(ids.tolist(), counts.tolist(), strict=True), key=lambda t: (-t[1], t[0]))
    return sorted(i for i, _ in order[: max(capacity - 1, 0)])


def _write_json(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=2)
    # Arrays of numbers (vocabularies, shapes) on one line: the file stays readable at a glance.
    text = re.sub(r"\[\s+([-\d.,\s]+?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text + "\n")
        f.flush()
        os.fsync(f.fileno())


def _check_options(options: SnapshotOptions) -> None:
    """Numbers from flags, edgeops.yaml or a caller: a NaN threshold would let every record through."""
    if not 1 <= options.limit <= INT64_MAX:  # PostgreSQL's LIMIT is a bigint
        raise EdgeopsError(f"--limit must be between 1 and 2**63 - 1, got {options.limit}")
    for name, value in (
        ("max_reject_fraction", options.max_reject_fraction),
        ("val_fraction", options.val_fraction),
        ("test_fraction", options.test_fraction),
    ):
        if not (isinstance(value, int | float) and math.isfinite(value) and 0.0 <= value <= 1.0):
            raise EdgeopsError(f"{name} must be a finite number between 0 and 1, got {value!r}")
    if options.val_fraction + options.test_fraction > 1.0:
        raise EdgeopsError(
            f"val_fraction + test_fraction must be at most 1, got {options.val_fraction} + "
            f"{options.test_fraction}"
        )


def build_snapshot(
    source: PgS3Source | DirSource,
    out: Path,
    spec: DataSpec,
    options: SnapshotOptions,
    *,
    config: dict[str, Any] | None = None,
) -> SnapshotReport:
    """Fetch, validate and materialise a snapshot into ``out`` (replaced atomically; untouched on failure)."""
    from safetensors.numpy import save_file

    _check_options(options)
    if out.exists() and not (out / "snapshot.json").is_file() and any(out.iterdir()):
        raise EdgeopsError(f"{out} exists and is not a snapshot folder; choose a new or empty --out")

    got = _collect(source, spec, options.limit)
    considered = len(got.ldos) + len(got.rejects)
    reject_counts = Counter(_strip_indices(r["field"]) for r in got.rejects)
    if considered == 0:
        raise EdgeopsError("the source holds no validated LDOs: nothing to snapshot")
    fraction = len(got.rejects) / considered
    if fraction > options.max_reject_fraction:
        top = ", ".join(f"{k}: {v}" for k, v in reject_counts.most_common(5))
        examples = "\n  ".join(f"{r['where']}: {r['field']}: {r['reason']}" for r in got.rejects[:5])
        raise EdgeopsError(
            f"{len(got.rejects)} of {considered} LDOs were rejected ({fraction:.1%}), above the limit of "
            f"{options.max_reject_fraction:.1%} (data.max_reject_fraction / --max-reject-fraction). "
            f"Nothing was written to {out}. By field: {top}. First ones:\n  {examples}"
        )
    if not got.ldos:
        raise EdgeopsError("every LDO was rejected: nothing to snapshot")

    rows = sorted(got.ldos, key=lambda t: t[0])
    n = len(rows)
    sensors = np.stack([ldo.sensors for _, _, ldo in rows])  # (N, C, T) float32
    ids = {
        "product_id": np.fromiter((ldo.product_id for _, _, ldo in rows), np.int64, n),
        "recipe_id": np.fromiter((ldo.recipe_id for _, _, ldo in rows), np.int64, n),
        "asset_id": np.fromiter((ldo.asset_id for _, _, ldo in rows), np.int64, n),
    }
    labels = np.array([ldo.labels for _, _, ldo in rows], dtype=np.uint8).reshape(
        n, len(spec.labels)
    )  # (N, L)
    split = np.fromiter(
        (split_of(i, options.val_fraction, options.test_fraction) for i, _, _ in rows), np.uint8, n
    )
    created = np.fromiter((_micros(ldo.created_at) for _, _, ldo in rows), np.int64, n)
    fingerprint = (
        "sha256:" + hashlib.sha256("".join(f"{i}\t{e}\n" for i, e, _ in rows).encode("utf-8")).hexdigest()
    )

    train = split == 0
    vocabularies = {
        name: _vocabulary(values[train] if train.any() else values, options.vocab_sizes.get(name, 1))
        for name, values in ids.items()
    }
    split_counts = {name: int((split == k).sum()) for k, name in enumerate(SPLITS)}
    label_counts = {name: int(labels[:, j].sum()) for j, name in enumerate(spec.labels)}

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        tensors = tmp / "tensors.safetensors"
        save_file(
            {"sensors": sensors, **ids, "labels": labels, "split": split, "created_at": created}, tensors
        )
        with open(tensors, "rb+") as f:
            os.fsync(f.fileno())
        tensor_digest = "sha256:" + sha256_file(tensors)
        with open(tmp / "index.tsv", "w", encoding="utf-8") as f:
            f.write("ldo_id\tetag\tsplit\n")
            f.writelines(
                f"{i}\t{e}\t{SPLITS[s]}\n" for (i, e, _), s in zip(rows, split.tolist(), strict=True)
            )
            f.flush()
            os.fsync(f.fileno())
        rejects_sorted = sorted(got.rejects, key=lambda r: (r["ldo_id"], r["field"]))
        by_field = dict(sorted(reject_counts.items()))
        _write_json(
            tmp / "rejects.json", {"count": len(got.rejects), "by_field": by_field, "records": rejects_sorted}
        )
        _write_json(
            tmp / "snapshot.json",
            {
                "format": FORMAT,
                "fingerprint": fingerprint,
                "source": source.describe(options.limit),
                "counts": {
                    "rows": n,
                    "considered": considered,
                    "rejected": len(got.rejects),
                    "skipped_unvalidated": got.skipped_unvalidated,
                    "splits": split_counts,
                    "healthy": int((labels.sum(axis=1) == 0).sum()),
                    "labels": label_counts,
                },
                "rejects": {"count": len(got.rejects), "by_field": by_field},
                "created_at": {
                    "min": min(ldo.created_at for _, _, ldo in rows).astimezone(UTC).isoformat(),
                    "max": max(ldo.created_at for _, _, ldo in rows).astimezone(UTC).isoformat(),
                },
                "vocabularies": vocabularies,
                "interface": {
                    "channels": list(spec.channels),
                    "window": spec.window,
                    "sample_rate_hz": spec.sample_rate_hz,
                    "labels": list(spec.labels),
                },
                "config": {
                    "limit": options.limit,
                    "val_fraction": options.val_fraction,
                    "test_fraction": options.test_fraction,
                    "max_reject_fraction": options.max_reject_fraction,
                    "vocab_sizes": options.vocab_sizes,
                    **(config or {}),
                },
                "files": {
                    "tensors.safetensors": {
                        "sha256": tensor_digest,
                        "tensors": {
                            "sensors": ["float32", list(sensors.shape)],
                            **{k: ["int64", [n]] for k in ids},
                            "labels": ["uint8", list(labels.shape)],
                            "split": ["uint8", [n]],
                            "created_at": ["int64", [n]],
                        },
                    },
                },
            },
        )
        fsync_path(tmp)
        replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    stats = source.stats
    report = SnapshotReport(
        out=out,
        fingerprint=fingerprint,
        rows=n,
        rejected=len(got.rejects),
        splits=split_counts,
        downloaded=stats.downloaded,
        downloaded_bytes=stats.downloaded_bytes,
        cached=stats.cached,
    )
    if got.rejects:
        log.warning(
            f"{len(got.rejects)} LDOs rejected (below the {options.max_reject_fraction:.1%} limit); "
            f"details in {out / 'rejects.json'}",
            extra=fields(**{k.replace(".", "_"): v for k, v in reject_counts.most_common(5)}),
        )
    return report
