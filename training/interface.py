"""The model interface: what the edge inference service feeds the model and what it gets back.

Its sha256 (``interface`` in releases) changes exactly when a node would have to change how it calls the
model: input or output names, dtypes, shapes, channel names, window length, label names. A change bumps
the MAJOR version (DESIGN.md, "Versions"). No torch here: the delivery side compares these too.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from training.config import DataSpec

__all__ = ["INPUT_NAMES", "OUTPUT_NAME", "interface_descriptor", "interface_hash"]

INPUT_NAMES = ("sensors", "product_id", "recipe_id", "asset_id")
OUTPUT_NAME = "probabilities"


def interface_descriptor(spec: DataSpec) -> dict[str, Any]:
    c, t, n_labels = len(spec.channels), spec.window, len(spec.labels)
    return {
        "inputs": [
            {"name": "sensors", "dtype": "float32", "shape": ["B", c, t]},
            {"name": "product_id", "dtype": "int64", "shape": ["B"]},
            {"name": "recipe_id", "dtype": "int64", "shape": ["B"]},
            {"name": "asset_id", "dtype": "int64", "shape": ["B"]},
        ],
        "outputs": [{"name": OUTPUT_NAME, "dtype": "float32", "shape": ["B", n_labels]}],
        "channels": list(spec.channels),
        "window": t,
        "labels": list(spec.labels),
    }


def interface_hash(spec: DataSpec) -> str:
    canonical = json.dumps(interface_descriptor(spec), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()
