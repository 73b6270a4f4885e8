"""training.metrics: hand-computed reports, AUROC against brute force, threshold tuning, input validation.

The expected numbers in the small examples are worked out by hand in the comments next to them, not
recomputed with the code under test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from tests.conftest import REPO
from training.metrics import (
    DEFAULT_GRID,
    RAISE_GRID,
    auroc,
    cap_false_alarms,
    confusion,
    evaluate,
    tune_thresholds,
)

LABELS = ["bearing_wear", "overheating", "misalignment"]

# Six windows, three modes, every threshold 0.5. Decisions (prob >= 0.5) per row:
#   row  y_true    probs              decisions  all right?  notes
#   0    0 0 0     0.1  0.2  0.1      0 0 0      yes         healthy, no alarm
#   1    0 0 0     0.7  0.1  0.2      1 0 0      no          healthy, false alarm
#   2    1 0 0     0.9  0.3  0.3      1 0 0      yes
#   3    0 1 0     0.2  0.4  0.1      0 0 0      no          failing, called healthy
#   4    1 1 0     0.6  0.8  0.2      1 1 0      yes
#   5    1 0 0     0.3  0.6  0.4      0 1 0      no          failing, wrong mode but not called healthy
Y = np.array([[0, 0, 0], [0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [1, 0, 0]], dtype=np.uint8)
P = np.array(
    [
        [0.1, 0.2, 0.1],
        [0.7, 0.1, 0.2],
        [0.9, 0.3, 0.3],
        [0.2, 0.4, 0.1],
        [0.6, 0.8, 0.2],
        [0.3, 0.6, 0.4],
    ]
)
T = np.array([0.5, 0.5, 0.5])


def brute_force_auroc(y: np.ndarray, s: np.ndarray) -> float:
    """Share of (positive, negative) pairs ranked right, a tie counting half."""
    pos, neg = s[y == 1], s[y == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (pos.size * neg.size))


def assert_plain_json(value: Any) -> None:
    """Only built-in JSON types, recursively (np.float64 would pass json.dumps but np.int64 would not)."""
    if isinstance(value, dict):
        assert all(type(k) is str for k in value)
        for v in value.values():
            assert_plain_json(v)
    elif isinstance(value, list):
        for v in value:
            assert_plain_json(v)
    else:
        assert type(value) in (str, int, float, bool, type(None)), (value, type(value))


# --- evaluate on the hand-worked example ----------------------------------------------------------------


def test_evaluate_hand_computed_example() -> None:
    report = evaluate(Y, P, T, LABELS)
    assert report["n"] == 6
    assert report["n_healthy"] == 2
    assert report["n_failing"] == 4
    assert report["subset_accuracy"] == 0.5  # rows 0, 2, 4 of 6
    assert report["healthy_baseline_subset_accuracy"] == 0.333333  # rows 0, 1 are healthy: 2/6
    assert report["fp_rate"] == 0.5  # of healthy rows 0, 1, row 1 alarms: 1/2
    assert report["fn_rate"] == 0.25  # of failing rows 2-5, only row 3 gets no positive decision: 1/4
    assert report["macro_f1"] == 0.388889  # (2/3 + 1/2 + 0) / 3 = 7/18

    # bearing_wear: y 0 0 1 0 1 1, d 0 1 1 0 1 0 -> tp rows 2,4; fp row 1; fn row 5; tn rows 0,3.
    # AUROC: positives 0.9 0.6 0.3 vs negatives 0.1 0.7 0.2 -> 3 + 2 + 2 = 7 of 9 pairs.
    assert report["per_mode"]["bearing_wear"] == {
        "precision": 0.666667,
        "recall": 0.666667,
        "f1": 0.666667,
        "auroc": 0.777778,
        "support": 3,
        "threshold": 0.5,
        "tp": 2,
        "fp": 1,
        "fn": 1,
        "tn": 2,
    }
    # overheating: y 0 0 0 1 1 0, d 0 0 0 0 1 1 -> tp row 4; fp row 5; fn row 3; tn rows 0,1,2.
    # AUROC: positives 0.4 0.8 vs negatives 0.2 0.1 0.3 0.6 -> 3 + 4 = 7 of 8 pairs.
    assert report["per_mode"]["overheating"] == {
        "precision": 0.5,
        "recall": 0.5,
        "f1": 0.5,
        "auroc": 0.875,
        "support": 2,
        "threshold": 0.5,
        "tp": 1,
        "fp": 1,
        "fn": 1,
        "tn": 3,
    }
    # misalignment: no positives, no positive decisions -> every ratio 0/0 -> 0.0; AUROC undefined.
    assert report["per_mode"]["misalignment"] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "auroc": None,
        "support": 0,
        "threshold": 0.5,
        "tp": 0,
        "fp": 0,
        "fn": 0,
        "tn": 6,
    }
    assert list(report["per_mode"]) == LABELS  # the caller's label order is kept


def test_evaluate_output_is_plain_json() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random((200, 5)) < 0.2).astype(bool)
    p = rng.random((200, 5)).astype(np.float32)  # float32 in, as a model would give it
    report = evaluate(y, p, np.full(5, 0.37), [f"mode{i}" for i in range(5)])
    assert_plain_json(report)
    assert json.loads(json.dumps(report)) == report


def test_confusion_layout_matches_hand_example() -> None:
    conf = confusion(Y, P >= T)
    assert conf.shape == (3, 2, 2)
    assert conf.dtype == np.int64
    assert conf.tolist() == [
        [[2, 1], [1, 2]],  # bearing_wear: [[tn, fp], [fn, tp]]
        [[3, 1], [1, 1]],  # overheating
        [[6, 0], [0, 0]],  # misalignment
    ]


def test_probability_on_the_threshold_is_a_positive_decision() -> None:
    y = np.array([[1], [0]])
    report = evaluate(y, np.array([[0.5], [0.49]]), [0.5], ["bearing_wear"])
    assert report["per_mode"]["bearing_wear"]["tp"] == 1
    assert report["subset_accuracy"] == 1.0


def test_rates_when_a_class_of_window_is_absent() -> None:
    all_failing = evaluate(np.ones((3, 2)), np.full((3, 2), 0.9), [0.5, 0.5], ["a", "b"])
    assert all_failing["n_healthy"] == 0
    assert all_failing["fp_rate"] == 0.0  # no healthy window: 0.0 by convention, n_healthy tells
    assert all_failing["healthy_baseline_subset_accuracy"] == 0.0
    all_healthy = evaluate(np.zeros((4, 2)), np.full((4, 2), 0.1), [0.5, 0.5], ["a", "b"])
    assert all_healthy["fn_rate"] == 0.0
    assert all_healthy["healthy_baseline_subset_accuracy"] == 1.0
    assert all_healthy["subset_accuracy"] == 1.0


# --- AUROC ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("kind", ["continuous", "coarse_ties", "integer_ties"])
def test_auroc_matches_brute_force(seed: int, kind: str) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 300))
    y = (rng.random(n) < rng.uniform(0.05, 0.95)).astype(np.uint8)
    y[0], y[1] = 0, 1  # both classes present
    scores = rng.random(n) + 0.3 * y  # informative but imperfect
    if kind == "coarse_ties":
        scores = np.round(scores, 1)
    elif kind == "integer_ties":
        scores = rng.integers(0, 4, n).astype(float)
    assert auroc(y, scores) == pytest.approx(brute_force_auroc(y, scores), abs=1e-12)


def test_auroc_known_values() -> None:
    assert auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert auroc(np.array([1, 1, 0, 0]), np.array([0.1, 0.2, 0.8, 0.9])) == 0.0
    assert auroc(np.array([0, 1, 0, 1]), np.full(4, 0.3)) == 0.5  # all tied
    assert auroc(np.array([False, True]), np.array([0.4, 0.4])) == 0.5


@pytest.mark.parametrize("y", [np.zeros(5), np.ones(5), np.zeros(0)])
def test_auroc_single_class_is_none(y: np.ndarray) -> None:
    assert auroc(y, np.linspace(0, 1, y.size)) is None


def test_auroc_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"scores has shape \(3,\) but y_true \(4,\)"):
        auroc(np.array([0, 1, 0, 1]), np.array([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="non-finite"):
        auroc(np.array([0, 1]), np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match="only 0 and 1"):
        auroc(np.array([0, 2]), np.array([0.1, 0.2]))


# --- threshold tuning -----------------------------------------------------------------------------------


def test_tune_thresholds_recovers_known_best() -> None:
    # Mode 0: positives 0.25, 0.8; negatives 0.5, 0.6, 0.7. F1 = 2 tp / (2 + predicted) by threshold t:
    #   t <= 0.25        tp 2, predicted 5 -> 4/7 = 0.571
    #   0.25 < t <= 0.5  tp 1, predicted 4 -> 2/6 = 0.333
    #   0.5 < t <= 0.6   tp 1, predicted 3 -> 2/5 = 0.4
    #   0.6 < t <= 0.7   tp 1, predicted 2 -> 2/4 = 0.5
    #   0.7 < t <= 0.8   tp 1, predicted 1 -> 2/3 = 0.667, the best
    #   t > 0.8          tp 0 -> 0
    # so the best grid values are 0.71 .. 0.80, and the one closest to 0.5 is 0.71.
    # Mode 1: perfectly separable, positives >= 0.62, negatives <= 0.55: F1 = 1 for t in 0.56 .. 0.62;
    # closest to 0.5 is 0.56.
    # Mode 2: no positives -> 0.5.
    y = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]])
    p = np.array(
        [
            [0.25, 0.62, 0.9],
            [0.80, 0.90, 0.1],
            [0.50, 0.55, 0.7],
            [0.60, 0.10, 0.2],
            [0.70, 0.30, 0.3],
        ]
    )
    assert tune_thresholds(y, p).tolist() == [0.71, 0.56, 0.5]


def test_tune_thresholds_with_beta_2_keeps_the_missed_failure() -> None:
    # Mode 0 of the test above with F2 = 5 tp / (4 n_pos + predicted) = 5 tp / (8 + predicted):
    #   t <= 0.25        tp 2, predicted 5 -> 10/13 = 0.769, the best: both failures caught, 3 false alarms
    #   0.7 < t <= 0.8   tp 1, predicted 1 ->  5/9  = 0.556 (F1's choice, which misses one of two failures)
    y = np.array([[1], [1], [0], [0], [0]])
    p = np.array([[0.25], [0.80], [0.50], [0.60], [0.70]])
    assert tune_thresholds(y, p).tolist() == [0.71]
    assert tune_thresholds(y, p, beta=2.0).tolist() == [0.25]
    assert tune_thresholds(y, p, beta=1.0).tolist() == tune_thresholds(y, p).tolist()
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="beta must be a positive number"):
            tune_thresholds(y, p, beta=bad)


def test_tune_thresholds_tie_break() -> None:
    y = np.array([[1], [0]])
    p = np.array([[0.9], [0.1]])
    # F1 = 1 everywhere in (0.1, 0.9]: 0.5 itself is on the grid and wins.
    assert tune_thresholds(y, p).tolist() == [0.5]
    # 0.3 and 0.7 are equally far from 0.5 (0.2 each, up to float noise): the lower one wins.
    assert tune_thresholds(y, p, grid=np.array([0.7, 0.3])).tolist() == [0.3]
    # A single best grid value is taken however far from 0.5 it is: only t = 0.20 separates 0.2 from 0.19.
    assert tune_thresholds(np.array([[1], [1], [0]]), np.array([[0.95], [0.2], [0.19]])).tolist() == [0.2]


@pytest.mark.parametrize("seed", range(5))
def test_tuned_threshold_is_f1_optimal_on_grid(seed: int) -> None:
    """The chosen threshold's F1 (through evaluate) equals the best F1 over the grid by a plain loop."""
    rng = np.random.default_rng(seed)
    y = (rng.random((400, 4)) < [0.05, 0.2, 0.5, 0.0]).astype(np.uint8)
    p = np.clip(0.35 * y + 0.65 * rng.random((400, 4)), 0, 1)
    p[:20] = np.round(p[:20], 2)  # some probabilities exactly on grid values
    chosen = tune_thresholds(y, p)
    assert chosen.shape == (4,)
    assert set(chosen.tolist()) <= set(DEFAULT_GRID.tolist())
    labels = ["a", "b", "c", "d"]
    at_chosen = evaluate(y, p, chosen, labels)["per_mode"]
    at_each = [evaluate(y, p, np.full(4, t), labels)["per_mode"] for t in DEFAULT_GRID.tolist()]
    for name in labels:
        assert at_chosen[name]["f1"] == max(report[name]["f1"] for report in at_each)
    assert chosen[3] == 0.5  # no positives in mode "d"


def test_default_grid_is_exact() -> None:
    assert DEFAULT_GRID[0] == 0.05
    assert DEFAULT_GRID[-1] == 0.95
    assert DEFAULT_GRID.size == 91
    assert 0.15 in DEFAULT_GRID.tolist()  # not 0.15000000000000002


# --- false-alarm budget (cap_false_alarms) ---------------------------------------------------------------


def _blind_mode_case(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """1,000 windows, two modes: "seen" separated perfectly, "blind" scored at random (AUROC 0.5): F-beta
    (beta 2) flags nearly every window for "blind", as the issue's 0.59-AUROC mode did."""
    rng = np.random.default_rng(seed)
    y = (rng.random((1000, 2)) < [0.15, 0.15]).astype(np.uint8)
    p = np.stack([np.where(y[:, 0] == 1, 0.9, 0.1), rng.random(1000)], axis=1)
    return y, p


@pytest.mark.parametrize("seed", range(3))
def test_a_blind_mode_loses_recall_not_the_healthy_windows(seed: int) -> None:
    y, p = _blind_mode_case(seed)
    tuned = tune_thresholds(y, p, beta=2.0)
    before = evaluate(y, p, tuned, ["seen", "blind"])
    assert before["fp_rate"] > 0.5  # what F-beta alone does: most healthy windows flagged
    capped = cap_false_alarms(y, p, tuned, 0.04)
    after = evaluate(y, p, capped, ["seen", "blind"])
    assert after["fp_rate"] <= 0.04
    assert capped[0] == tuned[0]  # the mode the model sees keeps its threshold and its recall
    assert after["per_mode"]["seen"]["recall"] == 1.0
    assert capped[1] > tuned[1] and capped[1] in RAISE_GRID.tolist()
    # Random scores: keeping 4% of healthy windows quiet leaves about 4% of the failing ones found, so the
    # recall gate (0.85) names the mode instead of the FP gate failing for all of them.
    assert after["per_mode"]["blind"]["recall"] < 0.15


def test_within_budget_nothing_moves_and_nothing_is_ever_lowered() -> None:
    y, p = _blind_mode_case(0)
    t = np.array([0.5, 0.99])  # "blind" at 0.99 flags about 1% of the healthy windows: within 4%
    assert cap_false_alarms(y, p, t, 0.04).tolist() == [0.5, 0.99]
    rng = np.random.default_rng(1)
    for _ in range(20):
        y = (rng.random((300, 3)) < 0.2).astype(np.uint8)
        p = np.clip(0.3 * y + 0.7 * rng.random((300, 3)), 0, 1)
        t = tune_thresholds(y, p, beta=2.0)
        budget = float(rng.choice([0.0, 0.02, 0.1, 0.5]))
        capped = cap_false_alarms(y, p, t, budget)
        assert (capped >= t).all()
        fp = evaluate(y, p, capped, ["a", "b", "c"])["fp_rate"]
        # Either within budget, or no mode alarms on a healthy window below the grid's top any more.
        healthy = p[~y.any(axis=1)]
        assert fp <= budget or not ((healthy >= capped) & (healthy < RAISE_GRID[-1])).any(), (budget, capped)


def test_alarms_shared_by_two_modes_are_still_silenced() -> None:
    # Every healthy window is flagged by both modes: no single raise silences a window, both must rise.
    y = np.array([[0, 0]] * 10 + [[1, 0], [0, 1]], dtype=np.uint8)
    p = np.array([[0.6, 0.7]] * 10 + [[0.98, 0.0], [0.0, 0.98]])
    capped = cap_false_alarms(y, p, [0.5, 0.5], 0.0)
    assert evaluate(y, p, capped, ["a", "b"])["fp_rate"] == 0.0
    assert evaluate(y, p, capped, ["a", "b"])["per_mode"]["a"]["recall"] == 1.0


def test_the_cheapest_raise_goes_first() -> None:
    # Healthy rows 0-3; mode a fires on rows 0-1 and b on rows 2-3. Raising a to 0.9 costs none of its
    # two positives (rows 4-5 at 0.95); raising b costs one of its two (row 6 at 0.5, row 7 at 0.95).
    y = np.array([[0, 0]] * 4 + [[1, 0], [1, 0], [0, 1], [0, 1]], dtype=np.uint8)
    p = np.array([[0.6, 0.0], [0.6, 0.0], [0.0, 0.6], [0.0, 0.6], [0.95, 0], [0.95, 0], [0, 0.5], [0, 0.95]])
    capped = cap_false_alarms(y, p, [0.3, 0.3], 0.5)  # two of the four healthy windows may alarm
    assert capped[1] == 0.3 and capped[0] > 0.6


def test_saturated_alarms_end_the_search_and_bad_budgets_are_refused() -> None:
    y = np.array([[0], [0], [1]], dtype=np.uint8)
    p = np.array([[1.0], [1.0], [1.0]])  # sure of an alarm on both healthy windows: no threshold helps
    assert cap_false_alarms(y, p, [0.5], 0.0).tolist() == [0.5]  # so recall is not given up for nothing
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="max_fp_rate must be in"):
            cap_false_alarms(y, p, [0.5], bad)


# --- validation -----------------------------------------------------------------------------------------


def test_shape_mismatch_names_both_shapes() -> None:
    y = np.zeros((10, 5), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"probs has shape \(10, 4\) but y_true \(10, 5\)"):
        evaluate(y, np.zeros((10, 4)), np.full(5, 0.5), ["a", "b", "c", "d", "e"])
    with pytest.raises(ValueError, match=r"probs has shape \(9, 5\) but y_true \(10, 5\)"):
        tune_thresholds(y, np.zeros((9, 5)))
    with pytest.raises(ValueError, match=r"decisions has shape \(5, 10\) but y_true \(10, 5\)"):
        confusion(y, np.zeros((5, 10), dtype=bool))
    with pytest.raises(ValueError, match=r"thresholds has shape \(4,\) but y_true has 5 modes"):
        evaluate(y, np.zeros((10, 5)), np.full(4, 0.5), ["a", "b", "c", "d", "e"])
    with pytest.raises(ValueError, match="labels has 4 names but y_true has 5 modes"):
        evaluate(y, np.zeros((10, 5)), np.full(5, 0.5), ["a", "b", "c", "d"])
    with pytest.raises(ValueError, match=r"y_true must be 2-D .* got shape \(10,\)"):
        tune_thresholds(np.zeros(10), np.zeros(10))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_probabilities_are_rejected(bad: float) -> None:
    y = np.zeros((4, 2), dtype=np.uint8)
    p = np.full((4, 2), 0.3)
    p[2, 1] = bad
    with pytest.raises(ValueError, match=r"probs contains 1 non-finite value\(s\).*row 2, column 1"):
        evaluate(y, p, [0.5, 0.5], ["a", "b"])
    with pytest.raises(ValueError, match="probs contains 1 non-finite"):
        tune_thresholds(y, p)


def test_other_bad_input_is_rejected() -> None:
    y = np.zeros((3, 2), dtype=np.uint8)
    p = np.full((3, 2), 0.3)
    with pytest.raises(ValueError, match=r"probs must be probabilities in \[0, 1\], found 2\.5"):
        evaluate(y, np.full((3, 2), 2.5), [0.5, 0.5], ["a", "b"])
    with pytest.raises(ValueError, match=r"y_true must hold only 0 and 1, found 0\.5 at row 0, column 1"):
        evaluate(np.array([[0, 0.5], [0, 0], [1, 1]]), p, [0.5, 0.5], ["a", "b"])
    with pytest.raises(ValueError, match="labels must be unique"):
        evaluate(y, p, [0.5, 0.5], ["a", "a"])
    with pytest.raises(ValueError, match="no windows"):
        evaluate(np.zeros((0, 2)), np.zeros((0, 2)), [0.5, 0.5], ["a", "b"])
    with pytest.raises(ValueError, match="grid must be a non-empty 1-D array"):
        tune_thresholds(y, p, grid=np.array([]))


def test_importing_the_modules_leaves_torch_unloaded() -> None:
    code = (
        "import sys, training.metrics, training.plots\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
