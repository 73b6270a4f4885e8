"""LDO v1 validation: every rejection names the field and the reason."""

from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np
import pytest

from tools.core.errors import LdoError
from training.config import DataSpec, load_training_config
from training.data.ldo import dumps, parse_ldo

SPEC: DataSpec = load_training_config().data_spec()


def good_doc() -> dict[str, Any]:
    t = np.arange(SPEC.window) / SPEC.sample_rate_hz
    return {
        "schema": "ldo/v1",
        "ldo_id": "ldo-20261101-000123",
        "created_at": "2026-11-01T08:00:00Z",
        "device_id": "edge-001",
        "context": {"product_id": 12, "recipe_id": 3, "asset_id": 77},
        "sensors": {
            "sample_rate_hz": 100.0,
            "channels": list(SPEC.channels),
            "values": [list(np.round(np.sin(2 * np.pi * (c + 1) * t), 5)) for c in range(len(SPEC.channels))],
        },
        "labels": {
            "bearing_wear": 0,
            "misalignment": 1,
            "overheating": 0,
            "electrical_fault": 0,
            "lubrication_loss": 0,
        },
        "validated": True,
    }


def rejected(raw: bytes | str) -> LdoError:
    with pytest.raises(LdoError) as info:
        parse_ldo(raw, SPEC, source="case.json")
    return info.value


def test_good_record_parses_into_typed_values() -> None:
    ldo = parse_ldo(dumps(good_doc()), SPEC)
    assert ldo.ldo_id == "ldo-20261101-000123"
    assert ldo.sensors.shape == (4, 128)
    assert ldo.sensors.dtype == np.float32
    assert ldo.labels == (0, 1, 0, 0, 0)
    assert (ldo.product_id, ldo.recipe_id, ldo.asset_id) == (12, 3, 77)
    assert ldo.created_at.utcoffset() is not None and ldo.created_at.hour == 8
    assert ldo.validated is True


def test_truncated_json_is_rejected_with_position() -> None:
    raw = dumps(good_doc())
    err = rejected(raw[: len(raw) // 2])
    assert err.field == "(json)"
    assert "not valid JSON" in err.reason and "truncated" in err.reason
    assert str(err).startswith("case.json: (json): ")


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_value_is_rejected_naming_the_sample(bad: str) -> None:
    raw = dumps(good_doc()).decode()
    # Replace sample [2][5] textually: json.dumps cannot write these, a broken backend can.
    doc = good_doc()
    doc["sensors"]["values"][2][5] = 123456.789
    raw = dumps(doc).decode().replace("123456.789", bad)
    err = rejected(raw)
    assert err.field == "sensors.values[2][5]"
    assert "not a finite number" in err.reason


def test_value_out_of_float32_range_is_rejected() -> None:
    doc = good_doc()
    doc["sensors"]["values"][1][0] = 1e300
    err = rejected(dumps(doc))
    assert err.field == "sensors.values[1][0]"
    assert "float32" in err.reason


@pytest.mark.parametrize(
    ("mutate", "field", "words"),
    [
        (
            lambda d: d["sensors"]["values"].pop(),
            "sensors.values",
            "expected 4 channels x 128 samples, got 3",
        ),
        (lambda d: d["sensors"]["values"][3].pop(), "sensors.values[3]", "'motor_current' has 127 samples"),
        (lambda d: d["sensors"]["values"][0].extend([0.0] * 8), "sensors.values[0]", "has 136 samples"),
        (lambda d: d["sensors"].update(values=[[0.0] * 4] * 128), "sensors.values", "got 128 rows"),
    ],
)
def test_wrong_window_shape_is_rejected(mutate: Any, field: str, words: str) -> None:
    doc = good_doc()
    mutate(doc)
    err = rejected(dumps(doc))
    assert err.field == field
    assert "wrong window shape" in err.reason and words in err.reason


@pytest.mark.parametrize("label", list(SPEC.labels))
def test_missing_label_is_rejected(label: str) -> None:
    doc = good_doc()
    del doc["labels"][label]
    err = rejected(dumps(doc))
    assert err.field == f"labels.{label}"
    assert "missing" in err.reason


@pytest.mark.parametrize(
    "ldo_id", ["a/b", "../etc", "ldo..1", "..", "/abs", "-lead", ".hidden", "x" * 129, ""]
)
def test_unsafe_ldo_id_is_rejected(ldo_id: str) -> None:
    doc = good_doc()
    doc["ldo_id"] = ldo_id
    err = rejected(dumps(doc))
    assert err.field == "ldo_id"
    assert "not a valid id" in err.reason


@pytest.mark.parametrize(
    ("path", "value", "field", "words"),
    [
        (("context", "asset_id"), "77", "context.asset_id", "expected integer, got string"),
        (("context", "product_id"), 12.5, "context.product_id", "expected integer, got number"),
        (("context", "recipe_id"), True, "context.recipe_id", "expected integer, got boolean"),
        (("labels", "overheating"), True, "labels.overheating", "expected 0 or 1"),
        (("labels", "overheating"), 2, "labels.overheating", "expected 0 or 1"),
        (("validated",), "yes", "validated", "expected true or false"),
        (("ldo_id",), 123, "ldo_id", "expected string, got number"),
        (("created_at",), 1730000000, "created_at", "expected string"),
        (("device_id",), 7, "device_id", "expected string or null"),
        (("sensors", "sample_rate_hz"), "100", "sensors.sample_rate_hz", "expected number"),
        (("context",), [1, 2, 3], "context", "expected object, got array"),
        (("schema",), "ldo/v2", "schema", "expected 'ldo/v1'"),
    ],
)
def test_wrong_type_is_rejected_naming_the_field(
    path: tuple[str, ...], value: Any, field: str, words: str
) -> None:
    doc = good_doc()
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    err = rejected(json.dumps(doc))
    assert err.field == field
    assert words in err.reason


@pytest.mark.parametrize("bad", ["0.5", "null", "true", "[1]"])
def test_non_numeric_sample_is_rejected(bad: str) -> None:
    doc = good_doc()
    doc["sensors"]["values"][3][17] = 123456.789
    err = rejected(dumps(doc).decode().replace("123456.789", json.dumps(bad) if bad == "0.5" else bad))
    assert err.field == "sensors.values[3][17]"
    assert "expected number" in err.reason


def test_other_contract_violations() -> None:
    doc = good_doc()
    doc["sensors"]["channels"] = ["vibration_y", "vibration_x", "temperature", "motor_current"]
    assert rejected(dumps(doc)).field == "sensors.channels"  # reordered channels are never silently fixed

    doc = good_doc()
    doc["sensors"]["sample_rate_hz"] = 50.0
    err = rejected(dumps(doc))
    assert err.field == "sensors.sample_rate_hz" and "never resampled" in err.reason

    doc = good_doc()
    doc["labels"]["cavitation"] = 1
    assert rejected(dumps(doc)).field == "labels.cavitation"

    doc = good_doc()
    doc["created_at"] = "2026-11-01T08:00:00"
    assert "no timezone" in rejected(dumps(doc)).reason

    doc = good_doc()
    del doc["validated"]
    assert rejected(dumps(doc)).field == "validated"

    assert rejected(b"[1, 2]").field == "(document)"
    assert rejected(b"\xff\xfe").field == "(json)"


def test_unknown_top_level_keys_are_ignored_and_ids_outside_vocab_are_fine() -> None:
    doc = copy.deepcopy(good_doc())
    doc["backend_meta"] = {"ingested_by": "v3.2"}
    doc["context"]["asset_id"] = 10_000  # outside any vocabulary: maps to "unknown" later, not an error
    assert parse_ldo(dumps(doc), SPEC).asset_id == 10_000
