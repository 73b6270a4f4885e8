"""The release file ``environments/<ring>/release.yaml``: the one contract between training and delivery.

A release pins one model bundle for one ring (DESIGN.md, "Release file")::

    # Model release for ring "pilot". Changed by pull requests only: the training pipeline proposes,
    # `edgeops promote` moves it pilot → fleet in waves, `edgeops rollback` returns to `previous`.
    version: v2.1
    interface: sha256:<64 hex>
    bundle: s3://context-edge-models/models/v2.1/
    files:
      model.onnx: {sha256: <64 hex>, bytes: 120345}
      golden.json: {sha256: <64 hex>, bytes: 20480}
    signature: ed25519:<base64> # over the canonical JSON of version, interface, bundle, files
    metrics: {accuracy: 0.941, fp_rate: 0.021, fn_rate: 0.027}
    source: {commit: 0123abc, dataset: 'sha256:…', run: runs/2026-11}

``signature`` is the Ed25519 signature (:mod:`tools.core.signing`) of :func:`signed_payload`: the
canonical JSON
of ``version``, ``interface``, ``bundle`` and ``files`` only. Those four decide what a node downloads and
runs, so nobody without the private key can change them. ``metrics`` and ``source`` are information for the
reviewer of the release PR and are deliberately *not* signed: a promotion may annotate them without
re-signing. ``files`` lists the bundle's content files a node needs (at least ``model.onnx`` and
``golden.json``, the health check's input); ``bundle`` is the bundle folder ``<store>/models/<version>/``.

Before a ring's first release its file states that there is none: ``version`` is null and nothing else is
set. The model-updater then idles, reports ready, and keeps whatever model a node already has::

    # Model release for ring "fleet". Changed by pull requests only: the training pipeline proposes,
    # `edgeops promote` moves it pilot → fleet in waves, `edgeops rollback` returns to `previous`.
    # No release yet: the model-updater idles, reports ready and keeps whatever model a node already has.
    version: null

With waves (DESIGN.md, "Rings and waves") the file also holds the signed ``previous`` release, the one the
ring's nodes outside the wave keep, and a ``rollout`` block, optionally with the ring's swap windows
(:mod:`tools.core.windows`; written by ``edgeops promote`` from ``rings.<ring>.swap_windows``)::

    previous:
      version: v2.0
      …                                     # a whole release of its own, signed on its own
    rollout: {percent: 25, windows: ['22:00-04:00', 'Sat,Sun 00:00-24:00']}

``rollout`` is not signed: a next wave, or a window, changes only when a node swaps to a release whose
signature it checks anyway.

:func:`parse_release` reads both forms (``None`` for the empty one) and refuses anything else with the file
and the key at fault; :func:`render_release` and :func:`render_no_release` write them, deterministically, in
the key order above (release PRs edit the file with ruamel.yaml round-trip, so comments and order survive).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from io import StringIO
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import SingleQuotedScalarString

from tools.artifacts.bundle import (
    MODELS_PREFIX,
    SIGNATURE_FILE,
    SUMS_FILE,
    BundleError,
    FileEntry,
    parse_version,
)
from tools.core.errors import EdgeopsError
from tools.core.names import FILE_NAME, FILE_NAME_RULE, INTERFACE, RING_NAME, RING_NAME_RULE, SHA256_HEX
from tools.core.safeyaml import SafeYAML, YAMLLimitError, not_utf8, read_text
from tools.core.signing import (
    SIGNATURE_PREFIX,
    SignatureError,
    TrustedKeys,
    describe_keys,
    sign,
    trusted_keys,
    verify,
)
from tools.core.windows import SwapWindow

__all__ = [
    "REQUIRED_FILES",
    "Release",
    "ReleaseError",
    "ReleaseSignatureError",
    "edit_release_text",
    "in_wave",
    "load_release",
    "make_release",
    "parse_release",
    "render_no_release",
    "render_release",
    "sign_release",
    "signed_payload",
    "verify_release",
    "wave_slot",
]

# The updater's health check needs both: the model, and the inputs/outputs it must reproduce.
REQUIRED_FILES = ("model.onnx", "golden.json")
_KEYS = ("version", "interface", "bundle", "files", "signature", "metrics", "source", "previous", "rollout")
_PREVIOUS_KEYS = _KEYS[:-2]  # a previous release is a whole release of its own, without a wave of its own
WAVE_SLOTS = 10_000  # a node's wave slot is one of 10,000: percents with two decimals place exactly
_SIGNED_KEYS = ("version", "interface", "bundle", "files")
_SCHEMES = ("s3://", "file://")
_SIGNATURE_COMMENT = "over the canonical JSON of version, interface, bundle, files"
_NO_RELEASE_COMMENT = (
    "No release yet: the model-updater idles, reports ready and keeps whatever model a node already has."
)


class ReleaseError(EdgeopsError):
    """A release file is malformed, or a release cannot be built from the given values."""


class ReleaseSignatureError(ReleaseError):
    """A release's signature is malformed or does not verify under the trusted public key."""


@dataclass(frozen=True)
class Release:
    """One parsed, well-formed release (its signature is checked by :func:`verify_release`, not here)."""

    version: str
    interface: str  # "sha256:<64 hex>"
    bundle: str  # "<store>/models/<version>/", with the trailing slash
    files: dict[str, FileEntry]
    signature: str  # "ed25519:<base64>"
    metrics: dict[str, Any] = field(default_factory=dict)  # not signed
    source: dict[str, Any] = field(default_factory=dict)  # not signed
    # Waves (DESIGN.md, "Rings and waves"). `previous` is the release the ring's nodes outside the wave run
    # (signed on its own); `rollout_percent` the share of the ring's nodes in the wave, by a stable hash of
    # the node's name (wave_slot). None: no wave, every node of the ring runs this release.
    previous: Release | None = None
    rollout_percent: float | None = None
    # Swap windows (`rollout.windows`, tools/core/windows.py): when a node may switch *forward* to a newer
    # model, in its local time. Not signed, like the rest of `rollout`: a window only delays a swap the
    # signature already allows. Empty: any time. Only with `rollout_percent` (they live in one block).
    swap_windows: tuple[str, ...] = ()

    def for_node(self, node: str) -> Release:
        """The release ``node`` should run: this one inside the wave, ``previous`` outside it.

        A node without a name (no NODE_NAME) cannot place itself, so it stays outside a partial wave.
        """
        if self.rollout_percent is None or self.previous is None or self.rollout_percent >= 100:
            return self
        return self if node and in_wave(node, self.rollout_percent) else self.previous

    @property
    def store_uri(self) -> str:
        """The store holding the bundle (``s3://bucket/prefix`` or ``file:///path``), for ``open_store``."""
        return self.bundle[: -len(f"/{MODELS_PREFIX}/{self.version}/")]

    def object_key(self, name: str) -> str:
        """The store key of one bundle file: ``models/<version>/<name>``."""
        return f"{MODELS_PREFIX}/{self.version}/{name}"


def wave_slot(node: str) -> int:
    """The node's place in every rollout, 0 … WAVE_SLOTS-1: the first 4 bytes of sha256(name), modulo.

    Stable across releases, so the same nodes go first every time (operators know which to watch); the
    same rule on every node and in the GitOps tooling (which nodes a wave's telemetry covers).
    """
    digest = hashlib.sha256(node.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % WAVE_SLOTS


def in_wave(node: str, percent: float) -> bool:
    """Whether ``node`` is in a wave of ``percent`` (0 to 100) of its ring."""
    return wave_slot(node) < round(percent * WAVE_SLOTS / 100)


# --- signing --------------------------------------------------------------------------------------------


def _plain_files(files: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: {"sha256": entry["sha256"], "bytes": entry["bytes"]} for name, entry in files.items()}


def signed_payload(version: str, interface: str, bundle: str, files: Mapping[str, FileEntry]) -> bytes:
    """The exact bytes a release signature covers: canonical JSON of the four signed fields."""
    doc = {"version": version, "interface": interface, "bundle": bundle, "files": _plain_files(files)}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")


def sign_release(
    private_key: Ed25519PrivateKey,
    *,
    version: str,
    interface: str,
    bundle: str,
    files: Mapping[str, FileEntry],
) -> str:
    """The ``signature`` value (``ed25519:<base64>``) for these signed fields."""
    return sign(private_key, signed_payload(version, interface, bundle, files))


def verify_release(release: Release, public_key: Ed25519PublicKey | TrustedKeys) -> str:
    """The id of the trusted key that made ``release.signature`` (over its signed fields); else raise.

    ``public_key`` is one key or the trusted set (``{key id: key}``, from ``load_public_keys``): while a
    key rotates, a release signed by the old or the new key verifies. ``previous`` is checked on its own,
    by a call of its own.
    """
    payload = signed_payload(release.version, release.interface, release.bundle, release.files)
    keys = trusted_keys(public_key)
    try:
        return verify(keys, payload, release.signature)
    except SignatureError as exc:
        trusted = "the trusted one" if len(keys) == 1 else "the trusted ones"
        raise ReleaseSignatureError(
            f"release {release.version}: {exc}. Its version, interface, bundle or files were changed after "
            f"signing, or it was signed by a key other than {trusted} ({describe_keys(keys)}); "
            "re-propose the release with the pipeline's signing key (after a key rotation: `edgeops release "
            "resign`)"
        ) from None


def make_release(
    private_key: Ed25519PrivateKey,
    *,
    version: str,
    interface: str,
    bundle: str,
    files: Mapping[str, FileEntry],
    metrics: Mapping[str, Any] | None = None,
    source: Mapping[str, Any] | None = None,
) -> Release:
    """A checked, signed :class:`Release` (what ``propose`` writes and tests and the fleet simulator use)."""
    signature = sign_release(private_key, version=version, interface=interface, bundle=bundle, files=files)
    doc: dict[str, Any] = {
        "version": version,
        "interface": interface,
        "bundle": bundle,
        "files": _plain_files(files),
        "signature": signature,
        "metrics": dict(metrics or {}),
        "source": dict(source or {}),
    }
    release = _from_doc(doc, "release")
    assert release is not None  # a version was given, so this is never the "no release" form
    return release


# --- parsing --------------------------------------------------------------------------------------------


def load_release(path: str | os.PathLike[str]) -> Release | None:
    """:func:`parse_release` of the file at ``path``; None for the "no release yet" form."""
    try:
        text = read_text(path)  # never more than the cap into memory
    except FileNotFoundError:
        raise ReleaseError(
            f"{path}: no such release file; check the path (on a node: the release ConfigMap mount)"
        ) from None
    except UnicodeDecodeError as exc:
        raise ReleaseError(f"{path}: {not_utf8(exc)}") from None
    except OSError as exc:
        raise ReleaseError(f"{path}: cannot read the release file ({exc.strerror})") from None
    except YAMLLimitError as exc:
        raise ReleaseError(f"{path}: {exc}") from None
    return parse_release(text, source=str(path))


def parse_release(text: str, *, source: str) -> Release | None:
    """The release in ``text``, or None for the documented "no release yet" form (``version: null``).

    ``source`` names the text in error messages (a path). Anything malformed raises :class:`ReleaseError`
    naming ``source`` and the key at fault.
    """
    try:
        # From a PR, and read again by every node's updater: no aliases, bounded (tools.core.safeyaml).
        doc = SafeYAML(typ="safe", pure=True).load(text)
    except YAMLLimitError as exc:
        raise ReleaseError(f"{source}: {exc}") from None
    except YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise ReleaseError(f"{source}: not valid YAML ({detail}); fix the syntax") from None
    if doc is None:
        raise ReleaseError(
            f'{source}: the release file is empty; write `version: null` for "no release yet", or a full '
            "release (version, interface, bundle, files, signature)"
        )
    if not isinstance(doc, dict):
        raise ReleaseError(
            f"{source}: expected a mapping of release keys at the top level, found {_kind(doc)}"
        )
    return _from_doc(doc, source)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a mapping"}.get(type(value), type(value).__name__)  # fmt: skip


def _from_doc(doc: Mapping[Any, Any], source: str, prefix: str = "") -> Release | None:
    def fail(key: str, problem: str) -> ReleaseError:
        return ReleaseError(f"{source}: {prefix}{key}: {problem}")

    allowed = _PREVIOUS_KEYS if prefix else _KEYS
    unknown = [str(k) for k in doc if k not in allowed]
    if unknown:
        what = "a previous release has" if prefix else "a release file has"
        raise fail(unknown[0], f"unknown key; {what} only {', '.join(allowed)} (check the spelling)")
    if "version" not in doc:
        raise fail("version", 'missing; write `version: null` for "no release yet"')
    version = doc["version"]
    if version is None and prefix:
        raise fail("version", "a previous release needs a version; remove `previous` if there is none")
    if version is None:
        set_keys = [k for k in _KEYS if k != "version" and doc.get(k) not in (None, {}, "")]
        if set_keys:
            raise fail(
                set_keys[0],
                'set although version is null ("no release yet"); either give the version or remove the '
                "other keys",
            )
        return None
    if not isinstance(version, str):
        raise fail("version", f"expected a string such as v2.1, found {_kind(version)} {version!r}")
    try:
        parse_version(version)
    except BundleError as exc:
        raise fail("version", str(exc)) from None

    for key in ("interface", "bundle", "files", "signature"):
        if doc.get(key) is None:
            raise fail(key, "missing; a release needs version, interface, bundle, files and signature")

    interface = doc["interface"]
    if not isinstance(interface, str) or not INTERFACE.fullmatch(interface):
        raise fail(
            "interface",
            f"{interface!r} is not an interface hash: expected sha256:<64 lowercase hex> (the model card's "
            "`interface`)",
        )

    bundle = doc["bundle"]
    suffix = f"/{MODELS_PREFIX}/{version}/"
    if not isinstance(bundle, str):
        raise fail("bundle", f"expected a string URI, found {_kind(bundle)}")
    store = bundle[: -len(suffix)] if bundle.endswith(suffix) else ""
    if not any(store.startswith(scheme) and len(store) > len(scheme) for scheme in _SCHEMES):
        raise fail(
            "bundle",
            f"{bundle!r} is not this version's bundle folder: expected <store>{suffix} with the store "
            f"s3://bucket[/prefix] or file:///path (and the trailing '/')",
        )
    if any(ch.isspace() or ch in "\\\0" for ch in bundle):
        raise fail("bundle", f"{bundle!r} contains whitespace, backslashes or NUL")

    files = _files(doc["files"], fail)

    signature = doc["signature"]
    if not isinstance(signature, str) or not signature.startswith(SIGNATURE_PREFIX):
        raise fail(
            "signature",
            f"expected {SIGNATURE_PREFIX}<base64> (written by the training pipeline), found "
            f"{_kind(signature)}",
        )

    extras: dict[str, dict[str, Any]] = {}
    for key in ("metrics", "source"):
        value = doc.get(key)
        if value is None:
            value = {}
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise fail(key, f"expected a mapping with string keys (or nothing), found {_kind(value)}")
        extras[key] = dict(value)

    previous, percent, windows = _wave(doc, version, source, fail)
    return Release(
        version=version,
        interface=interface,
        bundle=bundle,
        files=files,
        signature=signature,
        metrics=extras["metrics"],
        source=extras["source"],
        previous=previous,
        rollout_percent=percent,
        swap_windows=windows,
    )


def _wave(
    doc: Mapping[Any, Any], version: str, source: str, fail: Callable[[str, str], ReleaseError]
) -> tuple[Release | None, float | None, tuple[str, ...]]:
    previous: Release | None = None
    value = doc.get("previous")
    if value is not None:
        if not isinstance(value, dict):
            raise fail("previous", f"expected the mapping of a whole release, found {_kind(value)}")
        previous = _from_doc(value, source, prefix="previous.")
        assert previous is not None  # a previous without a version fails above
        if previous.version == version:
            raise fail(
                "previous.version", f"is the release's own version {version}; give the one it replaces"
            )
    rollout = doc.get("rollout")
    if rollout is None:
        if previous is not None:
            raise fail(
                "rollout", "missing; with a `previous` release, say which share of nodes runs this one"
            )
        return None, None, ()
    if not isinstance(rollout, dict) or "percent" not in rollout or set(rollout) - {"percent", "windows"}:
        raise fail(
            "rollout",
            f"expected {{percent: N}} (0-100), optionally with windows: ['22:00-04:00', …], found "
            f"{_kind(rollout)} {rollout!r}",
        )
    percent = rollout["percent"]
    if isinstance(percent, bool) or not isinstance(percent, int | float) or not 0 <= percent <= 100:
        raise fail("rollout.percent", f"expected a number from 0 to 100, found {percent!r}")
    if previous is None and percent < 100:
        raise fail(
            "rollout.percent",
            f"{percent} needs a `previous` release for the nodes outside the wave; give one, or 100",
        )
    return previous, float(percent), _windows(rollout.get("windows", []), fail)


def _windows(value: Any, fail: Callable[[str, str], ReleaseError]) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise fail(
            "rollout.windows",
            f"expected a list of swap windows such as ['22:00-04:00'], found {_kind(value)} {value!r}",
        )
    for index, text in enumerate(value):
        if not isinstance(text, str):
            raise fail(
                f"rollout.windows[{index}]", f"expected a string such as 22:00-04:00, found {_kind(text)}"
            )
        try:
            SwapWindow.parse(text)
        except ValueError as exc:
            raise fail(f"rollout.windows[{index}]", str(exc)) from None
    return tuple(value)


def _files(value: Any, fail: Callable[[str, str], ReleaseError]) -> dict[str, FileEntry]:
    if not isinstance(value, dict) or not value:
        raise fail(
            "files", f"expected a non-empty mapping of file name → {{sha256, bytes}}, found {_kind(value)}"
        )
    files: dict[str, FileEntry] = {}
    for name, entry in value.items():
        key = f"files.{name}"
        if not isinstance(name, str) or not FILE_NAME.fullmatch(name) or "/" in name or name in (".", ".."):
            raise fail(
                key,
                f"{name!r} is not a bundle file name: use {FILE_NAME_RULE}",
            )
        if name in (SUMS_FILE, SIGNATURE_FILE):
            raise fail(key, f"{name} is the bundle's own checksum list; list only content files")
        if not isinstance(entry, dict):
            raise fail(key, f"expected {{sha256: <64 hex>, bytes: <size>}}, found {_kind(entry)}")
        extra = sorted(str(k) for k in entry if k not in ("sha256", "bytes"))
        if extra:
            raise fail(f"{key}.{extra[0]}", "unknown key; a file entry has only sha256 and bytes")
        digest = entry.get("sha256")
        if not isinstance(digest, str) or not SHA256_HEX.fullmatch(digest):
            raise fail(
                f"{key}.sha256",
                f"{digest!r} is not a sha256 digest: expected 64 lowercase hex digits (from the bundle's "
                f"{SUMS_FILE})",
            )
        size = entry.get("bytes")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise fail(
                f"{key}.bytes", f"expected the file size as an integer ≥ 0, found {_kind(size)} {size!r}"
            )
        files[name] = {"sha256": digest, "bytes": size}
    missing = [name for name in REQUIRED_FILES if name not in files]
    if missing:
        raise fail(
            "files",
            f"{', '.join(missing)} missing; a node needs {' and '.join(REQUIRED_FILES)} (the model and its "
            "health check)",
        )
    return files


# --- rendering --------------------------------------------------------------------------------------------


def _header(ring: str) -> str:
    if not isinstance(ring, str) or not RING_NAME.fullmatch(ring):
        raise ReleaseError(f"{ring!r} is not a ring name: use {RING_NAME_RULE}")
    return (
        f'# Model release for ring "{ring}". Changed by pull requests only: the training pipeline proposes,\n'
        "# `edgeops promote` moves it pilot → fleet in waves, `edgeops rollback` returns to `previous`.\n"
    )


def _scalar(value: Any) -> Any:
    """Quote strings a YAML 1.1 reader (libyaml, PyYAML, many tools) would misread inside ``{…}``.

    ruamel writes ``sha256:ab…`` plain in flow style, which YAML 1.2 allows; YAML 1.1 parsers reject a ':'
    in a plain scalar there, and a release file must read the same everywhere.
    """
    if isinstance(value, str) and any(ch in value for ch in ":#{}[],&*!|>'\"%@`"):
        return SingleQuotedScalarString(value)
    return value


def _flow(mapping: Mapping[str, Any]) -> CommentedMap:
    out = CommentedMap()
    for key, value in mapping.items():
        out[key] = _flow_value(value)
    out.fa.set_flow_style()
    return out


def _flow_value(value: Any) -> Any:
    """``value`` as it goes inside ``{…}``: mappings and lists in flow style too, strings quoted as needed."""
    if isinstance(value, Mapping):
        return _flow(value)
    if isinstance(value, list | tuple):
        seq = CommentedSeq(_flow_value(item) for item in value)
        seq.fa.set_flow_style()
        return seq
    return _scalar(value)


def _release_map(release: Release) -> CommentedMap:
    """The block-style mapping of ``release`` (and of its ``previous``, the same way, one level in)."""
    doc = CommentedMap()
    doc["version"] = release.version
    doc["interface"] = release.interface
    doc["bundle"] = release.bundle
    files = CommentedMap()
    for name, entry in release.files.items():
        files[name] = _flow({"sha256": entry["sha256"], "bytes": entry["bytes"]})
    doc["files"] = files
    doc["signature"] = release.signature
    doc.yaml_add_eol_comment(_SIGNATURE_COMMENT, "signature", column=0)
    # Not signed; written only when present, so a release without them stays four lines shorter.
    if release.metrics:
        doc["metrics"] = _flow(release.metrics)
    if release.source:
        doc["source"] = _flow(release.source)
    if release.previous is not None:
        doc["previous"] = _release_map(release.previous)
    rollout = _rollout(release)
    if rollout is not None:
        doc["rollout"] = _flow(rollout)
    return doc


def _rollout(release: Release) -> dict[str, Any] | None:
    """The ``rollout`` block of ``release``; None without a wave."""
    if release.rollout_percent is None:
        if release.swap_windows:
            raise ReleaseError(
                f"release {release.version}: swap windows {list(release.swap_windows)} need a rollout "
                "percent (they are written as rollout: {percent: N, windows: […]}); give 100 for the "
                "whole ring"
            )
        return None
    rollout: dict[str, Any] = {"percent": _percent(release.rollout_percent)}
    if release.swap_windows:
        rollout["windows"] = list(release.swap_windows)
    return rollout


def render_release(release: Release, *, ring: str) -> str:
    """The text of ``environments/<ring>/release.yaml`` pinning ``release``; stable for equal input."""
    header = _header(ring)
    doc = _release_map(release)
    yaml = YAML()
    yaml.width = 4096  # never fold a digest or a signature onto two lines
    out = StringIO()
    yaml.dump(doc, out)
    return header + out.getvalue()


def render_no_release(ring: str) -> str:
    """The documented "no release yet" file for ``ring``: the header, a line saying so, ``version: null``."""
    return f"{_header(ring)}# {_NO_RELEASE_COMMENT}\nversion: null\n"


# --- round-trip editing -----------------------------------------------------------------------------------

_NULL_VERSION = re.compile(r"^version:\s*(null|~)?\s*(#.*)?$")


def _round_trip_yaml() -> YAML:
    yaml = SafeYAML()  # round-trip: comments, key order and flow style survive; no aliases, bounded
    yaml.width = 4096
    yaml.preserve_quotes = True
    return yaml


def _merge_into(target: CommentedMap, new: Mapping[str, Any]) -> None:
    """Make ``target`` equal ``new``, editing values in place so untouched lines keep their layout."""
    for key in [k for k in target if k not in new]:
        del target[key]
    for position, (key, value) in enumerate(new.items()):
        current = target.get(key)
        if isinstance(value, Mapping) and isinstance(current, CommentedMap):
            _merge_into(current, value)
        else:
            flow = bool(target.fa.flow_style())  # inside {…}: quote what a YAML 1.1 reader would misread
            nested = isinstance(value, Mapping | list | tuple)
            item = _flow_value(value) if nested or flow else value
            if key not in target:
                target.insert(min(position, len(target)), key, item)
            elif current != value:
                target[key] = item


def _as_doc(release: Release) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "version": release.version,
        "interface": release.interface,
        "bundle": release.bundle,
        "files": _plain_files(release.files),
        "signature": release.signature,
    }
    if release.metrics:
        doc["metrics"] = release.metrics
    if release.source:
        doc["source"] = release.source
    if release.previous is not None:
        doc["previous"] = _as_doc(release.previous)
    rollout = _rollout(release)
    if rollout is not None:
        doc["rollout"] = rollout
    return doc


def _percent(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def edit_release_text(old_text: str, release: Release | None, *, ring: str, source: str) -> str:
    """``old_text`` with its release replaced by ``release`` (None: "no release yet"), comments kept.

    Only the lines whose values change are rewritten (ruamel.yaml round-trip), so a promotion's diff is
    the release lines alone. From the "no release yet" form, the line saying so goes and the release's
    lines take the place of ``version: null``; everything else (the header, your own comments) stays.
    The result is parsed back and compared with ``release``: a file this cannot edit faithfully is an
    error, never a silently different release.
    """
    current = parse_release(old_text, source=source)  # refuses a malformed file before touching it
    if release is None:
        new_text = old_text if current is None else _to_no_release(old_text, ring)
    elif current is None:
        lines = [ln for ln in old_text.splitlines() if ln.strip() != f"# {_NO_RELEASE_COMMENT}"]
        lines = [ln for ln in lines if not _NULL_VERSION.match(ln)]
        body = render_release(release, ring=ring)[len(_header(ring)) :]
        new_text = "\n".join(lines).rstrip("\n") + ("\n" if lines else "") + body
    else:
        yaml = _round_trip_yaml()
        doc = yaml.load(old_text)
        _merge_into(doc, _as_doc(release))
        previous = doc.get("previous")
        if release.previous is not None and isinstance(previous, CommentedMap) and previous.fa.flow_style():
            # A new `previous` (a version entering its first wave) in block style, like the release above
            # it, not as one long {…} line: the entering PR's diff stays readable.
            doc["previous"] = _release_map(release.previous)
        out = StringIO()
        yaml.dump(doc, out)
        new_text = out.getvalue()
    check = parse_release(new_text, source=source)
    if check != release:
        raise ReleaseError(
            f"{source}: editing the release file in place did not give the intended release (hand-edited "
            f"layout?); rewrite it with `edgeops propose` from a clean file, or fix it by hand"
        )
    return new_text


def _to_no_release(old_text: str, ring: str) -> str:
    comments = []
    for line in old_text.splitlines():
        if not line.startswith("#"):
            break
        comments.append(line)
    header = "\n".join(comments) + "\n" if comments else _header(ring)
    return f"{header}# {_NO_RELEASE_COMMENT}\nversion: null\n"
