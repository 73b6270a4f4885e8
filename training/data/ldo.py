"""LDO v1: the record the runtime backend stores, one JSON object per S3 object (../shared/DESIGN.md).

    from training.data.ldo import parse_ldo
    ldo = parse_ldo(raw_bytes, spec, source="s3://bucket/ldos/ldo-1.json")

Validation is hand-written rather than schema-driven because it runs on every record of every monthly
snapshot (100,000+): one pass, no per-value objects beyond the JSON parse, and each rejection names the
field and the reason (``sensors.values[2][17]: not a finite number (nan)``). Records are never reshaped,
reordered or resampled to fit: a record that does not match the training config is rejected with the
mismatch spelled out. Unknown top-level keys are ignored (the backend may add metadata); unknown labels
are not (they would silently drop a failure mode).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from tools.core.errors import LdoError
from training.config import DataSpec

__all__ = ["LDO_ID_PATTERN", "SCHEMA", "Ldo", "dumps", "parse_ldo", "validate_ldo", "validate_ldo_id"]

SCHEMA = "ldo/v1"
# The id becomes a file name and an S3 key component: no '/', no '..', no leading dot or dash.
LDO_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
CONTEXT_KEYS = ("product_id", "recipe_id", "asset_id")


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


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def validate_ldo_id(value: Any, *, field: str = "ldo_id", source: str | None = None) -> str:
    if not isinstance(value, str):
        raise LdoError(field, f"expected string, got {_type_name(value)} {_show(value)}", source=source)
    if "/" in value or ".." in value or not LDO_ID_PATTERN.match(value):
        raise LdoError(
            field,
            f"{_show(value)} is not a valid id: it becomes a file name, so it must match "
            f"{LDO_ID_PATTERN.pattern} and contain no '/' and no '..'",
            source=source,
        )
    return value


def _int_field(value: Any, field: str, source: str | None) -> int:
    # bool is an int subclass in Python; JSON true is not an id.
    if isinstance(value, bool) or not isinstance(value, int):
        raise LdoError(field, f"expected integer, got {_type_name(value)} {_show(value)}", source=source)
    if value < 0:
        raise LdoError(field, f"expected a non-negative id, got {value}", source=source)
    return value


def _object(doc: dict[str, Any], key: str, source: str | None) -> dict[str, Any]:
    if key not in doc:
        raise LdoError(key, "required field is missing", source=source)
    value = doc[key]
    if not isinstance(value, dict):
        raise LdoError(key, f"expected object, got {_type_name(value)}", source=source)
    return value


def _sensors(sensors: dict[str, Any], spec: DataSpec, source: str | None) -> np.ndarray:
    rate = sensors.get("sample_rate_hz")
    if "sample_rate_hz" not in sensors:
        raise LdoError("sensors.sample_rate_hz", "required field is missing", source=source)
    if isinstance(rate, bool) or not isinstance(rate, int | float):
        raise LdoError("sensors.sample_rate_hz", f"expected number, got {_type_name(rate)}", source=source)
    if not math.isclose(rate, spec.sample_rate_hz, rel_tol=1e-9):
        raise LdoError(
            "sensors.sample_rate_hz",
            f"recorded at {rate} Hz but the training config expects {spec.sample_rate_hz} Hz "
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
            f"expected {list(spec.channels)} in this order, got {channels}",
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
            raise LdoError(
                f"sensors.values[{c}][{t}]",
                f"expected number, got {_type_name(row[t])} {_show(row[t])}",
                source=source,
            )
    arr = np.asarray(values, dtype=np.float64)
    with np.errstate(over="ignore"):  # values beyond float32 become inf and are reported just below
        arr32 = arr.astype(np.float32)
    finite = np.isfinite(arr32)
    if not finite.all():
        c, t = (int(i) for i in np.argwhere(~finite)[0])
        reason = (
            f"not a finite number ({float(arr[c, t])!r})"
            if not math.isfinite(arr[c, t])
            else f"{float(arr[c, t])!r} is out of float32 range"
        )
        raise LdoError(f"sensors.values[{c}][{t}]", reason, source=source)
    return arr32


def _labels(labels: dict[str, Any], spec: DataSpec, source: str | None) -> tuple[int, ...]:
    unknown = sorted(set(labels) - set(spec.labels))
    if unknown:
        raise LdoError(
            f"labels.{unknown[0]}",
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

    device_id = doc.get("device_id")
    if device_id is not None and not isinstance(device_id, str):
        raise LdoError("device_id", f"expected string or null, got {_type_name(device_id)}", source=source)

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


def parse_ldo(raw: bytes | str, spec: DataSpec, *, source: str | None = None) -> Ldo:
    """Decode and validate one stored LDO object; any problem is an :class:`LdoError`."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise LdoError("(json)", f"not UTF-8 text (byte {exc.start})", source=source) from None
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as exc:
        hint = "; the object looks truncated" if exc.pos >= len(raw.rstrip()) else ""
        raise LdoError(
            "(json)",
            f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}{hint}",
            source=source,
        ) from None
    except RecursionError:
        raise LdoError("(json)", "not valid JSON: nested too deeply", source=source) from None
    return validate_ldo(doc, spec, source=source)


def dumps(doc: dict[str, Any]) -> bytes:
    """Serialise an LDO document the way the generator and tests store it (compact, stable key order)."""
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode("utf-8")
