"""training.plots: PNGs land where asked, are real images, survive sparse histories, leak no figures."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pytest

from training.metrics import confusion
from training.plots import plot_confusion, plot_curves

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LABELS = ["bearing_wear", "misalignment", "overheating", "electrical_fault", "lubrication_loss"]


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 5_000, f"{path} is only {len(data)} bytes: probably an empty figure"


def full_history(epochs: int = 30) -> list[dict[str, Any]]:
    rows = []
    for e in range(1, epochs + 1):
        rows.append(
            {
                "epoch": e,
                "train_loss": 0.6 * math.exp(-e / 8) + 0.08,
                "val_loss": 0.55 * math.exp(-e / 9) + 0.1,
                "val_subset_accuracy": 0.95 - 0.35 * math.exp(-e / 7),
                "lr": 1e-3 * 0.5 * (1 + math.cos(math.pi * e / epochs)) + 1e-6,  # cosine decay: log axis
            }
        )
    return rows


@pytest.fixture(autouse=True)
def _no_figure_leaks() -> Any:
    before = set(plt.get_fignums())
    yield
    assert set(plt.get_fignums()) == before, "a plot function left a figure open"


def test_plot_curves_full_history(tmp_path: Path) -> None:
    out = tmp_path / "runs" / "r1" / "curves.png"  # parent folders do not exist yet
    assert plot_curves(full_history(), out) == out
    assert_png(out)


@pytest.mark.parametrize(
    "history",
    [
        [  # keys missing here and there, an epoch without "epoch", None and NaN values
            {"epoch": 1, "train_loss": 0.5, "lr": 5e-4},
            {"epoch": 2, "train_loss": 0.4, "val_loss": 0.45, "lr": 1e-3},
            {"train_loss": 0.3, "lr": 1e-3},
            {"epoch": 4, "val_subset_accuracy": 0.8, "val_loss": None, "train_loss": float("nan")},
        ],
        [{"epoch": 1, "train_loss": 0.7}],  # one row, one key: nothing on the right panel
        [{"epoch": 1, "lr": 0.0}, {"epoch": 2, "lr": 1e-3}],  # lr starting at 0: no log axis
        [{"epoch": np.int64(1), "val_loss": np.float32(0.3), "val_subset_accuracy": np.float64(0.7)}],
        [],
    ],
    ids=["sparse", "single-row", "zero-lr", "numpy-scalars", "empty"],
)
def test_plot_curves_tolerates_missing_keys(tmp_path: Path, history: list[dict[str, Any]]) -> None:
    out = plot_curves(history, tmp_path / "curves.png", title="run r2")
    assert_png(out)


def test_plot_confusion(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = rng.random((500, 5)) < 0.15
    decisions = np.where(rng.random((500, 5)) < 0.85, y, ~y)
    y[:, 4] = False  # a mode without positives: its "true 1" row is all zero
    out = tmp_path / "confusion.png"
    assert plot_confusion(confusion(y, decisions), LABELS, out) == out
    assert_png(out)


def test_plot_confusion_single_mode(tmp_path: Path) -> None:
    out = plot_confusion(np.array([[[90, 3], [2, 5]]]), ["bearing_wear"], tmp_path / "one.png")
    assert_png(out)


def test_plot_confusion_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"conf must have shape \(L, 2, 2\)"):
        plot_confusion(np.zeros((5, 4)), LABELS, tmp_path / "x.png")
    with pytest.raises(ValueError, match="labels has 4 names but conf has 5 modes"):
        plot_confusion(np.zeros((5, 2, 2), dtype=int), LABELS[:4], tmp_path / "x.png")
    with pytest.raises(ValueError, match="non-negative counts"):
        plot_confusion(-np.ones((5, 2, 2), dtype=int), LABELS, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_same_input_gives_same_file(tmp_path: Path) -> None:
    """Plots are artifacts of a run: redrawing them from the same numbers must not change the bytes."""
    a = plot_curves(full_history(), tmp_path / "a.png").read_bytes()
    b = plot_curves(full_history(), tmp_path / "b.png").read_bytes()
    assert a == b
