"""The failure-mode model: raw LDO values in, per-mode logits (or probabilities) out.

    model = FailureModeModel(cfg, vocabularies, *sensor_statistics(train_x))  # train_x: (N, C, T) float32
    probs = WithProbabilities(model)(sensors, product_id, recipe_id, asset_id)  # (B, L)

Everything a node would otherwise have to reimplement lives inside the graph as buffers, so training and
the edge runtime cannot drift apart (DESIGN.md, "Model interface"):

- per-channel normalisation statistics of the training split (``sensor_mean``, ``sensor_std``,
  ``shape_std``; :func:`sensor_statistics`);
- the raw-id -> embedding-row tables (``*_vocab``): row 0 is the reserved "unknown" row, so an id never
  seen in training is not an error. The lookup is a comparison against the vocabulary, summed: no
  data-dependent control flow, so ONNX export and TensorRT builds see a static graph.

Layers: a few strided 1-D convolutions over the window (batch norm, ReLU), mean- and max-pooled over time;
embeddings of product, recipe and asset; an MLP head with one logit per failure mode (multi-label).

The convolutions see every channel twice: its **level** (raw values scaled by the training split's mean and
std) and its **shape** (the window minus its own mean, scaled by the training split's std of such centred
windows). Level alone hides what a signal does *within* a window behind how it differs *between* windows:
temperature baselines differ by 30 degC between products, so a 4 degC rise across one window is a tenth of
a standard deviation, and the overheating trend was the weakest mode (AUROC 0.95 on 6,000 synthetic LDOs;
1.00 with the shape view, same data and config). The extra channels cost 4 x 16 x 8 first-layer weights.

The 1-D convolutions are written as 2-D ones with a (1, k) kernel over a (B, C, 1, T) view, run in
channels-last memory order: that is how oneDNN (CPU) and TensorRT run 1-D convolutions anyway, and on CPU
it makes a training step ~23% faster than ``nn.Conv1d`` (same arithmetic; benchmarks/train.py). The ONNX
graph is an ``Unsqueeze`` and plain 2-D ``Conv``s, which TensorRT builds natively.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import torch
from torch import Tensor, nn

from training.config import TrainingConfig

__all__ = [
    "ID_INPUTS",
    "FailureModeModel",
    "WithProbabilities",
    "count_parameters",
    "in_batches",
    "sensor_statistics",
]

ID_INPUTS = ("product_id", "recipe_id", "asset_id")
_T = TypeVar("_T")


class _IdEmbedding(nn.Module):
    """Raw id -> embedding, with row 0 for ids outside the vocabulary."""

    vocab: Tensor
    rows: Tensor

    def __init__(self, vocabulary: Sequence[int], capacity: int, dim: int) -> None:
        super().__init__()
        ids = list(vocabulary)[: capacity - 1]
        self.register_buffer("vocab", torch.tensor(ids, dtype=torch.int64))  # (V,)
        self.register_buffer("rows", torch.arange(1, len(ids) + 1, dtype=torch.int64))  # (V,)
        self.embedding = nn.Embedding(capacity, dim)

    def forward(self, raw: Tensor) -> Tensor:  # (B,) int64 -> (B, dim)
        match = raw.unsqueeze(1) == self.vocab.unsqueeze(0)  # (B, V)
        index = (match.to(torch.int64) * self.rows).sum(dim=1)  # (B,) 0 when unknown
        out: Tensor = self.embedding(index)
        return out


def sensor_statistics(train_x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(mean, std, shape_std)`` per channel, each (C,), of training windows ``train_x`` (N, C, T)."""
    centred = train_x - train_x.mean(dim=2, keepdim=True)  # (N, C, T): each window minus its own mean
    return train_x.mean(dim=(0, 2)), train_x.std(dim=(0, 2)), centred.std(dim=(0, 2))


class FailureModeModel(nn.Module):
    sensor_mean: Tensor  # (1, C, 1) buffers: part of the weights file and of the exported graph
    sensor_std: Tensor
    shape_std: Tensor  # std of windows centred on their own mean: the scale of the shape view

    def __init__(
        self,
        cfg: TrainingConfig,
        vocabularies: Mapping[str, Sequence[int]],
        sensor_mean: Tensor,
        sensor_std: Tensor,
        shape_std: Tensor,
    ) -> None:
        super().__init__()
        n_channels, n_labels = len(cfg.channels), len(cfg.labels)
        self.register_buffer("sensor_mean", sensor_mean.reshape(1, n_channels, 1).to(torch.float32))
        self.register_buffer(
            "sensor_std", sensor_std.reshape(1, n_channels, 1).clamp_min(1e-6).to(torch.float32)
        )
        self.register_buffer(
            "shape_std", shape_std.reshape(1, n_channels, 1).clamp_min(1e-6).to(torch.float32)
        )
        capacities = {
            "product_id": cfg.product_vocab,
            "recipe_id": cfg.recipe_vocab,
            "asset_id": cfg.asset_vocab,
        }
        self.ids = nn.ModuleDict(
            {
                name: _IdEmbedding(vocabularies.get(name, []), capacities[name], cfg.embed_dim)
                for name in ID_INPUTS
            }
        )
        layers: list[nn.Module] = []
        in_ch = 2 * n_channels  # level and shape of each channel
        for i, out_ch in enumerate(cfg.conv_channels):
            kernel, stride = (cfg.first_kernel, cfg.first_stride) if i == 0 else (5, 2)
            layers += [
                nn.Conv2d(
                    in_ch, out_ch, (1, kernel), stride=(1, stride), padding=(0, kernel // 2), bias=False
                ),
                nn.BatchNorm2d(out_ch),
                nn.ReLU(),
            ]
            in_ch = out_ch
        self.encoder = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Linear(2 * in_ch + len(ID_INPUTS) * cfg.embed_dim, cfg.hidden),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, n_labels),
        )

    def forward(self, sensors: Tensor, product_id: Tensor, recipe_id: Tensor, asset_id: Tensor) -> Tensor:
        level = (sensors - self.sensor_mean) / self.sensor_std  # (B, C, T), raw values normalised in-graph
        shape = (sensors - sensors.mean(dim=2, keepdim=True)) / self.shape_std  # (B, C, T), window-centred
        x = torch.cat([level, shape], dim=1)  # (B, 2C, T)
        x = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)  # (B, 2C, 1, T), channels last
        h = self.encoder(x)  # (B, F, 1, T')
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)  # (B, 2F)
        context = [
            self.ids[name](raw)
            for name, raw in zip(ID_INPUTS, (product_id, recipe_id, asset_id), strict=True)
        ]
        logits: Tensor = self.head(torch.cat([pooled, *context], dim=1))  # (B, L)
        return logits


class WithProbabilities(nn.Module):
    """The exported and deployed form: the same inputs, ``probabilities`` (B, L) out."""

    def __init__(self, model: FailureModeModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, sensors: Tensor, product_id: Tensor, recipe_id: Tensor, asset_id: Tensor) -> Tensor:
        return torch.sigmoid(self.model(sensors, product_id, recipe_id, asset_id))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def in_batches(run: Callable[[Tensor], _T], rows: Tensor, batch: int) -> list[_T]:
    """``run`` on ``rows`` in consecutive slices of ``batch`` rows (the last one shorter), in order: the one
    batched prediction loop, for PyTorch and ONNX Runtime alike (training's validation, evaluation, the
    export's parity check). The caller sets the mode (inference_mode, eval, autocast) and joins the pieces."""
    return [run(rows[start : start + batch]) for start in range(0, len(rows), batch)]
