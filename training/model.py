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

The convolutions see every channel three times: its **level** (raw values scaled by the training split's
mean and std), its level **against its context** (the window minus what this product, recipe and asset
read when healthy: additive per-id offsets fitted on the healthy training windows, :func:`sensor_statistics`,
scaled by the std of what is left) and its **shape** (the window minus its own mean, scaled by the
training split's std of such centred windows). Level alone hides what a signal does *within* a window
behind how it differs *between* windows: temperature baselines differ by 30 degC between products, so a
4 degC rise across one window is a tenth of a standard deviation (the overheating trend was the weakest
mode, AUROC 0.95 on 6,000 synthetic LDOs; 1.00 with the shape view). And a plant whose overheating is
"hotter than this product runs on this asset", with no trend, needs the context: AUROC 0.951 without it,
0.981 with it (the ``impulsive`` plant, 20,000 LDOs, benchmarks/robustness.py). The two extra views cost
8 x 16 x 8 first-layer weights and a (capacity, C) offset table per id input.

The 1-D convolutions are written as 2-D ones with a (1, k) kernel over a (B, C, 1, T) view, run in
channels-last memory order: that is how oneDNN (CPU) and TensorRT run 1-D convolutions anyway, and on CPU
it makes a training step ~23% faster than ``nn.Conv1d`` (same arithmetic; benchmarks/train.py). The ONNX
graph is an ``Unsqueeze`` and plain 2-D ``Conv``s, which TensorRT builds natively.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar, cast

import torch
from torch import Tensor, nn

from training.config import TrainingConfig

__all__ = [
    "ID_INPUTS",
    "FailureModeModel",
    "SensorStatistics",
    "WithProbabilities",
    "count_parameters",
    "in_batches",
    "sensor_statistics",
    "vocabulary_rows",
]

ID_INPUTS = ("product_id", "recipe_id", "asset_id")
_T = TypeVar("_T")


class _IdEmbedding(nn.Module):
    """Raw id -> (embedding, baseline offset), with row 0 for ids outside the vocabulary.

    ``offset`` (capacity, C) is what this id adds to each channel's level in healthy training windows
    (:func:`sensor_statistics`); row 0, the unknown id, adds nothing.
    """

    vocab: Tensor
    rows: Tensor
    offset: Tensor

    def __init__(self, vocabulary: Sequence[int], capacity: int, dim: int, n_channels: int) -> None:
        super().__init__()
        ids = vocabulary_rows(vocabulary, capacity)
        self.register_buffer("vocab", torch.tensor(ids, dtype=torch.int64))  # (V,)
        self.register_buffer("rows", torch.arange(1, len(ids) + 1, dtype=torch.int64))  # (V,)
        self.register_buffer("offset", torch.zeros(capacity, n_channels))  # (capacity, C)
        self.embedding = nn.Embedding(capacity, dim)

    def index(self, raw: Tensor) -> Tensor:  # (B,) int64 raw ids -> (B,) rows, 0 when unknown
        match = raw.unsqueeze(1) == self.vocab.unsqueeze(0)  # (B, V)
        return (match.to(torch.int64) * self.rows).sum(dim=1)

    def forward(self, raw: Tensor) -> Tensor:  # (B,) int64 -> (B, dim)
        out: Tensor = self.embedding(self.index(raw))
        return out


def vocabulary_rows(vocabulary: Sequence[int], capacity: int) -> list[int]:
    """The ids that get a row of their own (row i + 1 for the i-th); the rest share row 0, "unknown"."""
    return list(vocabulary)[: capacity - 1]


@dataclass(frozen=True)
class SensorStatistics:
    """What the model keeps of its training split, as buffers (:func:`sensor_statistics` computes it)."""

    mean: Tensor  # (C,) per channel, over windows and time
    std: Tensor  # (C,)
    shape_std: Tensor  # (C,) std of windows minus their own mean
    offsets: dict[str, Tensor] = field(default_factory=dict)  # id input -> (V, C), vocabulary order
    context_std: Tensor | None = None  # (C,) std of healthy windows minus their context's baseline; None: std

    @classmethod
    def placeholder(cls, n_channels: int) -> SensorStatistics:
        """Neutral values for a model whose buffers are about to be loaded from a weights file."""
        ones = torch.ones(n_channels)
        return cls(torch.zeros(n_channels), ones, ones, {}, ones)


def sensor_statistics(
    train_x: Tensor,
    ids: Mapping[str, Tensor] | None = None,
    labels: Tensor | None = None,
    vocabularies: Mapping[str, Sequence[int]] | None = None,
    capacities: Mapping[str, int] | None = None,
) -> SensorStatistics:
    """The statistics of training windows ``train_x`` (N, C, T) the model normalises with.

    With ``ids`` (each (N,) raw ids), ``labels`` (N, L) and the ``vocabularies``/``capacities`` the model
    is built with, also the **context baseline**: each id's additive offset of a channel's window mean,
    fitted on the healthy windows (no label set) by backfitting (``_BACKFIT_ROUNDS`` rounds of "each id's
    mean residual given the other two"), shrunk towards 0 for ids seen in few windows
    (``_SHRINK`` pseudo-windows).
    """
    c = train_x.shape[1]
    centred = train_x - train_x.mean(dim=2, keepdim=True)  # (N, C, T): each window minus its own mean
    mean = train_x.mean(dim=(0, 2))
    stats = SensorStatistics(mean, train_x.std(dim=(0, 2)), centred.std(dim=(0, 2)))
    if ids is None or labels is None or vocabularies is None or capacities is None:
        return stats
    healthy = labels.sum(dim=1) == 0
    if not bool(healthy.any()):
        return stats
    x = train_x[healthy].to(torch.float64)
    level = x.mean(dim=2) - mean.to(torch.float64)  # (H, C)
    rows: dict[str, Tensor] = {}
    sizes: dict[str, int] = {}
    for name, raw in ids.items():
        vocab = vocabulary_rows(vocabularies.get(name, []), capacities[name])
        lookup = {v: i + 1 for i, v in enumerate(vocab)}
        rows[name] = torch.tensor([lookup.get(int(v), 0) for v in raw[healthy].tolist()], dtype=torch.int64)
        sizes[name] = len(vocab) + 1
    tables = {name: torch.zeros(sizes[name], c, dtype=torch.float64) for name in rows}
    counts = {
        name: torch.bincount(row, minlength=sizes[name]).to(torch.float64) for name, row in rows.items()
    }
    for _ in range(_BACKFIT_ROUNDS):
        for name, row in rows.items():
            rest = level - _offsets(tables, rows, but=name)  # (H, C): what the other ids leave
            total = torch.zeros_like(tables[name]).index_add_(0, row, rest)
            table = total / (counts[name] + _SHRINK).unsqueeze(1)
            table[0] = 0.0  # the unknown row adds nothing: unseen ids get the plant's mean level
            tables[name] = table
    base = _offsets(tables, rows)  # (H, C)
    context_std = (x - mean.to(torch.float64).view(1, c, 1) - base.unsqueeze(2)).std(dim=(0, 2))
    offsets = {name: table[1:].to(torch.float32) for name, table in tables.items()}
    return SensorStatistics(stats.mean, stats.std, stats.shape_std, offsets, context_std.to(torch.float32))


_BACKFIT_ROUNDS = 6
_SHRINK = 5.0


def _offsets(tables: Mapping[str, Tensor], rows: Mapping[str, Tensor], but: str | None = None) -> Tensor:
    """Sum of each id's offset row (every id input except ``but``), (H, C)."""
    first = next(iter(tables.values()))
    total = torch.zeros(len(next(iter(rows.values()))), first.shape[1], dtype=first.dtype)
    for name, table in tables.items():
        if name != but:
            total += table[rows[name]]
    return total


class FailureModeModel(nn.Module):
    sensor_mean: Tensor  # (1, C, 1) buffers: part of the weights file and of the exported graph
    sensor_std: Tensor
    shape_std: Tensor  # std of windows centred on their own mean: the scale of the shape view
    context_std: Tensor  # std of healthy windows minus their context's baseline: the context view's scale

    def __init__(
        self,
        cfg: TrainingConfig,
        vocabularies: Mapping[str, Sequence[int]],
        stats: SensorStatistics | None = None,
    ) -> None:
        super().__init__()
        n_channels, n_labels = len(cfg.channels), len(cfg.labels)
        stats = stats or SensorStatistics.placeholder(n_channels)

        def buffer(name: str, value: Tensor, floor: float | None = 1e-6) -> None:
            v = value.reshape(1, n_channels, 1).to(torch.float32)
            self.register_buffer(name, v if floor is None else v.clamp_min(floor))

        buffer("sensor_mean", stats.mean, floor=None)
        buffer("sensor_std", stats.std)
        buffer("shape_std", stats.shape_std)
        # Without fitted offsets the context view is the level view: same centre, same scale.
        buffer("context_std", stats.std if stats.context_std is None else stats.context_std)
        self.ids = nn.ModuleDict(
            {
                name: _IdEmbedding(vocabularies.get(name, []), capacity, cfg.embed_dim, n_channels)
                for name, capacity in id_capacities(cfg).items()
            }
        )
        for name, table in stats.offsets.items():
            cast(_IdEmbedding, self.ids[name]).offset[1 : 1 + len(table)] = table
        layers: list[nn.Module] = []
        in_ch = 3 * n_channels  # level, context and shape of each channel
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
        tables = [cast(_IdEmbedding, self.ids[name]) for name in ID_INPUTS]
        rows = [t.index(raw) for t, raw in zip(tables, (product_id, recipe_id, asset_id), strict=True)]
        offset = tables[0].offset[rows[0]] + tables[1].offset[rows[1]] + tables[2].offset[rows[2]]  # (B, C)
        x = self._views(sensors, offset)  # (B, 3C, 1, T): level, context, shape of each channel
        h = self.encoder(x)  # (B, F, 1, T')
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)  # (B, 2F)
        embedded = [t.embedding(row) for t, row in zip(tables, rows, strict=True)]
        logits: Tensor = self.head(torch.cat([pooled, *embedded], dim=1))  # (B, L)
        return logits

    def _views(self, sensors: Tensor, offset: Tensor) -> Tensor:
        """The three views of ``sensors`` (B, C, T), as (B, 3C, 1, T) in channels-last memory order:

        level = (x - mean) / std, context = (x - mean - offset) / context_std, shape = (x - x̄) / shape_std,

        written as one batched matrix product over the window's deviations from its own mean x̄ and a row
        of ones that carries each window's bias: its (B, T, 3C) result *is* channels-last memory, so the
        convolutions get it without a layout copy. Built as three element-wise views, a concatenation and
        a layout change it cost ~1.5-3 ms of a ~9 ms CPU training step; this way ~0.3 ms. The product sees
        deviations, not raw values of ~50 degC, so bf16 autocast on a GPU keeps their resolution.
        """
        b, c = sensors.shape[0], sensors.shape[1]
        window_mean = sensors.mean(dim=2, keepdim=True)  # (B, C, 1)
        deviation = sensors - window_mean  # (B, C, T)
        level0 = window_mean.view(b, c) - self.sensor_mean.view(1, c)  # (B, C): the window mean's level
        bias = torch.cat(
            [level0 / self.sensor_std.view(1, c), (level0 - offset) / self.context_std.view(1, c),
             torch.zeros_like(level0)], dim=1,
        )  # fmt: skip
        inverse = 1 / torch.cat([self.sensor_std, self.context_std, self.shape_std], dim=1).view(1, 3 * c)
        diagonal = torch.eye(c, dtype=sensors.dtype, device=sensors.device).repeat(1, 3) * inverse  # (C, 3C)
        # The bias rides in the product as a last input row of ones (a broadcast add of it into the
        # (B, T, 3C) result was itself a 0.8 ms copy, an inner dimension of 12 being too short to vectorise).
        ones = torch.ones_like(window_mean).narrow(1, 0, 1).expand(b, 1, sensors.shape[2])  # (B, 1, T)
        rows = torch.cat([deviation, ones], dim=1)  # (B, C + 1, T)
        weight = torch.cat([diagonal.expand(b, c, 3 * c), bias.unsqueeze(1)], dim=1)  # (B, C + 1, 3C)
        x = torch.bmm(rows.transpose(1, 2), weight)  # (B, T, 3C)
        return x.transpose(1, 2).unsqueeze(2)  # (B, T, 3C) seen as (B, 3C, 1, T): channels-last strides


def id_capacities(cfg: TrainingConfig) -> dict[str, int]:
    """Rows of each id input's tables, the unknown row 0 included (``*_vocab`` of the training config)."""
    return {"product_id": cfg.product_vocab, "recipe_id": cfg.recipe_vocab, "asset_id": cfg.asset_vocab}


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
