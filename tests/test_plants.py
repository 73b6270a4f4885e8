"""The plant family (training/data/plants.py, issue #20): other physics for the same five failure modes.

What the family promises, measured on 1,500 records of each plant with one simple feature per mode:
- the default plant's signature of each mode (a band of the spectrum, a linear trend) separates that mode
  in the default plant (AUROC >= 0.95) and is **absent** from the other plants (AUROC within 0.5 +- 0.25):
  a model tuned to one plant's signatures does not pass on another by accident;
- each other plant's own signature of each mode is there to learn (AUROC of a crude hand-made feature
  >= 0.75; overheating in the ``impulsive`` plant is a level above the product's and asset's baseline, which
  no context-free feature sees: the model must learn the baselines, so it is checked against them);
- records are deterministic per (plant, seed, index), ids name the plant, the default plant is unchanged.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training.config import DataSpec, load_training_config
from training.data.ldo import parse_ldo
from training.data.plants import PLANTS
from training.data.synth import KNOWN_LABELS, generate

EDGEOPS = str(Path(sys.executable).parent / "edgeops")
N = 1500


@pytest.fixture(scope="module")
def spec() -> DataSpec:
    return load_training_config().data_spec()


def auroc(score: np.ndarray, truth: np.ndarray) -> float:
    """Mann-Whitney AUROC with tied scores sharing their average rank."""
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    ranks = (np.bincount(inverse, ranks) / counts)[inverse]
    pos = int(truth.sum())
    neg = len(truth) - pos
    return float((ranks[truth].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _band(signal: np.ndarray, lo: float, hi: float, rate: float) -> np.ndarray:
    freq = np.fft.rfftfreq(signal.shape[-1], 1 / rate)
    power = np.abs(np.fft.rfft(signal - signal.mean(-1, keepdims=True), axis=-1)) ** 2
    out: np.ndarray = power[..., (freq >= lo) & (freq <= hi)].sum(-1) / power.sum(-1)
    return out


class Plant:
    def __init__(self, name: str, spec: DataSpec) -> None:
        self.docs = list(generate(N, 0, spec, plant=name))
        self.values = np.array([d["sensors"]["values"] for d in self.docs])  # (N, C, T)
        self.channel = {c: self.values[:, i] for i, c in enumerate(spec.channels)}
        self.labels = {m: np.array([d["labels"][m] for d in self.docs], dtype=bool) for m in KNOWN_LABELS}
        self.rate = spec.sample_rate_hz


@pytest.fixture(scope="module")
def plants(spec: DataSpec) -> dict[str, Plant]:
    return {name: Plant(name, spec) for name in PLANTS}


def default_signatures(p: Plant) -> dict[str, np.ndarray]:
    """The default plant's physics, one feature per mode (training/data/synth.py, _signals)."""
    temp = p.channel["temperature"]
    t = np.linspace(-0.5, 0.5, temp.shape[-1])
    return {
        "bearing_wear": _band(p.channel["vibration_x"], 36, 44, p.rate),  # the resonance tone
        "misalignment": _band(p.channel["vibration_x"], 16, 32, p.rate),  # 2x of an 8-16 Hz shaft
        "overheating": ((temp - temp.mean(1, keepdims=True)) * t).sum(1),  # a linear rise
        "electrical_fault": _band(p.channel["motor_current"], 28, 32, p.rate),  # the fast ripple
        "lubrication_loss": _band(p.channel["vibration_y"], 45, 50, p.rate),  # broadband friction noise
    }


def own_signatures(name: str, p: Plant) -> dict[str, np.ndarray]:
    vx, vy, temp, cur = (p.channel[c] for c in ("vibration_x", "vibration_y", "temperature", "motor_current"))
    if name == "impulsive":
        d = np.diff(vx, axis=1)
        d = d - d.mean(1, keepdims=True)
        crest = np.minimum(np.abs(vx).max(1) / vx.std(1), np.abs(vy).max(1) / vy.std(1))
        products = np.array([doc["context"]["product_id"] for doc in p.docs])
        assets = np.array([doc["context"]["asset_id"] for doc in p.docs])
        healthy = ~np.any(np.stack(list(p.labels.values())), axis=0)
        level = temp.mean(1)
        baseline = np.array([  # what a healthy window of this product on this asset reads: the model's job
            np.median(level[healthy & (products == pr)]) + np.median(
                level[healthy & (assets == a)] - level[healthy & (assets == a)].mean()
            ) if (healthy & (products == pr)).any() and (healthy & (assets == a)).any() else level.mean()
            for pr, a in zip(products, assets, strict=True)
        ])  # fmt: skip
        return {
            "bearing_wear": (d**4).mean(1) / (d**2).mean(1) ** 2,  # knocks: impulsiveness, no tone
            "misalignment": -crest,  # a rub flattens the peaks
            "overheating": level - baseline,
            "electrical_fault": np.abs(np.diff(cur, axis=1)).max(1),  # transients of ~1 A
            "lubrication_loss": vx[:, -32:].std(1) / vx[:, :32].std(1),  # the amplitude swells
        }
    return {
        "bearing_wear": _band(vx, 18, 28, p.rate),  # a low band
        "misalignment": _band(vx, 3, 8, p.rate),  # half-speed sub-harmonic
        "overheating": temp[:, 54:74].mean(1) - (temp[:, :20].mean(1) + temp[:, -20:].mean(1)) / 2,  # a bump
        "electrical_fault": -cur.min(1) / np.median(cur, 1),  # dropouts
        "lubrication_loss": np.abs(np.fft.rfft(temp - temp.mean(1, keepdims=True), axis=1))[:, 3],  # wobble
    }


def test_each_plant_keeps_the_modes_rates_and_writes_valid_ldos(
    plants: dict[str, Plant], spec: DataSpec
) -> None:
    default = plants["default"]
    for name, p in plants.items():
        for mode in KNOWN_LABELS:
            share, ref = p.labels[mode].mean(), default.labels[mode].mean()
            assert abs(share - ref) < 0.03, (name, mode, share, ref)  # same rates; 1% label noise
        for doc in p.docs[:50]:
            parse_ldo(json.dumps(doc).encode(), spec, source=doc["ldo_id"])
        prefix = "ldo-0-" if name == "default" else f"ldo-{name}-0-"
        assert all(d["ldo_id"].startswith(prefix) for d in p.docs)


def test_the_default_plants_signatures_are_absent_from_the_others(plants: dict[str, Plant]) -> None:
    found: dict[str, dict[str, float]] = {}
    for name, p in plants.items():
        features = default_signatures(p)
        found[name] = {m: auroc(features[m], p.labels[m]) for m in KNOWN_LABELS}
    assert all(a >= 0.95 for a in found["default"].values()), found["default"]
    for name in PLANTS[1:]:
        assert all(abs(a - 0.5) <= 0.25 for a in found[name].values()), (name, found[name])


@pytest.mark.parametrize("name", PLANTS[1:])
def test_each_plants_own_signatures_are_there_to_learn(plants: dict[str, Plant], name: str) -> None:
    p = plants[name]
    features = own_signatures(name, p)
    found = {m: auroc(features[m], p.labels[m]) for m in KNOWN_LABELS}
    assert all(a >= 0.75 for a in found.values()), (name, found)


def test_records_are_deterministic_per_plant_and_seed(spec: DataSpec) -> None:
    for name in PLANTS:
        first = list(generate(20, 3, spec, plant=name))
        assert first == list(generate(20, 3, spec, plant=name))
        assert first[10:] == list(generate(10, 3, spec, plant=name, first=10))
    assert list(generate(5, 3, spec, plant="impulsive")) != list(generate(5, 3, spec, plant="dropout"))
    with pytest.raises(ValueError, match="unknown plant 'mars': one of default, impulsive, dropout"):
        generate(1, 0, spec, plant="mars")


def test_the_cli_writes_a_plant(tmp_path: Path) -> None:
    out = tmp_path / "ldos"
    run = subprocess.run(
        [EDGEOPS, "data", "synth", "--n", "30", "--seed", "1", "--plant", "dropout", "--out", str(out)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in out.iterdir())[0] == "ldo-dropout-1-0000000.json"
    assert len(list(out.iterdir())) == 30
    bad = subprocess.run([EDGEOPS, "data", "synth", "--n", "3", "--plant", "mars", "--out", str(out)],
                         capture_output=True, text=True, check=False, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and "invalid choice: 'mars'" in bad.stderr
