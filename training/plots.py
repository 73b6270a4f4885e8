"""PNG plots of a training run: learning curves and per-mode confusion matrices (matplotlib, no torch).

    plot_curves(history, run_dir / "curves.png")
    plot_confusion(confusion(y_test, p_test >= thresholds), labels, run_dir / "confusion.png")

Each function writes one PNG at the path the caller chose (its parent folders are created), closes its
figure and returns the path. Importing this module selects matplotlib's Agg backend: training runs on
headless machines (CI runners, cluster pods) where an interactive backend would fail or hang. Note that
``matplotlib.use`` switches the backend for the whole process and, if pyplot was already imported with
another backend, closes that backend's open figures.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import matplotlib
import numpy as np
import numpy.typing as npt

matplotlib.use("Agg")  # before pyplot is imported, so no GUI backend is ever tried

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, MaxNLocator

__all__ = ["DPI", "plot_confusion", "plot_curves"]

DPI = 110

# Beyond this many epochs, point markers turn a line into a smear; below it they show single epochs.
_MARKER_MAX_POINTS = 30


def _save(fig: Figure, out: Path) -> Path:
    """Write ``fig`` as PNG to ``out`` and close it, also when saving fails (pyplot keeps every open
    figure alive, so a figure left open per call is a memory leak over a long sweep)."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, format="png", dpi=DPI)
    finally:
        plt.close(fig)
    return out


# --- learning curves ------------------------------------------------------------------------------------


def _series(history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) of ``key`` over the rows that carry a finite number for it.

    Rows without the key, or with None / NaN (an epoch that skipped validation, say), are left out rather
    than plotted as 0. A row without "epoch" is placed by its position (1-based).
    """
    xs: list[float] = []
    ys: list[float] = []
    for position, row in enumerate(history, start=1):
        value = row.get(key)
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            continue
        epoch = row.get("epoch", position)
        xs.append(float(epoch) if isinstance(epoch, numbers.Real) else float(position))
        ys.append(float(value))
    return xs, ys


def _line(ax: Axes, xs: list[float], ys: list[float], **style: Any) -> None:
    marker = "o" if len(xs) <= _MARKER_MAX_POINTS else None
    ax.plot(xs, ys, marker=marker, markersize=3.5, linewidth=1.6, **style)


def _no_data(ax: Axes) -> None:
    ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="0.5")


def _legend(*axes: Axes, loc: Literal["best", "upper right", "lower right"] = "best") -> None:
    """One legend for lines spread over twin axes; none at all when nothing was drawn (matplotlib warns
    about an empty legend, and warnings are errors in the test suite)."""
    handles: list[Any] = []
    names: list[str] = []
    for ax in axes:
        h, n = ax.get_legend_handles_labels()
        handles += h
        names += n
    if handles:
        axes[0].legend(handles, names, loc=loc, fontsize="small", framealpha=0.9)


def plot_curves(history: Sequence[Mapping[str, Any]], out: Path, *, title: str = "Training curves") -> Path:
    """Two panels over epochs: train/val loss, and val subset accuracy with the learning rate.

    ``history`` rows look like ``{"epoch": 1, "train_loss": 0.4, "val_loss": 0.35,
    "val_subset_accuracy": 0.81, "lr": 0.001}``; any key may be missing from any row. The epoch with the
    lowest val_loss is marked, the usual checkpoint to keep. The learning rate goes on a log axis when it
    spans more than a factor of 10 (warm-up and decay schedules), a linear one otherwise.
    """
    # sharex: both panels show the same epoch range even when a metric is logged on fewer epochs.
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained", sharex=True)
    fig.suptitle(title, fontsize="large")

    # Left: losses.
    drawn = False
    for key, name, color in (("train_loss", "train loss", "C0"), ("val_loss", "val loss", "C1")):
        xs, ys = _series(history, key)
        if xs:
            _line(ax_loss, xs, ys, color=color, label=name)
            drawn = True
    xs, ys = _series(history, "val_loss")
    if xs:
        best = int(np.argmin(ys))
        ax_loss.scatter(
            [xs[best]],
            [ys[best]],
            s=60,
            facecolors="none",
            edgecolors="C3",
            linewidths=1.5,
            zorder=3,
            label=f"best val loss {ys[best]:.4g} (epoch {xs[best]:g})",
        )
    if not drawn:
        _no_data(ax_loss)
    ax_loss.set_title("Loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    _legend(ax_loss, loc="upper right")

    # Right: accuracy on the left axis, learning rate on a twin axis so both scales stay readable.
    ax_lr = ax_acc.twinx()
    xs, ys = _series(history, "val_subset_accuracy")
    if xs:
        _line(ax_acc, xs, ys, color="C2", label="val subset accuracy")
    lr_xs, lr_ys = _series(history, "lr")
    if lr_xs:
        _line(ax_lr, lr_xs, lr_ys, color="0.45", linestyle="--", label="learning rate")
        positive = [v for v in lr_ys if v > 0]
        if len(positive) == len(lr_ys) and max(lr_ys) > 10 * min(lr_ys):
            ax_lr.set_yscale("log")
        else:
            # Plain "0.001" / "5e-05" tick labels: the default "1e-3" offset text collides with the title.
            ax_lr.yaxis.set_major_formatter(FormatStrFormatter("%.2g"))
    else:
        ax_lr.set_yticks([])
    if not xs and not lr_xs:
        _no_data(ax_acc)
    ax_acc.set_title("Validation subset accuracy and learning rate")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("subset accuracy")
    ax_lr.set_ylabel("learning rate", color="0.35")
    _legend(ax_acc, ax_lr, loc="lower right")

    for ax in (ax_loss, ax_acc):
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    return _save(fig, out)


# --- confusion matrices ---------------------------------------------------------------------------------


def plot_confusion(
    conf: npt.ArrayLike,
    labels: Sequence[str],
    out: Path,
    *,
    title: str = "Per-mode confusion matrices",
) -> Path:
    """One annotated 2x2 heatmap per mode, in a row; ``conf[l] = [[tn, fp], [fn, tp]]`` as from
    :func:`training.metrics.confusion`.

    Cells show the count and its share of the true row; the colour is that share, so a good mode has a
    dark diagonal whatever its class balance (raw counts would make every rare mode look the same: one
    dark "true 0, predicted 0" cell).
    """
    counts = np.asarray(conf)
    if counts.ndim != 3 or counts.shape[1:] != (2, 2) or counts.shape[0] == 0:
        raise ValueError(f"conf must have shape (L, 2, 2) with L >= 1, got {counts.shape}")
    if len(labels) != counts.shape[0]:
        raise ValueError(f"labels has {len(labels)} names but conf has {counts.shape[0]} modes")
    if not np.issubdtype(counts.dtype, np.number) or (counts < 0).any():
        raise ValueError("conf must hold non-negative counts")

    n_modes = counts.shape[0]
    fig, axes = plt.subplots(
        1, n_modes, figsize=(2.6 * n_modes + 0.6, 3.0), layout="constrained", squeeze=False
    )
    fig.suptitle(title, fontsize="large")
    image = None
    for ax, name, matrix in zip(axes[0], labels, counts, strict=True):
        row_totals = matrix.sum(axis=1, keepdims=True)
        shares = np.divide(matrix, row_totals, out=np.zeros((2, 2)), where=row_totals > 0)
        image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
        for (i, j), count in np.ndenumerate(matrix):
            # A row with no windows (a mode never positive in this split) has no share: show a dash,
            # not a 0.0% that reads like a measured miss rate.
            share = f"{shares[i, j]:.1%}" if row_totals[i, 0] > 0 else "\N{EN DASH}"
            ax.text(
                j,
                i,
                f"{int(count)}\n{share}",
                ha="center",
                va="center",
                fontsize="small",
                color="white" if shares[i, j] > 0.6 else "black",
            )
        ax.set_title(name, fontsize="medium")
        ax.set_xticks([0, 1], ["0", "1"])
        ax.set_yticks([0, 1], ["0", "1"])
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    if image is not None:
        fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="share of true row", format="{x:.0%}")
    return _save(fig, out)
