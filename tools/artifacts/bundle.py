"""Immutable, signed model bundles in an object store, and their versions.

A bundle is the folder ``models/<version>/`` of a store (DESIGN.md, "Model bundle"): the content files
(``model.onnx``, ``golden.json``, …), ``SHA256SUMS`` (``"<64 hex>  <name>\\n"`` per content file, sorted by
name: the format of coreutils' ``sha256sum``, so ``sha256sum -c SHA256SUMS`` works on a node by hand) and
``SHA256SUMS.sig`` (the Ed25519 signature of the exact ``SHA256SUMS`` bytes, from
:func:`tools.core.signing.sign`,
plus a newline). Signing the checksum list signs the whole bundle with one small signature.

Publishing writes the content files first, then ``SHA256SUMS``, then ``SHA256SUMS.sig`` last, so a publish
that dies half way leaves a bundle that reads as unsigned (incomplete), never one that verifies with missing
parts; publishing the same files again completes it. A version, once written, is never changed: the same
bytes again are a no-op ("identical"), different bytes are refused: publish a new version instead.

Versions are ``vMAJOR.MINOR`` (DESIGN.md, "Versions"): MINOR goes up with every published candidate, MAJOR
when the model interface changes; a version is never reused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypedDict

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tools.core.errors import EdgeopsError
from tools.core.log import fields
from tools.core.names import FILE_NAME, FILE_NAME_RULE, VERSION, VERSION_RE
from tools.core.signing import (
    SIGNATURE_PREFIX,
    SignatureError,
    TrustedKeys,
    describe_keys,
    key_id,
    sign,
    trusted_keys,
    verify,
)
from tools.core.store import Store, open_store

__all__ = [
    "MODELS_PREFIX",
    "SIGNATURE_FILE",
    "SUMS_FILE",
    "VERSION_RE",
    "BundleError",
    "FileEntry",
    "PublishResult",
    "VerifyReport",
    "bundle_prefix",
    "format_version",
    "list_versions",
    "next_version",
    "parse_sha256sums",
    "parse_version",
    "publish_bundle",
    "sha256sums",
    "verify_bundle",
    "verify_bundle_uri",
]

log = logging.getLogger(__name__)

MODELS_PREFIX = "models"
SUMS_FILE = "SHA256SUMS"
SIGNATURE_FILE = "SHA256SUMS.sig"
_RESERVED = frozenset({SUMS_FILE, SIGNATURE_FILE})
_SUMS_LINE = re.compile(r"^([0-9a-f]{64})  (.+)$")


class BundleError(EdgeopsError):
    """A bundle or version is malformed, incomplete, tampered with, or would be overwritten."""


class FileEntry(TypedDict):
    """One content file of a bundle, as a release file's ``files:`` map records it."""

    sha256: str
    bytes: int


@dataclass(frozen=True)
class PublishResult:
    version: str
    uri: str  # the bundle folder, with a trailing "/": s3://bucket/prefix/models/v1.2/
    outcome: Literal["published", "identical"]
    files: dict[str, FileEntry] = field(default_factory=dict)  # content files only (no SHA256SUMS*)


@dataclass(frozen=True)
class VerifyReport:
    version: str
    files: dict[str, FileEntry]  # content files, as listed in SHA256SUMS and checked
    key_id: str  # the public key the signature verified under


# --- versions ------------------------------------------------------------------------------------------


def parse_version(version: str) -> tuple[int, int]:
    """``"v2.1"`` → ``(2, 1)``; :class:`BundleError` for anything else."""
    match = VERSION.fullmatch(version) if isinstance(version, str) else None
    if match is None:
        raise BundleError(
            f"{version!r} is not a model version: expected vMAJOR.MINOR such as v2.1 (no leading zeros)"
        )
    return int(match.group(1)), int(match.group(2))


def format_version(major: int, minor: int) -> str:
    if isinstance(major, bool) or isinstance(minor, bool) or min(major, minor) < 0:
        raise BundleError(f"({major!r}, {minor!r}) is not a model version: MAJOR and MINOR are integers ≥ 0")
    return f"v{major}.{minor}"


def bundle_prefix(version: str) -> str:
    """The bundle's folder in a store: ``models/<version>``."""
    parse_version(version)
    return f"{MODELS_PREFIX}/{version}"


def list_versions(store: Store) -> list[str]:
    """Every version folder under ``models/`` (complete or not), sorted numerically; other keys ignored.

    Incomplete bundles count: their version is taken, and :func:`next_version` never hands it out again.
    """
    found = set()
    for key in store.list(MODELS_PREFIX):
        parts = key.split("/")
        if len(parts) >= 3 and VERSION.fullmatch(parts[1]):
            found.add(parts[1])
    return sorted(found, key=parse_version)


def next_version(existing: Sequence[str], *, interface: str, latest_interface: str | None) -> str:
    """The version the next candidate gets.

    ``existing``: every version ever published (:func:`list_versions`); ``latest_interface``: the
    ``interface`` of the highest of them (None when unknown). First ever → v1.0; same interface as the
    highest → MINOR + 1; a different (or unknown) interface → MAJOR + 1, MINOR 0. Always above every
    existing version, so none is reused.
    """
    if isinstance(existing, str):
        raise BundleError("next_version: `existing` must be a sequence of versions, not one string")
    parsed = [parse_version(v) for v in existing]
    if not parsed:
        return format_version(1, 0)
    major, minor = max(parsed)
    if latest_interface is not None and interface == latest_interface:
        return format_version(major, minor + 1)
    return format_version(major + 1, 0)


# --- SHA256SUMS ------------------------------------------------------------------------------------------


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not FILE_NAME.fullmatch(name) or name in (".", ".."):
        raise BundleError(f"{name!r} is not a valid bundle file name: use {FILE_NAME_RULE}")
    return name


def _content_name(name: str) -> str:
    if name in _RESERVED:
        raise BundleError(f"{name!r} is written by publish itself; do not pass it as a bundle file")
    return _check_name(name)


def _entry(data: bytes) -> FileEntry:
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def sha256sums(files: Mapping[str, bytes]) -> bytes:
    """The ``SHA256SUMS`` text for ``files`` (name → bytes): one ``"<hex>  <name>\\n"`` per file, by name."""
    for name in files:
        _content_name(name)
    return "".join(f"{hashlib.sha256(files[n]).hexdigest()}  {n}\n" for n in sorted(files)).encode("ascii")


def parse_sha256sums(text: bytes) -> dict[str, str]:
    """``SHA256SUMS`` bytes → {name: hex digest}; :class:`BundleError` naming the first bad line."""
    try:
        decoded = text.decode("ascii")
    except UnicodeDecodeError as exc:
        raise BundleError(f"{SUMS_FILE}: not ASCII text (byte {exc.start}); the file is damaged") from None
    if decoded and not decoded.endswith("\n"):
        raise BundleError(f"{SUMS_FILE}: the last line has no line break; the file is truncated or damaged")
    sums: dict[str, str] = {}
    # split("\n"), not splitlines(): a CR or another line break inside a line is damage, not a separator.
    for number, line in enumerate(decoded.split("\n")[:-1], start=1):
        match = _SUMS_LINE.fullmatch(line)
        shown = line if len(line) <= 100 else line[:100] + "…"
        if match is None:
            raise BundleError(
                f"{SUMS_FILE} line {number}: {shown!r} is not '<64 lowercase hex>  <name>'; "
                "the file is damaged"
            )
        digest, name = match.groups()
        try:
            _content_name(name)
        except BundleError as exc:
            raise BundleError(f"{SUMS_FILE} line {number}: {exc}") from None
        if name in sums:
            raise BundleError(f"{SUMS_FILE} line {number}: {name!r} is listed twice; the file is damaged")
        sums[name] = digest
    return sums


# --- publish and verify ------------------------------------------------------------------------------------


def publish_bundle(
    store: Store, version: str, files: Mapping[str, bytes], private_key: Ed25519PrivateKey
) -> PublishResult:
    """Write ``files`` as the signed bundle ``models/<version>/`` of ``store``.

    A version that does not exist yet is written (content files, then SHA256SUMS, then the signature) and
    the outcome is "published". A version that holds exactly these files is left alone: "identical" (its
    signature may be by another key when the key was rotated; it is kept, the content is what counts).
    A version left incomplete by an interrupted publish of these same files is completed: "published".
    Anything else (a file with other bytes, a file that is not in ``files``) → :class:`BundleError`.
    """
    prefix = bundle_prefix(version)
    if not files:
        raise BundleError(f"bundle {version}: no files to publish; a bundle needs at least model.onnx")
    for name in files:
        _content_name(name)
    sums = sha256sums(files)
    signature = (sign(private_key, sums) + "\n").encode("ascii")
    planned: dict[str, bytes] = {name: files[name] for name in sorted(files)}
    planned[SUMS_FILE] = sums
    planned[SIGNATURE_FILE] = signature  # last: a bundle without it reads as incomplete
    folder = store.url(prefix) + "/"
    result_files = {name: _entry(files[name]) for name in sorted(files)}
    refuse = (
        f"version {version} already exists with different content at {folder}; versions are immutable: "
        "publish a new version"
    )

    present = {key[len(prefix) + 1 :] for key in store.list(prefix)}
    if present:
        extra = sorted(present - planned.keys())
        if extra:
            raise BundleError(f"{refuse} (it has files this publish does not: {', '.join(extra)})")
        changed = []
        for name in sorted(present):
            stored = store.get(f"{prefix}/{name}")
            if name == SIGNATURE_FILE:
                if stored != signature:
                    _check_foreign_signature(stored, folder)
                continue
            if stored != planned[name]:
                changed.append(name)
        if changed:
            raise BundleError(f"{refuse} (differs in: {', '.join(changed)})")
        if present == planned.keys():
            log.info("bundle already published with these bytes", extra=fields(version=version))
            return PublishResult(version, folder, "identical", result_files)
        log.info(
            "completing an interrupted publish",
            extra=fields(version=version, missing=",".join(sorted(planned.keys() - present))),
        )

    for name, data in planned.items():
        if name not in present:
            store.put_immutable(f"{prefix}/{name}", data)
    log.info(
        "published bundle",
        extra=fields(version=version, uri=folder, key_id=key_id(private_key)),
    )
    return PublishResult(version, folder, "published", result_files)


def _check_foreign_signature(stored: bytes, folder: str) -> None:
    """An existing signature that is not ours must at least be well-formed (made by another key)."""
    text = stored.decode("ascii", errors="replace").strip()
    try:
        raw = base64.b64decode(text.removeprefix(SIGNATURE_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if not text.startswith(SIGNATURE_PREFIX) or len(raw) != 64:
        raise BundleError(
            f"{folder}{SIGNATURE_FILE} is damaged (not an ed25519: signature); this version is broken and "
            "versions are immutable: publish a new version"
        )
    log.warning(
        "the existing bundle's signature was made by another key; keeping it (the content is identical)",
        extra=fields(bundle=folder),
    )


def verify_bundle(store: Store, version: str, public_key: Ed25519PublicKey | TrustedKeys) -> VerifyReport:
    """Check the bundle ``models/<version>/``: signature, every listed file's digest, no extra files.

    ``public_key``: one key or the trusted set by key id (while a key rotates, either key's signature
    verifies). Returns what was verified; :class:`BundleError` naming the file at fault otherwise.
    """
    prefix = bundle_prefix(version)
    folder = store.url(prefix) + "/"
    keys = trusted_keys(public_key)
    present = {key[len(prefix) + 1 :] for key in store.list(prefix)}
    if not present:
        raise BundleError(f"{folder}: no bundle for version {version} (check the store URI and the version)")
    if SUMS_FILE not in present:
        raise BundleError(
            f"{folder}{SUMS_FILE} is missing: the bundle is incomplete or damaged; publish it again "
            "(the same bytes are a no-op) or publish a new version"
        )
    if SIGNATURE_FILE not in present:
        raise BundleError(
            f"{folder}{SIGNATURE_FILE} is missing: the bundle is unsigned or its publish did not finish; "
            "publish it again (the same bytes are a no-op)"
        )
    sums = store.get(f"{prefix}/{SUMS_FILE}")
    raw_signature = store.get(f"{prefix}/{SIGNATURE_FILE}")
    try:
        signature = raw_signature.decode("ascii").strip()
    except UnicodeDecodeError:
        signature = "(not ASCII)"
    try:
        kid = verify(keys, sums, signature)
    except SignatureError as exc:
        raise BundleError(
            f"{folder}{SIGNATURE_FILE} does not verify {SUMS_FILE} with public {describe_keys(keys)}: {exc}. "
            "Either "
            f"{SUMS_FILE} or its signature was changed in the store, or the bundle was signed by another "
            "key (check signing.public_key)"
        ) from None
    try:
        listed = parse_sha256sums(sums)
    except BundleError as exc:
        raise BundleError(f"{folder}: {exc}") from None

    problems: list[str] = []
    missing = sorted(listed.keys() - present)
    problems.extend(f"{folder}{name} is missing (listed in {SUMS_FILE})" for name in missing)
    extra = sorted(present - listed.keys() - {SUMS_FILE, SIGNATURE_FILE})
    if extra:
        problems.append(f"{folder} has files not listed in {SUMS_FILE}: {', '.join(extra)}")
    checked: dict[str, FileEntry] = {}
    for name, expected in sorted(listed.items()):
        if name in missing:
            continue
        entry = _entry(store.get(f"{prefix}/{name}"))
        if entry["sha256"] != expected:
            problems.append(
                f"{folder}{name}: sha256 {entry['sha256'][:12]}… does not match {SUMS_FILE} "
                f"({expected[:12]}…): the file was changed or damaged in the store"
            )
        checked[name] = entry
    if problems:
        raise BundleError(
            f"bundle {version} failed verification: {'; '.join(problems)}. Do not deploy it; publish a new "
            "version"
        )
    return VerifyReport(version, checked, kid)


def verify_bundle_uri(uri: str, public_key: Ed25519PublicKey | TrustedKeys) -> VerifyReport:
    """:func:`verify_bundle` for a bundle URI: ``s3://bucket/prefix/models/v1.2/`` or ``file:///…/models/v1.2/``."""
    parts = uri.rstrip("/").rsplit("/", 2) if isinstance(uri, str) else []
    if (
        len(parts) != 3
        or parts[1] != MODELS_PREFIX
        or not VERSION.fullmatch(parts[2])
        or "://" not in parts[0]
    ):
        raise BundleError(
            f"{uri!r} is not a bundle URI: expected <store>/models/vMAJOR.MINOR/, such as "
            "s3://bucket/prefix/models/v1.2/ or file:///path/models/v1.2/"
        )
    root, _, version = parts
    if root.endswith("://"):  # the bundle sits at the root of a bucket
        raise BundleError(
            f"{uri!r}: nothing before /models/ names a store; expected s3://bucket/models/v1.2/ or "
            "file:///path/models/v1.2/"
        )
    return verify_bundle(open_store(root), version, public_key)
