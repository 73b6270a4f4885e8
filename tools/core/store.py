"""Object stores addressed by URI: ``file://`` folders and ``s3://bucket/prefix``.

Model bundles (DESIGN.md, "Model bundle") live in a store and are immutable: a key, once written, is never
overwritten. :meth:`Store.put_immutable` is the only way to write, so that rule is enforced in one place for
both kinds of store: absent → written; present with the same bytes → a no-op ("identical"); present with
different bytes → :class:`~tools.core.errors.StoreError`. Both implementations close the check-then-write race
(``os.link`` onto the final name on disk, a conditional ``If-None-Match: *`` PUT on S3), so two publishers
racing on one key cannot both "win".

Keys are ``/``-separated paths relative to the store root (``models/v1.2/model.onnx``); empty, absolute,
``.``/``..`` components and backslashes are refused, so a key can never escape its store. S3 endpoint and
credentials come from the standard AWS environment (:mod:`tools.core.s3`); nothing here takes a secret.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import hashlib
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from botocore.exceptions import ClientError

from tools.core.errors import ServiceError, StoreError
from tools.core.fsutil import fsync_path
from tools.core.redact import redact_url
from tools.core.s3 import S3Uri, ensure_bucket, parse_s3_uri, s3_client, s3_errors

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["FileStore", "PutOutcome", "S3Store", "Store", "check_key", "open_store"]

PutOutcome = Literal["written", "identical"]

_ACCEPTED = "file:///absolute/path, file://relative/path (from the current directory) or s3://bucket/prefix"
# Temporary files of in-flight (or crashed) FileStore writes; never listed, never a valid key component.
_TMP_PREFIX = ".edgeops-tmp-"
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchBucket"})


class Store(Protocol):
    """What the delivery side needs from an object store."""

    uri: str
    """Normalised store URI, no trailing slash: ``file:///abs/path`` or ``s3://bucket/prefix``."""

    def get(self, key: str) -> bytes:
        """The object's bytes; :class:`StoreError` ("…: no such object") when it does not exist."""
        ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str) -> builtins.list[str]:
        """Keys below the folder ``prefix`` ("" = the whole store), sorted, relative to the store root."""
        ...

    def put_immutable(self, key: str, data: bytes) -> PutOutcome:
        """Write ``data`` when ``key`` is absent; "identical" when it holds these bytes; else StoreError."""
        ...

    def url(self, key: str) -> str:
        """Full URI of ``key``: ``s3://bucket/prefix/key`` or ``file:///abs/path/key``."""
        ...


def check_key(key: str, *, what: str = "object key") -> str:
    """``key`` if it is a safe relative ``/``-separated path, else :class:`StoreError` saying why."""
    rule = "use a relative '/'-separated path such as models/v1.0/model.onnx"
    if not isinstance(key, str) or not key:
        raise StoreError(f"{key!r} is not a valid {what}: it is empty; {rule}")
    if "\\" in key or "\0" in key:
        raise StoreError(f"{key!r} is not a valid {what}: backslashes and NUL are not allowed; {rule}")
    if key.startswith("/"):
        raise StoreError(f"{key!r} is not a valid {what}: it is absolute; {rule}")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise StoreError(f"{key!r} is not a valid {what}: it has an empty, '.' or '..' component; {rule}")
        if part.startswith(_TMP_PREFIX):
            raise StoreError(f"{key!r} is not a valid {what}: {_TMP_PREFIX}* names are reserved")
    return key


def _folder(prefix: str) -> str:
    """A list prefix as a folder path without a trailing slash ("" = the store root)."""
    stripped = prefix.rstrip("/") if prefix else ""
    return check_key(stripped, what="list prefix") if stripped else ""


def _differs(url: str, old: bytes, new: bytes) -> StoreError:
    def digest(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()[:12]

    return StoreError(
        f"{url} already exists with different content (stored: {len(old)} bytes, sha256 {digest(old)}…; "
        f"new: {len(new)} bytes, sha256 {digest(new)}…). Objects in this store are immutable: refusing to "
        "overwrite. Write under a new key (a new version) instead"
    )


def open_store(uri: str) -> Store:
    """The store at ``uri``: ``file:///abs/path``, ``file://relative/path`` or ``s3://bucket/prefix``."""
    if not isinstance(uri, str):
        raise StoreError(f"{uri!r} is not a store URI: use {_ACCEPTED}")
    if uri.startswith("s3://"):
        return S3Store(parse_s3_uri(uri))
    if uri.startswith("file://"):
        path = uri[len("file://") :]
        if not path.strip("/"):
            raise StoreError(f"{uri!r} names no folder (or the file system root): use {_ACCEPTED}")
        if "\0" in path:
            raise StoreError(f"{uri!r} contains a NUL character: use {_ACCEPTED}")
        return FileStore(Path(os.path.abspath(path)))
    # An https://user:secret@… endpoint passed as a store: say so without the secret.
    raise StoreError(f"{redact_url(uri)!r} is not a store URI: use {_ACCEPTED}")


# --- file:// ---------------------------------------------------------------------------------------------


class FileStore:
    """A folder on a local (or mounted) file system. Writes are atomic and durable: a temporary file in the
    target folder, fsync, then a hard link onto the final name (which fails if the name exists: the
    immutability check cannot race), then fsync of the folder. Readers never see a partial object."""

    def __init__(self, root: Path) -> None:
        if not root.is_absolute():
            raise StoreError(f"{root}: a FileStore root must be an absolute path")
        self.root = root
        self.uri = f"file://{root.as_posix().rstrip('/')}"

    def __repr__(self) -> str:
        return f"FileStore({self.uri!r})"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def url(self, key: str) -> str:
        return f"{self.uri}/{check_key(key)}"

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise StoreError(
                f"{self.url(key)}: no such object (check the store URI and the version)"
            ) from None
        except OSError as exc:
            raise StoreError(f"{self.url(key)}: cannot read it ({exc.strerror}); check permissions") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> builtins.list[str]:
        folder = _folder(prefix)
        base = self.root.joinpath(*folder.split("/")) if folder else self.root
        if not base.is_dir():
            return []
        keys: builtins.list[str] = []
        try:
            for dirpath, dirnames, filenames in os.walk(base, onerror=_raise):
                dirnames[:] = [d for d in dirnames if not d.startswith(_TMP_PREFIX)]
                rel = Path(dirpath).relative_to(self.root).as_posix()
                for name in filenames:
                    if not name.startswith(_TMP_PREFIX):
                        keys.append(name if rel == "." else f"{rel}/{name}")
        except OSError as exc:
            raise StoreError(
                f"{self.uri}: cannot list {folder or '/'} ({exc.strerror}); check permissions"
            ) from None
        return sorted(keys)

    def put_immutable(self, key: str, data: bytes) -> PutOutcome:
        path = self._path(key)
        url = self.url(key)
        try:
            existing = path.read_bytes()
        except FileNotFoundError:
            existing = None
        except OSError as exc:
            raise StoreError(f"{url}: cannot read it to compare ({exc.strerror}); check the folder") from None
        if existing is not None:
            if existing == data:
                return "identical"
            raise _differs(url, existing, data)
        try:
            self._makedirs(path.parent)
            # Not fsutil.write_atomic: immutable objects are published by link(): created once, never replaced
            tmp = path.parent / f"{_TMP_PREFIX}{secrets.token_hex(8)}-{path.name}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                return self._publish(tmp, path, url, data)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
        except OSError as exc:
            raise StoreError(
                f"{url}: cannot write it ({exc.strerror}); check that {self.root} is writable and has space"
            ) from None

    def _publish(self, tmp: Path, path: Path, url: str, data: bytes) -> PutOutcome:
        try:
            os.link(tmp, path)  # atomic create-if-absent: fails with EEXIST when another writer got there
        except FileExistsError:
            existing = path.read_bytes()
            if existing == data:
                return "identical"
            raise _differs(url, existing, data) from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            # A file system without hard links (some FUSE / SMB mounts): check, then rename. The window
            # between the check and the rename is the only place two writers could race here.
            if path.exists():
                existing = path.read_bytes()
                if existing == data:
                    return "identical"
                raise _differs(url, existing, data) from None
            os.replace(tmp, path)
        fsync_path(path.parent)
        return "written"

    def _makedirs(self, folder: Path) -> None:
        """Create ``folder`` and its missing parents, fsyncing each parent that gained an entry."""
        missing: builtins.list[Path] = []
        cur = folder
        while not cur.is_dir():
            missing.append(cur)
            if cur.parent == cur:
                break
            cur = cur.parent
        for d in reversed(missing):
            try:
                d.mkdir()
            except FileExistsError:
                if not d.is_dir():
                    raise StoreError(
                        f"{self.uri}: {d} exists and is not a folder; remove it or use another store"
                    ) from None
                continue
            fsync_path(d.parent)


def _raise(exc: OSError) -> None:
    raise exc


# --- s3:// -----------------------------------------------------------------------------------------------


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Store:
    """A bucket and prefix on S3 or any S3-compatible API (MinIO, moto's server), via :mod:`tools.core.s3`.

    The bucket is created on the first write when it does not exist (only then: HeadBucket/CreateBucket
    need bucket-level permissions that a publisher writing into an existing bucket may not have).

    ``put_immutable`` reads first (a GET: the bytes are needed to compare anyway), then PUTs with
    ``IfNoneMatch="*"``, S3's conditional write: a concurrent writer that created the key in between makes
    the PUT fail with 412 PreconditionFailed instead of being overwritten, and we then fetch and compare as
    if the key had been there all along. AWS S3 (since 2024-08), MinIO and moto's server honour the header
    (checked: moto 5.2 answers 412 PreconditionFailed and keeps the first object). A server that answers
    501 NotImplemented gets a plain PUT, and one that silently ignores the header could overwrite only in
    that race window: for those the read-before-write is the check.
    """

    def __init__(self, location: S3Uri) -> None:
        self.location = location
        self.uri = str(location)
        self._client: S3Client | None = None
        self._bucket_created = False

    def __repr__(self) -> str:
        return f"S3Store({self.uri!r})"

    @property
    def client(self) -> S3Client:
        if self._client is None:  # lazily: a store can be opened (and URIs checked) without the network
            self._client = s3_client()
        return self._client

    def _key(self, key: str) -> str:
        return self.location.key(check_key(key))

    def url(self, key: str) -> str:
        return f"s3://{self.location.bucket}/{self._key(key)}"

    def _read(self, key: str) -> bytes | None:
        """The object's bytes, or None when it (or the bucket) does not exist."""
        with s3_errors(f"reading {self.url(key)}"):
            try:
                response = self.client.get_object(Bucket=self.location.bucket, Key=self._key(key))
            except ClientError as exc:
                if _code(exc) in _MISSING_CODES:
                    return None
                raise
            return response["Body"].read()

    def get(self, key: str) -> bytes:
        data = self._read(key)
        if data is None:
            raise StoreError(f"{self.url(key)}: no such object (check the store URI and the version)")
        return data

    def exists(self, key: str) -> bool:
        with s3_errors(f"checking {self.url(key)}"):
            try:
                self.client.head_object(Bucket=self.location.bucket, Key=self._key(key))
            except ClientError as exc:
                if _code(exc) in _MISSING_CODES:
                    return False
                raise
            return True

    def list(self, prefix: str) -> builtins.list[str]:
        folder = _folder(prefix)
        full = self.location.key(folder)
        list_prefix = f"{full}/" if full else ""
        root = f"{self.location.prefix}/" if self.location.prefix else ""
        keys: builtins.list[str] = []
        with s3_errors(f"listing {self.uri}/{folder}"):
            try:
                paginator = self.client.get_paginator("list_objects_v2")
                for page in paginator.paginate(Bucket=self.location.bucket, Prefix=list_prefix):
                    keys.extend(obj["Key"][len(root) :] for obj in page.get("Contents", []))
            except ClientError as exc:
                if _code(exc) == "NoSuchBucket":
                    return []
                raise
        return sorted(keys)

    def put_immutable(self, key: str, data: bytes) -> PutOutcome:
        url = self.url(key)
        existing = self._read(key)
        if existing is not None:
            if existing == data:
                return "identical"
            raise _differs(url, existing, data)
        for _attempt in range(3):
            outcome = self._put_if_absent(key, data)
            if outcome == "written":
                return "written"
            # Someone created the key between our read and our PUT (412), or a concurrent conditional
            # write was in flight (409): compare with what is there now.
            existing = self._read(key)
            if existing is not None:
                if existing == data:
                    return "identical"
                raise _differs(url, existing, data)
        raise ServiceError(
            f"writing {url}: S3 kept answering with conflicts for a key that then did not exist; "
            "another writer may be racing on it, try again"
        )

    def _put_if_absent(self, key: str, data: bytes) -> Literal["written", "conflict"]:
        url = self.url(key)
        bucket, full = self.location.bucket, self._key(key)
        with s3_errors(f"writing {url}"):
            try:
                self.client.put_object(Bucket=bucket, Key=full, Body=data, IfNoneMatch="*")
            except ClientError as exc:
                code = _code(exc)
                if code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                    return "conflict"
                if code == "NoSuchBucket" and not self._bucket_created:
                    # First write into a bucket that does not exist yet. Only now: HeadBucket/CreateBucket
                    # need bucket-level permissions that a publisher writing into an existing bucket lacks.
                    ensure_bucket(self.client, bucket)
                    self._bucket_created = True
                    return self._put_if_absent(key, data)
                if code != "NotImplemented":
                    raise
                # This S3-compatible server does not support conditional writes: the read above is the check.
                self.client.put_object(Bucket=bucket, Key=full, Body=data)
        return "written"
