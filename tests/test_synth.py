"""The synthetic LDO generator: valid records, determinism, label statistics, and learnability.

The learnability test is the acceptance point: hand-crafted spectral / trend features plus a per-mode
logistic regression (numpy only) must get all five labels right on >= 90% of held-out records, while
"always healthy" stays <= 65%. A CNN trained later on the same data has to clear the same bar, so the
generator's signatures must be clear, not just present.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from training.config import DataSpec, load_training_config
from training.data.ldo import LDO_ID_PATTERN, dumps, parse_ldo
from training.data.synth import KNOWN_LABELS, SynthSummary, generate, write_dataset


@pytest.fixture(scope="module")
def spec() -> DataSpec:
    return load_training_config().data_spec()


def _digests(out_dir: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out_dir.iterdir())}


# --- validity -------------------------------------------------------------------------------------------


def test_every_record_is_a_valid_ldo(spec: DataSpec) -> None:
    previous = None
    for doc in generate(500, 3, spec):
        ldo = parse_ldo(dumps(doc), spec, source=doc["ldo_id"])
        assert LDO_ID_PATTERN.match(ldo.ldo_id)
        assert doc["created_at"].endswith("Z")
        assert ldo.created_at.utcoffset() is not None
        assert previous is None or ldo.created_at > previous  # timestamps strictly increase
        previous = ldo.created_at
        assert ldo.sensors.shape == (len(spec.channels), spec.window)
        assert np.isfinite(ldo.sensors).all()
        assert ldo.device_id is not None and ldo.device_id.startswith("edge-")


def test_context_ids_and_validated_share(spec: DataSpec) -> None:
    docs = list(generate(3000, 1, spec))
    ctx = np.array([[d["context"][k] for k in ("product_id", "recipe_id", "asset_id")] for d in docs])
    unknown = (ctx[:, 0] > 80) | (ctx[:, 1] > 40) | (ctx[:, 2] > 150)
    assert (ctx >= 1).all()
    assert 0.005 <= unknown.mean() <= 0.04, unknown.mean()
    # Out-of-range ids are meant to hit the "unknown" slot downstream, yet stay plausible (bounded) ids.
    assert ctx[:, 0].max() <= 120 and ctx[:, 2].max() <= 260
    validated = np.mean([d["validated"] for d in docs])
    assert 0.94 <= validated <= 0.99, validated


def test_other_window_and_rate_and_channel_subset(spec: DataSpec) -> None:
    other = replace(spec, window=64, sample_rate_hz=50.0, channels=("temperature", "vibration_x"))
    for doc in generate(50, 0, other):
        ldo = parse_ldo(dumps(doc), other)
        assert ldo.sensors.shape == (2, 64)


# --- determinism ----------------------------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_bytes(spec: DataSpec, tmp_path: Path) -> None:
    calls: list[int] = []
    first = write_dataset(tmp_path / "a", 1200, 7, spec, progress=calls.append)
    write_dataset(tmp_path / "b", 1200, 7, spec)
    write_dataset(tmp_path / "c", 1200, 8, spec)
    a, b, c = _digests(tmp_path / "a"), _digests(tmp_path / "b"), _digests(tmp_path / "c")
    assert len(a) == 1200 and a == b
    assert not any(name.startswith(".") for name in a)  # no temp files left behind
    assert set(a.values()).isdisjoint(c.values())
    assert calls == [500, 1000, 1200]

    assert isinstance(first, SynthSummary)
    assert first.n == 1200 and first.out_dir == tmp_path / "a"
    assert list(first.label_counts) == list(spec.labels)
    docs = list(generate(1200, 7, spec))
    assert first.healthy == sum(not any(d["labels"].values()) for d in docs)
    for name in spec.labels:
        assert first.label_counts[name] == sum(d["labels"][name] for d in docs)


def test_prefix_is_stable(spec: DataSpec) -> None:
    small = [dumps(d) for d in generate(40, 5, spec)]
    large = [dumps(d) for d in generate(300, 5, spec)]
    assert small == large[:40]


def test_first_continues_the_same_plant(spec: DataSpec, tmp_path: Path) -> None:
    """Next month of the same fleet: records 40.. of the stream, never a repeat of an earlier id."""
    whole = [dumps(d) for d in generate(60, 5, spec)]
    assert [dumps(d) for d in generate(20, 5, spec, first=40)] == whole[40:]
    write_dataset(tmp_path / "ldos", 40, 5, spec)
    summary = write_dataset(tmp_path / "ldos", 20, 5, spec, first=40)
    assert summary.n == 20 and len(list((tmp_path / "ldos").glob("*.json"))) == 60
    with pytest.raises(ValueError, match="first must be non-negative"):
        generate(1, 0, spec, first=-1)


def test_start_sets_created_at(spec: DataSpec) -> None:
    from datetime import UTC, datetime

    doc = next(generate(1, 0, spec, start=datetime(2026, 11, 1, 8, tzinfo=UTC)))
    assert doc["created_at"].startswith("2026-11-01T08:00:")


# --- statistics and learnability ------------------------------------------------------------------------


def test_label_statistics(spec: DataSpec) -> None:
    labels = np.array([[d["labels"][k] for k in spec.labels] for d in generate(3000, 0, spec)])
    healthy = (labels.sum(axis=1) == 0).mean()
    prevalence = labels.mean(axis=0)
    print(
        f"\nhealthy fraction {healthy:.3f}; prevalence",
        {k: round(float(v), 3) for k, v in zip(spec.labels, prevalence, strict=True)},
    )
    assert 0.35 <= healthy <= 0.65
    assert ((prevalence >= 0.05) & (prevalence <= 0.30)).all(), prevalence
    assert (labels.sum(axis=1) >= 2).any()  # multi-label records exist


def _band(power: np.ndarray, freqs: np.ndarray, lo: np.ndarray | float, hi: np.ndarray | float) -> np.ndarray:
    lo, hi = np.broadcast_to(lo, power.shape[:1])[:, None], np.broadcast_to(hi, power.shape[:1])[:, None]
    return np.log((power * ((freqs >= lo) & (freqs <= hi))).sum(axis=-1) + 1e-6)


def _features(x: np.ndarray, rate_hz: float) -> np.ndarray:
    """Per-record features from windows ``x`` of shape (N, 4, T) in the default channel order."""
    window = x.shape[-1]
    freqs = np.fft.rfftfreq(window, 1 / rate_hz)
    hann = np.hanning(window)
    vib = x[:, :2] - x[:, :2].mean(axis=-1, keepdims=True)
    spec_ = np.abs(np.fft.rfft(vib * hann, axis=-1))  # (N, 2, F)
    power = spec_**2
    # The shaft line: the strongest peak between 5 and 22 Hz on both axes together.
    shaft_band = (freqs >= 5) & (freqs <= 22)
    f0 = freqs[np.where(shaft_band)[0][np.argmax((spec_.sum(axis=1))[:, shaft_band], axis=1)]]
    feats = []
    for axis in range(2):
        p = power[:, axis]
        feats += [
            _band(p, freqs, f0 - 1.5, f0 + 1.5),  # shaft line
            _band(p, freqs, 2 * f0 - 1.5, 2 * f0 + 1.5),  # 2x harmonic (misalignment)
            _band(p, freqs, 33.0, 47.0),  # bearing resonance band
            np.log(p[:, freqs >= 33].max(axis=1) + 1e-6),
            np.log(np.median(p, axis=1) + 1e-6),  # broadband floor (lubrication)
            np.log(((vib[:, axis] - vib[:, axis].mean(axis=-1, keepdims=True)) ** 4).mean(axis=-1) + 1e-6),
        ]
    feats.append(feats[0] - feats[6])  # x/y shaft-line ratio (misalignment)
    feats.append(feats[1] - feats[0])  # harmonic relative to the line
    # Temperature: least-squares slope and level.
    t = np.arange(window) / rate_hz
    tc = t - t.mean()
    temp = x[:, 2]
    feats.append(temp @ tc / (tc @ tc))
    feats.append(temp.mean(axis=1))
    # Motor current: spread, largest deviation from the median, fast-ripple energy.
    cur = x[:, 3]
    dev = cur - np.median(cur, axis=1, keepdims=True)
    cur_power = np.abs(np.fft.rfft((cur - cur.mean(axis=1, keepdims=True)) * hann, axis=-1)) ** 2
    feats += [
        np.log(cur.std(axis=1) + 1e-6),
        np.log(np.abs(dev).max(axis=1) + 1e-6),
        _band(cur_power, freqs, 25.0, 35.0),
        cur.mean(axis=1),
    ]
    return np.stack(feats, axis=1)


def _logistic(x: np.ndarray, y: np.ndarray, *, steps: int = 25, ridge: float = 1e-2) -> np.ndarray:
    """Newton / IRLS for L2-regularised logistic regression; x already standardised, bias column added."""
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-np.clip(x @ w, -30, 30)))
        grad = x.T @ (p - y) + ridge * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + ridge * np.eye(x.shape[1])
        w -= np.linalg.solve(hess, grad)
    return w


def test_failure_modes_are_learnable(spec: DataSpec) -> None:
    docs = list(generate(4000, 0, spec))
    x = np.array([d["sensors"]["values"] for d in docs])
    y = np.array([[d["labels"][k] for k in spec.labels] for d in docs])
    ctx = np.array([[d["context"][k] for k in ("product_id", "recipe_id", "asset_id")] for d in docs])
    train, test = slice(0, 3000), slice(3000, None)

    feats = _features(x, spec.sample_rate_hz)
    # Context, mean-encoded from the training split only: each asset's training prevalence of every mode
    # (smoothed towards the global rate, which unseen assets get), and the temperature level relative to
    # the product's typical level (lubrication loss is a temperature offset, overheating is not).
    prior = y[train].mean(axis=0)
    asset_rate = np.tile(prior, (x.shape[0], 1))
    temp_mean = x[:, 2].mean(axis=1)
    product_temp = np.full(x.shape[0], np.median(temp_mean[train]))
    for asset in np.unique(ctx[:, 2]):
        seen = ctx[train, 2] == asset
        asset_rate[ctx[:, 2] == asset] = (y[train][seen].sum(axis=0) + 5 * prior) / (seen.sum() + 5)
    for product in np.unique(ctx[:, 0]):
        seen = ctx[train, 0] == product
        if seen.any():
            product_temp[ctx[:, 0] == product] = np.median(temp_mean[train][seen])
    temp_level = (temp_mean - product_temp)[:, None]
    feats = np.hstack([feats, temp_level, np.log(asset_rate)])

    mean, std = feats[train].mean(axis=0), feats[train].std(axis=0) + 1e-9
    design = np.hstack([(feats - mean) / std, np.ones((x.shape[0], 1))])
    predicted = np.zeros_like(y[test])
    for k in range(y.shape[1]):
        w = _logistic(design[train], y[train, k])
        predicted[:, k] = design[test] @ w > 0
    per_mode = (predicted == y[test]).mean(axis=0)
    subset = (predicted == y[test]).all(axis=1).mean()
    baseline = (y[test] == 0).all(axis=1).mean()
    print(
        f"\nsubset accuracy {subset:.3f} (always-healthy baseline {baseline:.3f}); per mode",
        {k: round(float(v), 3) for k, v in zip(spec.labels, per_mode, strict=True)},
    )
    assert subset >= 0.90
    assert baseline <= 0.65


# --- errors ---------------------------------------------------------------------------------------------


def test_unknown_channel_is_named(spec: DataSpec) -> None:
    bad = replace(spec, channels=("vibration_x", "pressure"))
    with pytest.raises(ValueError, match=r"pressure.*vibration_x', 'vibration_y', 'temperature'"):
        generate(10, 0, bad)


def test_unknown_label_is_named(spec: DataSpec) -> None:
    bad = replace(spec, labels=(*KNOWN_LABELS, "cavitation"))
    with pytest.raises(ValueError, match="cavitation"):
        generate(10, 0, bad)


def test_negative_n_or_seed(spec: DataSpec, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n must be non-negative"):
        generate(-1, 0, spec)
    with pytest.raises(ValueError, match="n must be non-negative"):
        write_dataset(tmp_path / "out", -1, 0, spec)
    assert not (tmp_path / "out").exists()  # nothing touched the disk
    with pytest.raises(ValueError, match="seed must be non-negative"):
        generate(1, -3, spec)
