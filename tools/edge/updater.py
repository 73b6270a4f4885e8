"""The model-updater: one agent per edge node that reconciles the node's model to the mounted release file.

    edgeops updater run --release /etc/context-edge/release/release.yaml \\
        --root /var/lib/context-edge/models --public-key /etc/context-edge/signing/release-signing.pub \\
        --accept-interface sha256:… --listen 0.0.0.0:9180 --log-json

Layout of the model root (the only place the updater writes, so it runs with a read-only root file system)::

    <root>/current -> v2.1            relative symlink; the inference service loads <root>/current/model.onnx
    <root>/v2.1/ (model.onnx, golden.json, …, .complete)
    <root>/v2.0/ …                    the last K versions stay, so a rollback is a swap with no download
    <root>/v2.2.partial/              a download in progress; never valid, deleted on start
    <root>/.updater.lock              one updater per root (a DaemonSet rollout may overlap two pods)

A version folder is valid only when it holds the ``.complete`` marker, which is written (and fsynced) after
every file was downloaded, checked against the signed release and passed the golden health check, and before
the folder is renamed from ``<version>.partial`` to ``<version>``. ``current`` only ever changes by
``os.replace`` of a fresh temporary symlink onto it, followed by an fsync of the root, so a reader resolving
``current`` sees the old or the new version, never neither, and a SIGKILL at any instant leaves ``current``
on a complete version (or absent, when the node never had one). On start the updater deletes ``.partial``
folders, marker-less version folders and temporary links before doing anything else.

One reconcile (:meth:`Updater.reconcile`): no release → idle (keep whatever is there, report ready).
Otherwise verify the release's Ed25519 signature (before any download) against the trusted keys, check its
interface against the accepted list (empty list = any interface: for labs, not for production rings), then

- ``current`` is already the desired version and was checked by this process → nothing to do;
- the version is newer than ``current``, the release names swap windows (``rollout.windows``) and none is
  open at the node's local time (the pod's ``TZ``) → keep ``current`` (checked in place), report "waiting"
  (``edgeops_updater_waiting_for_window`` 1, ``/ready`` 200 saying what waits) and prefetch the newer one;
  a node serving nothing, a rollback and a repair never wait;
- the version is cached and complete → re-verify its digests, run the golden check, swap (a rollback);
- else download every listed file from ``<store>/models/<version>/`` into ``<version>.partial/`` (each file
  written atomically and fsynced, its size and sha256 checked against the release), verify the files on
  disk, check ``model.json``'s interface when the bundle has one, run the golden check, write the marker,
  rename, swap;

then POST to the reload hook (a failure is logged and counted, the swap stays) and prune to the K most
recently installed or activated versions plus ``current``. Any failure leaves ``current`` untouched; its
reason is logged and counted in ``edgeops_updater_failures_total{reason}`` (reasons: :data:`FAILURE_REASONS`).

The trusted keys are the PEM file(s) given by ``--public-key`` (repeatable), each holding one or several
concatenated public keys, so a signing key rotates without an outage (docs/runbooks.md, "Rotate the
release-signing key"): a release verifies when any trusted key signed it. The files are read again on every
reconcile (:class:`TrustFile`; parsed again only when their bytes changed), because the kubelet refreshes a
mounted ConfigMap in place; a changed set is logged and shown in ``edgeops_updater_trusted_key{key_id}``.
A file that became unreadable or malformed fails the reconcile (reason "signature") and the node keeps its
model. A release signed by a key the node no longer trusts is refused with that key's id when the node
verified the release before (in this process, or at install: the completion marker records the signer).

A download that S3 refuses with ``RequestTimeTooSkewed`` (the node's clock is more than 15 minutes from the
store's; the request signature carries the time) is reason "clock_skew", not "download", with the size of
the skew when the error's ``ServerTime``/``RequestTime`` or the response's ``Date`` tell it.

Every download of a bundle has an overall deadline, :func:`download_deadline`: ``max(--download-deadline,
bundle bytes / --download-min-rate)``, by default at least 120 s and as long as 64 KiB/s needs (a 10 MiB
bundle: 160 s). A store that answers a trickle (or nothing) keeps no reconcile past it, so a rollback never
waits behind a stuck download: the download stops (S3 bodies are read in chunks by a worker thread whose
socket is cut at the deadline), its ``.partial`` folder is deleted, ``current`` stays, and the reason
"deadline" is logged and counted; the next loop tries again.

Outside its wave (or while waiting for a window) a node prefetches the announced release into its cache,
:func:`prefetch_delay` seconds after it first saw it (``--prefetch-spread``): a stable per-node share of the
spread, so the fleet's downloads do not all start at the same instant.

After a restart the first reconcile re-checks ``current`` in place (digests and golden check) and finishes
an interrupted prune. A ``current`` whose files no longer match is downloaded again and replaced; only that
repair renames the folder ``current`` points at, leaving the link dangling for the instant between two
renames, which is acceptable only because the model there is already known to be damaged.

HTTP (``--listen``): ``/ready`` (200 when ``current`` is the desired version and passed its check, when
idle, or when it keeps its checked model while a newer one waits for a swap window; else 503 with the
reason), ``/healthz`` (liveness: 503 when the loop has not progressed for
ten intervals or 600 s, whichever is longer), ``/metrics`` (Prometheus text of this updater's own registry).

Tests kill the process at named steps (:data:`CRASH_STEPS`) with ``EDGEOPS_UPDATER_CRASH_AT=<step>``, which
sends the process SIGKILL when the step is reached; never set it outside tests.
"""

from __future__ import annotations

import argparse
import contextlib
import email.utils
import errno
import fcntl
import hashlib
import http.client
import json
import logging
import math
import os
import secrets
import shutil
import signal
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)

from tools.artifacts.bundle import FileEntry, parse_version
from tools.artifacts.release import Release, ReleaseError, ReleaseSignatureError, load_release, verify_release
from tools.core.errors import ConfigError, EdgeopsError, StoreError
from tools.core.fsutil import fsync_path, sha256_file, write_atomic
from tools.core.log import fields, setup_logging
from tools.core.names import INTERFACE, VERSION
from tools.core.s3 import s3_errors
from tools.core.signing import SignatureError, TrustedKeys, public_keys_from_pem, trusted_keys
from tools.core.store import S3Store, Store, open_store
from tools.core.windows import any_open, parse_windows

__all__ = [
    "CRASH_ENV",
    "CRASH_STEPS",
    "CURRENT",
    "FAILURE_REASONS",
    "MARKER",
    "Outcome",
    "ReconcileResult",
    "TrustFile",
    "Updater",
    "UpdaterError",
    "add_run_arguments",
    "build_parser",
    "download_deadline",
    "golden_check",
    "listen_error",
    "main",
    "prefetch_delay",
    "run",
    "run_from_args",
    "serve_http",
]

log = logging.getLogger("edgeops.updater")

CURRENT = "current"
MARKER = ".complete"
PARTIAL_SUFFIX = ".partial"
LOCK_FILE = ".updater.lock"
_TRASH_PREFIX = ".trash-"
_TMP_LINK_PREFIX = f"{CURRENT}.tmp-"
_TMP_FILE_PREFIX = ".tmp-"
_MARKER_FORMAT = "edgeops-installed/v1"
_GOLDEN_FORMAT = "edgeops-golden/v1"

CRASH_ENV = "EDGEOPS_UPDATER_CRASH_AT"
CRASH_STEPS = (
    "during_download",  # the first file is in <version>.partial/, the others are not
    "after_partial_download",  # every file is in <version>.partial/, nothing checked on disk yet
    "after_verify",  # digests checked on disk
    "after_golden",  # health check passed, no marker yet
    "after_rename",  # <version>/ complete, `current` still on the old version
    "after_swap_link",  # the temporary link exists, `current` not replaced yet
    "after_swap",  # `current` replaced, reload hook and prune not run
    "during_prune",  # the first old version moved aside, not deleted yet
)
FAILURE_REASONS = (
    "release",  # the release file is missing or malformed
    "signature",  # the release's signature verifies under no trusted key, or the trusted-keys file is bad
    "interface",  # the release's (or the model card's) interface is not accepted
    "download",  # the store could not be read (network, credentials, missing object)
    "clock_skew",  # the store refused the request's time (S3 RequestTimeTooSkewed): fix the node's clock
    "deadline",  # a bundle download ran past its overall deadline (a link slower than --download-min-rate)
    "digest",  # a downloaded or cached file does not match the signed size/sha256
    "golden",  # the model does not load or does not reproduce golden.json
    "io",  # the model root could not be written (disk full, permissions)
    "reload",  # the reload hook failed (the swap stands)
    "cache",  # a cached version failed its re-check and was downloaded again
)
_REFUSAL_REASONS = frozenset({"signature", "interface", "digest", "golden"})
# Swaps are a symlink + rename + fsync: sub-millisecond on local disks, tens of ms on a slow SD card.
_SWAP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# "waiting": a newer release is held back by the ring's swap windows; the node keeps (and serves) its model.
Outcome = Literal["installed", "swapped_from_cache", "unchanged", "idle", "waiting", "refused", "failed"]
_OK_OUTCOMES = frozenset({"installed", "swapped_from_cache", "unchanged", "idle", "waiting"})


class UpdaterError(EdgeopsError):
    """A reconcile step failed. ``reason`` is one of :data:`FAILURE_REASONS`; ``refused`` is True when the
    release itself is unacceptable (retrying will not help), False for conditions that may pass."""

    def __init__(self, reason: str, message: str, *, refused: bool | None = None) -> None:
        self.reason = reason
        self.refused = reason in _REFUSAL_REASONS if refused is None else refused
        super().__init__(message)


@dataclass(frozen=True)
class ReconcileResult:
    outcome: Outcome
    version: str | None  # the desired version (None: no release)
    reason: str = ""  # one of FAILURE_REASONS when refused/failed, else ""
    detail: str = ""  # a human-readable sentence
    seconds: float = 0.0  # wall time of the whole reconcile

    @property
    def ok(self) -> bool:
        """True when the node ends on the desired version, idles on "no release", or keeps its healthy
        model while a newer one waits for a swap window."""
        return self.outcome in _OK_OUTCOMES


def prefetch_delay(node: str, version: str, spread_seconds: float) -> float:
    """Seconds ``node`` waits, after it first sees ``version`` announced, before prefetching it.

    A stable hash of node and version, mapped uniformly to [0, ``spread_seconds``): a fleet that sees a
    release at the same moment spreads its downloads over the spread instead of hitting the store at once,
    and each release reshuffles the order (the version is in the hash), so no node is always last.
    """
    if not (math.isfinite(spread_seconds) and spread_seconds >= 0):
        raise ValueError(f"prefetch spread {spread_seconds!r}: give a finite number of seconds ≥ 0")
    if spread_seconds == 0:
        return 0.0
    digest = hashlib.sha256(f"{node}\0{version}".encode()).digest()
    fraction = (int.from_bytes(digest[:8], "big") >> 11) / 2**53  # 53 bits: exactly representable, < 1
    return min(fraction * spread_seconds, math.nextafter(spread_seconds, 0.0))


# The overall deadline of one bundle download: at least DEFAULT_DOWNLOAD_DEADLINE seconds, and as long as
# the bundle takes at DEFAULT_DOWNLOAD_MIN_RATE. 64 KiB/s is half a 1 Mbit/s cellular uplink shared with the
# node's other traffic: a link slower than that for a whole bundle is stuck rather than slow, and while a
# download runs the loop cannot act on a rollback. Both are flags (--download-deadline, --download-min-rate).
DEFAULT_DOWNLOAD_DEADLINE = 120.0
DEFAULT_DOWNLOAD_MIN_RATE = 64 * 1024  # bytes per second
_DOWNLOAD_CHUNK = 1 << 20  # S3 bodies are read in 1 MiB chunks, so a cancelled download stops between two
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchBucket"})  # as tools/core/store.py
_STALL_TIMEOUT = 60.0  # one socket read waits at most this long (botocore's read_timeout, tools/core/s3.py)


def download_deadline(total_bytes: int, floor: float, min_rate: float) -> float:
    """Seconds a download of ``total_bytes`` may take: ``max(floor, total_bytes / min_rate)``."""
    return max(floor, total_bytes / min_rate)


class _DeadlineExceeded(Exception):
    """A download's deadline has passed (never leaves this module: :meth:`Updater._stage` says why)."""


def _read_s3(store: S3Store, key: str, limit: int, state: dict[str, Any]) -> bytes:
    """``store.get(key)``, read in chunks: at most ``limit + 1`` bytes (more than the signed size is
    damage, and an endless body stops there), each socket read bounded by the time left before
    ``state["deadline"]``. The body and its length go to ``state["body"]`` and ``state["length"]`` so that
    the waiting thread can cut its socket at the deadline (botocore's public ``set_socket_timeout``, which
    needs a body not read to its end: the socket is gone then); ``state["got"]`` counts bytes."""
    url = store.url(key)
    chunks: list[bytes] = []
    with s3_errors(f"reading {url}"):
        try:
            response = store.client.get_object(Bucket=store.location.bucket, Key=store.location.key(key))
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) in _MISSING_CODES:
                raise StoreError(f"{url}: no such object (check the store URI and the version)") from None
            raise
        body = response["Body"]
        wanted = min(response.get("ContentLength", limit + 1), limit + 1)
        state["length"], state["body"] = wanted, body
        try:
            while state["got"] < wanted:
                left = state["deadline"] - time.monotonic()
                if state["cancelled"].is_set() or left <= 0:
                    raise _DeadlineExceeded
                body.set_socket_timeout(min(_STALL_TIMEOUT, max(left, 0.05)))
                chunk = body.read(min(_DOWNLOAD_CHUNK, wanted - state["got"]))
                if not chunk:
                    break
                chunks.append(chunk)
                state["got"] += len(chunk)
        finally:
            body.close()
    return b"".join(chunks)


# --- file system helpers ------------------------------------------------------------------------------------


def _remove(path: Path) -> None:
    """Delete a file, link or folder tree (never following a link into another tree)."""
    if path.is_symlink() or not path.is_dir():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=False)


def _files_fingerprint(files: Mapping[str, FileEntry]) -> str:
    return json.dumps({n: [e["sha256"], e["bytes"]] for n, e in files.items()}, sort_keys=True)


def _crash_point(step: str) -> None:
    # Fault injection for the crash-matrix tests: die exactly like a node losing power or an OOM kill.
    if os.environ.get(CRASH_ENV) == step:
        log.warning("fault injection: killing the updater with SIGKILL", extra=fields(step=step))
        for handler in logging.getLogger().handlers:
            handler.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def _redact_url(url: str) -> str:
    """``url`` without user:password, for logs."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


# --- golden health check ------------------------------------------------------------------------------------


def _golden_fail(model_dir: Path, problem: str) -> UpdaterError:
    return UpdaterError(
        "golden",
        f"health check of {model_dir.name} failed: {problem}. The model does not behave as exported; keep "
        "the current model and publish a new version",
    )


def golden_check(model_dir: Path) -> None:
    """Load ``model_dir/model.onnx`` in ONNX Runtime (CPU), feed ``golden.json``'s inputs, compare outputs.

    ``golden.json`` (``edgeops-golden/v1``, written by ``edgeops export``): ``inputs`` {name: nested lists},
    ``dtypes`` {name: numpy dtype}, ``expected`` {output: nested lists}, ``atol``. Raises
    :class:`UpdaterError` (reason "golden") naming what differed.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        raise UpdaterError(
            "golden",
            "onnxruntime is not installed, so no model can be health-checked; install onnxruntime in the "
            "updater image",
            refused=False,
        ) from None
    try:
        golden = json.loads((model_dir / "golden.json").read_bytes())
    except (OSError, ValueError) as exc:
        raise _golden_fail(model_dir, f"golden.json is unreadable or not JSON ({exc})") from None
    if not isinstance(golden, dict) or golden.get("format") != _GOLDEN_FORMAT:
        raise _golden_fail(model_dir, f"golden.json is not {_GOLDEN_FORMAT}")
    inputs, dtypes, expected, atol = (golden.get(k) for k in ("inputs", "dtypes", "expected", "atol"))
    if not (
        isinstance(inputs, dict) and isinstance(dtypes, dict) and isinstance(expected, dict) and expected
    ):
        raise _golden_fail(model_dir, "golden.json lacks inputs, dtypes or expected")
    if not isinstance(atol, int | float) or isinstance(atol, bool) or not atol >= 0:
        raise _golden_fail(model_dir, f"golden.json's atol {atol!r} is not a number ≥ 0")

    options = ort.SessionOptions()
    # One thread: the check is tiny, and a node (or the fleet simulator) must not spawn a pool per check.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(
            str(model_dir / "model.onnx"), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # noqa: BLE001 - ORT raises its own pybind11 types for every load failure
        raise _golden_fail(model_dir, f"model.onnx does not load in ONNX Runtime ({exc})") from None

    wanted = sorted(i.name for i in session.get_inputs())
    if sorted(inputs) != wanted:
        raise _golden_fail(model_dir, f"golden.json's inputs {sorted(inputs)} are not the model's {wanted}")
    try:
        feed = {name: np.asarray(inputs[name], dtype=np.dtype(str(dtypes.get(name)))) for name in wanted}
    except (TypeError, ValueError) as exc:
        raise _golden_fail(
            model_dir, f"golden.json's inputs do not convert to their dtypes ({exc})"
        ) from None
    outputs = sorted(expected)
    try:
        actual = session.run(outputs, feed)
    except Exception as exc:  # noqa: BLE001 - as above: ORT's runtime errors have no stable Python type
        raise _golden_fail(model_dir, f"running the model on golden.json's inputs failed ({exc})") from None
    for name, raw in zip(outputs, actual, strict=True):
        want = np.asarray(expected[name], dtype=np.float64)
        got = np.asarray(raw, dtype=np.float64)
        if got.shape != want.shape:
            raise _golden_fail(model_dir, f"output {name} has shape {got.shape}, golden.json {want.shape}")
        if not np.isfinite(got).all():
            raise _golden_fail(model_dir, f"output {name} has NaN or infinite values")
        diff = float(np.abs(got - want).max()) if got.size else 0.0
        if not diff <= atol:
            raise _golden_fail(
                model_dir, f"output {name} differs from golden.json by {diff:.3g} (atol {atol:g})"
            )


# --- trusted keys -------------------------------------------------------------------------------------------


class TrustFile:
    """The node's trusted release-signing keys: the PEM file(s) of ``--public-key``, re-read as they change.

    Each file holds one or several concatenated PEM public keys (while a key rotates: the old and the new).
    The kubelet refreshes a mounted ConfigMap in place (an atomic swap of the volume's ``..data`` link), so
    :meth:`keys` reads the files on every call (a few hundred bytes) and parses them again only when their
    bytes changed. A file that cannot be read or parsed raises :class:`~tools.core.signing.SignatureError`
    naming the file and the key block: never a silently stale or empty set.
    """

    def __init__(self, paths: Path | str | Sequence[Path | str]) -> None:
        items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
        if not items:
            raise ConfigError("no trusted public key file: give --public-key (repeat it for several files)")
        self.paths = tuple(Path(p) for p in items)
        self._raw: tuple[bytes, ...] | None = None
        self._keys: dict[str, Ed25519PublicKey] = {}
        self.keys()  # at start an unusable file is fatal: an agent that trusts nothing must not run

    def _read(self) -> tuple[bytes, ...]:
        raw = []
        for path in self.paths:
            try:
                raw.append(path.read_bytes())
            except FileNotFoundError:
                raise SignatureError(
                    f"{path}: no such public key file (the trusted release-signing keys; on a node: the "
                    "release-signing-key ConfigMap mount)"
                ) from None
            except OSError as exc:
                raise SignatureError(f"{path}: cannot read the trusted keys ({exc.strerror})") from None
        return tuple(raw)

    def keys(self) -> dict[str, Ed25519PublicKey]:
        """The trusted keys now, by key id (the union of the files)."""
        raw = self._read()
        if raw != self._raw:
            keys: dict[str, Ed25519PublicKey] = {}
            for path, data in zip(self.paths, raw, strict=True):
                keys.update(public_keys_from_pem(data, source=str(path)))
            self._raw, self._keys = raw, keys
        return dict(self._keys)

    def fingerprint(self) -> str:
        """A digest of the files' bytes now ("unreadable" when one cannot be read), to notice a change."""
        try:
            raw = self._read()
        except SignatureError:
            return "unreadable"
        return hashlib.sha256(b"\0".join(raw)).hexdigest()


# --- clock skew ---------------------------------------------------------------------------------------------

# S3's error code for a request signed at a time too far from the server's (AWS: more than 15 minutes;
# "Error responses", https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html). MinIO answers the
# same code with 403 (minio/minio cmd/api-errors.go, ErrRequestTimeTooSkewed). botocore does not correct
# clock skew itself (boto/boto3#1252), so the node's own clock is what has to be fixed.
_SKEW_CODES = frozenset({"RequestTimeTooSkewed"})


def _parse_time(text: Any) -> datetime | None:
    """An S3 time: ISO 8601 (``ServerTime``, ``x-amz-date``) or RFC 7231 (``RequestTime``, ``Date``)."""
    if not isinstance(text, str) or not text.strip():
        return None
    text = text.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _clock_skew(exc: BaseException) -> str | None:
    """When ``exc`` comes from S3's RequestTimeTooSkewed: a sentence on how far off the node's clock is.

    The store wraps botocore's ``ClientError`` (``raise … from None`` keeps it as ``__context__``); its
    parsed error holds S3's ``ServerTime`` and the ``RequestTime`` it received, and the response its
    ``Date`` header. None when the error is something else.
    """
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        response = getattr(cause, "response", None)
        error = response.get("Error") if isinstance(response, dict) else None
        if isinstance(error, dict) and error.get("Code") in _SKEW_CODES:
            break
        cause = cause.__cause__ or cause.__context__
    else:
        return None
    assert isinstance(response, dict) and isinstance(error, dict)
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    server = _parse_time(error.get("ServerTime")) or _parse_time(headers.get("date"))
    node = _parse_time(error.get("RequestTime")) or datetime.now(UTC)
    if server is None:
        return (
            "the store refused the request's time (RequestTimeTooSkewed): this node's clock is off by more "
            "than the store allows (15 minutes on AWS S3); fix the node's time sync (chrony/NTP, or an RTC "
            "that lost its time)"
        )
    seconds = (node - server).total_seconds()
    way = "ahead of" if seconds > 0 else "behind"
    size = abs(seconds)
    human = f"{size / 3600:.1f} h" if size >= 3600 else f"{size / 60:.1f} min"
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    return (
        f"the store refused the request's time (RequestTimeTooSkewed): this node's clock is {size:.0f} s "
        f"({human}) {way} the store's (node {node.astimezone(UTC):{stamp}}, store "
        f"{server.astimezone(UTC):{stamp}}); fix the node's time sync (chrony/NTP, or an RTC that lost its "
        "time). The store accepts 15 minutes of difference on AWS S3"
    )


# --- the updater --------------------------------------------------------------------------------------------


class Updater:
    """Reconciles one model root to a release. Synchronous; one instance per root (it holds a lock).

    ``store_opener`` maps a store URI to a :class:`~tools.core.store.Store`; stores are opened once per URI
    and
    reused. The fleet simulator may pass an opener that shares one store (one S3 client) between nodes.
    ``lock=False`` skips the per-root file lock (for simulators that hold many roots in one process and
    guarantee one updater per root themselves).

    ``public_key``: the trusted release-signing keys, as one key, a ``{key id: key}`` set, or a
    :class:`TrustFile` (what the agent passes: re-read on every reconcile, so a key added or removed by a
    merged PR takes effect without a restart).

    ``clock`` (epoch seconds; the fleet simulator passes a simulated one) is the time swap windows are read
    at, as local time (``datetime.fromtimestamp``: the pod's ``TZ``), and the time a prefetch's delay runs
    on. ``prefetch_spread``: an announced release this node does not run yet is prefetched
    :func:`prefetch_delay` seconds (in [0, spread)) after this process first saw it; 0 prefetches at once.
    ``download_deadline`` (seconds) and ``download_min_rate`` (bytes/s): a bundle download stops after
    :func:`download_deadline` of its size (reason "deadline"; the next reconcile tries again).
    """

    def __init__(  # noqa: PLR0917 - the fleet simulator's documented call shape
        self,
        root: Path | str,
        public_key: Ed25519PublicKey | TrustedKeys | TrustFile,
        accept_interfaces: Sequence[str] = (),
        keep: int = 3,
        reload_url: str | None = None,
        store_opener: Callable[[str], Store] = open_store,
        *,
        node: str = "",
        lock: bool = True,
        lock_timeout: float = 30.0,
        reload_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
        prefetch_spread: float = 0.0,
        download_deadline: float = DEFAULT_DOWNLOAD_DEADLINE,
        download_min_rate: float = DEFAULT_DOWNLOAD_MIN_RATE,
    ) -> None:
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ConfigError(f"keep must be an integer ≥ 1 (versions kept on the node), not {keep!r}")
        if isinstance(accept_interfaces, str):
            raise ConfigError("accept_interfaces must be a list of sha256:… values, not one string")
        for interface in accept_interfaces:
            if not INTERFACE.fullmatch(interface):
                raise ConfigError(
                    f"accepted interface {interface!r} is not sha256:<64 lowercase hex> (the `interface` of "
                    "a model card or release file)"
                )
        if reload_url is not None and urllib.parse.urlsplit(reload_url).scheme not in ("http", "https"):
            raise ConfigError(
                f"reload URL {_redact_url(reload_url)!r} is not http:// or https://; give the inference "
                "service's local reload endpoint, or no URL"
            )
        spread_ok = isinstance(prefetch_spread, int | float) and not isinstance(prefetch_spread, bool)
        if not (spread_ok and math.isfinite(prefetch_spread) and prefetch_spread >= 0):
            raise ConfigError(
                f"prefetch spread {prefetch_spread!r}: give a number of seconds ≥ 0 (0: prefetch at once)"
            )
        for flag, value in (
            ("download_deadline", download_deadline),
            ("download_min_rate", download_min_rate),
        ):
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not (number and math.isfinite(value) and value > 0):
                raise ConfigError(f"{flag} {value!r}: give a positive number")
        crash_at = os.environ.get(CRASH_ENV)
        if crash_at and crash_at not in CRASH_STEPS:
            raise ConfigError(f"{CRASH_ENV}={crash_at!r} is not one of {', '.join(CRASH_STEPS)}")
        self.root = Path(root).absolute()
        self._trust_file = public_key if isinstance(public_key, TrustFile) else None
        self._keys = public_key.keys() if isinstance(public_key, TrustFile) else trusted_keys(public_key)
        self._signers: dict[str, str] = {}  # release signature → id of the key that verified it here
        self.accept_interfaces = tuple(accept_interfaces)
        self.keep = keep
        self.reload_url = reload_url
        self.node = node
        self.prefetch_spread = float(prefetch_spread)
        self.download_deadline = float(download_deadline)  # seconds: the least time a bundle download gets
        self.download_min_rate = float(download_min_rate)  # bytes/s: a bigger bundle gets bytes / this
        self._clock = clock
        self._store_opener = store_opener
        self._stores: dict[str, Store] = {}
        self._reload_timeout = reload_timeout
        self._log_fields: dict[str, Any] = {"node": node} if node else {}

        self.registry = CollectorRegistry()
        reg = self.registry
        self._m_desired = Info(
            "edgeops_updater_desired_version",
            "Version the release file asks for (none: no release)",
            registry=reg,
        )
        self._m_current = Info(
            "edgeops_updater_current_version", "Version `current` points at (none: no model)", registry=reg
        )
        self._m_installs = Counter(
            "edgeops_updater_installs",
            "Versions downloaded, verified, health-checked and swapped in",
            registry=reg,
        )
        self._m_prefetches = Counter(
            "edgeops_updater_prefetches",
            "Announced releases downloaded and verified ahead of this node's wave",
            registry=reg,
        )
        self._m_cache_swaps = Counter(
            "edgeops_updater_cache_swaps", "Swaps to a version already on the node (rollbacks)", registry=reg
        )
        self._m_failures = Counter(
            "edgeops_updater_failures",
            "Failed or refused reconcile steps by reason",
            ["reason"],
            registry=reg,
        )
        for reason in FAILURE_REASONS:
            self._m_failures.labels(reason=reason)  # present as 0 from the start, so rate() works
        self._m_swap = Histogram(
            "edgeops_updater_swap_seconds",
            "Atomic `current` swap (link, rename, fsync)",
            buckets=_SWAP_BUCKETS,
            registry=reg,
        )
        self._m_last = Gauge(
            "edgeops_updater_last_reconcile_timestamp_seconds",
            "Unix time of the last reconcile",
            registry=reg,
        )
        self._m_ready = Gauge("edgeops_updater_ready", "1 when /ready answers 200", registry=reg)
        self._m_waiting = Gauge(
            "edgeops_updater_waiting_for_window",
            "1 while a newer release waits for the ring's swap window (the node keeps its model)",
            registry=reg,
        )
        self._m_trusted = Gauge(
            "edgeops_updater_trusted_key",
            "1 for each release-signing key this node trusts (a rotation waits for every node to show it)",
            ["key_id"],
            registry=reg,
        )
        for kid in self._keys:
            self._m_trusted.labels(key_id=kid).set(1)

        self._lock_fd: int | None = None
        self._reconciled = False
        self._idle = False
        self._desired: str | None = None
        self._verified: tuple[str, str] | None = None  # (version, files fingerprint) checked by this process
        self._problem = ""  # why the node is not on the desired version, for /ready
        self._waiting: tuple[str, tuple[str, ...]] | None = None  # (held version, its closed windows)
        self._first_seen: dict[str, float] = {}  # announced version → clock() when first seen (prefetch)
        self.last_activity = time.monotonic()  # for the liveness probe: a long download still counts

        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise UpdaterError(
                "io", f"the model root {self.root} is a file, or inside one; name a folder (it is created)"
            ) from None
        except OSError as exc:
            raise UpdaterError("io", f"cannot create the model root {self.root} ({exc.strerror})") from None
        if lock:
            self._acquire_lock(lock_timeout)
        self._m_desired.info({"version": "none"})
        self._recover()
        self._m_current.info({"version": self.current_version() or "none"})
        self._m_ready.set(0)
        self._m_waiting.set(0)

    # --- lifecycle ---

    def _acquire_lock(self, timeout: float) -> None:
        path = self.root / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UpdaterError(
                "io", f"cannot open {path} ({exc.strerror}); is the model root writable?"
            ) from None
        deadline = time.monotonic() + timeout
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
            if time.monotonic() >= deadline:
                os.close(fd)
                raise UpdaterError(
                    "io",
                    f"another model-updater holds {path} (waited {timeout:g} s); only one may manage a model "
                    "root: check for a second DaemonSet or a stuck pod on this node",
                    refused=False,
                )
            if not waited:
                log.info("waiting for another updater to release the model root", extra=self._f(root=path))
                waited = True
            time.sleep(0.1)
        self._lock_fd = fd

    def close(self) -> None:
        """Release the model root's lock (the kernel does it too when the process dies)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Updater:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _f(self, **kv: Any) -> dict[str, Any]:
        return fields(**self._log_fields, **kv)

    def _recover(self) -> None:
        """Bring the root to a consistent state after a crash: only complete versions and `current` remain."""
        target = self._current_target()
        removed = []
        for entry in sorted(self.root.iterdir()):
            name = entry.name
            if name.endswith(PARTIAL_SUFFIX) or name.startswith((_TRASH_PREFIX, _TMP_LINK_PREFIX)):
                _remove(entry)
                removed.append(name)
            elif VERSION.fullmatch(name) and not self._is_complete(entry):
                if name == target:
                    # Never delete what the inference service may have open; a reconcile replaces it.
                    log.warning(
                        "`current` points at a version folder without the completion marker; it will be "
                        "replaced by the next successful install",
                        extra=self._f(version=name),
                    )
                    continue
                _remove(entry)
                removed.append(name)
        if removed:
            fsync_path(self.root)
            log.info("cleaned up after an interrupted run", extra=self._f(removed=",".join(removed)))
        if target is not None and not (self.root / target).exists():
            log.warning("`current` points at a missing folder", extra=self._f(target=target))

    # --- state ---

    def _current_target(self) -> str | None:
        try:
            target = os.readlink(self.root / CURRENT)
        except OSError:  # absent, or not a link
            return None
        return target.rstrip("/").rsplit("/", 1)[-1]

    def current_version(self) -> str | None:
        """The version `current` points at (None: no link, or a link that names no version)."""
        target = self._current_target()
        return target if target is not None and VERSION.fullmatch(target) else None

    @staticmethod
    def _is_complete(path: Path) -> bool:
        return path.is_dir() and not path.is_symlink() and (path / MARKER).is_file()

    def installed_versions(self) -> list[str]:
        """Complete versions on the node, most recently installed or activated first."""
        found = []
        for entry in self.root.iterdir():
            if VERSION.fullmatch(entry.name) and self._is_complete(entry):
                try:
                    stamp = (entry / MARKER).stat().st_mtime_ns
                except FileNotFoundError:
                    continue
                found.append((stamp, parse_version(entry.name), entry.name))
        return [name for _, _, name in sorted(found, reverse=True)]

    def prefetched(self, version: str) -> bool:
        """Whether ``version`` is complete in this node's cache (downloaded, verified, health-checked), so
        a swap to it needs no download. True for the version `current` points at as well."""
        return bool(VERSION.fullmatch(version)) and self._is_complete(self.root / version)

    @property
    def waiting_for_window(self) -> str | None:
        """The newer version held back by the ring's swap windows at the last reconcile (None: none)."""
        return self._waiting[0] if self._waiting is not None else None

    def ready(self) -> tuple[bool, str]:
        """(ready, why): ready when `current` is the desired version and passed its check, or when idle.

        While a newer release waits for a swap window the desired version is the one the node serves: it
        is ready when that one passed its check, and says what it waits for.
        """
        ok, why = self._readiness()
        self._m_ready.set(1 if ok else 0)
        return ok, why

    def _readiness(self) -> tuple[bool, str]:
        if not self._reconciled:
            return False, "not reconciled yet"
        current = self.current_version()
        if self._idle:
            return True, f"no release: idling (current: {current or 'no model'})"
        if self._desired is None:
            return False, self._problem or "no usable release file"
        if current != self._desired:
            why = f"current is {current or 'no model'}, desired {self._desired}"
            return False, f"{why}: {self._problem}" if self._problem else why
        if self._problem:  # its own release refused now (a key no longer trusted, say): the model stays
            return False, self._problem
        if self._verified is None or self._verified[0] != current:
            return False, self._problem or f"{current} has not passed its health check"
        if self._waiting is not None:
            held, windows = self._waiting
            return True, f"serving {current}; {held} waits for a swap window ({', '.join(windows)})"
        return True, f"serving {current}"

    def report_release_error(self, message: str) -> ReconcileResult:
        """Record that the release file could not be read or parsed: not ready, the model stays."""
        repeated = self._problem == message
        self._reconciled = True
        self._idle = False
        self._desired = None
        self._waiting = None
        self._m_waiting.set(0)
        self._problem = message
        self._m_failures.labels(reason="release").inc()
        self._m_desired.info({"version": "unknown"})
        self._m_last.set(self._clock())
        self._m_ready.set(0)
        self.last_activity = time.monotonic()
        if not repeated:  # a loop re-reads the file every interval: say it once, count it every time
            log.error(
                "release file unusable; keeping the current model",
                extra=self._f(reason="release", error=message),
            )
        return ReconcileResult("failed", None, "release", message, 0.0)

    # --- reconcile ---

    def reconcile(self, release: Release | None) -> ReconcileResult:
        """Bring the node to ``release`` (None: "no release yet"). Never raises for a bad release or store.

        With a wave (``rollout.percent`` and ``previous``), the node runs the release when its wave slot
        falls under the percent and ``previous`` otherwise; outside the wave it still downloads, verifies and
        health-checks the announced release into its cache (prefetch), so the swap when its wave comes needs
        no download, like a cached rollback. The prefetch starts :func:`prefetch_delay` after this process
        first saw the release (``prefetch_spread``), so a fleet does not hit the store at once.

        With swap windows (``rollout.windows``), a node whose release is *newer* than the model it serves
        swaps only while a window is open at its local time; until then it keeps its model (outcome
        "waiting", ready) and prefetches the newer one. A rollback, a repair and a first install (a node
        that serves nothing) never wait.
        """
        announced = release
        release = release.for_node(self.node) if release is not None else None
        start = time.perf_counter()
        self.last_activity = time.monotonic()
        version = release.version if release is not None else None
        try:
            outcome, detail = self._reconcile(release, announced)
            result = ReconcileResult(outcome, version, "", detail, time.perf_counter() - start)
            self._problem = ""
        except UpdaterError as exc:
            result = self._failed(version, exc.reason, str(exc), exc.refused, start)
        except OSError as exc:
            message = (
                f"file system error under {self.root}: {exc.strerror or exc} ({exc.filename or 'no file'}); "
                "check free space and permissions of the model root"
            )
            result = self._failed(version, "io", message, False, start)
        finally:
            self._reconciled = True
            self.last_activity = time.monotonic()
            self._m_last.set(self._clock())
        if result.outcome != "waiting":
            self._waiting = None
        self._m_waiting.set(0 if self._waiting is None else 1)
        self.ready()
        if result.ok and result.outcome not in ("unchanged", "waiting"):  # waiting: logged once, by _hold
            log.info(
                f"reconcile: {result.outcome}",
                extra=self._f(version=version, outcome=result.outcome, seconds=round(result.seconds, 4)),
            )
        if result.ok and announced is not None and release is not None:
            ahead = [release] if result.outcome == "waiting" else []  # held by a window: in the cache first
            if release is not announced:
                ahead.append(announced)  # outside the wave: ready for the wave's swap
            self._prefetch_when_due(ahead)
        return result

    def _prefetch_when_due(self, releases: Sequence[Release]) -> None:
        """Prefetch each of ``releases`` once its delay since this process first saw it has passed.

        The node forgets a version no longer ahead of it (installed, or no longer announced); seen again,
        its delay starts again.
        """
        now = self._clock()
        seen: dict[str, float] = {}
        for release in releases:
            version = release.version
            if version in seen or self._is_complete(self.root / version):
                continue
            first = seen[version] = self._first_seen.get(version, now)
            delay = prefetch_delay(self.node, version, self.prefetch_spread)
            if now >= first + delay:
                self._prefetch(release)
            elif version not in self._first_seen:
                log.info(
                    "announced release seen; prefetching it after this node's share of the spread",
                    extra=self._f(version=version, in_seconds=round(delay, 1), spread=self.prefetch_spread),
                )
        self._first_seen = seen

    def _prefetch(self, release: Release) -> None:
        """Download, verify and health-check ``release`` into the cache without swapping to it.

        A failure here costs this node nothing (it keeps serving ``previous``): it is logged and counted,
        and retried on the next loop.
        """
        vdir = self.root / release.version
        if self._is_complete(vdir):
            return
        try:
            self._check_signed_and_accepted(release)
            if vdir.exists() or vdir.is_symlink():
                self._trash(vdir, delete=True)  # not ours, or left incomplete: never trusted
            self._promote(self._stage(release), vdir)
        except UpdaterError as exc:
            self._m_failures.labels(reason=exc.reason).inc()
            log.warning(
                "prefetch of the announced release failed; this node keeps its wave's release",
                extra=self._f(version=release.version, reason=exc.reason, error=str(exc)),
            )
            return
        except OSError as exc:
            self._m_failures.labels(reason="io").inc()
            log.warning(
                "prefetch of the announced release failed",
                extra=self._f(version=release.version, reason="io", error=exc.strerror or str(exc)),
            )
            return
        self._m_prefetches.inc()
        log.info(
            "prefetched the announced release for this node's wave", extra=self._f(version=release.version)
        )
        self._prune()

    @property
    def trusted_key_ids(self) -> list[str]:
        """The ids of the keys this node trusted at its last check, sorted."""
        return sorted(self._keys)

    def _trusted(self) -> dict[str, Ed25519PublicKey]:
        """The trusted keys now: the trust file read again (the kubelet may have refreshed it)."""
        if self._trust_file is None:
            return self._keys
        try:
            keys = self._trust_file.keys()
        except SignatureError as exc:
            raise UpdaterError(
                "signature",
                f"the trusted-keys file is unusable, so no release can be verified: {exc}. Fix "
                "environments/release-signing/ (the node keeps its model meanwhile)",
                refused=False,
            ) from None
        if keys.keys() != self._keys.keys():
            added, removed = sorted(keys.keys() - self._keys.keys()), sorted(self._keys.keys() - keys.keys())
            log.info(
                "trusted release-signing keys changed",
                extra=self._f(
                    added=",".join(added), removed=",".join(removed), trusted=",".join(sorted(keys))
                ),
            )
            self._m_trusted.clear()
            for kid in keys:
                self._m_trusted.labels(key_id=kid).set(1)
        self._keys = keys
        return keys

    def _known_signer(self, release: Release) -> str | None:
        """The key that verified this very signature before: in this process, or at install (the marker)."""
        kid = self._signers.get(release.signature)
        if kid is not None:
            return kid
        try:
            marker = json.loads((self.root / release.version / MARKER).read_bytes())
        except (OSError, ValueError):
            return None
        if isinstance(marker, dict) and marker.get("signature") == release.signature:
            signer = marker.get("key_id")
            return signer if isinstance(signer, str) else None
        return None

    def _check_signed_and_accepted(self, release: Release) -> None:
        """The signature first: nothing is downloaded, cached or swapped for a release nobody signed."""
        keys = self._trusted()
        try:
            self._signers[release.signature] = verify_release(release, keys)
        except ReleaseSignatureError as exc:
            signer = self._known_signer(release)
            if signer is not None and signer not in keys:
                trusted = ", ".join(sorted(keys)) or "none"
                raise UpdaterError(
                    "signature",
                    f"release {release.version} is signed by key {signer}, which this node no longer trusts "
                    f"(trusted: {trusted}). Re-sign the ring's release with a trusted key (`edgeops release "
                    f"resign`), or trust {signer} again until it is; the node keeps serving its model",
                ) from None
            raise UpdaterError("signature", str(exc)) from None
        if self.accept_interfaces and release.interface not in self.accept_interfaces:
            raise UpdaterError(
                "interface",
                f"release {release.version} has interface {release.interface}, which this ring does not "
                f"accept ({', '.join(self.accept_interfaces)}); the inference service here cannot call it. "
                "Release a model with an accepted interface, or add it to the ring's accepted list",
            )

    def _failed(
        self, version: str | None, reason: str, message: str, refused: bool, start: float
    ) -> ReconcileResult:
        self._problem = f"{'refused' if refused else 'failed'} ({reason}): {message}"
        self._m_failures.labels(reason=reason).inc()
        log.error(
            f"release {version} {'refused' if refused else 'failed'}; keeping the current model",
            extra=self._f(version=version, reason=reason, error=message, current=self.current_version()),
        )
        return ReconcileResult(
            "refused" if refused else "failed", version, reason, message, time.perf_counter() - start
        )

    def _reconcile(self, release: Release | None, announced: Release | None) -> tuple[Outcome, str]:
        if release is None:
            self._idle = True
            self._desired = None
            self._m_desired.info({"version": "none"})
            return "idle", "no release: keeping whatever model the node has"
        self._idle = False
        self._desired = release.version
        self._m_desired.info({"version": release.version})

        self._check_signed_and_accepted(release)

        version = release.version
        vdir = self.root / version
        fingerprint = _files_fingerprint(release.files)
        current = self.current_version()
        if current == version:
            if self._verified == (version, fingerprint):
                return "unchanged", f"already serving {version}"
            # First look at this version by this process (a restart): check it in place.
            try:
                self._check_installed(vdir, release)
            except UpdaterError as exc:
                if exc.reason == "golden":
                    raise  # the bytes match the signed release: a download would bring the same model
                self._m_failures.labels(reason=exc.reason).inc()
                log.error(
                    "the current model fails its check; downloading it again",
                    extra=self._f(version=version, reason=exc.reason, error=str(exc)),
                )
            else:
                self._verified = (version, fingerprint)
                self._prune()  # finishes a prune that a crash (or an older updater) left undone
                return "unchanged", f"already serving {version} (checked)"
            # Replacing the folder `current` points at leaves it dangling for the instant between two
            # renames; acceptable only because the model there is already known to be bad.
            self._promote(self._stage(release), vdir)
            self._verified = (version, fingerprint)
            self._m_installs.inc()
            self._reload(version)
            self._prune()
            return "installed", f"re-installed {version} over a damaged copy"

        assert announced is not None  # a release for this node comes from an announced one
        held = self._hold(release, announced, current)
        if held is not None:
            return held

        if self._is_complete(vdir):
            try:
                self._check_installed(vdir, release)
            except UpdaterError as exc:
                if exc.reason == "golden":
                    raise  # the same bytes would fail again: refuse instead of downloading them
                self._m_failures.labels(reason="cache").inc()
                log.warning(
                    "the cached copy fails its check; downloading it again",
                    extra=self._f(version=version, reason=exc.reason, error=str(exc)),
                )
                self._trash(vdir, delete=True)
            else:
                self._swap(version)
                self._verified = (version, fingerprint)
                self._m_cache_swaps.inc()
                self._reload(version)
                self._prune()
                return "swapped_from_cache", f"swapped to cached {version}"
        elif vdir.exists() or vdir.is_symlink():
            self._trash(vdir, delete=True)  # not ours, or left incomplete: never trusted

        self._promote(self._stage(release), vdir)
        self._swap(version)
        self._verified = (version, fingerprint)
        self._m_installs.inc()
        self._reload(version)
        self._prune()
        return "installed", f"installed {version}"

    def _hold(self, release: Release, announced: Release, current: str | None) -> tuple[Outcome, str] | None:
        """("waiting", why) when the ring's swap windows hold a *forward* swap to ``release`` back now.

        Never held: a node that serves nothing (nothing to disturb), a rollback or any swap to an older
        version (going back is how an incident ends; it must not wait for the night), and a node whose own
        model fails its check (replacing a broken model disturbs nothing either).
        """
        if not announced.swap_windows or current is None:
            return None
        if parse_version(release.version) <= parse_version(current):
            return None
        try:
            windows = parse_windows(announced.swap_windows)
        except ValueError as exc:
            raise UpdaterError("release", f"release {announced.version}: {exc}", refused=True) from None
        now = datetime.fromtimestamp(self._clock())  # local time: the pod's TZ
        if any_open(windows, now):
            if self._waiting is not None and self._waiting[0] == release.version:
                log.info(
                    "swap window open; swapping", extra=self._f(version=release.version, current=current)
                )
            return None
        if not self._current_is_healthy(current, announced, release.version):
            return None
        texts = tuple(window.text for window in windows)
        if self._waiting is None or self._waiting[0] != release.version:
            log.info(
                "newer release waits for a swap window; keeping the current model",
                extra=self._f(version=release.version, current=current, windows=",".join(texts)),
            )
        self._waiting = (release.version, texts)
        self._desired = current  # until a window opens, what this node should serve is what it serves
        return "waiting", f"{release.version} waits for a swap window ({', '.join(texts)}); serving {current}"

    def _current_is_healthy(self, current: str, announced: Release, target: str) -> bool:
        """Check ``current`` in place once per process: against its signed release when the file carries it
        (``previous``), else against the files its completion marker recorded at install."""
        vdir = self.root / current
        known = announced.previous if announced.previous and announced.previous.version == current else None
        files = known.files if known is not None else self._marker_files(vdir)
        if files is not None and self._verified == (current, _files_fingerprint(files)):
            return True
        try:
            if files is None:
                raise UpdaterError(
                    "digest", f"{current} has no readable completion marker on the node", refused=False
                )
            self._verify_files(vdir, files)
            if known is not None:
                self._check_card(vdir, known)
            golden_check(vdir)
        except UpdaterError as exc:
            self._m_failures.labels(reason=exc.reason).inc()
            log.error(
                "the current model fails its check; installing the newer release now instead of waiting for "
                "a swap window",
                extra=self._f(version=target, current=current, reason=exc.reason, error=str(exc)),
            )
            return False
        self._verified = (current, _files_fingerprint(files))
        return True

    @staticmethod
    def _marker_files(vdir: Path) -> dict[str, FileEntry] | None:
        """The files a version's completion marker recorded (checked against its signed release then)."""
        try:
            marker = json.loads((vdir / MARKER).read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(marker, dict) or marker.get("format") != _MARKER_FORMAT:
            return None
        files = marker.get("files")
        if not isinstance(files, dict) or not files:
            return None
        entries: dict[str, FileEntry] = {}
        for name, entry in files.items():
            if not (
                isinstance(name, str)
                and "/" not in name
                and name not in ("", ".", "..")
                and isinstance(entry, dict)
                and isinstance(entry.get("sha256"), str)
                and isinstance(entry.get("bytes"), int)
            ):
                return None
            entries[name] = {"sha256": entry["sha256"], "bytes": entry["bytes"]}
        return entries

    def _store(self, uri: str) -> Store:
        store = self._stores.get(uri)
        if store is None:
            try:
                store = self._store_opener(uri)
            except EdgeopsError as exc:
                raise UpdaterError("download", f"cannot open the store {uri}: {exc}", refused=False) from None
            self._stores[uri] = store
        return store

    def _stage(self, release: Release) -> Path:
        """Download, verify and health-check ``release`` into ``<version>.partial/``; write the marker."""
        partial = self.root / f"{release.version}{PARTIAL_SUFFIX}"
        if partial.exists() or partial.is_symlink():
            _remove(partial)
        partial.mkdir(mode=0o755)
        try:
            store = self._store(release.store_uri)
            total = sum(entry["bytes"] for entry in release.files.values())
            limit = download_deadline(total, self.download_deadline, self.download_min_rate)
            deadline = time.monotonic() + limit
            for index, (name, entry) in enumerate(sorted(release.files.items())):
                key = release.object_key(name)
                try:
                    data = self._fetch(store, key, entry["bytes"], deadline)
                except _DeadlineExceeded:
                    raise UpdaterError(
                        "deadline",
                        f"downloading {release.bundle} ({total} bytes) ran past its deadline of {limit:.0f} "
                        f"s (at least --download-deadline {self.download_deadline:g} s, else the time "
                        f"--download-min-rate {self.download_min_rate / 1024:g} KiB/s needs); stopped "
                        f"during {name}. The node keeps its model and tries again on its next loop; a link "
                        "this slow needs a lower --download-min-rate",
                        refused=False,
                    ) from None
                except EdgeopsError as exc:  # StoreError, ServiceError: network, credentials, missing object
                    skew = _clock_skew(exc)
                    if skew is not None:
                        raise UpdaterError(
                            "clock_skew", f"cannot download {release.bundle}{name}: {skew}", refused=False
                        ) from None
                    raise UpdaterError(
                        "download",
                        f"cannot download {release.bundle}{name}: {exc}",
                        refused=False,
                    ) from None
                digest = hashlib.sha256(data).hexdigest()
                if len(data) != entry["bytes"] or digest != entry["sha256"]:
                    raise UpdaterError(
                        "digest",
                        f"{release.bundle}{name} does not match the signed release ({len(data)} bytes, "
                        f"sha256 {digest[:12]}…; the release says {entry['bytes']} bytes, "
                        f"{entry['sha256'][:12]}…): the object was changed or damaged in the store. Do not "
                        "deploy it; publish a new version",
                    )
                write_atomic(partial / name, data, tmp_prefix=_TMP_FILE_PREFIX)
                self.last_activity = time.monotonic()
                if index == 0:
                    _crash_point("during_download")
            fsync_path(partial)
            _crash_point("after_partial_download")
            self._verify_files(partial, release.files)  # what landed on disk, not what we meant to write
            _crash_point("after_verify")
            self._check_card(partial, release)
            golden_check(partial)
            _crash_point("after_golden")
            marker = {
                "format": _MARKER_FORMAT,
                "version": release.version,
                "interface": release.interface,
                "bundle": release.bundle,
                "files": release.files,
                # Who signed what was installed: a later refusal can then name a key the node dropped.
                "signature": release.signature,
                "key_id": self._signers.get(release.signature),
                "installed_at": time.time(),
            }
            marker_text = json.dumps(marker, sort_keys=True) + "\n"
            write_atomic(partial / MARKER, marker_text.encode("utf-8"), tmp_prefix=_TMP_FILE_PREFIX)
            fsync_path(partial)
        except BaseException:
            with contextlib.suppress(OSError):
                _remove(partial)
            raise
        return partial

    def _fetch(self, store: Store, key: str, size: int, deadline: float) -> bytes:
        """The object's bytes, or :class:`_DeadlineExceeded` at ``deadline`` (``time.monotonic()``).

        A worker thread reads (an S3 body in chunks, see :func:`_read_s3`; any other store by ``get``), and
        this one waits for it until the deadline, counting progress as the loop's activity (liveness). At
        the deadline the worker's socket is cut: it stops at its next read and its bytes are dropped; a
        worker that gets no body at all (a store that never answers) ends with botocore's own timeouts.
        """
        if time.monotonic() >= deadline:  # the files before this one took all the time
            raise _DeadlineExceeded
        state: dict[str, Any] = {"deadline": deadline, "got": 0, "cancelled": threading.Event()}
        result: dict[str, Any] = {}

        def work() -> None:
            try:
                if isinstance(store, S3Store):
                    result["data"] = _read_s3(store, key, size, state)
                else:
                    result["data"] = store.get(key)
            except Exception as exc:  # noqa: BLE001 - handed to the waiting thread, which re-raises it
                result["error"] = exc

        worker = threading.Thread(target=work, name="updater-download", daemon=True)
        worker.start()
        seen = 0
        while worker.is_alive():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            worker.join(min(left, 1.0))
            if state["got"] != seen:  # bytes arrived: the loop is progressing
                seen = state["got"]
                self.last_activity = time.monotonic()
        if worker.is_alive() or ("error" in result and time.monotonic() >= deadline):
            state["cancelled"].set()
            body = state.get("body")
            if body is not None and state["got"] < state["length"]:
                with contextlib.suppress(Exception):  # the worker may be closing it right now
                    body.set_socket_timeout(0.001)  # its next socket read fails at once
            raise _DeadlineExceeded
        if "error" in result:
            raise result["error"]
        data: bytes = result["data"]
        return data

    def _promote(self, partial: Path, vdir: Path) -> None:
        """``<version>.partial`` → ``<version>``, durably (a version already there is moved aside first)."""
        if vdir.exists() or vdir.is_symlink():
            self._trash(vdir, delete=False)
        os.rename(partial, vdir)
        fsync_path(self.root)
        _crash_point("after_rename")

    def _check_installed(self, vdir: Path, release: Release) -> None:
        self._verify_files(vdir, release.files)
        self._check_card(vdir, release)
        golden_check(vdir)

    def _verify_files(self, folder: Path, files: Mapping[str, FileEntry]) -> None:
        for name, entry in sorted(files.items()):
            path = folder / name
            try:
                size = path.stat().st_size
                digest = sha256_file(path)
            except FileNotFoundError:
                raise UpdaterError(
                    "digest", f"{folder.name}/{name} is missing on the node", refused=False
                ) from None
            if size != entry["bytes"] or digest != entry["sha256"]:
                raise UpdaterError(
                    "digest",
                    f"{folder.name}/{name} on the node does not match the signed release ({size} bytes, "
                    f"sha256 {digest[:12]}…): damaged on disk",
                    refused=False,
                )

    def _check_card(self, folder: Path, release: Release) -> None:
        """When the bundle carries its model card, its interface must be the one the release claims."""
        if "model.json" not in release.files:
            return
        try:
            card = json.loads((folder / "model.json").read_bytes())
        except (OSError, ValueError) as exc:
            raise UpdaterError("interface", f"{release.bundle}model.json is unreadable ({exc})") from None
        claimed = card.get("interface") if isinstance(card, dict) else None
        if claimed is not None and claimed != release.interface:
            raise UpdaterError(
                "interface",
                f"{release.bundle}model.json says interface {claimed}, the release says {release.interface}; "
                "the release points at the wrong bundle",
            )

    def _swap(self, version: str) -> None:
        """Point `current` at ``version`` atomically: temp link, rename onto `current`, fsync the root."""
        with contextlib.suppress(OSError):
            os.utime(self.root / version / MARKER)  # recency for pruning: a rollback target counts as new
        start = time.perf_counter()
        tmp = self.root / f"{_TMP_LINK_PREFIX}{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(version, tmp)  # relative: valid wherever the root is mounted (the inference pod too)
        _crash_point("after_swap_link")
        os.replace(tmp, self.root / CURRENT)
        fsync_path(self.root)
        self._m_swap.observe(time.perf_counter() - start)
        self._m_current.info({"version": version})
        _crash_point("after_swap")

    def _reload(self, version: str) -> None:
        if not self.reload_url:
            return
        body = json.dumps({"version": version, "path": str(self.root / CURRENT)}).encode("utf-8")
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked to be http(s) in __init__
            self.reload_url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self._reload_timeout) as response:  # noqa: S310
                response.read()
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            self._m_failures.labels(reason="reload").inc()
            log.warning(
                "reload hook failed; the new model is in place and the inference service loads it on its "
                "next reload",
                extra=self._f(version=version, url=_redact_url(self.reload_url), error=str(exc)),
            )

    def _trash(self, path: Path, *, delete: bool) -> Path:
        """Move ``path`` aside to a name recovery deletes: a rename is atomic, a recursive delete is not."""
        trash = self.root / f"{_TRASH_PREFIX}{path.name}-{secrets.token_hex(4)}"
        os.rename(path, trash)
        fsync_path(self.root)
        if delete:
            _remove(trash)
        return trash

    def _prune(self) -> None:
        """Keep the ``keep`` most recently installed/activated versions and `current`; delete the rest."""
        current = self._current_target()
        installed = self.installed_versions()
        keep = set(installed[: self.keep]) | ({current} if current else set())
        victims = [v for v in installed if v not in keep]
        leftovers = [
            e
            for e in self.root.iterdir()
            if e.name.endswith(PARTIAL_SUFFIX) or e.name.startswith((_TRASH_PREFIX, _TMP_LINK_PREFIX))
        ]
        for index, version in enumerate(victims):
            trash = self._trash(self.root / version, delete=False)
            if index == 0:
                _crash_point("during_prune")
            _remove(trash)
        for entry in leftovers:
            _remove(entry)
        if victims:
            log.info(
                "pruned old versions", extra=self._f(removed=",".join(victims), kept=",".join(sorted(keep)))
            )


# --- HTTP: /ready, /healthz, /metrics -----------------------------------------------------------------------


def serve_http(
    updater: Updater, host: str, port: int, *, alive: Callable[[], tuple[bool, str]] | None = None
) -> ThreadingHTTPServer:
    """Serve ``/ready``, ``/healthz`` (liveness: ``alive``) and ``/metrics`` in a daemon thread.

    Returns the server (``server.server_address[1]`` is the port when ``port`` is 0); ``shutdown()`` stops it.
    An address that cannot be bound (in use, not this machine's) is an :class:`EdgeopsError` saying what to
    do.
    """

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(updater.registry), CONTENT_TYPE_LATEST)
            elif path == "/ready":
                ok, why = updater.ready()
                self._send(200 if ok else 503, (why + "\n").encode("utf-8"))
            elif path == "/healthz":
                ok, why = alive() if alive is not None else (True, "alive")
                self._send(200 if ok else 503, (why + "\n").encode("utf-8"))
            else:
                self._send(404, b"not found: use /ready, /healthz or /metrics\n")

        def _send(self, status: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # probes hit this every few seconds; the access log would drown the updater's own

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    try:
        server = Server((host, port), Handler)
    except OSError as exc:
        raise listen_error(exc, host, port) from None
    threading.Thread(target=server.serve_forever, name="updater-http", daemon=True).start()
    return server


def listen_error(exc: OSError, host: str, port: int) -> EdgeopsError:
    """What to do when ``--listen HOST:PORT`` cannot be bound (for the updater and the inference service)."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        why = (
            "address already in use; pick another --listen port, or stop the process holding it "
            f"(`ss -ltnp 'sport = :{port}'` names it)"
        )
    elif exc.errno == errno.EADDRNOTAVAIL:
        why = f"{host} is not an address of this machine; listen on 0.0.0.0 (all interfaces) or on one it has"
    elif exc.errno == errno.EACCES:
        why = "permission denied; ports below 1024 need privileges: pick a port of 1024 or more"
    elif isinstance(exc, socket.gaierror):
        why = f"{host!r} does not resolve to an address; give an IP address such as 0.0.0.0 or 127.0.0.1"
    else:
        why = f"{exc.strerror or exc}; check the --listen address"
    return EdgeopsError(f"cannot listen on {where}: {why}")


# --- the loop and the command line --------------------------------------------------------------------------


def _listen_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (such as 0.0.0.0:9180 or 127.0.0.1:0)")
    return host, int(port)


def run(
    *,
    release_path: Path,
    root: Path,
    public_key_path: Path | Sequence[Path],
    accept_interfaces: Sequence[str] = (),
    keep: int = 3,
    reload_url: str | None = None,
    interval: float = 30.0,
    once: bool = False,
    listen: tuple[str, int] | None = None,
    retry_refused: float = 600.0,
    prefetch_spread: float = 0.0,
    download_deadline: float = DEFAULT_DOWNLOAD_DEADLINE,
    download_min_rate: float = DEFAULT_DOWNLOAD_MIN_RATE,
    stop: threading.Event | None = None,
) -> int:
    """The agent: reconcile every ``interval`` seconds (re-reading the release file) until ``stop``/SIGTERM.

    With ``once``: a single pass; 0 when the node ends on the desired version, idles, or keeps its healthy
    model while a newer one waits for a swap window; 1 otherwise.
    A release that was refused is not re-tried for ``retry_refused`` seconds (its download would fail the
    same way and only load the store), unless the release file changes. ``prefetch_spread``: see
    :class:`Updater` (a ``once`` run prefetches only what is due at once: the delay lives in memory).
    ``public_key_path``: the trusted-keys file(s) (:class:`TrustFile`), read again every loop; a refused
    release is retried at once when they change (a key added to the set may be what it waited for).
    """
    trust = TrustFile(public_key_path)
    stop = stop or threading.Event()
    node = os.environ.get("NODE_NAME", "")
    updater = Updater(
        root, trust, accept_interfaces, keep, reload_url, node=node, prefetch_spread=prefetch_spread,
        download_deadline=download_deadline, download_min_rate=download_min_rate,
    )  # fmt: skip
    stale_after = max(10 * interval, 600.0)

    def alive() -> tuple[bool, str]:
        idle_for = time.monotonic() - updater.last_activity
        if idle_for > stale_after:
            return False, f"the reconcile loop has not progressed for {idle_for:.0f} s"
        return True, "alive"

    server: ThreadingHTTPServer | None = None
    previous_term: Any = None
    try:
        if listen is not None:
            server = serve_http(updater, listen[0], listen[1], alive=alive)
            log.info(
                "serving /ready, /healthz and /metrics",
                extra=fields(address=f"{listen[0]}:{server.server_address[1]}"),
            )
        if threading.current_thread() is threading.main_thread():
            # SIGTERM (pod deletion, rollout) ends the wait between loops; a reconcile in progress
            # finishes first, and a SIGKILL mid-reconcile is what the crash-safety design is for.
            previous_term = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
        log.info(
            "model-updater started",
            extra=fields(
                node=node or None,
                root=str(updater.root),
                release=str(release_path),
                trusted_keys=",".join(updater.trusted_key_ids),
                accept_interfaces=",".join(accept_interfaces) or "any",
                keep=keep,
                prefetch_spread=prefetch_spread,
                once=once,
            ),
        )
        refused: tuple[Release | None, float, ReconcileResult, str] | None = None
        while True:
            try:
                release = load_release(release_path)
            except ReleaseError as exc:
                result = updater.report_release_error(str(exc))
            else:
                now = time.monotonic()
                keys_now = trust.fingerprint()
                if (
                    refused is not None
                    and refused[0] == release
                    and refused[3] == keys_now
                    and now - refused[1] < retry_refused
                ):
                    result = refused[2]  # the same refused release: nothing new to learn from the store
                    updater.last_activity = now
                else:
                    result = updater.reconcile(release)
                    refused = (release, now, result, keys_now) if result.outcome == "refused" else None
            if once:
                return 0 if result.ok else 1
            if stop.wait(interval):
                log.info("stopping", extra=fields(current=updater.current_version()))
                return 0
    finally:
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
        if server is not None:
            server.shutdown()
            server.server_close()
        updater.close()


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``edgeops updater run`` (for the CLI to mount under its own parser)."""
    parser.add_argument(
        "--release",
        required=True,
        type=Path,
        metavar="PATH",
        help="the mounted release.yaml (re-read every loop)",
    )
    parser.add_argument(
        "--root",
        required=True,
        type=Path,
        metavar="DIR",
        help="model root: versions, and the `current` symlink the inference service loads",
    )
    parser.add_argument(
        "--public-key",
        required=True,
        action="append",
        type=Path,
        metavar="PATH",
        help="the trusted release-signing keys: a PEM file of one or several Ed25519 public keys, read again "
        "every loop (a release verifies when any of them signed it); repeat for several files",
    )
    parser.add_argument(
        "--accept-interface",
        action="append",
        default=[],
        metavar="SHA",
        help="an accepted model interface (sha256:…); repeat for several. None given: any "
        "interface is accepted (labs only; production rings should list theirs)",
    )
    parser.add_argument(
        "--keep",
        type=int,
        default=3,
        metavar="N",
        help="versions kept on the node for instant rollback (default 3)",
    )
    parser.add_argument(
        "--reload-url",
        metavar="URL",
        help="HTTP(S) endpoint POSTed {version, path} after a swap (failure is logged, the swap stays)",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="seconds between reconciles (default 30)",
    )
    parser.add_argument(
        "--retry-refused",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="wait before retrying a refused, unchanged release (default 600)",
    )
    parser.add_argument(
        "--prefetch-spread",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="spread the fleet's prefetches of an announced release over this many seconds: each node "
        "waits its own stable share (a hash of node and version) after first seeing it (default 300; "
        "0: at once). A node inside its wave installs at once",
    )
    parser.add_argument(
        "--download-deadline",
        type=float,
        default=DEFAULT_DOWNLOAD_DEADLINE,
        metavar="SECONDS",
        help="a bundle download stops after max(SECONDS, its size / --download-min-rate) and is tried again "
        f"on the next loop (reason deadline; default {DEFAULT_DOWNLOAD_DEADLINE:g})",
    )
    parser.add_argument(
        "--download-min-rate",
        type=float,
        default=DEFAULT_DOWNLOAD_MIN_RATE / 1024,
        metavar="KIB_PER_S",
        help="the slowest link a bundle download waits for, in KiB/s "
        f"(default {DEFAULT_DOWNLOAD_MIN_RATE // 1024}); see --download-deadline",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="one reconcile, then exit: 0 on the desired version (or idle, or keeping a healthy model "
        "while a newer one waits for a swap window), 1 otherwise",
    )
    parser.add_argument(
        "--listen",
        type=_listen_address,
        metavar="HOST:PORT",
        help="serve /ready, /healthz and /metrics here (such as 0.0.0.0:9180)",
    )
    # SUPPRESS: when mounted under `edgeops`, which has its own --log-json/-v, a default here would
    # overwrite the value given before the subcommand.
    parser.add_argument("--log-json", action="store_true", default=argparse.SUPPRESS, help="log JSON lines")
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging"
    )


def run_from_args(args: argparse.Namespace) -> int:
    """Run the agent from parsed :func:`add_run_arguments` flags (logging already set up by the caller)."""
    if args.keep < 1:
        raise ConfigError(f"--keep {args.keep}: keep at least 1 version (the current one)")
    if not args.interval > 0:
        raise ConfigError(f"--interval {args.interval:g}: give a positive number of seconds")
    if not (math.isfinite(args.prefetch_spread) and args.prefetch_spread >= 0):
        raise ConfigError(
            f"--prefetch-spread {args.prefetch_spread:g}: give a number of seconds ≥ 0 (0: prefetch at once)"
        )
    for flag, value in (
        ("--download-deadline", args.download_deadline),
        ("--download-min-rate", args.download_min_rate),
    ):
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{flag} {value:g}: give a positive number")
    return run(
        release_path=args.release,
        root=args.root,
        public_key_path=args.public_key,
        accept_interfaces=args.accept_interface,
        keep=args.keep,
        reload_url=args.reload_url,
        interval=args.interval,
        once=args.once,
        listen=args.listen,
        retry_refused=args.retry_refused,
        prefetch_spread=args.prefetch_spread,
        download_deadline=args.download_deadline,
        download_min_rate=args.download_min_rate * 1024,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeops updater", description="The edge model-updater agent.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run_parser = sub.add_parser(
        "run",
        help="reconcile this node's model to the mounted release file",
        description="Download, verify, health-check and atomically swap the model the release file names.",
    )
    add_run_arguments(run_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tools.edge.updater run …`` (``edgeops updater run …`` calls the same code)."""
    args = build_parser().parse_args(argv)
    setup_logging(json_lines=getattr(args, "log_json", False), verbose=getattr(args, "verbose", False))
    try:
        return run_from_args(args)
    except EdgeopsError as exc:
        log.error(str(exc))
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
