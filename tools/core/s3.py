"""S3 access through boto3, configured only by the standard AWS environment.

``AWS_ENDPOINT_URL`` (MinIO, moto's server, any S3-compatible store), ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` (or a role via OIDC in CI) and ``AWS_DEFAULT_REGION`` are read by boto3 itself;
nothing here takes a credential as an argument, so none can end up in a file or a log line. An endpoint URL
may still carry user info (``http://user:secret@minio:9000``), and so may a URI mistyped as a store: what
an error shows of either goes through :mod:`tools.core.redact`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
)

from tools.core.errors import ServiceError, StoreError
from tools.core.redact import dsn_secrets, redact_url, scrub

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["S3Uri", "ensure_bucket", "parse_s3_uri", "s3_client", "s3_errors"]

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class S3Uri:
    bucket: str
    prefix: str  # no leading or trailing slash; may be empty

    def key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def parse_s3_uri(uri: str) -> S3Uri:
    shown = redact_url(uri)  # s3://key:secret@bucket/… is no S3 URI, but it is a secret
    if not uri.startswith("s3://"):
        raise StoreError(f"{shown!r} is not an S3 URI: expected s3://bucket/prefix")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not _BUCKET.match(bucket):
        name = repr(bucket) if shown == uri else "the part before the first '/'"
        raise StoreError(f"{shown!r}: {name} is not a valid bucket name (3-63 of a-z, 0-9, '.', '-')")
    prefix = prefix.strip("/")
    if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
        raise StoreError(f"{shown!r}: the prefix has an empty, '.' or '..' component")
    return S3Uri(bucket, prefix)


def s3_client(*, max_pool_connections: int = 10, md5_verified: bool = False) -> S3Client:
    """A client whose connection pool matches the caller's concurrency; standard retry mode backs off on
    throttling (503 SlowDown) and transient network errors.

    ``md5_verified``: the caller checks every object's bytes against its MD5 ETag itself (the LDO seed
    compares the ETag a PUT returns with the file's MD5; the snapshot hashes every body it GETs against the
    index's ETag and asks for the store's checksum where an ETag is no MD5). botocore's flexible checksums
    (a CRC32 header on every PUT, a CRC32 check of every GET since botocore 1.36, the store computing and
    keeping one per object) would check the same bytes twice, so they are computed only where an operation
    requires one ("when_required"): ~1 ms less CPU per small object between client and store.
    """
    # AWS_MAX_ATTEMPTS is the standard variable; an explicit Config would otherwise override it.
    attempts = int(os.environ.get("AWS_MAX_ATTEMPTS", "5"))
    # None is botocore's default ("when_supported", or AWS_REQUEST_CHECKSUM_CALCULATION if set).
    checksums: Literal["when_required"] | None = "when_required" if md5_verified else None
    config = Config(
        max_pool_connections=max_pool_connections,
        retries={"mode": "standard", "max_attempts": attempts},
        connect_timeout=10,
        read_timeout=60,
        request_checksum_calculation=checksums,
        response_checksum_validation=checksums,
    )
    session = boto3.session.Session()
    region = session.region_name or "us-east-1"
    return session.client("s3", region_name=region, config=config)


def _endpoint_url() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def _endpoint() -> str:
    url = _endpoint_url()
    return redact_url(url) if url else "AWS S3"


def _scrubbed(exc: BaseException) -> str:
    # botocore's messages quote the endpoint URL (EndpointConnectionError), user info and all.
    url = _endpoint_url()
    return scrub(str(exc), *(dsn_secrets(url) if url else ()))


@contextmanager
def s3_errors(what: str) -> Iterator[None]:
    """Turn boto errors into a :class:`ServiceError` that says what failed, where, and what to check; what
    they quote of the endpoint URL is redacted."""
    try:
        yield
    except NoCredentialsError:
        raise ServiceError(
            f"{what}: no AWS credentials found. Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(or a profile / OIDC role) for the store"
        ) from None
    except EndpointConnectionError as exc:
        raise ServiceError(
            f"{what}: cannot reach the S3 API at {_endpoint()} ({_scrubbed(exc)}). Is the store up, and is "
            "AWS_ENDPOINT_URL right?"
        ) from None
    except ClientError as exc:
        err = exc.response.get("Error", {})
        code, message = err.get("Code", "?"), err.get("Message", "")
        raise ServiceError(f"{what}: S3 at {_endpoint()} answered {code}: {scrub(message)}") from None
    except BotoCoreError as exc:
        raise ServiceError(f"{what}: S3 at {_endpoint()} failed: {_scrubbed(exc)}") from None


def ensure_bucket(client: S3Client, bucket: str) -> bool:
    """Create ``bucket`` when it does not exist; True when it was created."""
    try:
        client.head_bucket(Bucket=bucket)
        return False
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
    region = client.meta.region_name
    if region and region != "us-east-1":
        client.create_bucket(
            Bucket=bucket,
            CreateBucketConfiguration={"LocationConstraint": region},  # type: ignore[typeddict-item]
        )
    else:
        client.create_bucket(Bucket=bucket)
    return True
