"""LDO v1: the record the runtime backend stores, one JSON object per S3 object (../shared/DESIGN.md).

    from training.data.ldo import parse_ldo
    ldo = parse_ldo(raw_bytes, spec, source="s3://bucket/ldos/ldo-1.json")

Validation is hand-written rather than schema-driven because it runs on every record of every monthly
snapshot (100,000+): one pass, no per-value objects beyond the JSON parse, and each rejection names the
field and the reason (``sensors.values[2][17]: not a finite number (nan)``). Records are never reshaped,
reordered or resampled to fit: a record that does not match the training config is rejected with the
mismatch spelled out. Unknown top-level keys are ignored (the backend may add metadata); unknown labels
are not (they would silently drop a failure mode).

Anything a record holds that cannot become what a snapshot stores is a rejection of that record, never a
crash of the run that reads it: a sample that is not a finite float32, an id outside int64, a timestamp
without a zone or outside what UTC can represent, a key given twice, an integer too long for Python to
convert, a document larger than :func:`max_ldo_bytes`. Files are read with :func:`read_ldo_file`, which
refuses special files (a FIFO would block the reader, ``/dev/zero`` never ends) and symbolic links that
leave the data folder.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from tools.core.errors import LdoError
from training.config import DataSpec

__all__ = [
    "INT64_MAX",
    "LDO_ID_PATTERN",
    "SCHEMA",
    "Ldo",
    "dumps",
    "max_ldo_bytes",
    "parse_ldo",
    "read_ldo_file",
    "validate_ldo",
    "validate_ldo_id",
]

SCHEMA = "ldo/v1"
# The id becomes a file name, an S3 key component and a line of index.tsv: no '/', no '..', no leading dot
# or dash. \A and \Z (not ^ and $): '$' also matches before a trailing newline, and "x\n" would pass.
LDO_ID_PATTERN = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
CONTEXT_KEYS = ("product_id", "recipe_id", "asset_id")
INT64_MAX = 2**63 - 1  # context ids become int64 tensors (and the parsed-record cache packs them as such)

# The size limit of one LDO: a fixed allowance for everything but the samples (ids, labels, the backend's
# metadata) plus 64 bytes per sample, which holds the longest float JSON can write (24 characters, e.g.
# -2.2250738585072014e-308) with a separator and a pretty-printer's indentation. The default interface
# (4 x 128 samples, ~5 KB as stored) gets 1 MiB + 32 KiB; anything larger is not an LDO, and capping it
# bounds the memory a snapshot's 32 download threads can be made to hold.
_BASE_BYTES = 1 << 20
_BYTES_PER_SAMPLE = 64
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")


def max_ldo_bytes(spec: DataSpec) -> int:
    """The largest stored LDO accepted for ``spec``, in bytes (see ``_BASE_BYTES``)."""
    return _BASE_BYTES + _BYTES_PER_SAMPLE * len(spec.channels) * spec.window


@dataclass(frozen=True)
class Ldo:
    ldo_id: str
    created_at: datetime
    device_id: str | None
    product_id: int
    recipe_id: int
    asset_id: int
    sensors: np.ndarray  # (C, T) float32, channels in the spec's order
    labels: tuple[int, ...]  # one 0/1 per failure mode, in the spec's order; all zero = healthy
    validated: bool


class _HugeInt:
    """An integer literal longer than Python converts (``sys.get_int_max_str_digits()``, 4300 by default;
    CVE-2020-10735): it stands in for the value so that the check of its field can name it."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits

    def __str__(self) -> str:
        return f"an integer of {self.digits} digits"


def _int_or_huge(text: str) -> int | _HugeInt:
    try:
        return int(text)
    except ValueError:
        return _HugeInt(len(text.lstrip("-")))


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float | _HugeInt):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _show(value: Any) -> str:
    if isinstance(value, _HugeInt):
        return str(value)
    try:
        text = (
            json.dumps(value, default=str)
            if not isinstance(value, float) or math.isfinite(value)
            else repr(value)
        )
    except (RecursionError, ValueError):
        text = f"<{_type_name(value)}>"
    return _clip(text, 40)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _member(parent: str, key: str) -> str:
    """The dotted path of ``parent``'s member ``key``; a key that is not a plain name is quoted."""
    if _PLAIN_KEY.fullmatch(key):
        return f"{parent}.{key}" if parent else key
    return f"{parent}[{_show(key)}]"


def validate_ldo_id(value: Any, *, field: str = "ldo_id", source: str | None = None) -> str:
    if not isinstance(value, str):
        raise LdoError(field, f"expected string, got {_type_name(value)} {_show(value)}", source=source)
    if "/" in value or ".." in value or not LDO_ID_PATTERN.fullmatch(value):
        raise LdoError(
            field,
            f"{_show(value)} is not a valid id: it becomes a file name, so it must match "
            f"{LDO_ID_PATTERN.pattern} in full and contain no '/' and no '..'",
            source=source,
        )
    return value


def _int_field(value: Any, field: str, source: str | None) -> int:
    if isinstance(value, _HugeInt):
        raise LdoError(field, f"{value} is out of int64 range", source=source)
    # bool is an int subclass in Python; JSON true is not an id.
    if isinstance(value, bool) or not isinstance(value, int):
        raise LdoError(field, f"expected integer, got {_type_name(value)} {_show(value)}", source=source)
    if value < 0:
        raise LdoError(field, f"expected a non-negative id, got {_show(value)}", source=source)
    if value > INT64_MAX:
        raise LdoError(field, f"{_show(value)} is out of int64 range (at most 2**63 - 1)", source=source)
    return value


def _object(doc: dict[str, Any], key: str, source: str | None) -> dict[str, Any]:
    if key not in doc:
        raise LdoError(key, "required field is missing", source=source)
    value = doc[key]
    if not isinstance(value, dict):
        raise LdoError(key, f"expected object, got {_type_name(value)}", source=source)
    return value


def _same_rate(rate: float, expected: float) -> bool:
    try:
        return math.isclose(rate, expected, rel_tol=1e-9)
    except OverflowError:  # an integer beyond float range is no sample rate
        return False


def _sensors(sensors: dict[str, Any], spec: DataSpec, source: str | None) -> np.ndarray:
    rate = sensors.get("sample_rate_hz")
    if "sample_rate_hz" not in sensors:
        raise LdoError("sensors.sample_rate_hz", "required field is missing", source=source)
    if isinstance(rate, bool) or not isinstance(rate, int | float | _HugeInt):
        raise LdoError("sensors.sample_rate_hz", f"expected number, got {_type_name(rate)}", source=source)
    if isinstance(rate, _HugeInt) or not _same_rate(rate, spec.sample_rate_hz):
        raise LdoError(
            "sensors.sample_rate_hz",
            f"recorded at {_show(rate)} Hz but the training config expects {spec.sample_rate_hz} Hz "
            "(records are never resampled)",
            source=source,
        )
    channels = sensors.get("channels")
    if "channels" not in sensors:
        raise LdoError("sensors.channels", "required field is missing", source=source)
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise LdoError("sensors.channels", "expected an array of channel names", source=source)
    if tuple(channels) != spec.channels:
        raise LdoError(
            "sensors.channels",
            f"expected {list(spec.channels)} in this order, got {_clip(repr(channels), 200)}",
            source=source,
        )
    values = sensors.get("values")
    if "values" not in sensors:
        raise LdoError("sensors.values", "required field is missing", source=source)
    if not isinstance(values, list):
        raise LdoError("sensors.values", f"expected array, got {_type_name(values)}", source=source)
    n_ch, window = len(spec.channels), spec.window
    if len(values) != n_ch:
        raise LdoError(
            "sensors.values",
            f"wrong window shape: expected {n_ch} channels x {window} samples, got {len(values)} rows",
            source=source,
        )
    for c, row in enumerate(values):
        if not isinstance(row, list):
            raise LdoError(f"sensors.values[{c}]", f"expected array, got {_type_name(row)}", source=source)
        if len(row) != window:
            raise LdoError(
                f"sensors.values[{c}]",
                f"wrong window shape: channel {spec.channels[c]!r} has {len(row)} samples, expected {window}",
                source=source,
            )
        # One set comprehension per row is the fast way to reject strings, booleans and nulls.
        if not {type(v) for v in row} <= {float, int}:
            t = next(t for t, v in enumerate(row) if type(v) not in (float, int))
            reason = (
                f"not a finite float32 ({row[t]})"
                if isinstance(row[t], _HugeInt)
                else f"expected number, got {_type_name(row[t])} {_show(row[t])}"
            )
            raise LdoError(f"sensors.values[{c}][{t}]", reason, source=source)
    try:
        arr = np.asarray(values, dtype=np.float64)
    except OverflowError:  # an integer literal beyond float64 (1e309 written out in digits)
        c, t = next((c, t) for c, row in enumerate(values) for t, v in enumerate(row) if not _fits_float(v))
        raise LdoError(
            f"sensors.values[{c}][{t}]",
            f"not a finite float32 ({_show(values[c][t])} is out of its range)",
            source=source,
        ) from None
    with np.errstate(over="ignore"):  # values beyond float32 become inf and are reported just below
        arr32 = arr.astype(np.float32)
    finite = np.isfinite(arr32)
    if not finite.all():
        c, t = (int(i) for i in np.argwhere(~finite)[0])
        reason = (
            f"not a finite number ({float(arr[c, t])!r})"
            if not math.isfinite(arr[c, t])
            else f"not a finite float32 ({float(arr[c, t])!r} is out of its range)"
        )
        raise LdoError(f"sensors.values[{c}][{t}]", reason, source=source)
    return arr32


def _fits_float(value: float) -> bool:
    try:
        float(value)
    except OverflowError:
        return False
    return True


def _labels(labels: dict[str, Any], spec: DataSpec, source: str | None) -> tuple[int, ...]:
    unknown = sorted(set(labels) - set(spec.labels))
    if unknown:
        raise LdoError(
            _member("labels", unknown[0]),
            f"unknown failure mode; the training config knows {list(spec.labels)}",
            source=source,
        )
    out = []
    for name in spec.labels:
        if name not in labels:
            raise LdoError(f"labels.{name}", "required label is missing", source=source)
        value = labels[name]
        if isinstance(value, bool) or value not in (0, 1) or not isinstance(value, int):
            raise LdoError(f"labels.{name}", f"expected 0 or 1, got {_show(value)}", source=source)
        out.append(value)
    return tuple(out)


def _storable_text(value: str) -> bool:
    """PostgreSQL ``text`` holds neither NUL nor an unpaired surrogate (JSON can spell both: \\u0000,
    \\ud800); the seed's index insert would fail after the uploads, leaving objects unindexed."""
    if "\x00" in value:
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def validate_ldo(doc: Any, spec: DataSpec, *, source: str | None = None) -> Ldo:
    """Check a decoded JSON document against LDO v1 and the training config's data interface."""
    if not isinstance(doc, dict):
        raise LdoError("(document)", f"expected a JSON object, got {_type_name(doc)}", source=source)
    if doc.get("schema") != SCHEMA:
        if "schema" not in doc:
            raise LdoError("schema", "required field is missing", source=source)
        raise LdoError("schema", f"expected {SCHEMA!r}, got {_show(doc['schema'])}", source=source)
    if "ldo_id" not in doc:
        raise LdoError("ldo_id", "required field is missing", source=source)
    ldo_id = validate_ldo_id(doc["ldo_id"], source=source)

    if "created_at" not in doc:
        raise LdoError("created_at", "required field is missing", source=source)
    raw_ts = doc["created_at"]
    if not isinstance(raw_ts, str):
        raise LdoError("created_at", f"expected string, got {_type_name(raw_ts)}", source=source)
    try:
        created_at = datetime.fromisoformat(raw_ts)
    except ValueError:
        raise LdoError("created_at", f"{_show(raw_ts)} is not an ISO 8601 timestamp", source=source) from None
    if created_at.tzinfo is None:
        raise LdoError("created_at", f"{_show(raw_ts)} has no timezone (use Z or +00:00)", source=source)
    try:
        # Snapshots store UTC microseconds and compare instants: a time that has no UTC date (year 1 at
        # +14:00 falls in year 0) is not a real timestamp.
        created_at.astimezone(UTC)
    except OverflowError:
        raise LdoError(
            "created_at",
            f"{_show(raw_ts)} is out of range: in UTC it falls outside years 1-9999",
            source=source,
        ) from None

    device_id = doc.get("device_id")
    if device_id is not None and not isinstance(device_id, str):
        raise LdoError("device_id", f"expected string or null, got {_type_name(device_id)}", source=source)
    if device_id is not None and not _storable_text(device_id):
        raise LdoError(
            "device_id",
            "contains a NUL character or an unpaired UTF-16 surrogate: not storable text",
            source=source,
        )

    context = _object(doc, "context", source)
    ids = []
    for key in CONTEXT_KEYS:
        if key not in context:
            raise LdoError(f"context.{key}", "required field is missing", source=source)
        ids.append(_int_field(context[key], f"context.{key}", source))

    sensors = _sensors(_object(doc, "sensors", source), spec, source)
    labels = _labels(_object(doc, "labels", source), spec, source)

    if "validated" not in doc:
        raise LdoError("validated", "required field is missing", source=source)
    validated = doc["validated"]
    if not isinstance(validated, bool):
        raise LdoError("validated", f"expected true or false, got {_show(validated)}", source=source)

    return Ldo(
        ldo_id=ldo_id,
        created_at=created_at,
        device_id=device_id,
        product_id=ids[0],
        recipe_id=ids[1],
        asset_id=ids[2],
        sensors=sensors,
        labels=labels,
        validated=validated,
    )


def _path_of(doc: Any, target: object) -> str | None:
    """The dotted path of the object ``target`` inside ``doc`` (found by identity; slow, rare path)."""
    stack: list[tuple[Any, str]] = [(doc, "")]
    while stack:
        node, path = stack.pop()
        if node is target:
            return path
        if isinstance(node, dict):
            stack.extend((v, _member(path, k)) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(node))
    return None


class _DuplicateKey(Exception):
    """A JSON object named a key twice (raised by the decoders' object hook; see ``_duplicate``)."""


def _unique_pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(items)
    if len(obj) != len(items):
        raise _DuplicateKey
    return obj


# Shared decoders, as json.loads shares its default one: a decoder built per call cost more than the hook.
# The second reads integer literals longer than Python converts (a plain ValueError, not a JSONDecodeError,
# from the first) into markers, so that the check of their field names them; it runs only after that error.
_DECODER = json.JSONDecoder(object_pairs_hook=_unique_pairs)
_DECODER_HUGE_INTS = json.JSONDecoder(object_pairs_hook=_unique_pairs, parse_int=_int_or_huge)


def _loads(text: str, source: str | None) -> Any:
    for decoder in (_DECODER, _DECODER_HUGE_INTS):
        try:
            return decoder.decode(text)
        except json.JSONDecodeError as exc:
            hint = "; the object looks truncated" if exc.pos >= len(text.rstrip()) else ""
            raise LdoError(
                "(json)",
                f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}{hint}",
                source=source,
            ) from None
        except RecursionError:
            raise LdoError("(json)", "not valid JSON: nested too deeply", source=source) from None
        except _DuplicateKey:
            raise _duplicate(text, source) from None
        except ValueError:  # the integer-length limit: read those literals as markers
            continue
    raise LdoError("(json)", "not valid JSON: a number Python cannot read", source=source)


def _duplicate(text: str, source: str | None) -> LdoError:
    """The rejection of a document that repeats a key, naming the key's path (parsed again: rare, slow)."""
    found: list[tuple[dict[str, Any], str]] = []

    def record(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(items)
        if len(obj) != len(items) and not found:
            seen: set[str] = set()
            for key, _ in items:
                if key in seen:
                    found.append((obj, key))
                    break
                seen.add(key)
        return obj

    try:
        doc = json.JSONDecoder(object_pairs_hook=record, parse_int=_int_or_huge).decode(text)
    except (ValueError, RecursionError):  # broken further on as well: the duplicate is reason enough
        doc = None
    if not found:
        return LdoError("(json)", "duplicate key: an object names a key more than once", source=source)
    obj, key = found[0]
    path = _path_of(doc, obj) if doc is not None else None
    # Readers disagree on which copy of a repeated key counts (Python keeps the last, others the first): the
    # record says two things, and which one a snapshot learns must not depend on the parser.
    return LdoError(
        "(json)" if path is None else _member(path, key),
        f"duplicate key {_show(key)}: the object names it more than once",
        source=source,
    )


def parse_ldo(raw: bytes | str, spec: DataSpec, *, source: str | None = None) -> Ldo:
    """Decode and validate one stored LDO object; any problem is an :class:`LdoError`."""
    limit = max_ldo_bytes(spec)
    if len(raw) > limit:
        raise LdoError("(json)", f"{len(raw)} bytes, above the limit of {limit} for one LDO", source=source)
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise LdoError("(json)", f"not UTF-8 text (byte {exc.start})", source=source) from None
    return validate_ldo(_loads(raw, source), spec, source=source)


_FILE_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _not_regular(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")
    return f"{kind}, not a regular file: refused"


def read_ldo_file(path: Path, spec: DataSpec, *, root: Path, source: str | None = None) -> bytes:
    """The bytes of one LDO file in the data folder ``root``, or an :class:`LdoError` on field ``(file)``.

    Refused: special files (a FIFO blocks its reader forever, a device never ends), symbolic links whose
    target is outside ``root`` (a link to ``/dev/zero`` or ``/etc/shadow`` is not data), and files above
    :func:`max_ldo_bytes`. The file is opened non-blocking and without following links, then checked again
    on the open descriptor, so swapping it between the check and the open changes nothing; at most the
    limit plus one byte is read, even if it grows meanwhile.
    """
    where = str(path) if source is None else source
    limit = max_ldo_bytes(spec)

    def refuse(reason: str) -> LdoError:
        return LdoError("(file)", reason, source=where)

    try:
        info = os.lstat(path)
        target = path
        if stat.S_ISLNK(info.st_mode):
            target = path.resolve(strict=True)
            home = root.resolve()
            if not target.is_relative_to(home):
                raise refuse(f"a symbolic link to {target}, outside the data folder {home}: refused")
            info = os.stat(target)
        if (problem := _not_regular(info.st_mode)) is not None:
            raise refuse(problem)
        if info.st_size > limit:
            raise refuse(f"{info.st_size} bytes, above the limit of {limit} for one LDO: refused")
        fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            info = os.fstat(fd)
            if (problem := _not_regular(info.st_mode)) is not None:
                raise refuse(problem)
            parts: list[bytes] = []
            size, want = 0, info.st_size + 1  # one read takes a regular file whole; +1 sees it grow
            while size <= limit:
                chunk = os.read(fd, min(want, limit + 1 - size))
                if not chunk:
                    break
                parts.append(chunk)
                size += len(chunk)
                want = 1 << 16
        finally:
            os.close(fd)
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (pathlib, Python < 3.13)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise refuse(f"cannot read it: {reason}") from None
    if size > limit:
        raise refuse(f"more than {limit} bytes (it grew while being read), above the limit for one LDO")
    return parts[0] if len(parts) == 1 else b"".join(parts)


def dumps(doc: dict[str, Any]) -> bytes:
    """Serialise an LDO document the way the generator and tests store it (compact, stable key order)."""
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode("utf-8")
