"""Export a trained model to ONNX with the interface's names and a dynamic batch dimension.

    from training.export import export_onnx
    export_onnx(model, "model.onnx", spec)

Uses torch.onnx's maintained exporter (``dynamo=True``, onnxscript). The graph is static: the id lookups are
comparisons, not branches, so ONNX Runtime and TensorRT run it as is.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from training.config import DataSpec
from training.interface import INPUT_NAMES, OUTPUT_NAME
from training.model import FailureModeModel, WithProbabilities

__all__ = ["OPSET", "export_onnx"]

OPSET = 18  # the exporter's own opset; TensorRT 10 and ONNX Runtime 1.16+ read it


def export_onnx(model: FailureModeModel, path: Path | str, spec: DataSpec) -> Path:
    path = Path(path)
    wrapped = WithProbabilities(model).eval()
    batch = torch.export.Dim("batch", min=1, max=65536)
    example = (
        torch.zeros(2, len(spec.channels), spec.window),
        *(torch.zeros(2, dtype=torch.int64) for _ in INPUT_NAMES[1:]),
    )
    with warnings.catch_warnings():
        # Both come from inside torch 2.13's exporter, not from our model: its pytree helper still calls a
        # deprecated API, and it notes that all four inputs share the one batch dimension (they do).
        warnings.filterwarnings(
            "ignore", message=r".*isinstance\(treespec, LeafSpec\).*", category=FutureWarning
        )
        warnings.filterwarnings(
            "ignore", message=r".*The axis name: .* will not be used.*", category=UserWarning
        )
        torch.onnx.export(
            wrapped,
            example,
            str(path),
            dynamo=True,
            opset_version=OPSET,
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_shapes=tuple({0: batch} for _ in INPUT_NAMES),
            external_data=False,
            verbose=False,
        )
    return path
