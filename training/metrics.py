"""Evaluation numbers for the multi-label failure-mode classifier (numpy only, no torch).

The model scores ``L`` failure modes per sensor window; a window whose labels are all 0 is "healthy".
Everything here works on plain arrays of shape ``(N, L)``:

    thresholds = tune_thresholds(y_val, p_val)                 # per mode, on the validation split
    report = evaluate(y_test, p_test, thresholds, labels)      # JSON-able dict, e.g. for metrics.json
    conf = confusion(y_test, p_test >= thresholds)             # (L, 2, 2), for training.plots

Conventions every function shares:

* A decision is positive when ``prob >= threshold`` (a probability exactly on the threshold fires).
* Labels (``y_true``, ``decisions``) are bool or numeric arrays holding only 0 and 1.
* Precision, recall and F1 are 0.0 when their denominator is 0, so a report never holds NaN.
* Malformed input raises :class:`ValueError` naming the argument and the problem; nothing is silently
  broadcast or coerced, because a transposed or truncated array would otherwise give plausible numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "DEFAULT_GRID",
    "RAISE_GRID",
    "auroc",
    "cap_false_alarms",
    "confusion",
    "evaluate",
    "tune_thresholds",
]

# Candidate thresholds for tune_thresholds. Rounded so the chosen values are exactly 0.05, 0.06, ...,
# 0.95 (np.arange alone accumulates float error such as 0.15000000000000002, which would leak into reports).
DEFAULT_GRID: npt.NDArray[np.float64] = np.round(np.arange(0.05, 0.951, 0.01), 2)

# Where cap_false_alarms may raise a threshold to: the tuning grid and a finer top end (a mode the model
# separates badly may need 0.99 to stay quiet on healthy windows).
RAISE_GRID: npt.NDArray[np.float64] = np.unique(np.r_[DEFAULT_GRID, 0.96, 0.97, 0.98, 0.99, 0.995, 0.999])

# Floats in evaluate()'s report are rounded to this many decimals: enough to compare runs, and the JSON
# stays readable and stable across platforms.
_DECIMALS = 6


# --- input validation -----------------------------------------------------------------------------------


def _binary_matrix(name: str, a: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """``a`` as an (N, L) bool array; only 0/1 (or False/True) values are accepted."""
    arr = np.asarray(a)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (windows, modes), got shape {arr.shape}")
    if arr.dtype == np.bool_:
        return arr.astype(np.bool_, copy=False)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{name} must hold 0/1 labels, got dtype {arr.dtype}")
    # Float 0.0/1.0 labels are accepted (data loaders often hand labels over as float32), anything else
    # (0.5, -1, NaN) is a bug upstream and must not be rounded away.
    bad = ~((arr == 0) | (arr == 1))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"{name} must hold only 0 and 1, found {arr[row, col].item()!r} at row {row}, column {col}"
        )
    return np.asarray(arr == 1, dtype=np.bool_)


def _prob_matrix(name: str, a: npt.ArrayLike, like: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
    """``a`` as an (N, L) float array of finite probabilities with the same shape as ``like``."""
    arr = np.asarray(a)
    if arr.shape != like.shape:
        raise ValueError(f"{name} has shape {arr.shape} but y_true {like.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    finite = np.isfinite(arr)
    if not finite.all():
        row, col = np.argwhere(~finite)[0]
        raise ValueError(
            f"{name} contains {int((~finite).sum())} non-finite value(s) (NaN or inf), "
            f"first at row {row}, column {col}: {arr[row, col].item()!r}"
        )
    # Logits passed where probabilities are expected would still give numbers, just wrong ones.
    outside = (arr < 0.0) | (arr > 1.0)
    if outside.any():
        row, col = np.argwhere(outside)[0]
        raise ValueError(
            f"{name} must be probabilities in [0, 1], found {arr[row, col].item()!r} "
            f"at row {row}, column {col} (logits instead of sigmoid outputs?)"
        )
    return arr


def _threshold_vector(name: str, a: npt.ArrayLike, n_modes: int) -> npt.NDArray[np.float64]:
    arr = np.asarray(a, dtype=np.float64)
    if arr.shape != (n_modes,):
        raise ValueError(
            f"{name} has shape {arr.shape} but y_true has {n_modes} modes (expected ({n_modes},))"
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains non-finite values: {arr.tolist()}")
    return arr


def _ratio(num: int, den: int) -> float:
    """num / den, or 0.0 when den is 0 (the report's convention for undefined precision/recall/F1)."""
    return num / den if den else 0.0


def _round(x: float) -> float:
    return round(float(x), _DECIMALS)


# --- ranking metric -------------------------------------------------------------------------------------


def auroc(y_true: npt.ArrayLike, scores: npt.ArrayLike) -> float | None:
    """Area under the ROC curve of ``scores`` for binary ``y_true`` (both 1-D, same length).

    Computed from ranks (the Mann-Whitney U statistic): AUROC = U / (n_pos * n_neg), where tied scores
    get the average of the ranks they span, so a positive tied with a negative counts as half a correct
    pair. This equals the trapezoidal ROC area, without sorting out curve points. Returns None when only
    one class is present (or there are no samples): the area is undefined then, and 0.0 or 0.5 in a report
    would read as a real, bad score.
    """
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1:
        raise ValueError(f"y_true and scores must be 1-D, got shapes {y.shape} and {s.shape}")
    if y.shape != s.shape:
        raise ValueError(f"scores has shape {s.shape} but y_true {y.shape}")
    if not np.isfinite(s).all():
        raise ValueError(f"scores contains {int((~np.isfinite(s)).sum())} non-finite value(s) (NaN or inf)")
    pos = _binary_matrix("y_true", y.reshape(-1, 1))[:, 0]
    n_pos = int(pos.sum())
    n_neg = pos.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None

    # Average ranks (1-based) with ties: sort once, find runs of equal scores, give every member of a run
    # the mean of the ranks the run occupies, (first + last) / 2. Stable sort keeps this deterministic.
    order = np.argsort(s, kind="stable")
    sorted_s = s[order]
    run_start = np.r_[True, sorted_s[1:] != sorted_s[:-1]]
    starts = np.flatnonzero(run_start)  # 0-based position of each run's first element
    ends = np.r_[starts[1:], s.size]  # 0-based position one past each run's last element
    run_rank = (starts + 1 + ends) / 2.0  # mean of the 1-based ranks starts+1 .. ends
    ranks = np.empty(s.size, dtype=np.float64)
    ranks[order] = run_rank[np.cumsum(run_start) - 1]

    u = ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


# --- decisions ------------------------------------------------------------------------------------------


def confusion(y_true: npt.ArrayLike, decisions: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Per-mode confusion matrices, shape (L, 2, 2): ``conf[l] = [[tn, fp], [fn, tp]]``.

    Rows are the truth (0, 1), columns the decision (0, 1), the layout of sklearn's
    ``multilabel_confusion_matrix``, so numbers can be cross-checked against it.
    """
    y = _binary_matrix("y_true", y_true)
    d_arr = np.asarray(decisions)
    if d_arr.shape != y.shape:
        raise ValueError(f"decisions has shape {d_arr.shape} but y_true {y.shape}")
    d = _binary_matrix("decisions", d_arr)
    tp = (y & d).sum(axis=0)
    fp = (~y & d).sum(axis=0)
    fn = (y & ~d).sum(axis=0)
    tn = (~y & ~d).sum(axis=0)
    return np.stack([np.stack([tn, fp], axis=-1), np.stack([fn, tp], axis=-1)], axis=1).astype(np.int64)


def tune_thresholds(
    y_true: npt.ArrayLike, probs: npt.ArrayLike, grid: npt.ArrayLike | None = None, *, beta: float = 1.0
) -> npt.NDArray[np.float64]:
    """Per mode, the threshold from ``grid`` that maximises F-beta on this (validation) split; shape (L,).

    ``beta`` weighs recall against precision: 1 is F1, 2 counts a missed failure as four false alarms'
    worth of F-score (van Rijsbergen's effectiveness measure), which is how the evaluation gates look at a
    candidate (a recall floor per mode and a cap on missed failing windows).

    Ties in the score go to the threshold closest to 0.5, the untuned default, so a flat plateau does not
    push the threshold to an extreme that happens to fit this split; an exact tie in that distance goes
    to the lower threshold (a missed failure costs more than a false alarm). A mode with no positive
    window gets 0.5: F-beta is 0 at every threshold there, so there is nothing to tune on.

    Tune on validation data and report on a held-out split: the score at a tuned threshold is optimistic on
    the data it was tuned on.
    """
    y = _binary_matrix("y_true", y_true)
    p = _prob_matrix("probs", probs, y)
    g = DEFAULT_GRID if grid is None else np.asarray(grid, dtype=np.float64)
    if g.ndim != 1 or g.size == 0:
        raise ValueError(f"grid must be a non-empty 1-D array, got shape {g.shape}")
    if not np.isfinite(g).all():
        raise ValueError("grid contains non-finite values")
    if not (np.isfinite(beta) and beta > 0):
        raise ValueError(f"beta must be a positive number, got {beta}")
    b2 = beta * beta

    # Distance to 0.5, rounded so float noise (0.45 and 0.55 are not exactly equidistant in binary)
    # does not decide ties; lexsort then orders candidates by (distance, threshold).
    distance = np.round(np.abs(g - 0.5), 9)
    preference = np.lexsort((g, distance))  # grid indices, most preferred first

    thresholds = np.full(y.shape[1], 0.5, dtype=np.float64)
    for mode in range(y.shape[1]):
        pos = y[:, mode]
        n_pos = int(pos.sum())
        if n_pos == 0:
            continue
        # Counts for every grid value at once: the number of scores >= t is
        # len - searchsorted(sorted scores, t, side="left"). O((N + G) log N), no (N, G) matrix.
        all_sorted = np.sort(p[:, mode])
        pos_sorted = np.sort(p[pos, mode])
        predicted = all_sorted.size - np.searchsorted(all_sorted, g, side="left")
        tp = pos_sorted.size - np.searchsorted(pos_sorted, g, side="left")
        # F-beta = (1 + b2) tp / ((1 + b2) tp + b2 fn + fp) = (1 + b2) tp / (b2 n_pos + predicted);
        # the denominator is >= b2 n_pos > 0. For beta = 1 the division is of integers and correctly
        # rounded, so equal F1 values compare exactly equal below.
        score = (1.0 + b2) * tp / (b2 * n_pos + predicted)
        best = score == score.max()
        thresholds[mode] = g[preference[best[preference]][0]]
    return thresholds


def cap_false_alarms(
    y_true: npt.ArrayLike, probs: npt.ArrayLike, thresholds: npt.ArrayLike, max_fp_rate: float
) -> npt.NDArray[np.float64]:
    """``thresholds`` raised (never lowered) until at most ``max_fp_rate`` of the healthy windows raise an
    alarm, giving up as little recall as it can; shape (L,).

    F-beta tunes each mode on its own, so a mode the model separates badly gets a low threshold that keeps
    its recall by flagging most healthy windows, and the run fails the FP gate instead of the mode's
    recall gate. Here the FP rate is a budget shared by the modes: greedily, the raise (a mode to a higher
    value of :data:`RAISE_GRID`) that removes the most false alarms per point of that mode's recall lost
    is taken, until the budget holds (when every false alarm is shared by several modes, the raise that
    silences the most of one mode's alarms on healthy windows). A mode that can keep its recall stays where
    F-beta put it; the ones that cannot lose recall, so their recall gate names them. When no raise
    silences anything more (probabilities saturated at 1.0), the thresholds reached are returned and the
    budget does not hold.
    """
    y = _binary_matrix("y_true", y_true)
    p = _prob_matrix("probs", probs, y)
    t = _threshold_vector("thresholds", thresholds, y.shape[1]).copy()
    if not (np.isfinite(max_fp_rate) and 0.0 <= max_fp_rate <= 1.0):
        raise ValueError(f"max_fp_rate must be in [0, 1], got {max_fp_rate}")
    healthy = np.asarray(~y.any(axis=1), dtype=np.bool_)
    n_healthy = int(healthy.sum())
    budget = int(np.floor(max_fp_rate * n_healthy + 1e-9))  # false alarms allowed on this split
    while True:
        fires = p >= t
        alarmed = int((healthy & fires.any(axis=1)).sum())
        if alarmed <= budget:
            return t
        raise_ = _best_raise(y, p, t, healthy, fires, windows=True) or _best_raise(
            y, p, t, healthy, fires, windows=False
        )
        if raise_ is None:
            return t
        t[raise_[0]] = raise_[1]


def _best_raise(
    y: npt.NDArray[np.bool_],
    p: npt.NDArray[np.float64],
    t: npt.NDArray[np.float64],
    healthy: npt.NDArray[np.bool_],
    fires: npt.NDArray[np.bool_],
    *,
    windows: bool,
) -> tuple[int, float] | None:
    """(mode, new threshold) of the raise that silences the most per point of that mode's recall lost:
    healthy windows (``windows``; those another mode also alarms on cannot be silenced by one raise) or
    else the mode's own alarms on healthy windows (progress when every false alarm is shared)."""
    best: tuple[float, int, float] | None = None  # (silenced per recall lost, mode, to)
    for mode in range(y.shape[1]):
        higher = RAISE_GRID[t[mode] < RAISE_GRID]
        if higher.size == 0:
            continue
        target = healthy
        if windows:  # only the healthy windows no other mode alarms on
            target = healthy & ~np.delete(fires, mode, axis=1).any(axis=1)
        quiet, pos = np.sort(p[target, mode]), np.sort(p[y[:, mode], mode])
        # Raised from t to g, the mode stops firing on the scores in [t, g): counted by searchsorted.
        silenced = np.searchsorted(quiet, higher) - np.searchsorted(quiet, t[mode])
        lost = np.searchsorted(pos, higher) - np.searchsorted(pos, t[mode])  # its failing windows missed
        ratio = np.where(silenced > 0, silenced / np.maximum(lost / max(pos.size, 1), 1e-9), -1.0)
        k = int(np.argmax(ratio))
        if ratio[k] > 0 and (best is None or ratio[k] > best[0]):
            best = (float(ratio[k]), mode, float(higher[k]))
    return None if best is None else (best[1], best[2])


def evaluate(
    y_true: npt.ArrayLike, probs: npt.ArrayLike, thresholds: npt.ArrayLike, labels: Sequence[str]
) -> dict[str, Any]:
    """The evaluation report of ``probs`` decided at ``thresholds`` against ``y_true``.

    Returns only plain Python types (dict, str, int, float rounded to 6 decimals, None), so the result
    goes straight into ``json.dumps``::

        n                                 windows evaluated
        n_healthy, n_failing              windows with no label / with at least one label
        subset_accuracy                   share of windows with all L decisions right
        healthy_baseline_subset_accuracy  what "always predict healthy" scores here (= n_healthy / n)
        fp_rate                           share of healthy windows with at least one positive decision
        fn_rate                           share of failing windows with no positive decision (called healthy)
        macro_f1                          unweighted mean of the per-mode F1 (a mode without support counts)
        per_mode[label]                   precision, recall, f1, auroc (None if undefined), support,
                                          threshold, tp, fp, fn, tn

    fp_rate / fn_rate are 0.0 when there are no healthy / failing windows; n_healthy and n_failing tell
    such a case apart from a perfect score.
    """
    y = _binary_matrix("y_true", y_true)
    p = _prob_matrix("probs", probs, y)
    n, n_modes = y.shape
    if n == 0:
        raise ValueError("y_true has no windows: nothing to evaluate")
    t = _threshold_vector("thresholds", thresholds, n_modes)
    names = list(labels)
    if len(names) != n_modes:
        raise ValueError(f"labels has {len(names)} names but y_true has {n_modes} modes")
    if len(set(names)) != len(names):
        raise ValueError(f"labels must be unique, got {names}")

    decisions = p >= t  # broadcast (N, L) >= (L,)
    conf = confusion(y, decisions)

    healthy = ~y.any(axis=1)
    alarmed = decisions.any(axis=1)
    n_healthy = int(healthy.sum())
    n_failing = n - n_healthy

    per_mode: dict[str, dict[str, Any]] = {}
    f1s: list[float] = []
    for mode, name in enumerate(names):
        tn, fp, fn, tp = (int(v) for v in conf[mode].ravel())  # [[tn, fp], [fn, tp]] read row by row
        f1 = _ratio(2 * tp, 2 * tp + fp + fn)
        f1s.append(f1)
        area = auroc(y[:, mode], p[:, mode])
        per_mode[name] = {
            "precision": _round(_ratio(tp, tp + fp)),
            "recall": _round(_ratio(tp, tp + fn)),
            "f1": _round(f1),
            "auroc": None if area is None else _round(area),
            "support": tp + fn,
            "threshold": _round(t[mode]),
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "tn": tn,
        }

    return {
        "n": n,
        "n_healthy": n_healthy,
        "n_failing": n_failing,
        "subset_accuracy": _round(float((decisions == y).all(axis=1).mean())),
        "healthy_baseline_subset_accuracy": _round(n_healthy / n),
        "fp_rate": _round(_ratio(int((healthy & alarmed).sum()), n_healthy)),
        "fn_rate": _round(_ratio(int((~healthy & ~alarmed).sum()), n_failing)),
        "macro_f1": _round(float(np.mean(f1s))),
        "per_mode": per_mode,
    }
